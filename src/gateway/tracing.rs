//! One request as a trace (OpenTelemetry GenAI conventions): a server span
//! for the request, continuing the client's W3C `traceparent` when it sends
//! one, and a client span per upstream attempt, so retries and fallbacks
//! show. Each attempt's context goes upstream in `traceparent`. The caller's
//! id and team are attributes; credentials and prompt or completion text
//! never are. With tracing off none of this runs.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Span;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::RequestCtx;
use crate::observability::traces;

/// The trace of one request.
pub struct RequestTrace {
    /// Holds the server span.
    server: Context,
    /// GenAI's `gen_ai.operation.name` for model requests, from the path.
    operation: &'static str,
    /// The upstream attempt under way, and the status it answered.
    attempt: Option<(Span, Option<u16>)>,
}

/// Starts the request's server span, a child of the client's `traceparent`
/// when it sent a valid one; `None` with tracing off.
pub fn start(session: &Session) -> Option<Box<RequestTrace>> {
    let tracer = traces::tracer()?;
    let req = session.req_header();
    let parent = TraceContextPropagator::new().extract(&Headers(&req.headers));
    // Named and described at its end, once it is known to be recorded.
    let span = tracer
        .span_builder("request")
        .with_kind(SpanKind::Server)
        .start_with_context(tracer, &parent);
    let operation = if req.uri.path().ends_with("/embeddings") {
        "embeddings"
    } else {
        "chat"
    };
    Some(Box::new(RequestTrace {
        server: parent.with_span(span),
        operation,
        attempt: None,
    }))
}

impl RequestTrace {
    /// Sampled in: its spans are built and exported.
    pub fn is_recording(&self) -> bool {
        self.server.span().is_recording()
    }
}

/// The request's trace id (32 hex digits), for the access log.
pub fn trace_id(ctx: &RequestCtx) -> Option<String> {
    let trace = ctx.trace.as_ref()?;
    let span = trace.server.span();
    let context = span.span_context();
    context.is_valid().then(|| context.trace_id().to_string())
}

/// A new attempt at a backend begins: the one before it failed.
pub fn attempt_started(ctx: &mut RequestCtx) {
    let (Some(tracer), Some(backend)) = (traces::tracer(), ctx.upstream.backend.clone()) else {
        return;
    };
    let recording = match &ctx.trace {
        Some(trace) => trace.is_recording(),
        None => return,
    };
    // Built only for a span that is recorded.
    let model = ctx
        .model_request()
        .filter(|_| recording)
        .map(|m| upstream_model(ctx, &m.model).to_string());
    let Some(trace) = ctx.trace.as_mut() else {
        return;
    };
    let operation = trace.operation;
    if let Some((span, status)) = trace.attempt.take() {
        end_attempt(span, status, true);
    }
    if !recording {
        // Sampled out: a span only to carry the trace upstream, nothing
        // built for it.
        let span = tracer
            .span_builder(operation)
            .with_kind(SpanKind::Client)
            .start_with_context(tracer, &trace.server);
        trace.attempt = Some((span, None));
        return;
    }
    let name = match &model {
        Some(model) => format!("{operation} {model}"),
        None => operation.to_string(),
    };
    let mut attributes = vec![
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("gen_ai.provider.name", backend.provider.name()),
        KeyValue::new("server.address", backend.url.host.clone()),
        KeyValue::new("server.port", i64::from(backend.url.port)),
    ];
    if let Some(model) = model {
        attributes.push(KeyValue::new("gen_ai.request.model", model));
    }
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(tracer, &trace.server);
    trace.attempt = Some((span, None));
}

/// The attempt's answer began with `status`.
pub fn attempt_answered(ctx: &mut RequestCtx, status: u16) {
    if let Some((_, answered)) = ctx.trace.as_mut().and_then(|t| t.attempt.as_mut()) {
        *answered = Some(status);
    }
}

/// `traceparent` (and `tracestate`) for the upstream: the attempt's span.
/// The client's own headers are replaced, since this attempt is their child.
pub fn inject(ctx: &RequestCtx, upstream: &mut RequestHeader) -> pingora::Result<()> {
    let Some((span, _)) = ctx.trace.as_ref().and_then(|t| t.attempt.as_ref()) else {
        return Ok(());
    };
    upstream.remove_header("traceparent");
    upstream.remove_header("tracestate");
    let context = Context::new()
        .with_remote_span_context(opentelemetry::trace::Span::span_context(span).clone());
    let mut headers = TraceHeaders(Vec::with_capacity(2));
    TraceContextPropagator::new().inject_context(&context, &mut headers);
    for (name, value) in headers.0 {
        upstream.insert_header(name, value)?;
    }
    Ok(())
}

