//! The YAML file format: what serde reads, with the defaults of every field.
//! Unknown fields are errors. Nothing outside `config/` sees these types:
//! `translate.rs` turns them into the model (`model.rs`), and that
//! translation is the validation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_str as duration;
use super::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub request: Request,
    #[serde(default)]
    pub access_log: AccessLog,
    #[serde(default)]
    pub reload: Reload,
    #[serde(default)]
    pub mock_upstream: Option<MockUpstream>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub limits: Option<Limits>,
    pub upstreams: BTreeMap<String, Pool>,
    pub routes: Vec<Route>,
    /// USD per million tokens, by model name or glob; the first match wins.
    #[serde(default)]
    pub pricing: Vec<Price>,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub tracing: Tracing,
}

/// OpenTelemetry traces over OTLP/HTTP; unset fields follow the `OTEL_*`
/// environment variables.
#[derive(Debug, Deserialize)]
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
    pub export_interval: Duration,
    #[serde(with = "duration")]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// A bearer token (`${ENV}`); without it those endpoints answer 401.
    pub token: Secret,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub threads: usize,
    #[serde(with = "duration")]
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

#[derive(Debug, Deserialize)]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    /// Chosen by SNI against each certificate's own names; the first one is
    /// the default.
    pub certificates: Vec<CertificateFiles>,
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// `required` or `optional` (default: `required` once a CA is set).
    #[serde(default)]
    pub client_auth: Option<String>,
    /// How often the certificate files are read for a rotation.
    #[serde(default = "default_tls_reload_interval", with = "duration")]
    pub reload_interval: Duration,
    /// From a connection's accept to the end of its TLS handshake.
    #[serde(default = "default_tls_handshake_timeout", with = "duration")]
    pub handshake_timeout: Duration,
}

fn default_tls_reload_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_tls_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Request {
    pub max_body_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    #[serde(with = "duration")]
    pub body_timeout: Duration,
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Longest wait for a client to take response bytes (a reader that
    /// stopped, an HTTP/2 window that never opens).
    #[serde(with = "duration")]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    pub enabled: bool,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reload {
    pub watch: bool,
    #[serde(with = "duration")]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockUpstream {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default = "default_strategy")]
    pub strategy: String,
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub passive_health: PassiveHealth,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub tls: Tls,
}

fn default_strategy() -> String {
    "round_robin".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub base_url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_provider")]
    pub provider: String,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

fn default_weight() -> u32 {
    1
}

fn default_provider() -> String {
    "openai".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub path: String,
    #[serde(with = "duration")]
    pub interval: Duration,
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealth {
    pub consecutive_failures: u32,
    #[serde(with = "duration")]
    pub cooldown: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    #[serde(with = "duration")]
    pub connect: Duration,
    #[serde(with = "duration")]
    pub read: Duration,
    #[serde(with = "duration")]
    pub write: Duration,
    #[serde(with = "duration")]
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(120),
            write: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub ca_file: Option<String>,
    pub sni: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    pub attempts: u32,
    pub on: Vec<String>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 2,
            on: vec!["connect_error".into(), "timeout".into()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    pub paths: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    pub upstream: String,
    #[serde(default)]
    pub model_aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub retry: Retry,
    #[serde(default)]
    pub limits: Vec<String>,
    /// Default: every method the `auth` section configures, else `none`.
    #[serde(default)]
    pub auth: Option<Vec<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `max_tokens` for providers that require it when the client set none
    /// (default: `limits.default_max_tokens`).
    #[serde(default)]
    pub default_max_tokens: Option<u64>,
    /// Drop parameters a translation cannot honour instead of refusing them.
    #[serde(default)]
    pub drop_unsupported_params: bool,
    /// Models tried, in order, when this route's pool fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// Identities of TLS client certificates (mTLS).
    #[serde(default)]
    pub client_certs: Vec<ClientCert>,
    #[serde(default)]
    pub jwt: Option<Jwt>,
}

/// Declares a kind of configured caller (an API key, a client
/// certificate): its own fields, then the grants every caller carries,
/// spelled once here so that a new grant is added once. (`#[serde(flatten)]`
/// would do the same, but serde cannot deny unknown fields next to a
/// flattened type, and errors in it lose their field's name.)
macro_rules! caller {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            #[serde(default)]
            pub owner: Option<String>,
            #[serde(default)]
            pub team: Option<String>,
            #[serde(default)]
            pub models: Vec<String>,
            #[serde(default)]
            pub limits: Vec<String>,
            #[serde(default)]
            pub scopes: Vec<String>,
            #[serde(default = "default_true")]
            pub enabled: bool,
        }

        impl $name {
            /// What the caller is granted.
            pub fn grants(&self) -> Grants<'_> {
                Grants {
                    owner: self.owner.as_deref(),
                    team: self.team.as_deref(),
                    models: &self.models,
                    limits: &self.limits,
                    scopes: &self.scopes,
                    enabled: self.enabled,
                }
            }
        }
    };
}

/// Who a configured caller is and what it may do, as every kind of caller
/// spells it.
pub struct Grants<'a> {
    pub owner: Option<&'a str>,
    pub team: Option<&'a str>,
    pub models: &'a [String],
    pub limits: &'a [String],
    pub scopes: &'a [String],
    pub enabled: bool,
}

