//! Tries at backends, as the phases see them: the next peer the attempt
//! plan allows, what each outcome says about the backend (metrics, passive
//! ejection), and the move to a fallback model the plan arms. What may be
//! tried next is the plan's decision (`routing/plan.rs`); admitting a
//! fallback is admission's (`admission::admit_fallback`).

use std::time::Instant;

use bytes::Bytes;

use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::context::Attempt;
use super::{admission, RequestCtx};
use crate::config::RetryOn;
use crate::error::ApiError;
use crate::observability::metrics::{metrics, status_label};
use crate::providers::Call;
use crate::routing::{Backend, Next, Spent};

/// The peer for the next attempt, within the model's total deadline.
pub fn next_peer(ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let Some(route) = ctx.route().cloned() else {
        return Error::e_explain(ErrorType::InternalError, "no route chosen");
    };
    let pool = &route.pool;
    let left = match ctx.plan.time_left(pool.timeouts.total, Instant::now()) {
        Ok(left) => left,
        Err(Spent::Deadline | Spent::Backends) => {
            ctx.upstream.failure = Some(ApiError::gateway_timeout());
            return Error::e_explain(ErrorType::HTTPStatus(504), "total timeout spent");
        }
    };
    let picked = pool
        .select(ctx.plan.tried())
        .and_then(|backend| pool.peer(&backend, left).map(|peer| (backend, peer)));
    let Some((backend, peer)) = picked else {
        ctx.upstream.failure = Some(match ctx.plan.last_error() {
            None => ApiError::no_healthy_backend(&route.name),
            Some(detail) => ApiError::bad_gateway(detail),
        });
        return Error::e_explain(ErrorType::HTTPStatus(503), "no available backend");
    };
    ctx.plan.attempt(backend.index);
    ctx.upstream.inflight = Some(backend.start_request());
    ctx.upstream.dialect = Some(backend.dialect());
    ctx.upstream.body = body_for(ctx, &backend);
    ctx.upstream.backend = Some(backend);
    Ok(Box::new(peer))
}

/// The request's body in `backend`'s dialect, as its provider takes it.
fn body_for(ctx: &RequestCtx, backend: &Backend) -> Option<Bytes> {
    let request = ctx.model_request()?;
    let body = request.body_for(backend.dialect())?;
    let call = Call {
        client_path: "",
        translated: backend.dialect() != ctx.dialect,
        model: Some(ctx.upstream_model()?),
        stream: request.stream,
    };
    Some(
        backend
            .provider
            .adapt_body(body, &call)
            .unwrap_or_else(|| body.clone()),
    )
}

/// The upstream answered `status`. A 5xx counts against the backend; a
/// 5xx or 429 the plan tries again on becomes an error that sends the
/// request to another backend or model, while nothing has reached the
/// client.
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
    if tries_again(ctx, cause) {
        ctx.plan.note_failure(format!("upstream answered {status}"));
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
    e.set_retry(tries_again(ctx, cause));
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
    let answered = ctx.plan.is_answered();
    // A pooled connection the backend had already closed: the backend is
    // not to blame, so try it again on a fresh connection.
    let stale_pooled_connection = client_reused && cause != RetryOn::Timeout && !answered;
    if !answered && !stale_pooled_connection {
        record_failure(ctx, failure_label(cause, "error"), &e);
    }
    let retry = if stale_pooled_connection {
        ctx.plan.forget_stale_attempt();
        true
    } else {
        tries_again(ctx, cause)
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

/// Whether a failure of kind `cause` gets another attempt: at another
/// backend of the pool, else at the next fallback model (armed).
fn tries_again(ctx: &mut RequestCtx, cause: RetryOn) -> bool {
    let untried = ctx
        .route()
        .is_some_and(|route| route.pool.has_untried(ctx.plan.tried()));
    ctx.plan.after_failure(cause, untried) != Next::GiveUp
}

/// What [`move_if_armed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// No failure armed a move.
    NotArmed,
    /// The request now goes to a fallback model.
    Moved,
    /// No remaining fallback admits the request: it stays where it is, and
    /// its next attempt finds its pool spent, which ends it with the last
    /// failure.
    NoneAdmitted,
}

/// When the plan armed a move, moves the request to the first remaining
/// fallback that admits it.
pub async fn move_if_armed(session: &Session, ctx: &mut RequestCtx) -> Move {
    if !ctx.plan.take_move() {
        return Move::NotArmed;
    }
    // Boxed: admitting a fallback may wait on Redis and an OIDC issuer, a
    // large future that every request's phases would otherwise carry (and
    // copy) for the rare one that falls back.
    Box::pin(move_to_fallback(session, ctx)).await
}

async fn move_to_fallback(session: &Session, ctx: &mut RequestCtx) -> Move {
    if ctx.fallbacks.is_none() || ctx.admitted.is_none() {
        return Move::NotArmed;
    }
    let (Some(mut fallbacks), Some(mut current)) = (ctx.fallbacks.take(), ctx.admitted.take())
    else {
        return Move::NotArmed;
    };
    let mut outcome = Move::NoneAdmitted;
    while let Some(model) = ctx.plan.next_model().map(str::to_string) {
        let admitted = admission::admit_fallback(
            &fallbacks.state,
            session,
            ctx.dialect,
            ctx.client.ip,
            &mut current,
            &model,
        )
        .await;
        let next = match admitted {
            Ok(next) => next,
            Err(why) => {
                log::info!(
                    "request {}: fallback to `{model}` skipped: {why}",
                    ctx.request_id
                );
                continue;
            }
        };
        // Labels from config: the requested model's label, then the names
        // the route lists.
        let from = ctx.plan.serving_model().unwrap_or_else(|| {
            current
                .model_request
                .as_ref()
                .map_or("other", |m| m.model_label)
        });
        metrics()
            .llm_fallbacks
            .with_label_values(&[fallbacks.route_label, from, &model])
            .inc();
        if fallbacks.requested.is_none() {
            fallbacks.requested = current.model_request.as_ref().map(|m| m.model.clone());
        }
        ctx.plan.moved(next.route.retry);
        ctx.route_label = next.route.label;
        ctx.upstream = Attempt::default();
        current = next;
        outcome = Move::Moved;
        break;
    }
    ctx.admitted = Some(current);
    ctx.fallbacks = Some(fallbacks);
    outcome
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

/// Records one failed attempt at the current backend.
fn record_failure(ctx: &mut RequestCtx, status_label: &str, error: &Error) {
    if let (Some(route), Some(backend)) = (ctx.route(), &ctx.upstream.backend) {
        metrics()
            .upstream_requests
            .with_label_values(&[&route.pool.name, &backend.label, status_label])
            .inc();
    }
    eject_on_failure(ctx);
    ctx.plan.note_failure(error.etype().as_str());
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
