//! Every Prometheus metric the gateway exports, in one registry. Label values
//! are bounded, and every one comes from config or a fixed list, never from
//! what a client or an upstream sends: route, pool, backend and rule names
//! and model names or patterns from config (`other` for the rest), methods,
//! statuses ([`status_label`]) and reasons from fixed lists; never a key, a
//! user or a raw path.

use std::sync::OnceLock;

use prometheus::{
    Counter, CounterVec, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_answer_faults: IntCounterVec,
    pub translation_dropped_params: IntCounterVec,
    pub llm_fallbacks: IntCounterVec,
    pub llm_cost: CounterVec,
    pub llm_unpriced: IntCounterVec,
    pub rate_limit_hits: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub rate_limit_redis_errors: IntCounter,
    pub rate_limit_redis_transitions: IntCounterVec,
    pub rate_limit_sync_age: Gauge,
    pub llm_tokens: IntCounterVec,
    pub llm_ttft: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub client_connections: IntGauge,
    pub client_connections_refused: IntCounter,
    pub client_timeouts: IntCounterVec,
    pub client_handshakes: IntGauge,
    pub client_handshake_failures: IntCounterVec,
    pub tls_certificate_reloads: IntCounterVec,
    pub tls_certificate_expiry: prometheus::IntGaugeVec,
    pub inflight_requests: IntGauge,
    pub draining: IntGauge,
    pub malformed_requests: IntCounter,
    pub client_disconnects: IntCounter,
    pub access_log_dropped: IntCounter,
    pub otel_spans_exported: IntCounter,
    pub otel_spans_dropped: IntCounterVec,
    pub upstream_token_refreshes: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Creates metrics and registers each as it is made, so no metric exists
/// that `/metrics` does not show.
struct Builder {
    registry: Registry,
}

impl Builder {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: Result<M, prometheus::Error>,
    ) -> Result<M, prometheus::Error> {
        let metric = metric?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add(IntCounter::new(name, help))
    }

    fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.add(IntGauge::new(name, help))
    }

    fn latencies(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        ))
    }
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let b = Builder {
            registry: Registry::new(),
        };
        let metrics = Self {
            http_requests: b.counters(
                "http_requests_total",
                "Requests answered (`route` is `unmatched`, `health`, `ready`, `models` or `metrics` for what the gateway answers itself; `status` the code, its class, or `other`).",
                &["route", "method", "status"],
            )?,
            http_duration: b.latencies(
                "http_request_duration_seconds",
                "Histogram, request start to last byte.",
                &["route"],
            )?,
            upstream_requests: b.counters(
                "upstream_requests_total",
                "Attempts at a backend: the status code, or `connect_error`, `timeout`, `error`.",
                &["upstream", "backend", "status"],
            )?,
            upstream_answer_faults: b.counters(
                "upstream_answer_faults_total",
                "Answers the upstream got wrong after they began (see Answers an upstream gets wrong).",
                &["route", "fault"],
            )?,
            translation_dropped_params: b.counters(
                "translation_dropped_params_total",
                "Parameters a translation dropped because they steer only the client dialect's own provider (`x-gateway-dropped`), by name.",
                &["route", "param"],
            )?,
            llm_fallbacks: b.counters(
                "llm_fallbacks_total",
                "Requests moved to a fallback model: the route the client's model matched, the model label moved from and the configured fallback moved to.",
                &["route", "from", "to"],
            )?,
            llm_cost: b.add(CounterVec::new(
                Opts::new(
                    "llm_cost_usd_total",
                    "USD the answers cost at the configured `pricing` (`model` as above).",
                ),
                &["route", "model"],
            ))?,
            llm_unpriced: b.counters(
                "llm_unpriced_requests_total",
                "Answers with usage whose model has no price.",
                &["route", "model"],
            )?,
            rate_limit_hits: b.counters(
                "rate_limit_hits_total",
                "Refusals by a limit rule (`kind` is what it counts); every configured rule starts at zero.",
                &["rule", "kind"],
            )?,
            auth_failures: b.counters(
                "auth_failures_total",
                "Failed authentications, every reason starting at zero.",
                &["reason"],
            )?,
            rate_limit_redis_errors: b.counter(
                "rate_limit_redis_errors_total",
                "Redis calls for limits (and budget spend) that failed or timed out.",
            )?,
            rate_limit_redis_transitions: b.counters(
                "rate_limit_redis_transitions_total",
                "Times limits moved to per-replica `fallback` (Redis failing, a cluster or Sentinel failover in progress) and back to `shared` counting; each is also logged; `emptied` when Redis was found to have lost its counts (restarted empty).",
                &["state"],
            )?,
            rate_limit_sync_age: b.add(Gauge::new(
                "rate_limit_last_sync_age_seconds",
                "Seconds since limits last talked to Redis successfully.",
            ))?,
            llm_tokens: b.counters(
                "llm_tokens_total",
                "Tokens as the provider reported them; `model` is the configured name or pattern the model matched; `type` is `input` or `output`.",
                &["route", "model", "provider", "type"],
            )?,
            llm_ttft: b.latencies(
                "llm_time_to_first_token_seconds",
                "Histogram, request start to the first byte of the answer body.",
                &["route"],
            )?,
            config_reloads: b.counters(
                "config_reloads_total",
                "Reloads, `ok` or `error`.",
                &["result"],
            )?,
            client_connections: b.gauge(
                "client_connections",
                "Client connections open on the proxy port.",
            )?,
            client_connections_refused: b.counter(
                "client_connections_refused_total",
                "Connections closed at accept, over `listen.max_connections`.",
            )?,
            client_timeouts: b.counters(
                "client_timeouts_total",
                "Client connections closed by `request.header_timeout` (`header`) or `request.idle_timeout` (`idle`).",
                &["phase"],
            )?,
            client_handshakes: b.gauge(
                "client_handshakes_in_progress",
                "Connections accepted whose PROXY header or TLS handshake is not done.",
            )?,
            client_handshake_failures: b.counters(
                "client_handshake_failures_total",
                "Connections closed before HTTP: `stage` `tls` or `proxy_protocol`, `reason` `timeout` or `invalid`.",
                &["stage", "reason"],
            )?,
            tls_certificate_reloads: b.counters(
                "tls_certificate_reloads_total",
                "Certificate files read again after they changed: `ok`, or `error` (the old ones keep serving).",
                &["result"],
            )?,
            tls_certificate_expiry: b.add(prometheus::IntGaugeVec::new(
                Opts::new(
                    "tls_certificate_expiry_timestamp_seconds",
                    "When each served certificate expires (Unix time), by its first name.",
                ),
                &["name"],
            ))?,
            inflight_requests: b.gauge(
                "inflight_requests",
                "Requests on the proxy port whose answer has not ended.",
            )?,
            draining: b.gauge(
                "draining",
                "1 from SIGTERM or SIGQUIT until the process exits.",
            )?,
            malformed_requests: b.counter(
                "malformed_requests_total",
                "Requests refused before routing because their head is not valid HTTP.",
            )?,
            client_disconnects: b.counter(
                "client_disconnects_total",
                "Requests whose client closed the connection before the answer ended.",
            )?,
            access_log_dropped: b.counter(
                "access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind (`access_log.buffer_bytes` full) or could not write.",
            )?,
            otel_spans_exported: b.counter(
                "otel_spans_exported_total",
                "Trace spans the collector accepted.",
            )?,
            otel_spans_dropped: b.counters(
                "otel_spans_dropped_total",
                "Trace spans dropped: `queue_full` (the exporter fell behind), `export_failed` (the collector refused or did not answer), `export_stopped`.",
                &["reason"],
            )?,
            upstream_token_refreshes: b.counters(
                "upstream_token_refreshes_total",
                "Provider tokens fetched (Entra ID, Vertex AI): `ok` or `error`.",
                &["provider", "result"],
            )?,
            registry: b.registry,
        };
        // Bounded label sets start at zero, so rate() and alerts work from
        // the first scrape.
        for result in ["ok", "error"] {
            metrics.config_reloads.with_label_values(&[result]);
        }
        for state in ["shared", "fallback", "emptied"] {
            metrics
                .rate_limit_redis_transitions
                .with_label_values(&[state]);
        }
        for phase in ["idle", "header"] {
            metrics.client_timeouts.with_label_values(&[phase]);
        }
        for stage in ["tls", "proxy_protocol"] {
            for reason in ["timeout", "invalid"] {
                metrics
                    .client_handshake_failures
                    .with_label_values(&[stage, reason]);
            }
        }
        for result in ["ok", "error"] {
            metrics.tls_certificate_reloads.with_label_values(&[result]);
        }
        for reason in ["queue_full", "export_failed", "export_stopped"] {
            metrics.otel_spans_dropped.with_label_values(&[reason]);
        }
        // The providers whose credentials expire and are fetched.
        for provider in ["azure", "vertex", "bedrock"] {
            for result in ["ok", "error"] {
                metrics
                    .upstream_token_refreshes
                    .with_label_values(&[provider, result]);
            }
        }
        Ok(metrics)
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
    /// The usage counters per (model label, provider) seen on the route: a
    /// short list (both labels come from config), scanned without hashing
    /// label strings.
    usage: std::sync::Mutex<Vec<UsageCounters>>,
}

