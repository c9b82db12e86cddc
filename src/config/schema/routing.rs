//! `upstreams` (pools and their backends) and `routes`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;

use super::super::json_schema as js;
use super::super::keyword::{AuthMethod, RetryOn, Strategy};
use serde::Deserialize;

use super::super::duration::serde_str as duration;
use super::super::secret::Secret;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default = "default_strategy")]
    #[schemars(schema_with = "js::word::<Strategy>")]
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
    /// Model name (or glob, after the route's aliases) → the most output
    /// tokens it gives. A request asking for more (Claude Code asks for
    /// 32k-64k) is sent this many.
    #[serde(default)]
    pub max_output_tokens: BTreeMap<String, u64>,
}

fn default_strategy() -> String {
    "round_robin".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
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
    /// The provider's own settings, read by its module.
    #[serde(default)]
    #[schemars(schema_with = "js::provider_options")]
    pub options: Option<serde_yaml::Value>,
}

fn default_weight() -> u32 {
    1
}

fn default_provider() -> String {
    "openai".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    pub path: String,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub interval: Duration,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealth {
    pub consecutive_failures: u32,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub connect: Duration,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub read: Duration,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub write: Duration,
    #[serde(with = "duration")]
    #[schemars(schema_with = "js::duration")]
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

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub ca_file: Option<String>,
    pub sni: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    pub attempts: u32,
    #[schemars(schema_with = "js::words::<RetryOn>")]
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    pub paths: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    pub upstream: String,
    /// Client model name → the name the upstream is sent. A key may be a
    /// glob (`claude-*`): a literal key wins, then the longest glob that
    /// matches.
    #[serde(default)]
    pub model_aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub retry: Retry,
    #[serde(default)]
    pub limits: Vec<String>,
    /// Default: every method the `auth` section configures, else `none`.
    #[serde(default)]
    #[schemars(schema_with = "js::optional_words::<AuthMethod>")]
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
