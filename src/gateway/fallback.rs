//! Fallbacks: a route may list models to try in turn once its own pool has
//! used up its tries with nothing sent to the client. Each fallback is served
//! by its own route (its pool, its provider's dialect, its limits) and is
//! admitted as the request itself was: the caller must be allowed the model
//! and its route, the body must translate for its provider, and its limit
//! rules must accept a reservation; otherwise the next one is tried. What
//! the previous model was charged is given back first, so the model that
//! answers is the one charged.

use std::sync::Arc;

use bytes::Bytes;
use pingora::proxy::Session;

use super::admission;
use super::context::{Admitted, Attempts, ModelRequest, MAX_ATTEMPTS};
use super::RequestCtx;
use crate::auth::Identity;
use crate::config::RetryOn;
use crate::llm;
use crate::observability::metrics::metrics;
use crate::routing::RouteEntry;
use crate::state::GatewayState;

/// Where a request stands in its route's list of fallbacks.
pub struct Fallbacks {
    /// The config the request was admitted under: its fallbacks are admitted
    /// under the same one, even across a reload.
    state: Arc<GatewayState>,
    /// The route of the model the client asked for: its list of fallbacks
    /// and the failures that move on to them.
    primary: Arc<RouteEntry>,
    /// Index in `primary.fallbacks` of the next model to try.
    next: usize,
    /// Index in `primary.fallbacks` of the model now serving the request.
    current: Option<usize>,
    /// A failure armed a move to the next model; the next attempt makes it.
    pending: bool,
    /// Models moved to so far.
    pub taken: u32,
    /// The model the client asked for, when another one answers.
    pub requested: Option<String>,
    /// Attempts at the backends of earlier models.
    pub earlier_attempts: u32,
}

impl Fallbacks {
    /// For an admitted model request on a route that lists fallbacks.
    pub fn for_request(state: &Arc<GatewayState>, admitted: &Admitted) -> Option<Self> {
        admitted.model_request.as_ref()?;
        if admitted.route.fallbacks.is_empty() {
            return None;
        }
        Some(Self {
            state: state.clone(),
            primary: admitted.route.clone(),
            next: 0,
            current: None,
            pending: false,
            taken: 0,
            requested: None,
            earlier_attempts: 0,
        })
    }

    /// Whether a failure of kind `cause`, after `attempts` in all, moves the
    /// request on to the next model (and arms that move).
    pub fn arm(&mut self, cause: RetryOn, attempts: u32) -> bool {
        let due = self.primary.retries_on(cause) && self.arm_spent_pool(attempts);
        self.pending |= due;
        due
    }

    /// The current model's pool has no backend left to try: move on, if a
    /// model is left.
    fn arm_spent_pool(&mut self, attempts: u32) -> bool {
        let due = self.next < self.primary.fallbacks.len() && attempts < MAX_ATTEMPTS;
        self.pending |= due;
        due
    }
}

