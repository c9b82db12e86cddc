//! The `ProxyHttp` implementation: one short method per Pingora phase, each
//! delegating to the module that owns the work.

mod admission;
mod attempts;
mod body;
mod context;
mod limiting;
mod local;
mod path;
mod report;
mod respond;
mod response;
mod tracing;
mod upstream;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

pub use crate::routing::MAX_ATTEMPTS;
pub use context::RequestCtx;

use crate::admin;
use crate::edge::settings::RequestLimits;
use crate::edge::{client, guarded_stream};
use crate::error::{ApiError, ErrorCode};
use crate::lifecycle::drain;
use crate::llm::ClientDialect;
use crate::observability::metrics::metrics;
use crate::observability::request_id;
use crate::reload::SharedState;
use context::Refusal;

pub struct Gateway {
    /// Swapped whole on reload; each request reads it where it needs it.
    state: SharedState,
}

impl Gateway {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora keeps the context inline in each request's future,
    /// which lives as long as the request (minutes for a stream): 16.2 KB
    /// with the context inline against the passthrough's 13.4 KB. A pointer
    /// in its place takes the future down a size class, 1 KiB less per open
    /// stream (benches/README.md, "Per open stream").
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Self::CTX {
        Box::new(RequestCtx::new())
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        // The headers are in: the connection's header deadline is met.
        guarded_stream::request_started(session);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.request_id = request_id::for_session(session);
        ctx.trace = tracing::start(session);
        // One snapshot of the config for the whole admission: a reload in the
        // middle cannot pair one config's route with another's limiter.
        let state = self.state.load_full();
        bound_client(session, &state.request);
        if let Err(e) = admission::check_head(&state, session) {
            respond::send_error(session, &e, ctx).await?;
            return Ok(true);
        }
        // The path picks the client's dialect, for answers and errors alike.
        ctx.dialect = ClientDialect::of_api_path(session.req_header().uri.path());
        ctx.client = client::resolve(session, &state.trusted_proxies);
        if local::answer(&state, session, ctx).await? {
            return Ok(true);
        }
        match admission::admit(&state, session, ctx.dialect, ctx.client.ip).await {
            Ok(admitted) => {
                ctx.admitted(admitted, &state);
                Ok(false)
            }
            Err(Refusal::Answer { error, route }) => {
                if let Some(label) = route {
                    ctx.route_label = label;
                }
                respond::send_error(session, &error, ctx).await?;
                Ok(true)
            }
            Err(Refusal::Estimated { body, route }) => {
                ctx.route_label = route;
                let headers = [("x-gateway-estimate", "true")];
                respond::send(session, 200, admin::JSON, body, &ctx.request_id, &headers).await?;
                Ok(true)
            }
            Err(Refusal::ClientGone(e)) => Err(e),
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
        // buffer once per attempt and we send the whole prepared body for the
        // attempt's backend instead.
        if ctx.model_request().is_some() {
            *body = end_of_stream.then(|| ctx.upstream.body.clone()).flatten();
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        loop {
            attempts::move_if_armed(session, ctx).await;
            match attempts::next_peer(ctx) {
                Ok(peer) => {
                    tracing::attempt_started(ctx);
                    return Ok(peer);
                }
                // A pool with no backend to offer hands over, like a failed one.
                Err(_) if ctx.plan.pool_spent() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(backend) = &ctx.upstream.backend else {
            return Error::e_explain(ErrorType::InternalError, "no backend chosen");
        };
        let rewrite = upstream::Rewrite {
            backend,
            client: ctx.dialect,
            model: ctx.upstream_model(),
            stream: ctx.model_request().is_some_and(|m| m.stream),
            body_len: ctx.upstream.body.as_ref().map(Bytes::len),
            request_id: &ctx.request_id,
        };
        if let Err(unavailable) = upstream::rewrite_request(upstream_request, &rewrite) {
            ctx.upstream.failure = Some(unavailable);
            return Error::e_explain(ErrorType::HTTPStatus(503), "upstream credentials");
        }
        client::forwarding_headers(upstream_request, &ctx.client)?;
        tracing::inject(ctx, upstream_request)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        tracing::attempt_answered(ctx, upstream_response.status.as_u16());
        if let Err(retry) = attempts::on_response_status(ctx, upstream_response.status.as_u16()) {
            // A move to a fallback is made here, while this answer is still
            // in hand: when no fallback admits the request, the client gets
            // this answer rather than a 502.
            if attempts::move_if_armed(session, ctx).await != attempts::Move::NoneAdmitted {
                return Err(retry);
            }
        }
        response::started(ctx, upstream_response)
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
        if let Some(request) = ctx.model_request() {
            // Which model answered (a fallback may have).
            upstream_response.insert_header("x-gateway-model", &request.model)?;
        }
        let dropped = ctx.dropped_hints();
        if !dropped.is_empty() {
            upstream_response.insert_header("x-gateway-dropped", dropped.to_string())?;
        }
        if ctx.response.translation.is_some() {
            // Where the client dialect's SDKs look for the id; an upstream
            // of the client's dialect sends its own.
            if let Some(name) = ctx.dialect.client().request_id_header() {
                upstream_response.insert_header(name, &ctx.request_id)?;
            }
        }
        limiting::add_standing_headers(upstream_response, ctx)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Err(fault) = response::body(ctx, body, end_of_stream) {
            // The client's answer has its ending (`fail_to_proxy` writes
            // it); the upstream has nothing more to give it. Pingora may not
            // have sent the headers yet: then the client gets a 502.
            ctx.upstream.failure = Some(ApiError::new(ErrorCode::UpstreamError, fault.message()));
            return Error::e_explain(ANSWER_FAULT, fault.as_str());
        }
        if end_of_stream {
            attempts::finished(ctx);
        } else if ctx.plan.past_deadline(Instant::now()) {
            return Error::e_explain(ErrorType::ReadTimedout, "total upstream timeout reached");
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        attempts::on_connect_failure(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("peer {peer}"));
        attempts::on_proxy_error(ctx, session, e, client_reused)
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
        let answer = ctx.upstream.failure.take().or_else(|| classify(e, ctx));
        let code = answer.as_ref().map_or(0, |a| a.status);
        let client_left = *e.esource() == ErrorSource::Downstream;
        if session.response_written().is_some() {
            // The status is out: the answer can only be ended well.
            let ending = (!client_left)
                .then(|| response::ending(ctx, attempts::is_timeout(e)))
                .flatten();
            if let Some(ending) = ending {
                if let Err(write_error) = session.write_response_body(Some(ending), true).await {
                    log::debug!("cannot end the answer: {write_error}");
                }
            }
            // Pingora 0.9 never reuses a client connection after an error
            // in proxying (it ignores `can_reuse_downstream` there), so an
            // HTTP/1 client holding a well-ended answer would send its next
            // request on a connection about to close, and get a reset no
            // client retries on its own (a POST is not idempotent). The
            // close is sent right behind the answer's last bytes, before the
            // request is logged, so the client's pool sees it first.
            if !session.is_http2() {
                session.shutdown().await;
            }
        } else if let Some(answer) = answer {
            // `Connection: close`, for the same reason: this connection
            // ends with this answer.
            session.set_keepalive(None);
            if let Err(write_error) = respond::send_error(session, &answer, ctx).await {
                log::debug!("cannot send error response: {write_error}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that closes its connection mid-request is normal at scale:
    /// it is counted and logged at debug, not at error.
    fn suppress_error_log(&self, _session: &Session, ctx: &Self::CTX, error: &Error) -> bool {
        let client_left = *error.esource() == ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            );
        if client_left {
            metrics().client_disconnects.inc();
            log::debug!("request {} ended by its client: {error}", ctx.request_id);
        }
        client_left
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        guarded_stream::request_finished(session);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let state = self.state.load();
        let cost = report::cost(&state.pricing, ctx);
        limiting::settle(ctx, cost).await;
        report::record_metrics(session, ctx, status);
        report::access_log(state.access_log, session, ctx, status, cost, e);
        tracing::finish(ctx, session, status, e);
    }
}

/// The error a body filter returns when a fault of the upstream's ended the
/// client's answer early.
const ANSWER_FAULT: ErrorType = ErrorType::Custom("upstream answer fault");

/// The client's deadlines for this request.
fn bound_client(session: &mut Session, limits: &RequestLimits) {
    // A client that stalls while sending its body is cut off, whether the
    // gateway reads the body itself or Pingora streams it upstream.
    session.set_read_timeout(Some(limits.body_timeout));
    // A client that stops taking the answer (an HTTP/1 reader gone silent,
    // an HTTP/2 window never opened) does not hold it forever.
    session.set_write_timeout(Some(limits.write_timeout));
    // Keep-alive with no timer of Pingora's: the connection guard ends idle
    // connections (`request.idle_timeout`) with one timer per idle period,
    // where Pingora's would arm one for every wait between requests.
    session.set_keepalive(Some(0));
}

/// The client's answer for an error Pingora reports at the end of a request.
fn classify(e: &Error, ctx: &RequestCtx) -> Option<ApiError> {
    if let ErrorType::HTTPStatus(code) = e.etype() {
        return Some(ApiError::upstream_status(*code));
    }
    match e.esource() {
        ErrorSource::Upstream if attempts::is_timeout(e) => Some(ApiError::gateway_timeout()),
        ErrorSource::Upstream => {
            let detail = ctx.plan.last_error().unwrap_or(e.etype().as_str());
            Some(ApiError::bad_gateway(detail))
        }
        ErrorSource::Downstream => match e.etype() {
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => None,
            _ => Some(ApiError::new(
                ErrorCode::BadRequest,
                "The request is malformed.",
            )),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some(ApiError::internal()),
    }
}
