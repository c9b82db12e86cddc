//! Request and token limits. Each replica decides locally; with Redis, the
//! budget it spends is leased from the cluster (hybrid) or every decision is
//! made in Redis (redis). Token rules reserve an estimate on admission and
//! settle the real usage when the response ends.
//!
//! The [`Limiter`] owns the rules, admission (all rules or none) and
//! settlement, and the policy when Redis fails (`limiter.rs`); where counts
//! are kept is the [`ledger::Ledger`]'s business; whether Redis can be
//! trusted right now is [`health::RedisHealth`]'s; the background half is
//! `sync.rs`. A refusal is a [`Refused`]: what the client is told, and with
//! which status, is the gateway's to decide.

mod calendar;
mod claims;
mod connection;
mod health;
pub mod lease;
mod ledger;
mod limiter;
mod local;
mod redis_client;
mod rules;
pub mod settings;
mod slots;
mod spend;
mod store;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use pingora_limits::inflight::Guard;

pub use limiter::Limiter;
pub use rules::{Counter, RequestFacts, Rule};
pub use spend::{SpendError, SpendLine, SpendQuery};
pub use sync::LimitSync;

use crate::config::{LimitCounts, LimitWindow};
pub use settings::MAX_LIMIT as MAX_CHARGE;
use slots::SlotGuard;

/// What one request is charged, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the configured prices; 0 for a model without a price.
    pub cost_micro_usd: u64,
}

impl Charge {
    /// What the charge costs a rule counting `counts`, at most `MAX_CHARGE`.
    fn amount(&self, counts: LimitCounts) -> u64 {
        let input = self.input_tokens.min(MAX_CHARGE);
        let output = self.output_tokens.min(MAX_CHARGE);
        match counts {
            LimitCounts::Requests | LimitCounts::Concurrent => 1,
            LimitCounts::InputTokens => input,
            LimitCounts::OutputTokens => output,
            LimitCounts::TotalTokens => input.saturating_add(output).min(MAX_CHARGE),
            LimitCounts::CostUsd => self.cost_micro_usd.min(MAX_CHARGE),
        }
    }
}

/// One rule's part of an admission, so it can be settled or undone.
struct Charged {
    rule: Arc<Rule>,
    counter: Counter,
    window_id: u64,
    amount: u64,
    /// Counted on this replica's fallback share (Redis was failing), not
    /// in the limiter's ledger.
    fallback: bool,
}

/// The standing of a request-count or token rule, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// An admitted request's charges; settle it when the response ends.
#[derive(Default)]
pub struct Admission {
    charged: Vec<Charged>,
    /// Held for what dropping them does.
    slots: Vec<Slot>,
    pub requests: Option<Standing>,
    pub tokens: Option<Standing>,
}

/// A concurrency slot a request holds until it ends (dropped): this
/// replica's count in local mode, one leased from Redis otherwise.
// Never read: each guard is held for what its drop does.
#[allow(dead_code)]
enum Slot {
    Local(Guard),
    Shared(SlotGuard),
}

/// Why a request was refused: the rule, when to try again, and whether the
/// rule's window is spent or the limit could not be checked.
#[derive(Debug, Clone)]
pub struct Refused {
    pub rule: String,
    pub counts: LimitCounts,
    pub window: LimitWindow,
    pub kind: RefusedKind,
    pub retry_after: Duration,
    pub standing: Standing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKind {
    /// Over the limit (or, with Redis down and `on_error: closed429`,
    /// treated as if it were).
    Limited,
    /// Redis is down and `on_error: closed503` says not to guess.
    Unavailable,
}

/// How long Redis counts a replica's concurrency slots after its last
/// heartbeat (one per sync): three syncs, and at least two seconds.
fn slot_ttl(sync_interval: Duration) -> u64 {
    (3 * sync_interval.as_millis() as u64).max(2000)
}

/// This process among the replicas: the pod's name (Kubernetes sets
/// `HOSTNAME`) and the pid, which differs across a graceful upgrade.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "-".into());
    format!("{host}/{}", std::process::id())
}
