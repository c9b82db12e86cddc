//! Every Prometheus metric the gateway exports, in one registry. Label values
//! are bounded: route, pool and backend names come from config, methods and
//! reasons from fixed lists; never a key, a user or a raw path.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub rate_limit_hits: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub rate_limit_redis_errors: IntCounter,
    pub rate_limit_sync_age: Gauge,
    pub llm_tokens: IntCounterVec,
    pub llm_ttft: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub client_connections: IntGauge,
    pub client_connections_refused: IntCounter,
    pub client_timeouts: IntCounterVec,
    pub inflight_requests: IntGauge,
    pub draining: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The bounded reasons of `auth_failures_total`.
pub const AUTH_FAILURE_REASONS: [&str; 10] = [
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "bad_issuer",
    "bad_audience",
    "unknown_key",
    "too_large",
    "forbidden_model",
];

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "Requests answered, by route, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request start to the last byte sent, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "upstream_requests_total",
                "Attempts at an upstream backend, by pool, backend and status (or error kind).",
            ),
            &["upstream", "backend", "status"],
        )?;
        let rate_limit_hits = IntCounterVec::new(
            Opts::new(
                "rate_limit_hits_total",
                "Requests refused by a rate limit rule.",
            ),
            &["rule", "kind"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new("auth_failures_total", "Failed authentications, by reason."),
            &["reason"],
        )?;
        let rate_limit_redis_errors = IntCounter::new(
            "rate_limit_redis_errors_total",
            "Redis calls for limits that failed or timed out.",
        )?;
        let rate_limit_sync_age = Gauge::new(
            "rate_limit_last_sync_age_seconds",
            "Seconds since limits last talked to Redis successfully.",
        )?;
        let llm_tokens = IntCounterVec::new(
            Opts::new(
                "llm_tokens_total",
                "Tokens used, as the provider reported them.",
            ),
            &["route", "model", "provider", "type"],
        )?;
        let llm_ttft = HistogramVec::new(
            HistogramOpts::new(
                "llm_time_to_first_token_seconds",
                "Time from request start to the first byte of the upstream's answer body.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(rate_limit_redis_errors.clone()))?;
        registry.register(Box::new(rate_limit_sync_age.clone()))?;
        registry.register(Box::new(llm_tokens.clone()))?;
        registry.register(Box::new(llm_ttft.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Config reloads, by result (ok or error).",
            ),
            &["result"],
        )?;
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(config_reloads.clone()))?;
        let client_connections = IntGauge::new(
            "client_connections",
            "Client connections open on the proxy port.",
        )?;
        let client_connections_refused = IntCounter::new(
            "client_connections_refused_total",
            "Client connections closed at accept because `listen.max_connections` were open.",
        )?;
        let client_timeouts = IntCounterVec::new(
            Opts::new(
                "client_timeouts_total",
                "Client connections closed for a timeout, by phase (idle, header).",
            ),
            &["phase"],
        )?;
        for phase in ["idle", "header"] {
            client_timeouts.with_label_values(&[phase]);
        }
        registry.register(Box::new(client_connections.clone()))?;
        registry.register(Box::new(client_connections_refused.clone()))?;
        registry.register(Box::new(client_timeouts.clone()))?;
        let inflight_requests = IntGauge::new(
            "inflight_requests",
            "Requests on the proxy port whose answer has not ended yet.",
        )?;
        let draining = IntGauge::new(
            "draining",
            "1 from SIGTERM or SIGQUIT until the process exits, else 0.",
        )?;
        registry.register(Box::new(inflight_requests.clone()))?;
        registry.register(Box::new(draining.clone()))?;
        // Every failure reason starts at zero, so rate() and alerts work from
        // the first scrape.
        for reason in AUTH_FAILURE_REASONS {
            auth_failures.with_label_values(&[reason]);
        }
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(upstream_requests.clone()))?;
        registry.register(Box::new(rate_limit_hits.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            upstream_requests,
            rate_limit_hits,
            auth_failures,
            rate_limit_redis_errors,
            rate_limit_sync_age,
            llm_tokens,
            llm_ttft,
            config_reloads,
            client_connections,
            client_connections_refused,
            client_timeouts,
            inflight_requests,
            draining,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        out
    }
}

/// Handles resolved once per route, so the common case (a 200 to a POST)
/// costs no label lookup on the request path.
pub struct RouteMetrics {
    route: String,
    pub post_ok: IntCounter,
    pub duration: Histogram,
    pub ttft: Histogram,
    /// `llm_tokens_total` (input, output) per (model, provider) seen on the
    /// route: a short list, scanned without hashing label strings.
    tokens: std::sync::Mutex<Vec<(String, &'static str, IntCounter, IntCounter)>>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteMetrics")
    }
}

impl RouteMetrics {
    /// Counts reported token usage.
    pub fn add_tokens(&self, model: &str, provider: &'static str, input: u64, output: u64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let found = tokens
            .iter()
            .position(|(m, p, _, _)| m == model && *p == provider);
        let index = match found {
            Some(i) => i,
            None => {
                let vec = &metrics().llm_tokens;
                let input = vec.with_label_values(&[&self.route, model, provider, "input"]);
                let output = vec.with_label_values(&[&self.route, model, provider, "output"]);
                tokens.push((model.to_string(), provider, input, output));
                tokens.len() - 1
            }
        };
        let (_, _, input_counter, output_counter) = &tokens[index];
        input_counter.inc_by(input);
        output_counter.inc_by(output);
    }

    pub fn new(route: &str) -> Self {
        let m = metrics();
        Self {
            route: route.to_string(),
            tokens: std::sync::Mutex::new(Vec::new()),
            post_ok: m.http_requests.with_label_values(&[route, "POST", "200"]),
            duration: m.http_duration.with_label_values(&[route]),
            ttft: m.llm_ttft.with_label_values(&[route]),
        }
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    // Registration fails only on duplicate or malformed names, fixed at compile time.
    METRICS.get_or_init(|| Metrics::new().expect("metric definitions are valid"))
}

/// Bounded label for an HTTP method.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported() {
        let m = metrics();
        m.http_requests
            .with_label_values(&["r", "GET", "200"])
            .inc();
        m.rate_limit_hits
            .with_label_values(&["rule", "requests"])
            .inc();
        m.auth_failures.with_label_values(&["missing"]).inc();
        m.upstream_requests
            .with_label_values(&["p", "p/h:1", "200"])
            .inc();
        m.http_duration.with_label_values(&["r"]).observe(0.01);
        let text = String::from_utf8(m.render()).unwrap();
        for name in [
            "http_requests_total",
            "http_request_duration_seconds_bucket",
            "upstream_requests_total",
            "rate_limit_hits_total",
            "auth_failures_total",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
