//! The configuration as the gateway runs on it: every value checked, parsed
//! and resolved once, by the translation from the file (`translate.rs`).
//! Nothing here is read from YAML directly, and nothing above `config/`
//! sees the file format.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::cidr::Cidr;
use super::glob::Glob;
use super::keyword::{
    AccessLogFormat, AuthMethod, LimitCounts, LimitKeyPart, LimitMode, LimitWindow, ProviderKind,
    RedisFailure, RetryOn, Strategy,
};
use super::secret::Secret;
use super::tls::{CaBundle, ClientCa};
use super::url::BaseUrl;

/// The most a limit may be, and the most one request can be charged: every
/// sum and difference of such numbers fits an `i64` and a Lua number exactly.
pub const MAX_LIMIT: u64 = 1 << 48;

#[derive(Debug)]
pub struct Config {
    /// Bound when the process starts: a change takes a graceful upgrade.
    pub process: Process,
    /// Every secret the file named (expanded `${ENV}` values, passwords):
    /// what the logger scrubs from every line.
    pub secrets: Vec<Secret>,
    /// Most client connections open at once (0: no cap); follows reloads.
    pub max_connections: usize,
    /// Answer `/metrics` on the proxy port too; follows reloads.
    pub metrics_on_proxy: bool,
    /// Peers whose `X-Forwarded-For` names the client; follows reloads.
    pub trusted_proxies: Vec<Cidr>,
    pub request: RequestLimits,
    pub access_log: AccessLog,
    pub auth: Auth,
    pub limits: Limits,
    pub pools: Vec<Pool>,
    pub routes: Vec<Route>,
    pub pricing: Vec<Price>,
    /// The bearer token of the admin endpoints beyond health and metrics;
    /// `None`: they answer 401.
    pub admin_token: Option<Secret>,
}

/// What a model's tokens cost, in USD per million (validated: finite, not
/// negative).
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub model: Glob,
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// Input tokens read from the prompt cache (the input price when unset
    /// in config: never silently cheaper).
    pub cached_input_per_million: f64,
}

