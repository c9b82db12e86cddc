//! The upstream's answer as it passes to the client: the moment it starts,
//! time to first token, usage read in passing (with the usage chunk the
//! client did not ask for cut out), and, when the upstream speaks the other
//! dialect, the answer translated. Streams are never held back; a whole
//! JSON answer to translate is held until it ends (it is bounded).

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::context::Translation;
use super::RequestCtx;
use crate::llm::translate::{self, StreamTranslator};
use crate::llm::{sse, AnswerDetails, Framing, Usage, UsageScanner};

/// The most of a whole answer held for translation.
const MAX_WHOLE: usize = 16 * 1024 * 1024;

/// The answer's headers are going to the client.
pub fn started(ctx: &mut RequestCtx, response: &mut ResponseHeader) -> pingora::Result<()> {
    ctx.response.first_byte_at = Some(Instant::now());
    ctx.plan.answered();
    let status = response.status.as_u16();
    let client = ctx.dialect;
    let upstream = ctx.upstream.dialect.unwrap_or(client.dialect());
    let recording = ctx.trace.as_ref().is_some_and(|t| t.is_recording());
    if recording && ctx.model_request().is_some() && (200..300).contains(&status) {
        ctx.response.details = Some(AnswerDetails::new(upstream));
    }
    let (Some(request), Some(backend)) = (ctx.model_request(), &ctx.upstream.backend) else {
        return Ok(());
    };
    let sse = backend.provider.streams(response);
    if upstream != client {
        let translation = match (status, sse) {
            (200..=299, true) => Translation::Stream(Box::new(StreamTranslator::new(
                upstream,
                client,
                request.include_usage,
                sse::DEFAULT_MAX_EVENT,
            ))),
            (200..=299, false) => Translation::Whole {
                body: Vec::new(),
                from: upstream,
            },
            _ => Translation::Error {
                body: Vec::new(),
                from: upstream,
                status,
                provider: backend.provider.clone(),
            },
        };
        ctx.response.translation = Some(translation);
        // The translation has another length.
        response.remove_header(&http::header::CONTENT_LENGTH);
        if !sse {
            response.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        }
        return Ok(());
    }
    if !(200..300).contains(&status) {
        return Ok(());
    }
    let strip = request.strip_usage_event;
    let framing = if sse {
        Framing::EventStream {
            cut_usage_chunk: strip,
        }
    } else {
        Framing::Json
    };
    ctx.response.usage_scanner = Some(UsageScanner::new(upstream, framing, sse::DEFAULT_MAX_EVENT));
    if sse && strip {
        // Events are cut out, so the upstream's length no longer holds.
        response.remove_header(&http::header::CONTENT_LENGTH);
    }
    Ok(())
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
    if let (Some(details), Some(piece)) = (ctx.response.details.as_mut(), body.as_ref()) {
        details.feed(piece);
    }
    let client = ctx.dialect;
    if let Some(translation) = ctx.response.translation.as_mut() {
        let (out, usage) = translate_piece(translation, client, body.take(), end_of_stream);
        if usage.is_some() {
            ctx.response.usage = usage;
        }
        *body = (!out.is_empty() || end_of_stream).then_some(out);
        return;
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

/// Translates what a piece of the body allows: a stream event by event, a
/// whole answer or an error at its end. Returns the bytes for the client
/// and, once known, the usage.
fn translate_piece(
    translation: &mut Translation,
    client: crate::llm::ClientDialect,
    piece: Option<Bytes>,
    end: bool,
) -> (Bytes, Option<Usage>) {
    match translation {
        Translation::Stream(stream) => {
            let mut out = piece.map_or_else(Bytes::new, |p| stream.feed(&p));
            if end {
                let tail = stream.finish();
                if !tail.is_empty() {
                    let mut whole = out.to_vec();
                    whole.extend_from_slice(&tail);
                    out = Bytes::from(whole);
                }
            }
            (out, stream.usage())
        }
        Translation::Whole { body, from } | Translation::Error { body, from, .. } => {
            if let Some(piece) = piece {
                if body.len() + piece.len() <= MAX_WHOLE {
                    body.extend_from_slice(&piece);
                }
            }
            if !end {
                return (Bytes::new(), None);
            }
            let from = *from;
            match translation {
                Translation::Whole { body, .. } => match translate::response(from, client, body) {
                    Some((bytes, usage)) => (Bytes::from(bytes), Some(usage)),
                    None => (
                        Bytes::from(translate::error_body(
                            client,
                            &translate::ErrorBody::new(
                                translate::ErrorKind::Server,
                                "The upstream's answer could not be translated.",
                            ),
                        )),
                        None,
                    ),
                },
                Translation::Error {
                    body,
                    status,
                    provider,
                    ..
                } => (
                    Bytes::from(translate::error(from, client, *status, body, &|v| {
                        provider.parse_error(v)
                    })),
                    None,
                ),
                Translation::Stream(_) => (Bytes::new(), None),
            }
        }
    }
}
