//! Request and token limits. Each replica decides locally; with Redis, the
//! budget it spends is leased from the cluster (hybrid) or every decision is
//! made in Redis (redis). Token rules reserve an estimate on admission and
//! settle the real usage when the response ends.

pub mod lease;
mod local;
mod rules;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_limits::inflight::Guard;

pub use rules::{RequestFacts, Rule};

use crate::config::{LimitCounts, LimitMode, LimitSettings, RedisFailure};
use crate::observability::metrics::metrics;
use lease::LeaseTable;
use local::LocalCounters;
use rules::{reset_in_ms, window_id};
use store::RedisStore;

/// Most tokens one request can be charged for, per kind and in total. The
/// numbers come from clients (`max_tokens`) and upstreams (`usage`); capped,
/// every sum and difference of them fits an `i64` and a Lua number exactly.
pub const MAX_CHARGE: u64 = 1 << 48;

/// What one request is charged, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub input_tokens: u64,
    pub output_tokens: u64,
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
            LimitCounts::TotalTokens => (input + output).min(MAX_CHARGE),
        }
    }
}

/// Where a charge went, so it can be settled or undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ledger {
    Local,
    Lease,
    Redis,
}

struct Charged {
    rule: Arc<Rule>,
    counter: String,
    window_id: u64,
    amount: u64,
    ledger: Ledger,
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
    _slots: Vec<Guard>,
    pub requests: Option<Standing>,
    pub tokens: Option<Standing>,
    pub reserved: Charge,
}

/// Why a request was refused.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub rule: String,
    pub counts: LimitCounts,
    pub status: u16,
    pub retry_after_secs: u64,
    pub standing: Standing,
}

pub struct Limiter {
    mode: LimitMode,
    rules: HashMap<String, Arc<Rule>>,
    global_rules: Vec<Arc<Rule>>,
    pub default_max_tokens: u64,
    store: Option<Arc<RedisStore>>,
    on_error: RedisFailure,
    replicas: u64,
    lease_fraction: f64,
    sync_interval: Duration,
    local: LocalCounters,
    leases: LeaseTable,
    redis_down: AtomicBool,
    /// While Redis is failing, requests do not wait on it: they go straight
    /// to the failure policy until this time (ms); the sync task probes.
    redis_retry_at_ms: AtomicU64,
}

/// How long requests skip a failing Redis before trying it again.
const REDIS_BACKOFF_MS: u64 = 1000;

impl Limiter {
    pub fn from_config(settings: Option<&LimitSettings>) -> Result<Self, String> {
        let empty = LimitSettings {
            mode: Some(LimitMode::Local),
            redis: None,
            rules: Vec::new(),
            global_rules: Vec::new(),
            default_max_tokens: 512,
        };
        let settings = settings.unwrap_or(&empty);
        let rules: HashMap<String, Arc<Rule>> = settings
            .rules
            .iter()
            .map(|r| (r.name.clone(), Arc::new(Rule::from_config(r))))
            .collect();
        let global_rules = settings
            .global_rules
            .iter()
            .filter_map(|name| rules.get(name).cloned())
            .collect();
        let redis = settings.redis.as_ref();
        let mode = settings.mode.unwrap_or(if redis.is_some() {
            LimitMode::Hybrid
        } else {
            LimitMode::Local
        });
        let store = match (mode, redis) {
            (LimitMode::Local, _) | (_, None) => None,
            (_, Some(r)) => Some(Arc::new(RedisStore::new(r.url.expose(), r.timeout)?)),
        };
        for rule in rules.values() {
            metrics()
                .rate_limit_hits
                .with_label_values(&[&rule.name, rule.counts.as_str()]);
        }
        Ok(Self {
            mode,
            rules,
            global_rules,
            default_max_tokens: settings.default_max_tokens,
            store,
            on_error: redis.map_or(RedisFailure::Open, |r| r.on_error),
            replicas: redis.map_or(1, |r| r.expected_replicas.max(1) as u64),
            lease_fraction: redis.map_or(0.02, |r| r.lease_fraction),
            sync_interval: redis.map_or(Duration::from_secs(1), |r| r.sync_interval),
            local: LocalCounters::default(),
            leases: LeaseTable::default(),
            redis_down: AtomicBool::new(false),
            redis_retry_at_ms: AtomicU64::new(0),
        })
    }