/// Whether the current pool, having no backend to offer, hands over to the
/// next model.
pub fn arm_after_spent_pool(ctx: &mut RequestCtx) -> bool {
    let attempts = ctx.attempts();
    ctx.fallbacks
        .as_mut()
        .is_some_and(|f| f.arm_spent_pool(attempts))
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

/// When a failure armed a move, moves the request to the first remaining
/// fallback that admits it.
pub async fn move_if_armed(session: &Session, ctx: &mut RequestCtx) -> Move {
    if !ctx.fallbacks.as_ref().is_some_and(|f| f.pending) {
        return Move::NotArmed;
    }
    // Boxed: admitting a fallback may wait on Redis and an OIDC issuer, a
    // large future that every request's phases would otherwise carry (and
    // copy) for the rare one that falls back.
    Box::pin(make_move(session, ctx)).await
}

async fn make_move(session: &Session, ctx: &mut RequestCtx) -> Move {
    let Some(mut fallbacks) = ctx.fallbacks.take() else {
        return Move::NotArmed;
    };
    fallbacks.pending = false;
    let Some(current) = ctx.admitted.take() else {
        ctx.fallbacks = Some(fallbacks);
        return Move::NotArmed;
    };
    let taken = fallbacks.taken;
    ctx.admitted = Some(next_admitted(session, ctx, &mut fallbacks, current).await);
    let outcome = if fallbacks.taken > taken {
        Move::Moved
    } else {
        Move::NoneAdmitted
    };
    ctx.fallbacks = Some(fallbacks);
    outcome
}

/// The admission of the first remaining fallback that accepts the request,
/// else `current` (with its limits given back if a fallback's were tried).
async fn next_admitted(
    session: &Session,
    ctx: &mut RequestCtx,
    fallbacks: &mut Fallbacks,
    mut current: Admitted,
) -> Admitted {
    while let Some(model) = fallbacks.primary.fallbacks.get(fallbacks.next).cloned() {
        fallbacks.next += 1;
        let candidate = match admit_model(session, ctx, fallbacks, &current, &model).await {
            Ok(candidate) => candidate,
            Err(why) => {
                log::info!(
                    "request {}: fallback to `{model}` skipped: {why}",
                    ctx.request_id
                );
                continue;
            }
        };
        // Give back what the spent model was charged before charging the
        // next: a concurrency slot or a last request held by the spent
        // model must not refuse its own fallback.
        if let Some((limiter, admission)) = current.limits.take() {
            limiter.release(admission).await;
        }
        let Candidate {
            route,
            identity,
            model_request,
        } = candidate;
        let reserved = admission::reserve(
            &fallbacks.state,
            ctx.client.ip,
            &route,
            identity.as_deref(),
            Some(&model_request),
        )
        .await;
        let limits = match reserved {
            Ok(limits) => limits,
            Err(refused) => {
                log::info!(
                    "request {}: fallback to `{model}` skipped: limit `{}` refused it",
                    ctx.request_id,
                    refused.rule
                );
                continue;
            }
        };
        // Labels from config: the requested model's label, then the names
        // the route lists.
        let from = match fallbacks.current {
            Some(i) => fallbacks.primary.fallbacks[i].as_str(),
            None => current
                .model_request
                .as_ref()
                .map_or("other", |m| m.model_label),
        };
        metrics()
            .llm_fallbacks
            .with_label_values(&[fallbacks.primary.label, from, &model])
            .inc();
        fallbacks.current = Some(fallbacks.next - 1);
        if fallbacks.requested.is_none() {
            fallbacks.requested = current.model_request.as_ref().map(|m| m.model.clone());
        }
        fallbacks.taken += 1;
        fallbacks.earlier_attempts += ctx.upstream.tried.len() as u32;
        // A fresh start on the new pool, with its own deadline; the last
        // failure stays for the final message if this pool fails too.
        let last_error = ctx.upstream.last_error.take();
        ctx.upstream = Attempts {
            last_error,
            ..Attempts::default()
        };
        ctx.route_label = route.label;
        return Admitted {
            route,
            identity,
            model_request: Some(model_request),
            limits,
        };
    }
    current
}

/// A fallback model the caller may use, with its body ready for its pool.
struct Candidate {
    route: Arc<RouteEntry>,
    identity: Option<Arc<Identity>>,
    model_request: ModelRequest,
}

/// Checks that `model` may serve the request: a route serves it on the
/// client's path, the caller passes that route's credentials and scopes and
/// may use the model, and the body translates for its pool.
async fn admit_model(
    session: &Session,
    ctx: &RequestCtx,
    fallbacks: &Fallbacks,
    current: &Admitted,
    model: &str,
) -> Result<Candidate, String> {
    let state = &fallbacks.state;
    let path = session.req_header().uri.path();
    let route = state
        .routes
        .match_model(path, model)
        .cloned()
        .ok_or("no route serves it on this path")?;
    let identity = if route.auth == current.route.auth {
        current.identity.clone()
    } else {
        // Quietly: a caller without the fallback's credentials is not an
        // authentication failure of the request.
        state
            .auth
            .authenticate(
                &session.req_header().headers,
                admission::client_certificate(session),
                &route.auth,
            )
            .await
            .map_err(|failure| format!("the caller lacks its credentials ({})", failure.reason()))?
    };
    admission::authorize_route(&route, identity.as_deref())
        .map_err(|_| "the caller lacks the scopes of its route".to_string())?;
    if identity.as_deref().is_some_and(|id| !id.may_use(model)) {
        return Err("the caller may not use it".into());
    }
    let client_body = &current
        .model_request
        .as_ref()
        .ok_or("not a model request")?
        .client_body;
    let body =
        Bytes::from(llm::rewrite(client_body, Some(model), false).map_err(|e| e.to_string())?);
    let inspected = llm::inspect(&body).map_err(|e| e.to_string())?;
    let model_request = admission::prepare(&route, body, inspected, ctx.dialect)
        .map_err(|e| format!("its provider cannot take the request: {}", e.message))?;
    Ok(Candidate {
        route,
        identity,
        model_request,
    })
}