/// `llm_tokens_total` (input, output), `llm_cost_usd_total` and
/// `llm_unpriced_requests_total` of one model and provider on a route.
struct UsageCounters {
    model: &'static str,
    provider: &'static str,
    input: IntCounter,
    output: IntCounter,
    cost: Counter,
    unpriced: IntCounter,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteMetrics")
    }
}

impl RouteMetrics {
    /// Counts reported token usage and what it cost (nano-USD; `None`: the
    /// model has no price); `model` is the model's label (a name or pattern
    /// from config, or `other`).
    pub fn add_usage(
        &self,
        model: &'static str,
        provider: &'static str,
        input: u64,
        output: u64,
        cost_nano_usd: Option<u64>,
    ) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let found = usage
            .iter()
            .position(|c| c.model == model && c.provider == provider);
        let index = match found {
            Some(i) => i,
            None => {
                let m = metrics();
                let tokens = |kind| {
                    m.llm_tokens
                        .with_label_values(&[&self.route, model, provider, kind])
                };
                usage.push(UsageCounters {
                    model,
                    provider,
                    input: tokens("input"),
                    output: tokens("output"),
                    cost: m.llm_cost.with_label_values(&[&self.route, model]),
                    unpriced: m.llm_unpriced.with_label_values(&[&self.route, model]),
                });
                usage.len() - 1
            }
        };
        let counters = &usage[index];
        counters.input.inc_by(input);
        counters.output.inc_by(output);
        match cost_nano_usd {
            Some(nanos) => counters.cost.inc_by(nanos as f64 / 1e9),
            None => counters.unpriced.inc(),
        }
    }

    pub fn new(route: &str) -> Self {
        let m = metrics();
        Self {
            route: route.to_string(),
            usage: std::sync::Mutex::new(Vec::new()),
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

/// Bounded label for a status code, whatever an upstream sends: the code
/// for the ones clients and dashboards look for, its class (`2xx` ...) for
/// other valid ones, `other` beyond 599, and `0` when no answer was sent.
pub fn status_label(status: u16) -> &'static str {
    /// The codes that keep their own label.
    const EXACT: [(u16, &str); 26] = [
        (0, "0"),
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (411, "411"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (431, "431"),
        (499, "499"),
        (500, "500"),
        (501, "501"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    if let Some((_, label)) = EXACT.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
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

    /// Every metric the gateway defines is exported, under the names the
    /// docs and the runbook use: a metric added without being listed
    /// here fails the test.
    /// The registry with a child of every labelled metric, so that each
    /// is gathered.
    fn every_metric() -> &'static Metrics {
        let m = metrics();
        m.http_requests.with_label_values(&["r", "GET", "200"]);
        m.http_duration.with_label_values(&["r"]).observe(0.01);
        m.upstream_requests
            .with_label_values(&["p", "p/h:1", "200"]);
        m.upstream_answer_faults.with_label_values(&["r", "cut"]);
        m.translation_dropped_params
            .with_label_values(&["r", "cache_control"]);
        m.llm_fallbacks.with_label_values(&["r", "a", "b"]);
        m.llm_cost.with_label_values(&["r", "m"]);
        m.llm_unpriced.with_label_values(&["r", "m"]);
        m.rate_limit_hits.with_label_values(&["rule", "requests"]);
        m.auth_failures.with_label_values(&["missing"]);
        m.llm_tokens
            .with_label_values(&["r", "m", "openai", "input"]);
        m.llm_ttft.with_label_values(&["r"]).observe(0.01);
        m
    }

    #[test]
    fn every_metric_is_exported() {
        let m = every_metric();
        let mut exported: Vec<String> = m
            .registry
            .gather()
            .iter()
            .map(|family| family.name().to_string())
            .collect();
        exported.sort();
        let mut expected = vec![
            "access_log_dropped_total",
            "auth_failures_total",
            "client_connections",
            "client_connections_refused_total",
            "client_handshake_failures_total",
            "client_handshakes_in_progress",
            "client_timeouts_total",
            "tls_certificate_reloads_total",
            "config_reloads_total",
            "draining",
            "http_request_duration_seconds",
            "http_requests_total",
            "inflight_requests",
            "llm_time_to_first_token_seconds",
            "llm_fallbacks_total",
            "llm_cost_usd_total",
            "llm_unpriced_requests_total",
            "llm_tokens_total",
            "malformed_requests_total",
            "client_disconnects_total",
            "otel_spans_dropped_total",
            "otel_spans_exported_total",
            "rate_limit_hits_total",
            "rate_limit_last_sync_age_seconds",
            "rate_limit_redis_errors_total",
            "rate_limit_redis_transitions_total",
            "translation_dropped_params_total",
            "upstream_answer_faults_total",
            "upstream_requests_total",
            "upstream_token_refreshes_total",
        ];
        expected.sort();
        assert_eq!(exported, expected);
        let text = String::from_utf8(m.render()).unwrap();
        for name in expected {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} not rendered"
            );
        }
    }

    /// The metrics table of docs/observability.md, from the registry: each
    /// metric's name, type, labels and help. `UPDATE_DOCS=1 cargo test
    /// metrics_table` writes it.
    #[test]
    fn the_metrics_table_is_generated_from_the_code() {
        let mut table =
            String::from("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n");
        for family in every_metric().registry.gather() {
            let labels: Vec<String> = family
                .get_metric()
                .first()
                .map(|m| {
                    m.get_label()
                        .iter()
                        .map(|l| format!("`{}`", l.name()))
                        .collect()
                })
                .unwrap_or_default();
            let kind = format!("{:?}", family.get_field_type()).to_lowercase();
            table.push_str(&format!(
                "| `{}` | {kind} | {} | {} |\n",
                family.name(),
                labels.join(", "),
                family.help()
            ));
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/observability.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (begin, end) = (METRICS_TABLE_BEGIN, METRICS_TABLE_END);
        let (before, rest) = doc.split_once(begin).expect("the table's begin marker");
        let (current, after) = rest.split_once(end).expect("the table's end marker");
        let generated = format!("\n{table}");
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, format!("{before}{begin}{generated}{end}{after}")).unwrap();
        } else {
            assert!(
                current == generated,
                "docs/observability.md's metrics table is stale: UPDATE_DOCS=1 cargo test metrics_table"
            );
        }
    }

    const METRICS_TABLE_BEGIN: &str = "<!-- generated from src/observability/metrics.rs: UPDATE_DOCS=1 cargo test metrics_table -->";
    const METRICS_TABLE_END: &str = "<!-- end of the generated table -->";
}