/// Ends the attempt and the request's span with what became of them.
pub fn finish(
    ctx: &mut RequestCtx,
    session: &Session,
    status: u16,
    error: Option<&pingora::Error>,
) {
    let Some(mut trace) = ctx.trace.take() else {
        return;
    };
    let failed = status == 0 || status >= 500 || error.is_some();
    if let Some((span, answered)) = trace.attempt.take() {
        end_attempt(span, answered.or((status != 0).then_some(status)), failed);
    }
    let span = trace.server.span();
    if !trace.is_recording() {
        // Sampled out: nothing will be exported, so nothing is built.
        span.end();
        return;
    }
    let mut attributes = Vec::with_capacity(18);
    let operation = trace.operation;
    let req = session.req_header();
    attributes.push(KeyValue::new("http.request.method", req.method.to_string()));
    attributes.push(KeyValue::new("url.path", req.uri.path().to_string()));
    if status != 0 {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(route) = ctx.route() {
        attributes.push(KeyValue::new("http.route", route.name.clone()));
    }
    attributes.push(KeyValue::new(
        "ai_gateway.request_id",
        ctx.request_id.clone(),
    ));
    if let Some(ip) = ctx.client.ip {
        attributes.push(KeyValue::new("client.address", ip.to_string()));
    }
    if let Some(identity) = ctx.admitted.as_ref().and_then(|a| a.identity.as_ref()) {
        attributes.push(KeyValue::new("user.id", identity.id.clone()));
        if let Some(team) = &identity.team {
            attributes.push(KeyValue::new("ai_gateway.team", team.clone()));
        }
    }
    if let Some(backend) = &ctx.upstream.backend {
        attributes.push(KeyValue::new(
            "gen_ai.provider.name",
            backend.provider.name(),
        ));
    }
    match ctx.model_request() {
        Some(request) => {
            attributes.push(KeyValue::new("gen_ai.operation.name", operation));
            attributes.push(KeyValue::new("gen_ai.request.model", request.model.clone()));
            if ctx.upstream.backend.is_some() {
                attributes.push(KeyValue::new(
                    "gen_ai.response.model",
                    upstream_model(ctx, &request.model).to_string(),
                ));
            }
            if let Some(max_tokens) = request.max_tokens {
                attributes.push(KeyValue::new(
                    "gen_ai.request.max_tokens",
                    max_tokens.min(i64::MAX as u64) as i64,
                ));
            }
            span.update_name(format!("{operation} {}", request.model));
        }
        // HTTP's convention: `{method} {route}`.
        None => span.update_name(match ctx.route() {
            Some(route) => format!("{} {}", req.method, route.name),
            None => req.method.to_string(),
        }),
    }
    if let Some(details) = &ctx.response.details {
        if let Some(id) = &details.id {
            attributes.push(KeyValue::new("gen_ai.response.id", id.clone()));
        }
        if !details.finish_reasons.is_empty() {
            let reasons: Vec<StringValue> = details
                .finish_reasons
                .iter()
                .map(|r| StringValue::from(r.clone()))
                .collect();
            attributes.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(reasons)),
            ));
        }
    }
    if let Some(usage) = ctx.response.usage {
        attributes.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            usage.input.min(i64::MAX as u64) as i64,
        ));
        attributes.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            usage.output.min(i64::MAX as u64) as i64,
        ));
    }
    if failed {
        let kind = error_type(status, error);
        attributes.push(KeyValue::new("error.type", kind.clone()));
        span.set_status(Status::error(kind));
    }
    span.set_attributes(attributes);
    span.end();
}

fn end_attempt(mut span: Span, status: Option<u16>, failed: bool) {
    use opentelemetry::trace::Span as _;
    if !span.is_recording() {
        span.end();
        return;
    }
    if let Some(status) = status {
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    let failed = failed || status.is_some_and(|s| s >= 500 || s == 429);
    if failed {
        let kind = status.map_or_else(|| "upstream_error".to_string(), |s| s.to_string());
        span.set_attribute(KeyValue::new("error.type", kind.clone()));
        span.set_status(Status::error(kind));
    }
    span.end();
}

fn error_type(status: u16, error: Option<&pingora::Error>) -> String {
    match (status, error) {
        (0, Some(e)) => format!("{:?}", e.etype()),
        (0, None) => "no_response".into(),
        (status, _) => status.to_string(),
    }
}

/// The model name the upstream was sent (after the route's aliases).
fn upstream_model<'a>(ctx: &'a RequestCtx, model: &'a str) -> &'a str {
    ctx.route()
        .and_then(|r| r.upstream_model(model))
        .unwrap_or(model)
}

/// Request headers as the propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// What the propagator writes for the upstream: only the W3C headers.
struct TraceHeaders(Vec<(&'static str, String)>);

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        self.0.push((name, value));
    }
}
