//! Request and token limits. Each replica decides locally; with Redis, the
//! budget it spends is leased from the cluster (hybrid) or every decision is
//! made in Redis (redis). Token rules reserve an estimate on admission and
//! settle the real usage when the response ends.
//!
//! The limiter owns the rules, admission (all rules or none) and settlement,
//! and the policy when Redis fails; where counts are kept is the
//! [`ledger::Ledger`]'s business. Concurrency rules hold a slot per request
//! in this replica.

mod calendar;
mod claims;
mod connection;
pub mod lease;
mod ledger;
mod local;
mod rules;
mod slots;
mod spend;
mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_limits::inflight::Guard;

pub use rules::{Counter, RequestFacts, Rule};

pub use crate::config::MAX_LIMIT as MAX_CHARGE;
use crate::config::{self, LimitCounts, LimitMode, LimitWindow, RedisFailure};
use crate::observability::metrics::metrics;
use ledger::{Charge as Outcome, Ledger, Spot};
use local::LocalCounters;
use rules::{is_current, reset_in_ms, ttl_secs, window_id};
use slots::{SlotGuard, SlotLease, SlotTable};
use spend::{Source, SpendBook};
pub use spend::{SpendError, SpendLine, SpendQuery};
use store::{epoch_ms, RedisStore};

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
            LimitCounts::TotalTokens => (input + output).min(MAX_CHARGE),
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
    _slots: Vec<Slot>,
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

/// Why a request was refused.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub rule: String,
    pub counts: LimitCounts,
    pub window: LimitWindow,
    pub status: u16,
    pub retry_after_secs: u64,
    pub standing: Standing,
}

pub struct Limiter {
    /// By index: counters name their rule by its place here.
    rules: Vec<Arc<Rule>>,
    by_name: HashMap<String, Arc<Rule>>,
    global_rules: Vec<Arc<Rule>>,
    pub default_max_tokens: u64,
    ledger: Ledger,
    on_error: RedisFailure,
    replicas: u64,
    sync_interval: Duration,
    /// Local mode's counts and concurrency slots.
    local: LocalCounters,
    /// What budget rules spent, for `/v1/spend`.
    spend: SpendBook,
    /// How this process signs the reservations it publishes in Redis.
    replica: String,
    redis_down: AtomicBool,
    /// Redis answers again after failing: the next sync restates what this
    /// replica took of every current window, in case Redis lost it.
    restate_claims: AtomicBool,
    /// After Redis comes back, replicas keep to their shares until this
    /// time (cluster clock, ms): long enough for every replica to have
    /// restated its part, so none leases what another took while Redis was
    /// gone.
    shared_again_at_ms: AtomicU64,
    /// Concurrency slots leased from Redis (hybrid and redis modes).
    slots: SlotTable,
    /// How long Redis counts a replica's slots without a heartbeat.
    slot_ttl_ms: u64,
}

/// How long requests skip a failing Redis before trying it again.
const REDIS_BACKOFF_MS: u64 = 1000;

