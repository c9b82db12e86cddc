//! The `ProxyHttp` implementation: one small method per Pingora phase, each
//! delegating to the module that owns the work.

mod body;
pub mod connection;
mod context;
mod limiting;
mod request_id;
mod respond;
mod upstream;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

pub use context::RequestCtx;

use crate::admin;
use crate::auth::{Failure, Identity};
use crate::config::AuthMethod;
use crate::config::RetryOn;
use crate::error::ApiError;
use crate::lifecycle::drain;
use crate::llm::{self, UsageScanner};
use crate::observability::access_log::AccessRecord;
use crate::observability::metrics::{method_label, metrics};
use crate::reload::SharedState;
use crate::routing::PathMatch;
use crate::state::GatewayState;

pub struct Gateway {
    /// Swapped whole on reload; each request reads it where it needs it.
    state: SharedState,
}

impl Gateway {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    /// Endpoints the gateway answers itself. Returns true when it answered.
    async fn answer_locally(
        state: &GatewayState,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let req = session.req_header();
        let is_read = req.method == http::Method::GET || req.method == http::Method::HEAD;
        if !is_read {
            return Ok(false);
        }
        let (label, (status, body)) = match req.uri.path() {
            "/health" => ("health", admin::health(state)),
            "/ready" => ("ready", admin::ready(state)),
            "/v1/models" => ("models", (200, model_list(state))),
            _ => return Ok(false),
        };
        ctx.route_label = label;
        ctx.status = status;
        respond::send_json(session, status, body, &ctx.request_id, &[]).await?;
        Ok(true)
    }

    /// 400 for ambiguous framing, 431 for requests over the configured
    /// header count or size.
    fn header_limits(state: &GatewayState, session: &Session) -> Option<ApiError> {
        let headers = &session.req_header().headers;
        // RFC 9112 6.1: a request with both is a smuggling attempt or a broken
        // client; answer and close rather than guess which framing is meant.
        // Pingora drops Content-Length when Transfer-Encoding is present, so
        // look at the raw header block (only for the rare chunked request).
        if headers.contains_key(http::header::TRANSFER_ENCODING) && raw_has_content_length(session)
        {
            return Some(ApiError::invalid_request(
                400,
                "ambiguous_framing",
                "A request may not carry both Content-Length and Transfer-Encoding.",
            ));
        }
        let size: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        (headers.len() > state.max_headers || size > state.max_header_bytes).then(|| {
            ApiError::invalid_request(
                431,
                "header_fields_too_large",
                format!(
                    "The request headers exceed the limits ({} headers, {} bytes).",
                    state.max_headers, state.max_header_bytes
                ),
            )
        })
    }

