//! The gateway's YAML configuration: one internal model, loaded and validated
//! before anything listens. Pingora's own `ServerConf` is derived from it in
//! exactly one place ([`ServerSettings::to_pingora`]).

mod duration;
pub mod load;
mod secret;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub use duration::parse_duration;
pub use load::{load_file, load_str, ConfigError};
pub use secret::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub listen: ListenSettings,
    #[serde(default)]
    pub request: RequestSettings,
    #[serde(default)]
    pub access_log: AccessLogSettings,
    #[serde(default)]
    pub reload: ReloadSettings,
    /// Start the repo's mock LLM upstream inside the gateway process (demo, offline use).
    #[serde(default)]
    pub mock_upstream: Option<MockUpstreamSettings>,
    /// Who may call the gateway. Without this section routes need no credentials.
    #[serde(default)]
    pub auth: Option<AuthSettings>,
    /// Request and token limits, local or across replicas through Redis.
    #[serde(default)]
    pub limits: Option<LimitSettings>,
    pub upstreams: BTreeMap<String, UpstreamPool>,
    pub routes: Vec<Route>,
}

/// Pingora server settings, carried in our YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// After SIGTERM or SIGQUIT, the longest the process keeps serving the
    /// requests and streams in flight; it exits as soon as the last one ends.
    /// Keep Kubernetes' `terminationGracePeriodSeconds` at least the preStop
    /// sleep + this + 5 s.
    #[serde(with = "duration::serde_str")]
    pub drain_timeout: Duration,
    /// Pingora's timers, replaced by `drain_timeout`: accepted only to fail
    /// with a message that says so.
    pub grace_period_seconds: Option<u64>,
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    /// The socket a new process takes the listeners over from (graceful upgrade, `-u`).
    pub upgrade_sock: String,
    pub pid_file: String,
    pub error_log: Option<String>,
    pub daemon: bool,
    /// Upstream connections kept alive per process.
    pub upstream_keepalive_pool_size: usize,
}

