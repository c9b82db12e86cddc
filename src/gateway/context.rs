//! What one request carries through Pingora's phases, grouped by who writes
//! it and when: the admission (once, in `request_filter`), the upstream
//! attempts (per try), and the answer's accounting (as it streams back).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::lifecycle::{drain, RequestInFlight};
use crate::limits::{Admission, Limiter};
use crate::llm::translate::StreamTranslator;
use crate::llm::{
    AnswerBounds, AnswerDetails, AnswerFault, ClientDialect, Dialect, Dropped, Usage, UsageScanner,
};
use crate::providers::Provider;
use crate::routing::{AttemptPlan, Backend, InflightGuard, RouteEntry};
use crate::state::GatewayState;

pub struct RequestCtx {
    pub started: Instant,
    pub request_id: String,
    /// The client's chat dialect (its path's); OpenAI's for everything else.
    pub dialect: ClientDialect,
    /// Route label for metrics: the route's name, or what answered locally.
    pub route_label: &'static str,
    /// Set once admission has accepted the request.
    pub admitted: Option<Admitted>,
    /// What to try next, and what was tried.
    pub plan: AttemptPlan,
    /// The current attempt.
    pub upstream: Attempt,
    /// On routes that list fallbacks: what admitting one needs.
    pub fallbacks: Option<Box<FallbackContext>>,
    pub response: ResponseAccounting,
    /// The client's address (behind a trusted proxy, the forwarded one).
    pub client: crate::edge::client::ClientAddress,
    /// The request's spans, when tracing is on (boxed: an SDK span is a few
    /// hundred bytes every context would carry with tracing off).
    pub trace: Option<Box<super::tracing::RequestTrace>>,
    /// Counts the request in flight (drain waits for it) until the context drops.
    _in_flight: RequestInFlight,
}

/// A request the gateway accepted: its route, its caller, what goes upstream
/// and what it was charged.
pub struct Admitted {
    pub route: Arc<RouteEntry>,
    /// The authenticated caller; `None` on routes that need no credentials.
    pub identity: Option<Arc<Identity>>,
    /// On routes that choose by model: the request as read from its body.
    pub model_request: Option<ModelRequest>,
    /// Limits charged, settled by the limiter that charged them (even
    /// across a reload).
    pub limits: Option<(Arc<Limiter>, Admission)>,
}

/// Why a request goes no further.
pub enum Refusal {
    /// An answer for the client; `route` labels its metrics when a limit of
    /// the route refused it (other refusals count as `unmatched`).
    Answer {
        error: ApiError,
        route: Option<&'static str>,
    },
    /// The client's connection failed while its body was read.
    ClientGone(Box<pingora::Error>),
    /// The gateway answers it itself: a token count for a model whose
    /// provider cannot count (an estimate, `admission::estimate_tokens`).
    Estimated { body: Vec<u8>, route: &'static str },
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Answer { error, route: None }
    }
}

/// A body the gateway read, checked and prepared for upstream.
pub struct ModelRequest {
    pub model: String,
    /// The model as metrics see it: a name or pattern from config.
    pub model_label: &'static str,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    /// An OpenAI client asked for the final usage chunk.
    pub include_usage: bool,
    /// What each dialect of the route's pool is sent in place of the
    /// client's body: the body itself (maybe rewritten) for the client's own
    /// dialect, a translation for the other. Replayed on every attempt.
    pub bodies: [Option<Bytes>; Dialect::COUNT],
    /// What each translation dropped as steering only the client dialect's
    /// provider (`x-gateway-dropped`).
    pub dropped: [Dropped; Dialect::COUNT],
    /// The gateway added `stream_options.include_usage` for an OpenAI
    /// upstream of an OpenAI client: cut that chunk out.
    pub strip_usage_event: bool,
    /// The client's body as it came, for a fallback to another model.
    pub client_body: Bytes,
}

impl ModelRequest {
    /// What an upstream of `dialect` is sent.
    pub fn body_for(&self, dialect: Dialect) -> Option<&Bytes> {
        self.bodies[dialect.index()].as_ref()
    }
}