caller! {
    pub struct ApiKey {
        pub id: String,
        #[serde(default)]
        pub sha256: Option<String>,
        #[serde(default)]
        pub key: Option<Secret>,
    }
}

caller! {
    /// A verified client certificate's identity: the certificate is matched
    /// by its subject's common name or by one of its alternative names.
    pub struct ClientCert {
        pub id: String,
        #[serde(default)]
        pub subject: Option<String>,
        #[serde(default)]
        pub san: Option<String>,
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    #[serde(default = "default_leeway", with = "duration")]
    pub leeway: Duration,
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    #[serde(default)]
    pub oidc: Option<Oidc>,
    #[serde(default)]
    pub claims: ClaimNames,
    /// Verified tokens remembered until their `exp` (0: verify every time).
    #[serde(default = "default_token_cache")]
    pub cache_tokens: usize,
}

fn default_token_cache() -> usize {
    10_000
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    #[serde(default)]
    pub kid: Option<String>,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub public_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    #[serde(default)]
    pub issuer_url: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_oidc_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_refresh", with = "duration")]
    pub refresh_interval: Duration,
    #[serde(default = "default_cooldown", with = "duration")]
    pub refetch_cooldown: Duration,
    #[serde(default = "default_fetch_timeout", with = "duration")]
    pub fetch_timeout: Duration,
    #[serde(default)]
    pub allow_http_loopback: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_oidc_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: String,
    pub team: String,
    pub models: String,
    pub scopes: String,
    pub limits: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            team: "team".into(),
            models: "models".into(),
            scopes: "scope".into(),
            limits: "limits".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Default: `hybrid` with a `redis` section, else `local`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub redis: Option<Redis>,
    pub rules: Vec<LimitRule>,
    #[serde(default)]
    pub global_rules: Vec<String>,
    #[serde(default = "default_output_estimate")]
    pub default_max_tokens: u64,
}

fn default_output_estimate() -> u64 {
    512
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// One node; exactly one of `url`, `cluster_nodes` and `sentinel`.
    #[serde(default)]
    pub url: Option<Secret>,
    /// Redis Cluster: some of its nodes (the rest are discovered).
    #[serde(default)]
    pub cluster_nodes: Vec<Secret>,
    #[serde(default)]
    pub sentinel: Option<RedisSentinel>,
    /// An ACL user (Redis 6+); `default` when only a password is set.
    #[serde(default)]
    pub username: Option<Secret>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// With a `rediss://` URL: the CA that signed the server's certificate
    /// (the system's roots without it).
    #[serde(default)]
    pub tls: Option<RedisTls>,
    #[serde(default = "default_redis_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_sync_interval", with = "duration")]
    pub sync_interval: Duration,
    #[serde(default = "default_lease_fraction")]
    pub lease_fraction: f64,
    #[serde(default = "default_replicas")]
    pub expected_replicas: u32,
    #[serde(default = "default_on_error")]
    pub on_error: String,
}

/// A master found through Redis Sentinel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSentinel {
    pub master_name: String,
    /// The sentinels (`redis://host:26379`, or `rediss://` for TLS to the
    /// sentinels and the master).
    pub nodes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    pub ca_file: Option<String>,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_sync_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_lease_fraction() -> f64 {
    0.02
}
fn default_replicas() -> u32 {
    2
}
fn default_on_error() -> String {
    "open".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    pub name: String,
    pub key: Vec<String>,
    pub counts: String,
    /// A count, or USD for a `cost_usd` rule.
    pub limit: f64,
    /// Not used by `concurrent` rules.
    #[serde(default = "default_window")]
    pub window: String,
}

fn default_window() -> String {
    "minute".into()
}