/// What a running process cannot change. A reload compares it whole, so a
/// field added here is a field a reload reports as needing an upgrade.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub server: Server,
    pub listen: Listen,
    /// Start the repo's mock LLM upstream inside the gateway (demo).
    pub mock_upstream: Option<SocketAddr>,
    pub reload: Reload,
    /// Where the access log goes: its writer starts with the process.
    pub access_log_output: AccessLogOutput,
    /// OpenTelemetry trace export, started with the process; `None`: off.
    pub tracing: Option<TracingSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The traces URL; `None`: from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `None`: from `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `None`: from `OTEL_TRACES_SAMPLER` / `_ARG`.
    pub sample_ratio: Option<f64>,
    pub queue_size: usize,
    pub export_interval: Duration,
    pub export_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogOutput {
    /// A file the lines are appended to; stdout when `None`.
    pub path: Option<String>,
    /// Bytes of lines that may wait for the writer before new ones are
    /// dropped.
    pub buffer_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub threads: usize,
    pub drain_timeout: Duration,
    pub upgrade_sock: String,
    pub pid_file: String,
    pub error_log: Option<String>,
    pub daemon: bool,
    pub upstream_keepalive_pool_size: usize,
}

impl Server {
    /// The one place our settings become Pingora's `ServerConf`; Pingora copies
    /// it at `Server` construction, so it must be complete before then.
    ///
    /// The gateway ends the process itself once drained (`lifecycle.rs`).
    /// Pingora's grace period is only a backstop: at its end Pingora shuts its
    /// runtimes down and drops every task, so it must outlast the drain,
    /// which may start after Pingora's fixed 5 s upgrade hand-over.
    pub fn to_pingora(&self) -> pingora::server::configuration::ServerConf {
        let drain_secs = self.drain_timeout.as_secs_f64().ceil() as u64;
        pingora::server::configuration::ServerConf {
            threads: self.threads,
            grace_period_seconds: Some(drain_secs + 10),
            graceful_shutdown_timeout_seconds: Some(1),
            upgrade_sock: self.upgrade_sock.clone(),
            pid_file: self.pid_file.clone(),
            error_log: self.error_log.clone(),
            daemon: self.daemon,
            upstream_keepalive_pool_size: self.upstream_keepalive_pool_size,
            // One single-threaded runtime per worker thread: a connection's
            // task stays on the thread that accepted it, which the memory
            // release after a surge counts on (memory.rs).
            work_stealing: false,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub proxy: Vec<SocketAddr>,
    /// Proxy addresses that speak TLS; never empty when `tls` is set.
    pub proxy_tls: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// Read buffer of each client connection (0: unbuffered).
    pub read_buffer_bytes: usize,
    pub tls: Option<EdgeTls>,
    /// Cleartext HTTP/2 with prior knowledge on the `proxy` addresses.
    pub h2c: bool,
    /// Every proxy connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
}

/// TLS on the proxy's TLS listeners. The certificate files are read again
/// every `reload_interval` (rotation needs no restart); the paths are fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeTls {
    /// The first is the default for clients whose SNI matches none.
    pub certificates: Vec<CertificateFiles>,
    pub client_ca: Option<ClientCa>,
    /// A client without a certificate is refused at the handshake.
    pub client_cert_required: bool,
    pub reload_interval: Duration,
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// Also reload when the file's modification time changes.
    pub watch: bool,
    pub interval: Duration,
}

/// What one request may be, and how long its client may take.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// Longest silence while a request body arrives.
    pub body_timeout: Duration,
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// Between keep-alive requests.
    pub idle_timeout: Duration,
    /// Longest a response write waits for the client to take bytes.
    pub write_timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    pub enabled: bool,
    pub format: AccessLogFormat,
}

#[derive(Debug, Default)]
pub struct Auth {
    pub api_keys: Vec<ApiKey>,
    pub client_certs: Vec<ClientCert>,
    pub jwt: Option<Jwt>,
}

/// How a verified client certificate is recognised, and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateName {
    /// The subject's common name.
    Subject(String),
    /// A DNS, URI (SPIFFE ID) or email subject alternative name.
    AltName(String),
}

#[derive(Debug)]
pub struct ClientCert {
    pub id: String,
    pub name: CertificateName,
    pub grants: Grants,
}

#[derive(Debug)]
pub struct ApiKey {
    pub id: String,
    /// SHA-256 of the key: keys are looked up by hash.
    pub sha256: [u8; 32],
    pub grants: Grants,
}

/// Who a configured caller (an API key, a client certificate) is and what
/// it may do.
#[derive(Debug)]
pub struct Grants {
    pub owner: Option<String>,
    pub team: Option<String>,
    /// Models the caller may use; empty: every model.
    pub models: Vec<Glob>,
    pub limits: Vec<String>,
    /// Scopes granted (routes may require them).
    pub scopes: Vec<String>,
    pub enabled: bool,
}

#[derive(Debug)]
pub struct Jwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values; one must match when any is set.
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub keys: Vec<JwtKey>,
    pub oidc: Option<Oidc>,
    pub claims: ClaimNames,
    /// Verified tokens remembered until their `exp` (0: none).
    pub cache_tokens: usize,
}

/// A key configured for JWTs, parsed, with the algorithms pinned to it.
pub struct JwtKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key itself may be an HMAC secret.
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Oidc {
    pub source: OidcSource,
    /// For JWKS keys that name no `alg` (never HMAC).
    pub algorithms: Vec<Algorithm>,
    pub refresh_interval: Duration,
    pub refetch_cooldown: Duration,
    pub fetch_timeout: Duration,
    pub ca: Option<CaBundle>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcSource {
    /// `<issuer>/.well-known/openid-configuration` names the JWKS.
    Discovery {
        issuer_url: String,
        allow_http_loopback: bool,
    },
    Jwks(String),
}

/// Which claims carry the caller's identity.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub subject: String,
    pub team: String,
    pub models: String,
    pub scopes: String,
    pub limits: String,
}

#[derive(Debug)]
pub struct Limits {
    pub mode: LimitMode,
    pub redis: Option<Redis>,
    pub rules: Vec<LimitRule>,
    /// Names of rules charged for every request.
    pub global_rules: Vec<String>,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub default_max_tokens: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            mode: LimitMode::Local,
            redis: None,
            rules: Vec::new(),
            global_rules: Vec::new(),
            default_max_tokens: 512,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LimitRule {
    pub name: String,
    pub key: Vec<LimitKeyPart>,
    pub counts: LimitCounts,
    pub limit: u64,
    pub window: LimitWindow,
}

#[derive(Debug)]
pub struct Redis {
    pub client: RedisClient,
    /// Longest any request waits on Redis.
    pub timeout: Duration,
    pub sync_interval: Duration,
    /// Share of a limit one lease takes (hybrid mode).
    pub lease_fraction: f64,
    /// When Redis is down each replica spends limit / this.
    pub expected_replicas: u32,
    pub on_error: RedisFailure,
}

/// A Redis client for the configured URL; its address may hold a password,
/// so it never prints.
#[derive(Clone)]
pub enum RedisClient {
    Single(redis::Client),
    Cluster {
        /// Boxed: the cluster client is several times the others' size.
        client: Box<redis::cluster::ClusterClient>,
        /// The configured nodes' addresses (`host:port`), for messages.
        seeds: Vec<String>,
    },
    Sentinel(RedisSentinel),
}

/// What finds the master through Sentinel: a client is built per
/// (re)connection, because the master moves.
#[derive(Clone)]
pub struct RedisSentinel {
    pub master_name: String,
    pub nodes: Vec<redis::ConnectionInfo>,
    /// Credentials and TLS for the master (`username`, `password`, `tls`).
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<redis::TlsCertificates>,
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topology = match self {
            RedisClient::Single(_) => "single",
            RedisClient::Cluster { .. } => "cluster",
            RedisClient::Sentinel(_) => "sentinel",
        };
        write!(f, "RedisClient({topology}, ***)")
    }
}

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub strategy: Strategy,
    pub backends: Vec<Backend>,
    pub health_check: Option<HealthCheck>,
    pub passive: PassiveHealth,
    pub timeouts: Timeouts,
    /// CA trusted for the pool's https backends instead of the system roots.
    pub ca: Option<CaBundle>,
    /// Server name sent and verified instead of each backend's host.
    pub sni: Option<String>,
}

#[derive(Debug)]
pub struct Backend {
    pub url: BaseUrl,
    pub weight: u32,
    pub provider: ProviderKind,
    /// What the gateway adds to every request to this backend: the provider
    /// key in the provider's header, its default headers, the extras.
    /// Marked sensitive, so even debug logs mask them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// A backend failing this many requests in a row is out for `cooldown`.
#[derive(Debug, Clone, Copy)]
pub struct PassiveHealth {
    pub consecutive_failures: u32,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Time to first byte, and silence between two chunks of an answer.
    pub read: Duration,
    pub write: Duration,
    /// The whole exchange, retries and streams included.
    pub total: Duration,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub paths: Vec<String>,
    /// Empty: the route takes any body and forwards it as it streams in.
    pub models: Vec<Glob>,
    /// The pool's name; the translation made sure it exists.
    pub pool: String,
    /// Client model name → upstream model name.
    pub aliases: Vec<(String, String)>,
    pub retry: Retry,
    pub limits: Vec<String>,
    /// The credentials the route accepts, defaults applied.
    pub auth: Vec<AuthMethod>,
    /// Scopes a caller must hold, every one of them.
    pub scopes: Vec<String>,
    /// `max_tokens` sent to providers that require it (Anthropic) and
    /// reserved against token limits when the client set none.
    pub default_max_tokens: u64,
    /// Translation drops what the target cannot honour instead of refusing it.
    pub drop_unsupported_params: bool,
    /// Models tried in turn when the route's pool fails; each served by a route.
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Retry {
    /// Tries per request, the first included.
    pub attempts: u32,
    pub on: Vec<RetryOn>,
}
