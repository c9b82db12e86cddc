//! What a finished request reports: its request metrics and its access-log
//! line.

use pingora::proxy::Session;
use pingora::Error;

use super::RequestCtx;
use crate::llm::Pricing;
use crate::observability::access_log::{AccessRecord, Timestamp};
use crate::observability::metrics::{method_label, metrics, status_label};
use crate::observability::settings::AccessLog;

/// Counts the request in `http_requests_total` and its duration.
pub fn record_metrics(session: &Session, ctx: &RequestCtx, status: u16) {
    let method = method_label(&session.req_header().method);
    let elapsed = ctx.started.elapsed().as_secs_f64();
    match ctx.route() {
        Some(route) => {
            if status == 200 && method == "POST" {
                // The common case, resolved once per route.
                route.metrics.post_ok.inc();
            } else {
                count(ctx.route_label, method, status);
            }
            route.metrics.duration.observe(elapsed);
            for hint in ctx.dropped_hints().iter() {
                metrics()
                    .translation_dropped_params
                    .with_label_values(&[route.label, hint.name()])
                    .inc();
            }
            if let Some(fault) = ctx.response.fault {
                metrics()
                    .upstream_answer_faults
                    .with_label_values(&[route.label, fault.as_str()])
                    .inc();
            }
        }
        None => {
            count(ctx.route_label, method, status);
            metrics()
                .http_duration
                .with_label_values(&[ctx.route_label])
                .observe(elapsed);
        }
    }
}

fn count(route: &str, method: &str, status: u16) {
    metrics()
        .http_requests
        .with_label_values(&[route, method, status_label(status)])
        .inc();
}

/// What the answer cost in nano-USD: `None` when no usage was reported or
/// its model has no price.
pub fn cost(pricing: &Pricing, ctx: &RequestCtx) -> Option<u64> {
    let usage = ctx.response.usage?;
    pricing.cost_nano_usd(&ctx.model_request()?.model, usage)
}

/// Writes the request's access-log line, when the access log is on.
pub fn access_log(
    settings: AccessLog,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    cost_nano_usd: Option<u64>,
    error: Option<&Error>,
) {
    if !settings.enabled {
        return;
    }
    let req = session.req_header();
    let identity = ctx.identity();
    let usage = ctx.response.usage;
    let trace_id = super::tracing::trace_id(ctx);
    // Behind a trusted proxy, the address it forwarded; else the peer's.
    let forwarded = ctx.client.ip.filter(|_| ctx.client.forwarded());
    AccessRecord {
        time: Timestamp(std::time::SystemTime::now()),
        request_id: &ctx.request_id,
        client: match (&forwarded, session.client_addr()) {
            (Some(ip), _) => ip,
            (None, Some(addr)) => addr,
            _ => &"-",
        },
        method: method_label(&req.method),
        path: req.uri.path(),
        route: ctx.route_label,
        model: ctx.model_request().map(|m| m.model.as_str()),
        requested_model: ctx.fallbacks.as_ref().and_then(|f| f.requested.as_deref()),
        fallbacks: ctx.plan.models_moved(),
        caller: identity.map(|i| i.id.as_str()),
        owner: identity.and_then(|i| i.owner.as_deref()),
        team: identity.and_then(|i| i.team.as_deref()),
        upstream: ctx.upstream.backend.as_ref().map(|b| b.label.as_str()),
        status,
        latency: ctx.started.elapsed(),
        ttfb: ctx.response.first_byte_at.map(|t| t - ctx.started),
        bytes_in: session.body_bytes_read(),
        bytes_out: session.body_bytes_sent(),
        attempts: ctx.plan.attempts(),
        input_tokens: usage.map(|u| u.input),
        cached_input_tokens: usage.map(|u| u.cache_read),
        output_tokens: usage.map(|u| u.output),
        cost_nano_usd,
        stream: ctx.model_request().is_some_and(|m| m.stream),
        error: error.map(|e| e.etype().as_str()),
        answer_fault: ctx.response.fault.map(|f| f.as_str()),
        trace_id: trace_id.as_deref(),
    }
    .emit(settings.format);
}