impl Limiter {
    pub fn new(settings: &config::Limits) -> Self {
        let rules: Vec<Arc<Rule>> = settings
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| Arc::new(Rule::new(index, rule)))
            .collect();
        let by_name: HashMap<String, Arc<Rule>> = rules
            .iter()
            .map(|rule| (rule.name.clone(), rule.clone()))
            .collect();
        let global_rules = settings
            .global_rules
            .iter()
            .filter_map(|name| by_name.get(name).cloned())
            .collect();
        let redis = settings.redis.as_ref();
        let replica = replica_name();
        // This limiter's own field in Redis' per-replica hashes: a reload's
        // new limiter and the old one, still settling its requests, count
        // apart.
        static LIMITERS: AtomicU64 = AtomicU64::new(0);
        let field = format!("{replica}#{}", LIMITERS.fetch_add(1, Ordering::Relaxed));
        let ledger = match (settings.mode, redis) {
            (LimitMode::Local, _) | (_, None) => Ledger::Local,
            (LimitMode::Hybrid, Some(r)) => Ledger::Lease {
                store: Arc::new(RedisStore::new(&r.client, r.timeout, &field)),
                leases: Default::default(),
                fraction: r.lease_fraction,
                claims: Default::default(),
            },
            (LimitMode::Redis, Some(r)) => Ledger::Redis {
                store: Arc::new(RedisStore::new(&r.client, r.timeout, &field)),
                claims: Default::default(),
            },
        };
        for rule in &rules {
            metrics()
                .rate_limit_hits
                .with_label_values(&[&rule.name, rule.counts.as_str()]);
        }
        Self {
            rules,
            by_name,
            global_rules,
            default_max_tokens: settings.default_max_tokens,
            ledger,
            on_error: redis.map_or(RedisFailure::Open, |r| r.on_error),
            replicas: redis.map_or(1, |r| u64::from(r.expected_replicas.max(1))),
            sync_interval: redis.map_or(Duration::from_secs(1), |r| r.sync_interval),
            local: LocalCounters::default(),
            spend: SpendBook::default(),
            replica,
            redis_down: AtomicBool::new(false),
            restate_claims: AtomicBool::new(false),
            shared_again_at_ms: AtomicU64::new(0),
            slots: SlotTable::default(),
            slot_ttl_ms: redis.map_or(0, |r| slot_ttl(r.sync_interval)),
        }
    }

    /// The rules a request is charged: global, the route's, the caller's.
    pub fn rules_for<'a>(&self, names: impl Iterator<Item = &'a String>) -> Vec<Arc<Rule>> {
        let mut out = self.global_rules.clone();
        for name in names {
            if let Some(rule) = self.by_name.get(name) {
                if !out.iter().any(|r| Arc::ptr_eq(r, rule)) {
                    out.push(rule.clone());
                }
            }
        }
        out
    }

    fn now_ms(&self) -> u64 {
        self.ledger
            .store()
            .map_or_else(epoch_ms, |store| store.now_ms())
    }

    /// Charges every rule; all or nothing.
    pub async fn admit(
        &self,
        rules: &[Arc<Rule>],
        facts: &RequestFacts<'_>,
        reserve: Charge,
    ) -> Result<Admission, Rejection> {
        let mut admission = Admission::default();
        for rule in rules {
            let counter = rule.counter_for(facts);
            if rule.counts == LimitCounts::Concurrent {
                let entered = match self.ledger.store() {
                    Some(store) => self
                        .enter_shared(rule, &counter, store)
                        .await
                        .map(Slot::Shared),
                    None => self
                        .local
                        .enter(&counter, rule.limit)
                        .map(Slot::Local)
                        .ok_or(429),
                };
                match entered {
                    Ok(slot) => admission._slots.push(slot),
                    Err(status) => {
                        self.undo(&admission).await;
                        return Err(self.reject(rule, status, 1, 0));
                    }
                }
                continue;
            }
            let amount = reserve.amount(rule.counts);
            let now = self.now_ms();
            let spot = Spot {
                rule,
                counter: &counter,
                window_id: window_id(now, rule.window),
                now_ms: now,
            };
            let reset_ms = reset_in_ms(now, rule.window);
            match self.charge(&spot, amount).await {
                Ok((remaining, fallback)) => {
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
                        LimitCounts::CostUsd => {
                            self.spend.reserve(&counter, spot.window_id, amount)
                        }
                        _ => {}
                    }
                    admission.charged.push(Charged {
                        rule: rule.clone(),
                        window_id: spot.window_id,
                        counter,
                        amount,
                        fallback,
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

    /// Whether requests may ask Redis now. Not while it is down (only the
    /// sync probes it, so recovery is always noticed there, where this
    /// replica restates its part first), nor in the moments after it came
    /// back while every replica restates its part.
    fn shared_now(&self, now_ms: u64) -> bool {
        !self.redis_down.load(Ordering::Relaxed)
            && now_ms >= self.shared_again_at_ms.load(Ordering::Relaxed)
    }

    /// A concurrency slot shared across replicas: one this replica holds,
    /// else one more from Redis, else (Redis failing) one of its share.
    async fn enter_shared(
        &self,
        rule: &Rule,
        counter: &Counter,
        store: &RedisStore,
    ) -> Result<SlotGuard, u16> {
        let lease = self.slots.get(counter);
        if let Some(slot) = lease.try_enter() {
            return Ok(slot);
        }
        let _refill = lease.refill_lock().await;
        if let Some(slot) = lease.try_enter() {
            return Ok(slot);
        }
        if !self.shared_now(self.now_ms()) {
            return self.slots_fallback(rule, &lease);
        }
        let (held, _) = lease.counts();
        let key = rule.slots_key(counter);
        match store
            .take_slots(&key, rule.limit, 1, held, self.slot_ttl_ms)
            .await
        {
            Ok((granted, _)) => {
                self.redis_ok();
                lease.grant(granted);
                lease.try_enter().ok_or(429)
            }
            Err(e) => {
                self.redis_failed(&e.0);
                self.slots_fallback(rule, &lease)
            }
        }
    }

    fn slots_fallback(&self, rule: &Rule, lease: &Arc<SlotLease>) -> Result<SlotGuard, u16> {
        let share = self.failure_share(rule)?;
        lease.try_enter_share(share).ok_or(429)
    }

    /// Hands idle slots back and renews this replica's hold on the rest
    /// (the heartbeat that keeps them counted).
    async fn heartbeat_slots(&self) {
        let Some(store) = self.ledger.store() else {
            return;
        };
        if self.redis_down.load(Ordering::Relaxed) {
            // The fields expire meanwhile; the first sync that finds Redis
            // back rewrites them.
            return;
        }
        for (counter, lease) in self.slots.all() {
            let Some(rule) = self.rules.get(counter.rule) else {
                continue;
            };
            // Not while a request is asking Redis for a slot of it: the two
            // would race to set this replica's field.
            let refill = lease.refill_lock().await;
            let held = lease.release_idle();
            let told = store
                .hold_slots(&rule.slots_key(&counter), held, self.slot_ttl_ms)
                .await;
            drop(refill);
            match told {
                Ok(()) if held == 0 => self.slots.forget_if_idle(&counter, &lease),
                Ok(()) => {}
                Err(e) => {
                    metrics().rate_limit_redis_errors.inc();
                    log::debug!("cannot renew concurrency slots in Redis: {}", e.0);
                }
            }
        }
    }

    fn reject(&self, rule: &Rule, status: u16, retry_after_secs: u64, reset_ms: u64) -> Rejection {
        metrics()
            .rate_limit_hits
            .with_label_values(&[&rule.name, rule.counts.as_str()])
            .inc();
        Rejection {
            rule: rule.name.clone(),
            counts: rule.counts,
            window: rule.window,
            status,
            retry_after_secs,
            standing: Standing {
                limit: rule.limit,
                remaining: 0,
                reset_ms,
            },
        }
    }

    /// One charge in the ledger, or on the fallback share while Redis fails.
    /// Ok((remaining, on the fallback share)) or Err(status to refuse with).
    async fn charge(&self, at: &Spot<'_>, amount: u64) -> Result<(u64, bool), u16> {
        if self.ledger.store().is_some() && !self.shared_now(at.now_ms) {
            return self.fallback(at, amount);
        }
        match self.ledger.charge(&self.local, at, amount).await {
            Outcome::Admitted { remaining } => {
                self.redis_ok();
                Ok((remaining, false))
            }
            Outcome::Refused => {
                self.redis_ok();
                Err(429)
            }
            Outcome::BackingOff => self.fallback(at, amount),
            Outcome::Unavailable(e) => {
                self.redis_failed(&e.0);
                self.fallback(at, amount)
            }
        }
    }

    fn redis_ok(&self) {
        if let Some(store) = self.ledger.store() {
            store.clear_backoff();
        }
        if self.redis_down.swap(false, Ordering::Relaxed) {
            self.restate_claims.store(true, Ordering::Relaxed);
            // Every replica notices within its backoff and a sync, and
            // restates at that sync.
            let settle = REDIS_BACKOFF_MS + 2 * self.sync_interval.as_millis() as u64;
            self.shared_again_at_ms
                .store(self.now_ms() + settle, Ordering::Relaxed);
            metrics()
                .rate_limit_redis_transitions
                .with_label_values(&["shared"])
                .inc();
            log::warn!("Redis is back: limits are shared across replicas again");
        }
    }

    fn redis_failed(&self, error: &str) {
        metrics().rate_limit_redis_errors.inc();
        if let Some(store) = self.ledger.store() {
            store.back_off(self.now_ms() + REDIS_BACKOFF_MS);
        }
        if !self.redis_down.swap(true, Ordering::Relaxed) {
            metrics()
                .rate_limit_redis_transitions
                .with_label_values(&["fallback"])
                .inc();
            log::error!(
                "Redis unavailable for limits ({error}); {}",
                match self.on_error {
                    RedisFailure::Open => "failing open on per-replica shares of each limit",
                    RedisFailure::Closed429 => "refusing limited requests with 429",
                    RedisFailure::Closed503 => "refusing limited requests with 503",
                }
            );
        }
    }

    /// While Redis fails: take from this replica's share, or refuse. The
    /// share (`limit / expected_replicas`) covers all this replica took of
    /// the window, before the failure too, so replicas that fail together
    /// stay within the limit together; what they take is reported to Redis
    /// with their next claim.
    fn fallback(&self, at: &Spot<'_>, amount: u64) -> Result<(u64, bool), u16> {
        let share = self.failure_share(at.rule)?;
        let claims = self.ledger.claims().ok_or(429u16)?;
        match claims.take_within(at.counter, at.window_id, amount, share) {
            Some(taken) => Ok((share.saturating_sub(taken), true)),
            None => Err(429),
        }
    }

    /// While Redis fails: the share of `rule` this replica may take
    /// (`on_error: open`), or the status to refuse with.
    fn failure_share(&self, rule: &Rule) -> Result<u64, u16> {
        match self.on_error {
            RedisFailure::Open => Ok((rule.limit / self.replicas).max(1)),
            RedisFailure::Closed429 => Err(429),
            RedisFailure::Closed503 => Err(503),
        }
    }

    /// Gives back everything an admission charged (a later rule refused).
    async fn undo(&self, admission: &Admission) {
        for c in &admission.charged {
            self.adjust(c, -(c.amount as i64)).await;
            if c.rule.counts == LimitCounts::CostUsd {
                self.spend.settle(&c.counter, c.window_id, c.amount, 0);
            }
        }
    }

    async fn adjust(&self, c: &Charged, delta: i64) {
        if c.fallback {
            if let Some(claims) = self.ledger.claims() {
                claims.add(&c.counter, c.window_id, delta);
            }
        } else {
            let recorded = self
                .ledger
                .adjust(&self.local, &c.rule, &c.counter, c.window_id, delta)
                .await;
            if !recorded {
                // Redis missed it; the claim has it: restate at next sync.
                self.restate_claims.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Gives back everything an admission charged, requests included: the
    /// request went to another model (a fallback), which is charged instead.
    /// Concurrency slots are freed as the admission drops.
    pub async fn release(&self, admission: Admission) {
        self.undo(&admission).await;
    }

    /// Settles token and budget rules with the real usage (`None`: unknown,
    /// the reservation stands as what was used).
    pub async fn settle(&self, admission: Admission, actual: Option<Charge>) {
        for c in admission
            .charged
            .iter()
            .filter(|c| c.rule.counts.is_metered())
        {
            let used = actual.map_or(c.amount, |a| a.amount(c.rule.counts));
            self.adjust(c, used as i64 - c.amount as i64).await;
            if c.rule.counts == LimitCounts::CostUsd {
                self.spend.settle(&c.counter, c.window_id, c.amount, used);
            }
        }
    }

    /// The background half of shared limits; `None` without Redis.
    pub fn sync_service(self: &Arc<Self>) -> Option<LimitSync> {
        self.ledger.store().map(|_| LimitSync {
            limiter: self.clone(),
        })
    }

    /// Hands every unspent lease back to Redis (hybrid mode), so a process
    /// that exits does not take a slice of every limit with it, and sends
    /// the spend it booked since the last sync.
    pub async fn return_leases(&self) {
        self.heartbeat_slots().await;
        let returned = self.ledger.hand_back(&self.rules, u64::MAX).await;
        if returned > 0 {
            log::info!("handed {returned} unspent units of limit leases back to Redis");
        }
        self.send_spend().await;
    }

    /// A reload replaced this limiter, but requests it admitted still settle
    /// here: keep handing idle leases back and sending spend until the last
    /// of them has ended (an hour at most), then return everything.
    pub async fn retire(self: Arc<Self>) {
        if self.ledger.store().is_none() {
            return;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(3600);
        while Arc::strong_count(&self) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(self.sync_interval).await;
            self.sync_once().await;
        }
        self.return_leases().await;
    }

    /// Whether counts are shared through Redis (hybrid and redis modes).
    pub fn is_shared(&self) -> bool {
        self.ledger.store().is_some()
    }

    /// The current window's spend of the budget rules the query names:
    /// this replica's in local mode, the cluster's (from Redis) otherwise.
    pub async fn spend(&self, query: SpendQuery<'_>) -> Result<Vec<SpendLine>, SpendError> {
        let now = self.now_ms();
        let source = match self.ledger.store() {
            None => Source::Book,
            Some(store) => Source::Redis {
                store,
                // A replica republishes what it holds every sync.
                fresh_after_ms: now
                    .saturating_sub(3 * self.sync_interval.as_millis() as u64 + 2000),
            },
        };
        spend::report(&self.rules, &self.spend, source, now, query).await
    }

    /// Adds the spend settled since the last sync to Redis and publishes the
    /// reservations this replica holds; what fails is sent next time.
    async fn send_spend(&self) {
        let Some(store) = self.ledger.store() else {
            return;
        };
        let now = store.now_ms();
        let updates = self.spend.take_updates(is_current(&self.rules, now));
        let mut failed = Vec::new();
        for update in updates {
            let Some(rule) = self.rules.get(update.counter.rule) else {
                continue;
            };
            let keys = rule.spend_keys(&update.counter, update.window_id);
            let reserved = update.reserved.map(|r| (self.replica.as_str(), r, now));
            if let Err(e) = store
                .send_spend(&keys, update.spent, reserved, ttl_secs(rule.window))
                .await
            {
                metrics().rate_limit_redis_errors.inc();
                log::debug!("cannot send budget spend to Redis: {}", e.0);
                failed.push(update);
            }
        }
        if !failed.is_empty() {
            self.spend.restore(failed);
        }
    }

    /// Whether the configured Redis answers, for `ai-api-gateway
    /// check-redis`: where it is, the round trip of a `PING`, and the clock
    /// offset limits will use. Never prints the password.
    pub async fn check_redis(&self) -> Result<String, String> {
        let store = self
            .ledger
            .store()
            .ok_or("limits use no Redis (no `limits.redis`, or `mode: local`)")?;
        let address = store.address();
        let rtt = store
            .ping()
            .await
            .map_err(|e| format!("redis at {address}: {}", e.0))?;
        store
            .sync_clock()
            .await
            .map_err(|e| format!("redis at {address}: TIME: {}", e.0))?;
        Ok(format!(
            "redis at {address}: PONG in {:.2} ms; Redis clock {:+} ms from this machine's",
            rtt.as_secs_f64() * 1000.0,
            store.clock_offset_ms()
        ))
    }

    async fn sync_once(&self) {
        let Some(store) = self.ledger.store() else {
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
        // First: the slots' expiry is the tightest deadline here.
        self.heartbeat_slots().await;
        if self.restate_claims.swap(false, Ordering::Relaxed) {
            self.ledger.reassert(&self.rules).await;
        }
        self.ledger.forget_old_claims(&self.rules);
        let idle_before = store
            .now_ms()
            .saturating_sub(self.sync_interval.as_millis() as u64);
        self.ledger.hand_back(&self.rules, idle_before).await;
        self.send_spend().await;
    }
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
