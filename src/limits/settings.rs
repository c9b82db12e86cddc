//! The `limits` section, lowered: the rules, the mode, and Redis as
//! settings (addresses, credentials, TLS roots, timeouts). The client is
//! built from them by `redis_client.rs`, here once to check them and by the
//! limiter to use them.

use std::collections::HashSet;
use std::time::Duration;

use super::redis_client::RedisConnection;
use crate::config::check::{
    count_in, duration_in, ensure, fault, positive_up_to, unique_name, word, Lowered, HOUR, MINUTE,
};
use crate::config::{schema, Env, LimitCounts, LimitKeyPart, LimitMode, LimitWindow, RedisFailure};

/// The most a limit may be, and the most one request can be charged: every
/// sum and difference of such numbers fits an `i64` and a Lua number exactly.
pub const MAX_LIMIT: u64 = 1 << 48;

#[derive(Debug)]
pub struct Limits {
    pub mode: LimitMode,
    pub redis: Option<RedisSettings>,
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

/// Redis, where hybrid and redis modes keep their counts.
#[derive(Debug)]
pub struct RedisSettings {
    pub connection: RedisConnection,
    /// Longest any request waits on Redis.
    pub timeout: Duration,
    pub sync_interval: Duration,
    /// Share of a limit one lease takes (hybrid mode).
    pub lease_fraction: f64,
    /// When Redis is down each replica spends limit / this.
    pub expected_replicas: u32,
    pub on_error: RedisFailure,
}

#[derive(Debug, Clone)]
pub struct LimitRule {
    pub name: String,
    pub key: Vec<LimitKeyPart>,
    pub counts: LimitCounts,
    pub limit: u64,
    pub window: LimitWindow,
}

/// A rule's limit: a whole count from 1 to 2^48, or for a budget USD above
/// zero, counted inside in micro-USD.
fn rule_limit(field: &str, counts: LimitCounts, limit: f64) -> Lowered<u64> {
    if counts == LimitCounts::CostUsd {
        let most = MAX_LIMIT / 1_000_000;
        if !(limit > 0.0 && limit <= most as f64) {
            return fault(
                field,
                format!("must be a number of USD above 0 and at most {most}"),
            );
        }
        return Ok(((limit * 1e6).round() as u64).max(1));
    }
    if !(limit.fract() == 0.0 && (1.0..=MAX_LIMIT as f64).contains(&limit)) {
        return fault(
            field,
            format!("must be a whole number from 1 to 2^48 ({MAX_LIMIT})"),
        );
    }
    Ok(limit as u64)
}

pub fn limits(l: &schema::Limits, priced: bool, env: Env<'_>) -> Lowered<Limits> {
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(l.rules.len());
    for (i, rule) in l.rules.iter().enumerate() {
        let at = format!("limits.rules[{i}]");
        unique_name(&mut names, format!("{at}.name"), &rule.name, "rule")?;
        ensure(
            !rule.key.is_empty(),
            || format!("{at}.key"),
            "needs at least one part (e.g. [api_key])",
        )?;
        let key = rule
            .key
            .iter()
            .enumerate()
            .map(|(j, part)| word::<LimitKeyPart>(&format!("{at}.key[{j}]"), part))
            .collect::<Lowered<Vec<_>>>()?;
        let counts = word::<LimitCounts>(&format!("{at}.counts"), &rule.counts)?;
        rules.push(LimitRule {
            name: rule.name.clone(),
            key,
            counts,
            limit: rule_limit(&format!("{at}.limit"), counts, rule.limit)?,
            window: word::<LimitWindow>(&format!("{at}.window"), &rule.window)?,
        });
        if counts == LimitCounts::CostUsd && !priced {
            return fault(
                format!("{at}.counts"),
                "`cost_usd` needs a `pricing` table: without prices nothing costs anything",
            );
        }
    }
    let mode = match &l.mode {
        Some(mode) => word::<LimitMode>("limits.mode", mode)?,
        None if l.redis.is_some() => LimitMode::Hybrid,
        None => LimitMode::Local,
    };
    if mode != LimitMode::Local && l.redis.is_none() {
        return fault(
            "limits.mode",
            "`hybrid` and `redis` need a `limits.redis` section",
        );
    }
    let redis = match &l.redis {
        Some(r) => Some(self::redis(r, env)?),
        None => None,
    };
    Ok(Limits {
        mode,
        redis,
        rules,
        global_rules: l.global_rules.clone(),
        default_max_tokens: count_in(
            "limits.default_max_tokens",
            l.default_max_tokens,
            1,
            MAX_LIMIT,
        )?,
    })
}

fn redis(r: &schema::Redis, env: Env<'_>) -> Lowered<RedisSettings> {
    let at = "limits.redis";
    let timeout = positive_up_to(&format!("{at}.timeout"), r.timeout, MINUTE)?;
    let connection = RedisConnection::lower(r, timeout, env)?;
    if !(r.lease_fraction > 0.0 && r.lease_fraction <= 1.0) {
        return fault(
            format!("{at}.lease_fraction"),
            "must be above 0 and at most 1",
        );
    }
    Ok(RedisSettings {
        connection,
        timeout,
        sync_interval: duration_in(
            &format!("{at}.sync_interval"),
            r.sync_interval,
            Duration::from_millis(10),
            HOUR,
        )?,
        lease_fraction: r.lease_fraction,
        expected_replicas: count_in(
            &format!("{at}.expected_replicas"),
            r.expected_replicas,
            1,
            10_000,
        )?,
        on_error: word::<RedisFailure>(&format!("{at}.on_error"), &r.on_error)?,
    })
}
