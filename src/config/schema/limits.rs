//! `limits`: the rules, the mode and Redis.

use std::time::Duration;

use schemars::JsonSchema;

use super::super::json_schema as js;
use super::super::keyword::{LimitCounts, LimitKeyPart, LimitMode, LimitWindow, RedisFailure};
use serde::Deserialize;

use super::super::duration::serde_str as duration;
use super::super::secret::Secret;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Default: `hybrid` with a `redis` section, else `local`.
    #[serde(default)]
    #[schemars(schema_with = "js::optional_word::<LimitMode>")]
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

#[derive(Debug, Deserialize, JsonSchema)]
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
    #[schemars(schema_with = "js::duration")]
    pub timeout: Duration,
    #[serde(default = "default_sync_interval", with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub sync_interval: Duration,
    #[serde(default = "default_lease_fraction")]
    pub lease_fraction: f64,
    #[serde(default = "default_replicas")]
    pub expected_replicas: u32,
    #[serde(default = "default_on_error")]
    #[schemars(schema_with = "js::word::<RedisFailure>")]
    pub on_error: String,
}

/// A master found through Redis Sentinel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSentinel {
    pub master_name: String,
    /// The sentinels (`redis://host:26379`, or `rediss://` for TLS to the
    /// sentinels and the master).
    pub nodes: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    pub name: String,
    #[schemars(schema_with = "js::words::<LimitKeyPart>")]
    pub key: Vec<String>,
    #[schemars(schema_with = "js::word::<LimitCounts>")]
    pub counts: String,
    /// A count, or USD for a `cost_usd` rule.
    pub limit: f64,
    /// Not used by `concurrent` rules.
    #[serde(default = "default_window")]
    #[schemars(schema_with = "js::word::<LimitWindow>")]
    pub window: String,
}

fn default_window() -> String {
    "minute".into()
}