    /// The rules a request is charged: global, the route's, the caller's.
    pub fn rules_for<'a>(&self, names: impl Iterator<Item = &'a String>) -> Vec<Arc<Rule>> {
        let mut out = self.global_rules.clone();
        for name in names {
            if let Some(rule) = self.rules.get(name) {
                if !out.iter().any(|r| Arc::ptr_eq(r, rule)) {
                    out.push(rule.clone());
                }
            }
        }
        out
    }

    fn now_ms(&self) -> u64 {
        self.store
            .as_ref()
            .map_or_else(store::epoch_ms, |store| store.now_ms())
    }

    /// Charges every rule; all or nothing.
    pub async fn admit(
        &self,
        rules: &[Arc<Rule>],
        facts: &RequestFacts<'_>,
        reserve: Charge,
    ) -> Result<Admission, Rejection> {
        let mut admission = Admission {
            reserved: reserve,
            ..Default::default()
        };
        for rule in rules {
            let counter = rule.key_for(facts);
            if rule.counts == LimitCounts::Concurrent {
                match self.local.enter(&counter, rule.limit) {
                    Some(slot) => admission._slots.push(slot),
                    None => {
                        self.undo(&admission).await;
                        return Err(self.reject(rule, 429, 1, 0));
                    }
                }
                continue;
            }
            let amount = reserve.amount(rule.counts);
            let now = self.now_ms();
            let wid = window_id(now, rule.window);
            let reset_ms = reset_in_ms(now, rule.window);
            match self.charge(rule, &counter, wid, amount, now).await {
                Ok((ledger, remaining)) => {
                    let standing = Standing {
                        limit: rule.limit,
                        remaining,
                        reset_ms,
                    };
                    match rule.counts {
                        LimitCounts::Requests if admission.requests.is_none() => {
                            admission.requests = Some(standing)
                        }
                        c if c.is_tokens() && admission.tokens.is_none() => {
                            admission.tokens = Some(standing)
                        }
                        _ => {}
                    }
                    admission.charged.push(Charged {
                        rule: rule.clone(),
                        counter,
                        window_id: wid,
                        amount,
                        ledger,
                    });
                }
                Err(status) => {
                    self.undo(&admission).await;
                    let retry = reset_ms.div_ceil(1000).max(1);
                    return Err(self.reject(rule, status, retry, reset_ms));
                }
            }
        }
        Ok(admission)
    }

    fn reject(&self, rule: &Rule, status: u16, retry_after_secs: u64, reset_ms: u64) -> Rejection {
        metrics()
            .rate_limit_hits
            .with_label_values(&[&rule.name, rule.counts.as_str()])
            .inc();
        Rejection {
            rule: rule.name.clone(),
            counts: rule.counts,
            status,
            retry_after_secs,
            standing: Standing {
                limit: rule.limit,
                remaining: 0,
                reset_ms,
            },
        }
    }

    /// One charge: Ok((ledger, remaining)) or Err(status to refuse with).
    async fn charge(
        &self,
        rule: &Rule,
        counter: &str,
        wid: u64,
        amount: u64,
        now: u64,
    ) -> Result<(Ledger, u64), u16> {
        let ttl = rule.window.seconds() * 2 + 1;
        if self.store.is_some() && now < self.redis_retry_at_ms.load(Ordering::Relaxed) {
            return self.redis_policy(rule, counter, amount);
        }
        match (self.mode, &self.store) {
            (LimitMode::Redis, Some(store)) => {
                match store.charge(counter, wid, rule.limit, amount, ttl).await {
                    Ok((true, used)) => {
                        self.redis_ok();
                        Ok((Ledger::Redis, rule.limit.saturating_sub(used)))
                    }
                    Ok((false, _)) => {
                        self.redis_ok();
                        Err(429)
                    }
                    Err(e) => self.on_redis_error(rule, counter, amount, &e.0),
                }
            }
            (LimitMode::Hybrid, Some(store)) => {
                let lease = self.leases.get(counter, wid);
                loop {
                    if lease.try_spend(amount, now) {
                        let held = lease.remaining.load(Ordering::Relaxed).max(0) as u64;
                        let used = lease.used_global.load(Ordering::Relaxed);
                        return Ok((Ledger::Lease, rule.limit.saturating_sub(used) + held));
                    }
                    if lease.exhausted.load(Ordering::Acquire) {
                        return Err(429);
                    }
                    let _refill = lease.refill.lock().await;
                    if lease.remaining.load(Ordering::Acquire) >= amount as i64 {
                        continue; // another request refilled it
                    }
                    if self.now_ms() < self.redis_retry_at_ms.load(Ordering::Relaxed) {
                        // The request before us found Redis failing.
                        return self.redis_policy(rule, counter, amount);
                    }
                    if lease.exhausted.load(Ordering::Acquire) {
                        return Err(429);
                    }
                    let slice = ((rule.limit as f64 * self.lease_fraction).ceil() as u64).max(1);
                    let short = amount as i64 - lease.remaining.load(Ordering::Acquire);
                    let want = slice.max(short.max(0) as u64);
                    match store.lease(counter, wid, rule.limit, want, ttl).await {
                        Ok((granted, used)) => {
                            self.redis_ok();
                            lease.remaining.fetch_add(granted as i64, Ordering::AcqRel);
                            lease.used_global.store(used, Ordering::Release);
                            if granted < want {
                                lease.exhausted.store(true, Ordering::Release);
                                if lease.try_spend(amount, now) {
                                    let held =
                                        lease.remaining.load(Ordering::Relaxed).max(0) as u64;
                                    return Ok((
                                        Ledger::Lease,
                                        rule.limit.saturating_sub(used) + held,
                                    ));
                                }
                                return Err(429);
                            }
                        }
                        Err(e) => return self.on_redis_error(rule, counter, amount, &e.0),
                    }
                }
            }
            _ => {
                let (admitted, used) = self.local.charge(rule.window, counter, rule.limit, amount);
                if admitted {
                    Ok((Ledger::Local, rule.limit.saturating_sub(used)))
                } else {
                    Err(429)
                }
            }
        }
    }

    fn redis_ok(&self) {
        self.redis_retry_at_ms.store(0, Ordering::Relaxed);
        if self.redis_down.swap(false, Ordering::Relaxed) {
            log::warn!("Redis is back: limits are shared across replicas again");
        }
    }

    /// Redis failed: fail open on a per-replica share, or refuse.
    fn on_redis_error(
        &self,
        rule: &Rule,
        counter: &str,
        amount: u64,
        error: &str,
    ) -> Result<(Ledger, u64), u16> {
        metrics().rate_limit_redis_errors.inc();
        self.redis_retry_at_ms
            .store(self.now_ms() + REDIS_BACKOFF_MS, Ordering::Relaxed);
        if !self.redis_down.swap(true, Ordering::Relaxed) {
            log::error!(
                "Redis unavailable for limits ({error}); {}",
                match self.on_error {
                    RedisFailure::Open => "failing open on per-replica shares of each limit",
                    RedisFailure::Closed429 => "refusing limited requests with 429",
                    RedisFailure::Closed503 => "refusing limited requests with 503",
                }
            );
        }
        self.redis_policy(rule, counter, amount)
    }

    fn redis_policy(&self, rule: &Rule, counter: &str, amount: u64) -> Result<(Ledger, u64), u16> {
        match self.on_error {
            RedisFailure::Open => {
                let share = (rule.limit / self.replicas).max(1);
                let (admitted, used) = self.local.charge(rule.window, counter, share, amount);
                if admitted {
                    Ok((Ledger::Local, share.saturating_sub(used)))
                } else {
                    Err(429)
                }
            }
            RedisFailure::Closed429 => Err(429),
            RedisFailure::Closed503 => Err(503),
        }
    }

    /// Gives back everything an admission charged (a later rule refused).
    async fn undo(&self, admission: &Admission) {
        for c in &admission.charged {
            self.adjust(c, -(c.amount as i64)).await;
        }
    }

    async fn adjust(&self, c: &Charged, delta: i64) {
        if delta == 0 {
            return;
        }
        match c.ledger {
            Ledger::Local => self.local.adjust(c.rule.window, &c.counter, delta),
            Ledger::Lease => {
                let same_window = self
                    .leases
                    .find(&c.counter)
                    .filter(|l| l.window_id.load(Ordering::Acquire) == c.window_id);
                match (same_window, &self.store) {
                    // Budget given back stays in this replica's lease.
                    (Some(lease), _) if delta < 0 => {
                        lease.remaining.fetch_add(-delta, Ordering::AcqRel);
                    }
                    // Usage over the reservation is recorded in Redis at once.
                    (_, Some(store)) if delta > 0 => {
                        let ttl = c.rule.window.seconds() * 2 + 1;
                        if let Err(e) = store.adjust(&c.counter, c.window_id, delta, ttl).await {
                            metrics().rate_limit_redis_errors.inc();
                            log::debug!("cannot record usage over the reservation: {}", e.0);
                        }
                    }
                    _ => {}
                }
            }
            Ledger::Redis => {
                if let Some(store) = &self.store {
                    let ttl = c.rule.window.seconds() * 2 + 1;
                    if store
                        .adjust(&c.counter, c.window_id, delta, ttl)
                        .await
                        .is_err()
                    {
                        metrics().rate_limit_redis_errors.inc();
                    }
                }
            }
        }
    }

    /// Settles token rules with the real usage (`None`: unknown, keep the reservation).
    pub async fn settle(&self, admission: Admission, actual: Option<Charge>) {
        let Some(actual) = actual else {
            return;
        };
        for c in admission
            .charged
            .iter()
            .filter(|c| c.rule.counts.is_tokens())
        {
            let used = actual.amount(c.rule.counts) as i64;
            self.adjust(c, used - c.amount as i64).await;
        }
    }

    /// The background half of hybrid mode; `None` without Redis.
    pub fn sync_service(self: &Arc<Self>) -> Option<LimitSync> {
        self.store.as_ref().map(|_| LimitSync {
            limiter: self.clone(),
        })
    }

    /// Hands every unspent lease back to Redis (hybrid mode), so a process
    /// that exits does not take a slice of every limit with it.
    pub async fn return_leases(&self) {
        if let Some(store) = &self.store {
            let returned = self.hand_back_leases(store, u64::MAX).await;
            if returned > 0 {
                log::info!("handed {returned} unspent units of limit leases back to Redis");
            }
        }
    }

    /// Hands back the budget of leases idle since `idle_before_ms` (hybrid
    /// mode); leases of ended windows are dropped. Returns what Redis took.
    async fn hand_back_leases(&self, store: &RedisStore, idle_before_ms: u64) -> i64 {
        if self.mode != LimitMode::Hybrid {
            return 0;
        }
        let now = store.now_ms();
        let rules = &self.rules;
        let back = self.leases.collect_idle(idle_before_ms, |counter, wid| {
            let name = counter.split('|').next().unwrap_or_default();
            rules
                .get(name)
                .is_some_and(|r| window_id(now, r.window) == wid)
        });
        let mut returned = 0;
        for (counter, wid, amount) in back {
            let name = counter.split('|').next().unwrap_or_default();
            let Some(rule) = self.rules.get(name) else {
                continue;
            };
            let ttl = rule.window.seconds() * 2 + 1;
            match store.adjust(&counter, wid, -amount, ttl).await {
                Ok(_) => returned += amount,
                Err(e) => {
                    metrics().rate_limit_redis_errors.inc();
                    log::debug!("cannot hand lease budget back to Redis: {}", e.0);
                }
            }
        }
        returned
    }

    async fn sync_once(&self) {
        let Some(store) = &self.store else {
            return;
        };
        match store.sync_clock().await {
            Ok(()) => self.redis_ok(),
            Err(e) => {
                metrics().rate_limit_redis_errors.inc();
                log::debug!("Redis clock sync failed: {}", e.0);
            }
        }
        metrics()
            .rate_limit_sync_age
            .set(store.last_ok_age_secs().min(1e9));
        let idle_before = store
            .now_ms()
            .saturating_sub(self.sync_interval.as_millis() as u64);
        self.hand_back_leases(store, idle_before).await;
    }
}

/// Re-reads Redis' clock, hands idle lease budget back, and keeps the
/// sync-age gauge, every `sync_interval`.
pub struct LimitSync {
    limiter: Arc<Limiter>,
}

#[async_trait]
impl BackgroundService for LimitSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.limiter.sync_once().await;
            tokio::select! {
                _ = tokio::time::sleep(self.limiter.sync_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
