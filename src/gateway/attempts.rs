//! Tries at backends: which one is next, what each outcome says about the
//! backend (metrics, passive ejection), and whether the request may go to
//! another one (or, once the pool is spent, to a fallback model: see
//! `fallback.rs`). A retry is possible only while nothing has reached the
//! client and the whole body is still in hand.

use std::time::Instant;

use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::RequestCtx;
use crate::config::RetryOn;
use crate::error::ApiError;
use crate::observability::metrics::{metrics, status_label};

/// The peer for the next attempt, within the route's total deadline.
pub fn next_peer(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(route) = ctx.route().cloned() else {
        return Error::e_explain(ErrorType::InternalError, "no route chosen");
    };
    let pool = &route.pool;
    let attempts = &mut ctx.upstream;
    let deadline = *attempts
        .deadline
        .get_or_insert_with(|| Instant::now() + pool.timeouts.total);
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        attempts.failure = Some(ApiError::gateway_timeout());
        return Error::e_explain(ErrorType::HTTPStatus(504), "total timeout spent");
    }
    let picked = pool
        .select(&attempts.tried)
        .and_then(|backend| pool.peer(&backend, left).map(|peer| (backend, peer)));
    let Some((backend, peer)) = picked else {
        attempts.failure = Some(match &attempts.last_error {
            None => ApiError::no_healthy_backend(&route.name),
            Some(detail) => ApiError::bad_gateway(detail),
        });
        return Error::e_explain(ErrorType::HTTPStatus(503), "no available backend");
    };
    attempts.tried.push(backend.index);
    attempts.inflight = Some(backend.start_request());
    attempts.dialect = Some(backend.dialect());
    attempts.backend = Some(backend);
    Ok(Box::new(peer))
}

/// The upstream answered `status`. A 5xx counts against the backend; a
/// 5xx or 429 the route retries on becomes an error that sends the request
/// to another backend, while nothing has reached the client.
pub fn on_response_status(ctx: &mut RequestCtx, status: u16) -> Result<()> {
    let (Some(route), Some(backend)) = (ctx.route().cloned(), ctx.upstream.backend.clone()) else {
        return Ok(());
    };
    if status == 200 {
        backend.ok_counter.inc();
    } else {
        metrics()
            .upstream_requests
            .with_label_values(&[&route.pool.name, &backend.label, status_label(status)])
            .inc();
    }
    if status >= 500 {
        eject_on_failure(ctx);
    } else {
        backend.record_success();
    }
    let cause = match status {
        429 => RetryOn::RateLimited,
        500..=599 => RetryOn::ServerError,
        _ => return Ok(()),
    };
    if retries(ctx, cause) {
        ctx.upstream.last_error = Some(format!("upstream answered {status}"));
        let mut e = Error::explain(ErrorType::HTTPStatus(status), "retry on another backend");
        e.set_retry(true);
        return Err(e);
    }
    Ok(())
}

/// The connection to the backend failed (refused, timed out, TLS).
pub fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let cause = cause_of(&e);
    record_failure(ctx, failure_label(cause, "connect_error"), &e);
    e.set_retry(retries(ctx, cause));
    e
}

/// The exchange failed after the connection was made.
pub fn on_proxy_error(
    ctx: &mut RequestCtx,
    session: &mut Session,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    // Retrying is safe only while the client has seen nothing and the
    // whole body is still in hand.
    let replayable = session.response_written().is_none()
        && (ctx.model_request().is_some() || session.is_body_empty());
    if let ErrorType::HTTPStatus(_) = e.etype() {
        // Our own "retry elsewhere" from `on_response_status`.
        let retry = replayable && e.retry();
        e.set_retry(retry);
        return e;
    }
    if *e.esource() == ErrorSource::Downstream {
        // The client went away or broke its side: nothing to retry, and
        // the backend is not to blame.
        e.set_retry(false);
        return e;
    }
    let cause = cause_of(&e);
    let answered = ctx.response.first_byte_at.is_some();
    // A pooled connection the backend had already closed: the backend is
    // not to blame, so try it again on a fresh connection.
    let stale_pooled_connection = client_reused && cause != RetryOn::Timeout && !answered;
    if !answered && !stale_pooled_connection {
        record_failure(ctx, failure_label(cause, "error"), &e);
    }
    let retry = if stale_pooled_connection {
        ctx.upstream.tried.pop();
        true
    } else {
        retries(ctx, cause)
    };
    e.set_retry(retry && replayable && !answered);
    e
}

/// The answer's body ended: the backend's part is over, before the client
/// sees the last byte, so a client's next request does not find the
/// backend still counted busy (least_requests).
pub fn finished(ctx: &mut RequestCtx) {
    ctx.upstream.inflight = None;
}

/// A failure before an answer: a timeout, or a connect/transport error.
fn cause_of(e: &Error) -> RetryOn {
    if is_timeout(e) {
        RetryOn::Timeout
    } else {
        RetryOn::ConnectError
    }
}

fn failure_label(cause: RetryOn, other: &'static str) -> &'static str {
    match cause {
        RetryOn::Timeout => "timeout",
        _ => other,
    }
}

pub fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// Whether a failure of kind `cause` gets another attempt: at another
/// backend of the pool, else at the next fallback model (armed here).
fn retries(ctx: &mut RequestCtx, cause: RetryOn) -> bool {
    if ctx.route().is_some_and(|r| r.retries_on(cause)) && ctx.can_try_again() {
        return true;
    }
    let attempts = ctx.attempts();
    ctx.fallbacks
        .as_mut()
        .is_some_and(|f| f.arm(cause, attempts))
}

/// Records one failed attempt at the current backend.
fn record_failure(ctx: &mut RequestCtx, status_label: &str, error: &Error) {
    if let (Some(route), Some(backend)) = (ctx.route(), &ctx.upstream.backend) {
        metrics()
            .upstream_requests
            .with_label_values(&[&route.pool.name, &backend.label, status_label])
            .inc();
    }
    eject_on_failure(ctx);
    ctx.upstream.last_error = Some(error.etype().as_str().to_string());
}

/// Counts a failure against the current backend; ejects it after too many.
fn eject_on_failure(ctx: &RequestCtx) {
    if let (Some(route), Some(backend)) = (ctx.route(), &ctx.upstream.backend) {
        if backend.record_failure(&route.pool.passive) {
            log::warn!(
                "backend {} ejected for {:?} after consecutive failures",
                backend.label,
                route.pool.passive.cooldown
            );
        }
    }
}