impl Default for ServerSettings {
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSettings {
    /// Addresses of the proxy service.
    pub proxy: Vec<String>,
    /// Address of the admin service (/health, /ready, /metrics).
    pub admin: String,
    /// Most client connections open at once on the proxy port; connections
    /// over it are closed at accept. 0: no cap but the process's fd limit.
    pub max_connections: usize,
    /// Read buffer of each client connection. Pingora's default is 64 KiB,
    /// allocated at accept and held while the connection lives, so idle
    /// keep-alive connections cost that much each; 0 reads unbuffered.
    pub read_buffer_bytes: usize,
}

impl Default for ListenSettings {
    fn default() -> Self {
        Self {
            proxy: vec!["0.0.0.0:8080".into()],
            admin: "0.0.0.0:9090".into(),
            max_connections: 0,
            read_buffer_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSettings {
    /// Largest request body accepted; larger ones get 413 before they are read.
    pub max_body_bytes: usize,
    /// Most headers a request may carry (431 above). Pingora's own cap is far
    /// higher, so the gateway enforces its own.
    pub max_headers: usize,
    /// Most bytes of header names and values together (431 above).
    pub max_header_bytes: usize,
    /// Longest silence while a request body is read (408 or a closed connection after).
    #[serde(with = "duration::serde_str")]
    pub body_timeout: Duration,
    /// Longest a client may take to send a request's headers, from their
    /// first byte to their end (a slowloris defence: Pingora's own timeout
    /// is per read, so a byte a minute would keep a connection forever).
    #[serde(with = "duration::serde_str")]
    pub header_timeout: Duration,
    /// Longest a keep-alive connection may sit idle between requests.
    #[serde(with = "duration::serde_str")]
    pub idle_timeout: Duration,
}

impl Default for RequestSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 32 * 1024,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogSettings {
    pub enabled: bool,
    pub format: AccessLogFormat,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            format: AccessLogFormat::Json,
        }
    }
}

/// Reload on SIGHUP always; also on a change of the file when `watch` is on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSettings {
    pub watch: bool,
    /// How often the file's modification time is checked.
    #[serde(with = "duration::serde_str")]
    pub interval: Duration,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self {
            watch: false,
            interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockUpstreamSettings {
    pub listen: String,
}

/// Which wire dialect a backend speaks; decides how the provider key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI or any OpenAI-compatible server (vLLM, Ollama, ...): `Authorization: Bearer`.
    #[default]
    Openai,
    /// Anthropic's Messages API: `x-api-key` and `anthropic-version`.
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    Weighted,
    LeastRequests,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPool {
    #[serde(default)]
    pub strategy: Strategy,
    pub backends: Vec<BackendSettings>,
    #[serde(default)]
    pub health_check: Option<HealthCheckSettings>,
    #[serde(default)]
    pub passive_health: PassiveHealthSettings,
    #[serde(default)]
    pub timeouts: TimeoutSettings,
    #[serde(default)]
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// `http://host:port[/prefix]` or `https://host[:port][/prefix]`.
    pub base_url: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub provider: ProviderKind,
    /// The provider key, usually `${ENV_VAR}`; never logged.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Extra headers sent with every request to this backend (values may use `${ENV_VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckSettings {
    pub path: String,
    #[serde(with = "duration::serde_str")]
    pub interval: Duration,
    #[serde(with = "duration::serde_str")]
    pub timeout: Duration,
    /// Consecutive successes that bring an unhealthy backend back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy backend out.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckSettings {
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

/// Passive ejection: a backend that fails `consecutive_failures` requests in a
/// row is taken out of rotation for `cooldown`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthSettings {
    pub consecutive_failures: u32,
    #[serde(with = "duration::serde_str")]
    pub cooldown: Duration,
}

impl Default for PassiveHealthSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Upstream timeouts. Pingora applies one read timeout to every read of a
/// response, so `read` bounds both the time to first byte and the silence
/// between two chunks of a stream; `total` bounds the whole exchange.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSettings {
    /// TCP connect plus TLS handshake.
    #[serde(with = "duration::serde_str")]
    pub connect: Duration,
    /// Longest wait for the response to start (time to first byte) and
    /// between two chunks of its body (idle).
    #[serde(with = "duration::serde_str")]
    pub read: Duration,
    /// Longest wait for the upstream to accept a write of the request.
    #[serde(with = "duration::serde_str")]
    pub write: Duration,
    /// Longest a whole upstream exchange may take, streams included.
    #[serde(with = "duration::serde_str")]
    pub total: Duration,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(120),
            write: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file of CA certificates trusted in place of the system roots.
    pub ca_file: Option<String>,
    /// Override the SNI / certificate name (defaults to the base_url host).
    pub sni: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The backend refused or did not accept the connection.
    ConnectError,
    /// Connect or first-byte timeout.
    Timeout,
    /// The backend answered 500-599.
    #[serde(rename = "5xx")]
    ServerError,
    /// The backend answered 429.
    #[serde(rename = "429")]
    RateLimited,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Total tries per request, the first included.
    pub attempts: u32,
    pub on: Vec<RetryOn>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            attempts: 2,
            on: vec![RetryOn::ConnectError, RetryOn::Timeout],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// Path prefixes, matched on whole segments (`/v1/chat/completions`).
    pub paths: Vec<String>,
    /// Model names or globs (`gpt-4o*`). Empty: the route ignores the body and
    /// forwards it as it streams in.
    #[serde(default)]
    pub models: Vec<String>,
    pub upstream: String,
    /// Model name the client sends → model name the upstream receives.
    #[serde(default)]
    pub model_aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub retry: RetrySettings,
    /// Names of limit rules charged for every request on this route.
    #[serde(default)]
    pub limits: Vec<String>,
    /// Accepted credentials. Default: every method the `auth` section
    /// configures, or `none` when there is no `auth` section.
    #[serde(default)]
    pub auth: Option<Vec<AuthMethod>>,
}

impl ServerSettings {
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
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// No credentials needed.
    None,
    ApiKey,
    Jwt,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(default)]
    pub api_keys: Vec<ApiKeySettings>,
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// Stable id of the key: what logs and limits see, never the key.
    pub id: String,
    /// Hex SHA-256 of the key (`ai-api-gateway hash-key` prints it).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The key itself, for `${ENV}` references; hashed at load.
    #[serde(default)]
    pub key: Option<Secret>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    /// Model globs this key may use; empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Names of the limit rules that apply to this key.
    #[serde(default)]
    pub limits: Vec<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Required `iss` (checked when set).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must match when set).
    #[serde(default)]
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "duration::serde_str")]
    pub leeway: Duration,
    /// Keys configured here (HMAC secrets, PEM public keys).
    #[serde(default)]
    pub keys: Vec<JwtKeySettings>,
    #[serde(default)]
    pub oidc: Option<OidcSettings>,
    #[serde(default)]
    pub claims: ClaimNames,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeySettings {
    /// Matched against the token's `kid` when both are present.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithms this key verifies, pinned here: HS256/384/512, RS256/384/512,
    /// PS256/384/512, ES256/384, EdDSA.
    pub algorithms: Vec<String>,
    /// HMAC secret (usually `${ENV}`), for HS*.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// PEM public key file, for RS*/PS*/ES*/EdDSA.
    #[serde(default)]
    pub public_key_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// Issuer for discovery (`<issuer>/.well-known/openid-configuration`).
    #[serde(default)]
    pub issuer_url: Option<String>,
    /// JWKS address, instead of discovery.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Algorithms for JWKS keys that do not name their own `alg`.
    #[serde(default = "default_oidc_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_refresh", with = "duration::serde_str")]
    pub refresh_interval: Duration,
    /// Least time between two fetches caused by unknown `kid`s.
    #[serde(default = "default_cooldown", with = "duration::serde_str")]
    pub refetch_cooldown: Duration,
    #[serde(default = "default_fetch_timeout", with = "duration::serde_str")]
    pub fetch_timeout: Duration,
    /// Allow `http://` issuer and JWKS addresses on loopback (tests only).
    #[serde(default)]
    pub allow_http_loopback: bool,
    /// PEM CA file trusted for the issuer instead of the system roots.
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

/// Which claims carry the caller's identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: String,
    pub team: String,
    /// A list of model globs (or one space-separated string).
    pub models: String,
    /// A list, or one space-separated string (OAuth's `scope`).
    pub scopes: String,
    /// Names of limit rules that apply to the caller.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// Each replica counts alone (no Redis).
    Local,
    /// Each replica decides locally, spending budget leased from Redis.
    Hybrid,
    /// Every decision is made in Redis.
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Keep serving on local counts with a per-replica share of each limit.
    Open,
    /// Refuse with 429.
    Closed429,
    /// Refuse with 503.
    Closed503,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Default: `hybrid` with a `redis` section, else `local`.
    #[serde(default)]
    pub mode: Option<LimitMode>,
    #[serde(default)]
    pub redis: Option<RedisSettings>,
    pub rules: Vec<LimitRule>,
    /// Names of rules charged for every request on every route.
    #[serde(default)]
    pub global_rules: Vec<String>,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    #[serde(default = "default_output_estimate")]
    pub default_max_tokens: u64,
}

