//! The upstream's answer as it passes to the client: the moment it starts,
//! time to first token, and usage read in passing (with the usage chunk the
//! client did not ask for cut out). Nothing is held back.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::RequestCtx;
use crate::llm::UsageScanner;

/// The answer's headers are going to the client.
pub fn started(ctx: &mut RequestCtx, response: &mut ResponseHeader) {
    ctx.response.first_byte_at = Some(Instant::now());
    let status = response.status.as_u16();
    let Some(request) = ctx.model_request() else {
        return;
    };
    if !(200..300).contains(&status) {
        return;
    }
    let sse = response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let strip = request.strip_usage_event;
    ctx.response.usage_scanner = Some(UsageScanner::new(sse, strip));
    if sse && strip {
        // Events are cut out, so the upstream's length no longer holds.
        response.remove_header(&http::header::CONTENT_LENGTH);
    }
}

/// A piece of the answer's body (`None` at the end).
pub fn body(ctx: &mut RequestCtx, body: &mut Option<Bytes>, end_of_stream: bool) {
    if !ctx.response.body_started && body.as_ref().is_some_and(|b| !b.is_empty()) {
        ctx.response.body_started = true;
        if let Some(route) = ctx.route() {
            route
                .metrics
                .ttft
                .observe(ctx.started.elapsed().as_secs_f64());
        }
    }
    let Some(scanner) = ctx.response.usage_scanner.as_mut() else {
        return;
    };
    if let Some(chunk) = body.as_ref() {
        if let Some(replaced) = scanner.feed(chunk) {
            *body = Some(replaced);
        }
    }
    if end_of_stream {
        let (usage, tail) = scanner.finish();
        ctx.response.usage = usage;
        if let Some(tail) = tail {
            let mut whole = body.take().map(|b| b.to_vec()).unwrap_or_default();
            whole.extend_from_slice(&tail);
            *body = Some(Bytes::from(whole));
        }
    }
}
