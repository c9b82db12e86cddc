//! What one request carries through Pingora's phases.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::lifecycle::{drain, RequestInFlight};
use crate::limits::{Admission, Limiter};
use crate::llm::{Usage, UsageScanner};
use crate::routing::{Backend, InflightGuard, RouteEntry};

pub struct RequestCtx {
    pub started: Instant,
    pub request_id: String,
    /// Route label for metrics: the route's name, or what answered locally.
    pub route_label: &'static str,
    pub route: Option<Arc<RouteEntry>>,
    pub model: Option<String>,
    /// The authenticated caller; `None` on routes that need no credentials.
    pub identity: Option<Identity>,
    pub stream: bool,
    /// The body sent upstream in place of the client's (read, checked and
    /// maybe rewritten in `request_filter`); replayed on every attempt.
    pub upstream_body: Option<Bytes>,
    /// Indexes of the backends tried so far, in order.
    pub tried: Vec<usize>,
    pub backend: Option<Arc<Backend>>,
    pub inflight: Option<InflightGuard>,
    /// Set once, at the first attempt: when the whole exchange must end.
    pub deadline: Option<Instant>,
    pub first_byte_at: Option<Instant>,
    /// An answer the gateway decided on, used by `fail_to_proxy`.
    pub failure: Option<ApiError>,
    /// Why the last attempt failed, for the final error message.
    pub last_error: Option<String>,
    pub status: u16,
    /// Size of the body sent upstream (prompt size for token estimates).
    pub prompt_bytes: usize,
    pub max_tokens: Option<u64>,
    /// The gateway added `stream_options.include_usage`; cut that chunk out.
    pub strip_usage_event: bool,
    pub admission: Option<(Arc<Limiter>, Admission)>,
    pub usage_scanner: Option<UsageScanner>,
    pub usage: Option<Usage>,
    pub body_started: bool,
    /// Counts the request in flight (drain waits for it) until the context drops.
    _in_flight: RequestInFlight,
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            request_id: String::new(),
            route_label: "unmatched",
            route: None,
            model: None,
            identity: None,
            stream: false,
            upstream_body: None,
            tried: Vec::new(),
            backend: None,
            inflight: None,
            deadline: None,
            first_byte_at: None,
            failure: None,
            last_error: None,
            status: 0,
            prompt_bytes: 0,
            max_tokens: None,
            strip_usage_event: false,
            admission: None,
            usage_scanner: None,
            usage: None,
            body_started: false,
            _in_flight: drain().request_started(),
        }
    }

    pub fn attempts(&self) -> u32 {
        self.tried.len() as u32
    }

    /// Whether another attempt is allowed and possible: attempts left on the
    /// route and an untried backend available.
    pub fn can_try_again(&self) -> bool {
        match &self.route {
            Some(route) => self.attempts() < route.attempts && route.pool.has_untried(&self.tried),
            None => false,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