/// The current attempt at a backend.
#[derive(Default)]
pub struct Attempt {
    pub backend: Option<Arc<Backend>>,
    /// Counts the request at its backend (least_requests) until the body ends.
    pub inflight: Option<InflightGuard>,
    /// The dialect of the current attempt's backend.
    pub dialect: Option<Dialect>,
    /// The body this attempt sends: the request's, in the backend's
    /// dialect and in the shape its provider takes.
    pub body: Option<Bytes>,
    /// An answer the gateway decided on, used by `fail_to_proxy`.
    pub failure: Option<ApiError>,
}

/// What admitting a fallback model needs, on a route that lists them.
pub struct FallbackContext {
    /// The config the request was admitted under: its fallbacks are
    /// admitted under the same one, even across a reload.
    pub state: Arc<GatewayState>,
    /// The requested route's label, for the fallback metric.
    pub route_label: &'static str,
    /// The model the client asked for, once another one answers.
    pub requested: Option<String>,
}

/// The upstream's answer as it passes.
#[derive(Default)]
pub struct ResponseAccounting {
    /// When the upstream's response headers arrived.
    pub first_byte_at: Option<Instant>,
    pub body_started: bool,
    /// Same dialect: usage read from the answer as it passes.
    pub usage_scanner: Option<UsageScanner>,
    /// Another dialect: the answer translated as it passes.
    pub translation: Option<Translation>,
    pub usage: Option<Usage>,
    /// With tracing on: the answer's id and finish reasons.
    pub details: Option<AnswerDetails>,
    /// The most of the answer held (the config's, set at admission).
    pub bounds: AnswerBounds,
    /// What went wrong with the answer after it began.
    pub fault: Option<AnswerFault>,
    /// The bytes that end the client's answer when a fault cut it short,
    /// written by `fail_to_proxy`.
    pub ending: Option<Bytes>,
}

/// An answer on its way from the upstream's dialect to the client's.
pub enum Translation {
    Stream(Box<StreamTranslator>),
    /// A whole answer, held until it ends (bounded).
    Whole {
        body: Vec<u8>,
        from: Dialect,
    },
    /// An error answer, held until it ends (bounded).
    Error {
        body: Vec<u8>,
        from: Dialect,
        status: u16,
        /// Reads the error envelopes of its own.
        provider: Arc<dyn Provider>,
    },
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            request_id: String::new(),
            dialect: ClientDialect::OpenAi,
            route_label: "unmatched",
            admitted: None,
            plan: AttemptPlan::default(),
            upstream: Attempt::default(),
            fallbacks: None,
            response: ResponseAccounting::default(),
            client: Default::default(),
            trace: None,
            _in_flight: drain().request_started(),
        }
    }

    /// Admission accepted the request: its plan of attempts starts, and on
    /// a route that lists fallbacks, what admitting them needs is kept.
    pub fn admitted(&mut self, admitted: Admitted, state: &Arc<GatewayState>) {
        let route = &admitted.route;
        let reads_model = admitted.model_request.is_some();
        self.route_label = route.label;
        self.plan = route.plan(reads_model);
        self.response.bounds = state.answers;
        if reads_model && !route.fallbacks.is_empty() {
            self.fallbacks = Some(Box::new(FallbackContext {
                state: state.clone(),
                route_label: route.label,
                requested: None,
            }));
        }
        self.admitted = Some(admitted);
    }

    pub fn route(&self) -> Option<&Arc<RouteEntry>> {
        self.admitted.as_ref().map(|a| &a.route)
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.admitted.as_ref().and_then(|a| a.identity.as_deref())
    }

    pub fn model_request(&self) -> Option<&ModelRequest> {
        self.admitted
            .as_ref()
            .and_then(|a| a.model_request.as_ref())
    }

    /// What the translation sent to the current attempt's backend dropped.
    pub fn dropped_hints(&self) -> Dropped {
        match (self.model_request(), self.upstream.dialect) {
            (Some(request), Some(dialect)) => request.dropped[dialect.index()],
            _ => Dropped::default(),
        }
    }

    /// The model the upstream is asked for: the client's, or its alias's
    /// target.
    pub fn upstream_model(&self) -> Option<&str> {
        let model = &self.model_request()?.model;
        Some(
            self.route()
                .and_then(|route| route.upstream_model(model))
                .unwrap_or(model),
        )
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
