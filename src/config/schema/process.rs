//! The process-wide sections: `server`, `listen`, `request`, `access_log`,
//! `reload`, `mock_upstream`, `tracing`, `admin` and `pricing`.

use std::time::Duration;

use schemars::JsonSchema;

use super::super::json_schema as js;
use super::super::keyword::{AccessLogFormat, ClientAuth};
use serde::Deserialize;

use super::super::duration::serde_str as duration;
use super::super::secret::Secret;

/// OpenTelemetry traces over OTLP/HTTP; unset fields follow the `OTEL_*`
/// environment variables.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Tracing {
    pub enabled: bool,
    /// The full traces URL (`http://collector:4318/v1/traces`).
    pub endpoint: Option<String>,
    pub service_name: Option<String>,
    /// Parent-based trace-id ratio sampling (0 to 1).
    pub sample_ratio: Option<f64>,
    /// Finished spans that may wait for the exporter before new ones drop.
    pub queue_size: usize,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub export_interval: Duration,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub export_timeout: Duration,
}

impl Default for Tracing {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            service_name: None,
            sample_ratio: None,
            queue_size: 8192,
            export_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(5),
        }
    }
}

/// The admin port's endpoints beyond `/health`, `/ready` and `/metrics`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// A bearer token (`${ENV}`); without it those endpoints answer 401.
    pub token: Secret,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Input tokens read from the provider's prompt cache; unset: the
    /// input price.
    #[serde(default)]
    pub cached_input_per_million: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub threads: usize,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub drain_timeout: Duration,
    /// Pingora's timers, replaced by `drain_timeout`: read only to fail with
    /// a message that says so.
    pub grace_period_seconds: Option<u64>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    pub upgrade_sock: String,
    pub pid_file: String,
    pub error_log: Option<String>,
    pub daemon: bool,
    pub upstream_keepalive_pool_size: usize,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            threads: 2,
            drain_timeout: Duration::from_secs(300),
            grace_period_seconds: None,
            graceful_shutdown_timeout_seconds: None,
            upgrade_sock: "/tmp/ai-api-gateway_upgrade.sock".into(),
            pid_file: "/tmp/ai-api-gateway.pid".into(),
            error_log: None,
            daemon: false,
            upstream_keepalive_pool_size: 128,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub proxy: Vec<String>,
    /// Proxy addresses that speak TLS (HTTP/1.1 and HTTP/2 by ALPN).
    pub proxy_tls: Vec<String>,
    pub tls: Option<ListenTls>,
    /// Cleartext HTTP/2 (prior knowledge) on the `proxy` addresses.
    pub h2c: bool,
    /// Every proxy connection starts with a PROXY protocol v1/v2 header.
    pub proxy_protocol: bool,
    pub admin: String,
    pub max_connections: usize,
    /// Pingora's default is 64 KiB, held by every idle keep-alive
    /// connection; unbuffered by default (benches/README.md: a buffer is
    /// zeroed when allocated, so it is resident once its memory is reused).
    pub read_buffer_bytes: usize,
    /// Also answer `/metrics` on the proxy port.
    pub metrics_on_proxy: bool,
    /// Peers whose `X-Forwarded-For` names the client (CIDRs).
    pub trusted_proxies: Vec<String>,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            proxy: vec!["0.0.0.0:8080".into()],
            proxy_tls: Vec::new(),
            tls: None,
            h2c: false,
            proxy_protocol: false,
            admin: "0.0.0.0:9090".into(),
            max_connections: 0,
            read_buffer_bytes: 0,
            metrics_on_proxy: true,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Certificates of the TLS listeners, and client certificates (mTLS).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    /// Chosen by SNI against each certificate's own names; the first one is
    /// the default.
    pub certificates: Vec<CertificateFiles>,
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// `required` or `optional` (default: `required` once a CA is set).
    #[serde(default)]
    #[schemars(schema_with = "js::optional_word::<ClientAuth>")]
    pub client_auth: Option<String>,
    /// How often the certificate files are read for a rotation.
    #[serde(default = "default_tls_reload_interval", with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub reload_interval: Duration,
    /// From a connection's accept to the end of its TLS handshake.
    #[serde(default = "default_tls_handshake_timeout", with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub handshake_timeout: Duration,
}

fn default_tls_reload_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_tls_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    pub cert_file: String,
    pub key_file: String,
}

/// The most of an upstream's answer the gateway holds (`llm::AnswerBounds`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Answers {
    pub max_event_bytes: usize,
    pub max_translated_bytes: usize,
}

impl Default for Answers {
    fn default() -> Self {
        Self {
            max_event_bytes: crate::llm::sse::DEFAULT_MAX_EVENT,
            max_translated_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Request {
    pub max_body_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub body_timeout: Duration,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub header_timeout: Duration,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub idle_timeout: Duration,
    /// Longest wait for a client to take response bytes (a reader that
    /// stopped, an HTTP/2 window that never opens).
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub write_timeout: Duration,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 32 * 1024,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub enabled: bool,
    #[schemars(schema_with = "js::word::<AccessLogFormat>")]
    pub format: String,
    /// A file the lines are appended to; stdout when unset.
    pub path: Option<String>,
    /// Bytes of lines that may wait for the writer before new ones are
    /// dropped.
    pub buffer_bytes: usize,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            format: "json".into(),
            path: None,
            buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Reload {
    pub watch: bool,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub interval: Duration,
}

impl Default for Reload {
    fn default() -> Self {
        Self {
            watch: false,
            interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockUpstream {
    pub listen: String,
}