    /// Picks the route; for routes that choose by model, reads and checks the
    /// body and prepares what goes upstream.
    async fn route_request(
        state: &GatewayState,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<std::result::Result<(), ApiError>> {
        let path = session.req_header().uri.path().to_string();
        let (first, by_model) = match state.routes.match_path(&path) {
            PathMatch::None => {
                let method = session.req_header().method.as_str();
                return Ok(Err(ApiError::unknown_path(method, &path)));
            }
            PathMatch::Direct(route) => (route.clone(), false),
            PathMatch::ByModel(route) => (route.clone(), true),
        };
        // Credentials are checked before a body is read: an anonymous
        // client cannot make the gateway buffer megabytes.
        let mut identity = match authenticate(state, session, &first.auth).await {
            Ok(identity) => identity,
            Err(e) => return Ok(Err(e)),
        };
        if !by_model {
            ctx.route = Some(first);
            ctx.identity = identity;
            return Ok(Ok(()));
        }
        let body = match body::read_body(session, state.max_body_bytes).await? {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        let inspected = match llm::inspect(&body) {
            Ok(i) => i,
            Err(e) => return Ok(Err(ApiError::invalid_request(400, e.code(), e.to_string()))),
        };
        let Some(route) = state.routes.match_model(&path, &inspected.model) else {
            return Ok(Err(ApiError::model_not_found(&inspected.model)));
        };
        if route.auth != first.auth {
            identity = match authenticate(state, session, &route.auth).await {
                Ok(identity) => identity,
                Err(e) => return Ok(Err(e)),
            };
        }
        if identity
            .as_ref()
            .is_some_and(|id| !id.may_use(&inspected.model))
        {
            let failure = Failure::ForbiddenModel;
            metrics()
                .auth_failures
                .with_label_values(&[failure.reason()])
                .inc();
            return Ok(Err(failure.to_api_error(Some(&inspected.model))));
        }
        ctx.identity = identity;
        // Streams report usage only when asked: ask for the client, and cut
        // the extra chunk out on the way back (OpenAI-style upstreams).
        let add_include_usage =
            inspected.stream && !inspected.include_usage && route.pool.speaks_openai();
        let new_model = route.upstream_model(&inspected.model);
        let upstream_body = if new_model.is_some() || add_include_usage {
            match llm::rewrite(&body, new_model, add_include_usage) {
                Ok(rewritten) => Bytes::from(rewritten),
                Err(e) => return Ok(Err(ApiError::invalid_request(400, e.code(), e.to_string()))),
            }
        } else {
            body
        };
        ctx.route = Some(route.clone());
        ctx.prompt_bytes = upstream_body.len();
        ctx.max_tokens = inspected.max_tokens;
        ctx.model = Some(inspected.model);
        ctx.stream = inspected.stream;
        ctx.strip_usage_event = add_include_usage;
        ctx.upstream_body = Some(upstream_body);
        Ok(Ok(()))
    }

    /// Records one failed attempt at the current backend.
    fn note_attempt_failure(&self, ctx: &mut RequestCtx, status_label: &str, error: &Error) {
        if let (Some(route), Some(backend)) = (&ctx.route, &ctx.backend) {
            metrics()
                .upstream_requests
                .with_label_values(&[&route.pool.name, &backend.label, status_label])
                .inc();
            if backend.record_failure(&route.pool.passive) {
                log::warn!(
                    "backend {} ejected for {:?} after consecutive failures",
                    backend.label,
                    route.pool.passive.cooldown
                );
            }
        }
        ctx.last_error = Some(error.etype().as_str().to_string());
    }
}

/// `GET /v1/models` in OpenAI's list format, from the route table.
fn model_list(state: &GatewayState) -> Vec<u8> {
    let data: Vec<serde_json::Value> = state
        .routes
        .listed_models()
        .into_iter()
        .map(|(id, owner)| {
            serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"object": "list", "data": data})).unwrap_or_default()
}

/// Checks the request's credentials against `methods`; a failure is counted
/// and becomes the client's answer.
async fn authenticate(
    state: &GatewayState,
    session: &Session,
    methods: &[AuthMethod],
) -> std::result::Result<Option<Identity>, ApiError> {
    let headers = &session.req_header().headers;
    state
        .auth
        .authenticate(headers, methods)
        .await
        .map_err(|failure| {
            metrics()
                .auth_failures
                .with_label_values(&[failure.reason()])
                .inc();
            failure.to_api_error(None)
        })
}

fn raw_has_content_length(session: &Session) -> bool {
    let Some(h1) = session.as_downstream().as_http1() else {
        return session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH);
    };
    h1.get_headers_raw_bytes()
        .split(|&b| b == b'\n')
        .any(|line| {
            line.len() >= 15
                && line[..14].eq_ignore_ascii_case(b"content-length")
                && line[14..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
        })
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// The client's answer for an error Pingora reports at the end of a request.
fn classify(e: &Error, ctx: &RequestCtx) -> Option<ApiError> {
    if let ErrorType::HTTPStatus(code) = e.etype() {
        return Some(ApiError::new(
            *code,
            "server_error",
            "upstream_error",
            "The upstream failed.",
        ));
    }
    match e.esource() {
        ErrorSource::Upstream if is_timeout(e) => Some(ApiError::gateway_timeout()),
        ErrorSource::Upstream => {
            let detail = ctx.last_error.as_deref().unwrap_or(e.etype().as_str());
            Some(ApiError::bad_gateway(detail))
        }
        ErrorSource::Downstream => match e.etype() {
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
            _ => Some(ApiError::invalid_request(
                400,
                "bad_request",
                "The request is malformed.",
            )),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some(ApiError::internal()),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        // The headers are in: the connection's header deadline is met.
        connection::request_started(session);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.request_id = request_id::for_session(session);
        // One snapshot of the config for the whole admission: a reload in the
        // middle cannot pair one config's route with another's limiter.
        let state = self.state.load_full();
        // A client that stalls while sending its body is cut off, whether the
        // gateway reads the body itself or Pingora streams it upstream.
        session.set_read_timeout(Some(state.body_timeout));
        // Pingora's own keep-alive timeout (whole seconds, per read) stays a
        // backstop just above the connection's idle deadline.
        session.set_keepalive(Some(state.client_timeouts.idle.as_secs() + 1));
        if let Some(e) = Self::header_limits(&state, session) {
            ctx.status = e.status;
            respond::send_error(session, &e, &ctx.request_id).await?;
            return Ok(true);
        }
        if Self::answer_locally(&state, session, ctx).await? {
            return Ok(true);
        }
        let routed = match Self::route_request(&state, session, ctx).await? {
            Ok(()) => {
                if let Some(route) = &ctx.route {
                    ctx.route_label = route.label;
                }
                limiting::admit(&state.limiter, session, ctx).await
            }
            Err(e) => Err(e),
        };
        match routed {
            Ok(()) => Ok(false),
            Err(api_error) => {
                ctx.status = api_error.status;
                respond::send_error(session, &api_error, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // The body was read in request_filter; Pingora hands us the retry
        // buffer once per attempt and we send the whole prepared body instead.
        if let Some(prepared) = &ctx.upstream_body {
            *body = end_of_stream.then(|| prepared.clone());
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no route chosen");
        };
        let pool = &route.pool;
        let deadline = *ctx
            .deadline
            .get_or_insert_with(|| Instant::now() + pool.timeouts.total);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            ctx.failure = Some(ApiError::gateway_timeout());
            return Error::e_explain(ErrorType::HTTPStatus(504), "total timeout spent");
        }
        let picked = pool
            .select(&ctx.tried)
            .and_then(|backend| pool.peer(&backend, left).map(|peer| (backend, peer)));
        let Some((backend, peer)) = picked else {
            ctx.failure = Some(match &ctx.last_error {
                None => ApiError::no_healthy_backend(&route.name),
                Some(detail) => ApiError::bad_gateway(detail),
            });
            return Error::e_explain(ErrorType::HTTPStatus(503), "no available backend");
        };
        ctx.tried.push(backend.index);
        ctx.inflight = Some(backend.start_request());
        ctx.backend = Some(backend);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(backend) = &ctx.backend else {
            return Error::e_explain(ErrorType::InternalError, "no backend chosen");
        };
        let body_len = ctx.upstream_body.as_ref().map(Bytes::len);
        upstream::rewrite_request(upstream_request, backend, body_len, &ctx.request_id)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        let (Some(route), Some(backend)) = (ctx.route.clone(), ctx.backend.clone()) else {
            return Ok(());
        };
        if status == 200 {
            backend.ok_counter.inc();
        } else {
            metrics()
                .upstream_requests
                .with_label_values(&[&route.pool.name, &backend.label, &status_code_label(status)])
                .inc();
        }
        if status >= 500 {
            if backend.record_failure(&route.pool.passive) {
                log::warn!(
                    "backend {} ejected after consecutive failures",
                    backend.label
                );
            }
        } else {
            backend.record_success();
        }
        let cause = match status {
            429 => Some(RetryOn::RateLimited),
            500..=599 => Some(RetryOn::ServerError),
            _ => None,
        };
        // Nothing has reached the client yet: a failed answer can still be
        // replaced by another backend's, when the route says so.
        if let Some(cause) = cause {
            if route.retries_on(cause) && ctx.can_try_again() {
                ctx.last_error = Some(format!("upstream answered {status}"));
                let mut e =
                    Error::explain(ErrorType::HTTPStatus(status), "retry on another backend");
                e.set_retry(true);
                return Err(e);
            }
        }
        ctx.first_byte_at = Some(Instant::now());
        ctx.status = status;
        if route.needs_model() && (200..300).contains(&status) {
            let sse = upstream_response
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            ctx.usage_scanner = Some(UsageScanner::new(sse, ctx.strip_usage_event));
            if sse && ctx.strip_usage_event {
                // Events are cut out, so the upstream's length no longer holds.
                upstream_response.remove_header(&http::header::CONTENT_LENGTH);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if drain().is_draining() {
            // `Connection: close`: the client opens its next connection to
            // a process that is not going away.
            session.set_keepalive(None);
        }
        upstream_response.insert_header("x-request-id", &ctx.request_id)?;
        limiting::add_standing_headers(upstream_response, ctx)?;
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if !ctx.body_started && body.as_ref().is_some_and(|b| !b.is_empty()) {
            ctx.body_started = true;
            if let Some(route) = &ctx.route {
                route
                    .metrics
                    .ttft
                    .observe(ctx.started.elapsed().as_secs_f64());
            }
        }
        if let Some(scanner) = ctx.usage_scanner.as_mut() {
            if let Some(chunk) = body.as_ref() {
                if let Some(replaced) = scanner.feed(chunk) {
                    *body = Some(replaced);
                }
            }
            if end_of_stream {
                let (usage, tail) = scanner.finish();
                ctx.usage = usage;
                if let Some(tail) = tail {
                    let mut whole = body.take().map(|b| b.to_vec()).unwrap_or_default();
                    whole.extend_from_slice(&tail);
                    *body = Some(Bytes::from(whole));
                }
            }
        }
        if end_of_stream {
            // The backend's part is over before the client can see the last
            // byte: a client's next request must not find it still counted
            // busy (least_requests).
            ctx.inflight = None;
        } else if ctx.deadline.is_some_and(|d| Instant::now() > d) {
            return Error::e_explain(ErrorType::ReadTimedout, "total upstream timeout reached");
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let timeout = is_timeout(&e);
        self.note_attempt_failure(ctx, if timeout { "timeout" } else { "connect_error" }, &e);
        let cause = if timeout {
            RetryOn::Timeout
        } else {
            RetryOn::ConnectError
        };
        let retry = ctx.route.as_ref().is_some_and(|r| r.retries_on(cause)) && ctx.can_try_again();
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer {peer}"));
        // Retrying is safe only while the client has seen nothing and the
        // whole body is still in hand.
        let replayable = session.response_written().is_none()
            && (ctx.upstream_body.is_some() || session.is_body_empty());
        if let ErrorType::HTTPStatus(_) = e.etype() {
            // Our own "retry elsewhere" from upstream_response_filter.
            let retry = replayable && e.retry();
            e.set_retry(retry);
            return e;
        }
        let timeout = is_timeout(&e);
        let stale_pooled_connection = client_reused && !timeout && ctx.first_byte_at.is_none();
        if ctx.first_byte_at.is_none() && !stale_pooled_connection {
            self.note_attempt_failure(ctx, if timeout { "timeout" } else { "error" }, &e);
        }
        let retry = if stale_pooled_connection {
            // A pooled connection the backend had already closed: the backend
            // is not to blame, so try it again on a fresh connection.
            ctx.tried.pop();
            true
        } else {
            let cause = if timeout {
                RetryOn::Timeout
            } else {
                RetryOn::ConnectError
            };
            ctx.route.as_ref().is_some_and(|r| r.retries_on(cause)) && ctx.can_try_again()
        };
        e.set_retry(retry && replayable && ctx.first_byte_at.is_none());
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let answer = ctx.failure.take().or_else(|| classify(e, ctx));
        let code = answer.as_ref().map_or(0, |a| a.status);
        if let Some(answer) = answer {
            if session.response_written().is_none() {
                ctx.status = answer.status;
                if let Err(write_error) =
                    respond::send_error(session, &answer, &ctx.request_id).await
                {
                    log::debug!("cannot send error response: {write_error}");
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        connection::request_finished(session);
        let status = session
            .response_written()
            .map_or(ctx.status, |r| r.status.as_u16());
        let req = session.req_header();
        let method = method_label(&req.method);
        limiting::settle(ctx).await;
        let elapsed = ctx.started.elapsed();
        match &ctx.route {
            Some(route) => {
                if status == 200 && method == "POST" {
                    route.metrics.post_ok.inc();
                } else {
                    record_request(ctx.route_label, method, status);
                }
                route.metrics.duration.observe(elapsed.as_secs_f64());
            }
            None => {
                record_request(ctx.route_label, method, status);
                metrics()
                    .http_duration
                    .with_label_values(&[ctx.route_label])
                    .observe(elapsed.as_secs_f64());
            }
        }
        let access_log = self.state.load().access_log.clone();
        if !access_log.enabled {
            return;
        }
        let path = req.uri.path();
        AccessRecord {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            request_id: &ctx.request_id,
            client: session
                .client_addr()
                .map_or_else(|| "-".to_string(), |a| a.to_string()),
            method,
            path,
            route: ctx.route_label,
            model: ctx.model.as_deref(),
            caller: ctx.identity.as_ref().map(|i| i.id.as_str()),
            team: ctx.identity.as_ref().and_then(|i| i.team.as_deref()),
            upstream: ctx.backend.as_ref().map(|b| b.label.as_str()),
            status,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            ttfb_ms: ctx
                .first_byte_at
                .map(|t| (t - ctx.started).as_secs_f64() * 1000.0),
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            attempts: ctx.attempts(),
            input_tokens: ctx.usage.map(|u| u.input),
            output_tokens: ctx.usage.map(|u| u.output),
            stream: ctx.stream,
            error: e.map(|e| e.etype().as_str().to_string()),
        }
        .emit(access_log.format);
    }
}

fn record_request(route: &str, method: &str, status: u16) {
    metrics()
        .http_requests
        .with_label_values(&[route, method, &status_code_label(status)])
        .inc();
}

/// A status code as a label: the code itself (bounded: 100-599), or 0 when
/// no response was sent.
fn status_code_label(status: u16) -> String {
    status.to_string()
}