fn default_output_estimate() -> u64 {
    512
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db` (password in the URL, from `${ENV}`).
    pub url: Secret,
    /// Longest any request waits on Redis.
    #[serde(default = "default_redis_timeout", with = "duration::serde_str")]
    pub timeout: Duration,
    /// How often leases left idle are handed back and the clock is re-read.
    #[serde(default = "default_sync_interval", with = "duration::serde_str")]
    pub sync_interval: Duration,
    /// Share of a limit one lease takes (hybrid mode).
    #[serde(default = "default_lease_fraction")]
    pub lease_fraction: f64,
    /// Replicas expected; when Redis is down each one spends limit / replicas.
    #[serde(default = "default_replicas")]
    pub expected_replicas: u32,
    #[serde(default = "default_on_error")]
    pub on_error: RedisFailure,
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
fn default_on_error() -> RedisFailure {
    RedisFailure::Open
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKeyPart {
    ApiKey,
    Subject,
    Team,
    Model,
    Route,
    ClientIp,
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitCounts {
    Requests,
    InputTokens,
    OutputTokens,
    TotalTokens,
    Concurrent,
}

impl LimitCounts {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitCounts::Requests => "requests",
            LimitCounts::InputTokens => "input_tokens",
            LimitCounts::OutputTokens => "output_tokens",
            LimitCounts::TotalTokens => "total_tokens",
            LimitCounts::Concurrent => "concurrent",
        }
    }

    pub fn is_tokens(self) -> bool {
        matches!(
            self,
            LimitCounts::InputTokens | LimitCounts::OutputTokens | LimitCounts::TotalTokens
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitWindow {
    Second,
    Minute,
    Hour,
    Day,
}

impl LimitWindow {
    pub fn seconds(self) -> u64 {
        match self {
            LimitWindow::Second => 1,
            LimitWindow::Minute => 60,
            LimitWindow::Hour => 3600,
            LimitWindow::Day => 86_400,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    pub name: String,
    /// What the rule counts per: one or more of api_key, subject, team,
    /// model, route, client_ip, global.
    pub key: Vec<LimitKeyPart>,
    pub counts: LimitCounts,
    pub limit: u64,
    /// Not used by `concurrent` rules.
    #[serde(default = "default_window")]
    pub window: LimitWindow,
}

fn default_window() -> LimitWindow {
    LimitWindow::Minute
}
