//! The limiter: the rules, admission (all rules or none), settlement, and
//! the policy when Redis fails. Where counts are kept is the
//! [`Ledger`]'s business; what is shared through Redis (its store, its
//! health, the concurrency slots) is [`Shared`]'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::health::{RedisHealth, Transition};
use super::ledger::{write_through, Charge as Outcome, Ledger, Spot};
use super::local::LocalCounters;
use super::rules::{reset_in_ms, window_id, Counter, RequestFacts, Rule};
use super::settings::Limits;
use super::slots::{SlotGuard, SlotLease, SlotTable};
use super::spend::{self, Source, SpendBook, SpendError, SpendLine, SpendQuery};
use super::store::{epoch_ms, RedisStore};
use super::{Admission, Charge, Charged, Refused, RefusedKind, Slot, Standing};
use crate::config::{LimitCounts, LimitMode, RedisFailure};
use crate::observability::metrics::metrics;

/// How long requests skip a failing Redis before trying it again.
const REDIS_BACKOFF_MS: u64 = 1000;

pub struct Limiter {
    rules: RuleBook,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub default_max_tokens: u64,
    pub(super) ledger: Ledger,
    /// Local mode's counts and concurrency slots.
    local: LocalCounters,
    /// What budget rules spent, for `/v1/spend`.
    pub(super) spend: SpendBook,
    /// Hybrid and redis modes: what is shared through Redis.
    pub(super) shared: Option<Shared>,
}

/// The configured rules, by place, by name, and those charged to every
/// request.
pub(super) struct RuleBook {
    /// By index: counters name their rule by its place here.
    pub all: Vec<Arc<Rule>>,
    by_name: HashMap<String, Arc<Rule>>,
    global: Vec<Arc<Rule>>,
}

/// What the replicas share through Redis.
pub(super) struct Shared {
    pub store: Arc<RedisStore>,
    pub health: RedisHealth,
    pub on_error: RedisFailure,
    /// When Redis is down each replica spends limit / this.
    pub replicas: u64,
    pub sync_interval: Duration,
    /// Concurrency slots leased from Redis.
    pub slots: SlotTable,
    /// How long Redis counts a replica's slots without a heartbeat.
    pub slot_ttl_ms: u64,
    /// How this process signs the reservations it publishes in Redis.
    pub replica: String,
    /// The marker of Redis' data last read (`store::MARKER`): another one
    /// means Redis lost its data.
    pub marker: std::sync::Mutex<Option<String>>,
    /// Whether Redis' persistence was checked yet (once, for budgets).
    pub persistence_checked: std::sync::atomic::AtomicBool,
}

impl Limiter {
    /// The limiter of the `limits` settings; an error only when the Redis
    /// client cannot be built (which the lowering checked already).
    pub fn new(settings: &Limits) -> Result<Self, String> {
        let all: Vec<Arc<Rule>> = settings
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| Arc::new(Rule::new(index, rule)))
            .collect();
        let by_name: HashMap<String, Arc<Rule>> = all
            .iter()
            .map(|rule| (rule.name.clone(), rule.clone()))
            .collect();
        let global = settings
            .global_rules
            .iter()
            .filter_map(|name| by_name.get(name).cloned())
            .collect();
        for rule in &all {
            metrics()
                .rate_limit_hits
                .with_label_values(&[&rule.name, rule.counts.as_str()]);
        }
        let replica = super::replica_name();
        // This limiter's own field in Redis' per-replica hashes: a reload's
        // new limiter and the old one, still settling its requests, count
        // apart.
        static LIMITERS: AtomicU64 = AtomicU64::new(0);
        let field = format!("{replica}#{}", LIMITERS.fetch_add(1, Ordering::Relaxed));
        let (ledger, shared) = match (settings.mode, &settings.redis) {
            (LimitMode::Local, _) | (_, None) => (Ledger::Local, None),
            (mode, Some(r)) => {
                let client = r
                    .connection
                    .client()
                    .map_err(|e| format!("cannot set up the Redis client for limits: {e}"))?;
                let store = Arc::new(RedisStore::new(client, r.timeout, &field));
                let ledger = match mode {
                    LimitMode::Hybrid => Ledger::Lease {
                        store: store.clone(),
                        leases: Default::default(),
                        fraction: r.lease_fraction,
                        claims: Default::default(),
                    },
                    _ => Ledger::Redis {
                        store: store.clone(),
                        claims: Default::default(),
                    },
                };
                let shared = Shared {
                    store,
                    health: RedisHealth::default(),
                    on_error: r.on_error,
                    replicas: u64::from(r.expected_replicas.max(1)),
                    sync_interval: r.sync_interval,
                    slots: SlotTable::default(),
                    slot_ttl_ms: super::slot_ttl(r.sync_interval),
                    replica,
                    marker: Default::default(),
                    persistence_checked: Default::default(),
                };
                (ledger, Some(shared))
            }
        };
        Ok(Self {
            rules: RuleBook {
                all,
                by_name,
                global,
            },
            default_max_tokens: settings.default_max_tokens,
            ledger,
            local: LocalCounters::default(),
            spend: SpendBook::default(),
            shared,
        })
    }

    /// The rules a request is charged: global, the route's, the caller's.
    pub fn rules_for<'a>(&self, names: impl Iterator<Item = &'a String>) -> Vec<Arc<Rule>> {
        let mut out = self.rules.global.clone();
        for name in names {
            if let Some(rule) = self.rules.by_name.get(name) {
                if !out.iter().any(|r| Arc::ptr_eq(r, rule)) {
                    out.push(rule.clone());
                }
            }
        }
        out
    }

    pub(super) fn rules(&self) -> &[Arc<Rule>] {
        &self.rules.all
    }

    /// Now, on the shared clock when there is one.
    pub(super) fn now_ms(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or_else(epoch_ms, |shared| shared.store.now_ms())
    }

    /// Charges every rule; all or nothing.
    pub async fn admit(
        &self,
        rules: &[Arc<Rule>],
        facts: &RequestFacts<'_>,
        reserve: Charge,
    ) -> Result<Admission, Refused> {
        let mut admission = Admission::default();
        for rule in rules {
            let counter = rule.counter_for(facts);
            if rule.counts == LimitCounts::Concurrent {
                let entered = match &self.shared {
                    Some(shared) => self
                        .enter_shared(rule, &counter, shared)
                        .await
                        .map(Slot::Shared),
                    None => self
                        .local
                        .enter(&counter, rule.limit)
                        .map(Slot::Local)
                        .ok_or(RefusedKind::Limited),
                };
                match entered {
                    Ok(slot) => admission.slots.push(slot),
                    Err(kind) => {
                        self.undo(&admission).await;
                        return Err(self.refuse(rule, kind, 0));
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
                Err(kind) => {
                    self.undo(&admission).await;
                    return Err(self.refuse(rule, kind, reset_ms));
                }
            }
        }
        Ok(admission)
    }

    /// A concurrency slot shared across replicas: one this replica holds,
    /// else one more from Redis, else (Redis failing) one of its share.
    async fn enter_shared(
        &self,
        rule: &Rule,
        counter: &Counter,
        shared: &Shared,
    ) -> Result<SlotGuard, RefusedKind> {
        let lease = shared.slots.get(counter);
        if let Some(slot) = lease.try_enter() {
            return Ok(slot);
        }
        let _refill = lease.refill_lock().await;
        if let Some(slot) = lease.try_enter() {
            return Ok(slot);
        }
        if !shared.health.shared_now(self.now_ms()) {
            return Self::slots_fallback(shared, rule, &lease);
        }
        let (held, _) = lease.counts();
        let key = rule.slots_key(counter);
        match shared
            .store
            .take_slots(&key, rule.limit, 1, held, shared.slot_ttl_ms)
            .await
        {
            Ok((granted, _)) => {
                self.redis_ok();
                lease.grant(granted);
                lease.try_enter().ok_or(RefusedKind::Limited)
            }
            Err(e) => {
                self.redis_failed(&e.0);
                Self::slots_fallback(shared, rule, &lease)
            }
        }
    }

    fn slots_fallback(
        shared: &Shared,
        rule: &Rule,
        lease: &Arc<SlotLease>,
    ) -> Result<SlotGuard, RefusedKind> {
        let share = shared.failure_share(rule)?;
        lease.try_enter_share(share).ok_or(RefusedKind::Limited)
    }

    fn refuse(&self, rule: &Rule, kind: RefusedKind, reset_ms: u64) -> Refused {
        metrics()
            .rate_limit_hits
            .with_label_values(&[&rule.name, rule.counts.as_str()])
            .inc();
        Refused {
            rule: rule.name.clone(),
            counts: rule.counts,
            window: rule.window,
            kind,
            retry_after: Duration::from_secs(reset_ms.div_ceil(1000).max(1)),
            standing: Standing {
                limit: rule.limit,
                remaining: 0,
                reset_ms,
            },
        }
    }

    /// One charge in the ledger, or on the fallback share while Redis fails:
    /// (remaining, on the fallback share), or why it was refused.
    async fn charge(&self, at: &Spot<'_>, amount: u64) -> Result<(u64, bool), RefusedKind> {
        if let Some(shared) = &self.shared {
            if !shared.health.shared_now(at.now_ms) {
                return self.fallback(shared, at, amount).await;
            }
        }
        match self.ledger.charge(&self.local, at, amount).await {
            Outcome::Admitted { remaining } => {
                self.redis_ok();
                Ok((remaining, false))
            }
            Outcome::Refused => {
                self.redis_ok();
                Err(RefusedKind::Limited)
            }
            outcome => {
                let Some(shared) = &self.shared else {
                    return Err(RefusedKind::Limited);
                };
                match outcome {
                    Outcome::Unavailable(e) => self.redis_failed(&e.0),
                    Outcome::Lost => {
                        self.redis_lost("a counter this replica had a part of is gone")
                    }
                    _ => {}
                }
                self.fallback(shared, at, amount).await
            }
        }
    }

    /// Redis answered a call.
    pub(super) fn redis_ok(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        shared.store.clear_backoff();
        if shared
            .health
            .answered(self.now_ms(), Self::settle_ms(shared))
            == Transition::CameBack
        {
            metrics()
                .rate_limit_redis_transitions
                .with_label_values(&["shared"])
                .inc();
            log::warn!("Redis is back: limits are shared across replicas again");
        }
    }

    /// Every replica notices Redis back within its backoff and a sync, and
    /// restates at that sync: shares hold this long after this replica
    /// noticed.
    fn settle_ms(shared: &Shared) -> u64 {
        REDIS_BACKOFF_MS + 2 * shared.sync_interval.as_millis() as u64
    }

    /// Redis answers but lost its data (restarted empty, `why`): restate,
    /// and keep to shares while every replica does the same.
    pub(super) fn redis_lost(&self, why: &str) {
        let Some(shared) = &self.shared else {
            return;
        };
        if shared.health.lost(self.now_ms(), Self::settle_ms(shared)) {
            metrics()
                .rate_limit_redis_transitions
                .with_label_values(&["emptied"])
                .inc();
            log::error!(
                "Redis lost the limits' counts ({why}: restarted empty?); every replica restates \
                 what it took of the current windows, and limits keep to per-replica shares until then"
            );
        }
    }

    /// A call to Redis failed.
    fn redis_failed(&self, error: &str) {
        let Some(shared) = &self.shared else {
            return;
        };
        metrics().rate_limit_redis_errors.inc();
        shared.store.back_off(self.now_ms() + REDIS_BACKOFF_MS);
        if shared.health.failed() == Transition::WentDown {
            metrics()
                .rate_limit_redis_transitions
                .with_label_values(&["fallback"])
                .inc();
            log::error!(
                "Redis unavailable for limits ({error}); {}",
                match shared.on_error {
                    RedisFailure::Open => "failing open on per-replica shares of each limit",
                    RedisFailure::Closed429 => "refusing limited requests as over their limit",
                    RedisFailure::Closed503 => "refusing limited requests as unavailable",
                }
            );
        }
    }

    /// While Redis fails, or replicas settle after it: take from this
    /// replica's share, or refuse. The share (`limit / expected_replicas`)
    /// covers all this replica took of the window, before the failure too,
    /// so replicas that fail together stay within the limit together; what
    /// they take while Redis is gone is restated when it is back. While
    /// they settle (Redis answers) each charge is also written to Redis at
    /// once: a restate done before it could not carry it, and a replica
    /// that ends its settling first must not lease it again.
    async fn fallback(
        &self,
        shared: &Shared,
        at: &Spot<'_>,
        amount: u64,
    ) -> Result<(u64, bool), RefusedKind> {
        let share = shared.failure_share(at.rule)?;
        let claims = self.ledger.claims().ok_or(RefusedKind::Limited)?;
        let taken = claims
            .take_within(at.counter, at.window_id, amount, share)
            .ok_or(RefusedKind::Limited)?;
        let remaining = share.saturating_sub(taken);
        if !shared.health.settling(at.now_ms) {
            return Ok((remaining, true));
        }
        match write_through(&self.ledger, at.rule, at.counter, at.window_id, amount).await {
            // In Redis like any charge: settled and undone through the ledger.
            Ok(()) => Ok((remaining, false)),
            Err(e) => {
                self.redis_failed(&e);
                Ok((remaining, true))
            }
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
            return;
        }
        let recorded = self
            .ledger
            .adjust(&self.local, &c.rule, &c.counter, c.window_id, delta)
            .await;
        if let (false, Some(shared)) = (recorded, &self.shared) {
            // Redis missed it; the claim has it: restate at next sync.
            shared.health.restate_later();
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

    /// Whether counts are shared through Redis (hybrid and redis modes).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The current window's spend of the budget rules the query names:
    /// this replica's in local mode, the cluster's (from Redis) otherwise.
    pub async fn spend(&self, query: SpendQuery<'_>) -> Result<Vec<SpendLine>, SpendError> {
        let now = self.now_ms();
        let source = match &self.shared {
            None => Source::Book,
            Some(shared) => Source::Redis {
                store: &shared.store,
                // A replica republishes what it holds every sync.
                fresh_after_ms: now
                    .saturating_sub(3 * shared.sync_interval.as_millis() as u64 + 2000),
            },
        };
        spend::report(self.rules(), &self.spend, source, now, query).await
    }

    /// Whether the configured Redis answers, for `ai-api-gateway
    /// check-redis`: where it is, the round trip of a `PING`, and the clock
    /// offset limits will use. Never prints the password.
    pub async fn check_redis(&self) -> Result<String, String> {
        let store = &self
            .shared
            .as_ref()
            .ok_or("limits use no Redis (no `limits.redis`, or `mode: local`)")?
            .store;
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
}

impl Shared {
    /// While Redis fails: the share of `rule` this replica may take
    /// (`on_error: open`), or how to refuse.
    fn failure_share(&self, rule: &Rule) -> Result<u64, RefusedKind> {
        match self.on_error {
            RedisFailure::Open => Ok((rule.limit / self.replicas).max(1)),
            RedisFailure::Closed429 => Err(RefusedKind::Limited),
            RedisFailure::Closed503 => Err(RefusedKind::Unavailable),
        }
    }
}

/// The refusal paths, without a socket: local counts, and the policy while
/// Redis is down (marked down, so no call is made).
#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limits: &str) -> Limiter {
        let text = format!(
            "limits:\n{limits}\nupstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\nroutes:\n  - {{name: r, paths: [/v1], upstream: u}}\n"
        );
        let settings = crate::settings::load_str(&text, "test.yaml", |_| None).unwrap();
        Limiter::new(&settings.limits).unwrap()
    }

    fn facts(key: &str) -> RequestFacts<'_> {
        RequestFacts {
            api_key: Some(key),
            route: "r",
            ..Default::default()
        }
    }

    async fn admit(limiter: &Limiter, key: &str) -> Result<Admission, Refused> {
        let rules = limiter.rules_for(limiter.rules().iter().map(|r| &r.name));
        limiter.admit(&rules, &facts(key), Charge::default()).await
    }

    async fn refused(limiter: &Limiter, key: &str) -> Refused {
        match admit(limiter, key).await {
            Err(refused) => refused,
            Ok(_) => panic!("admitted"),
        }
    }

    #[tokio::test]
    async fn a_spent_window_refuses_until_its_end() {
        let limiter = limiter(
            "  rules:\n    - {name: two, key: [api_key], counts: requests, limit: 2, window: hour}",
        );
        let _a = admit(&limiter, "k").await.ok().unwrap();
        let b = admit(&limiter, "k").await.ok().unwrap();
        assert_eq!(b.requests.map(|s| s.remaining), Some(0));
        let refused = refused(&limiter, "k").await;
        assert_eq!(refused.rule, "two");
        assert_eq!(refused.kind, RefusedKind::Limited);
        assert!(refused.retry_after >= Duration::from_secs(1));
        assert!(refused.retry_after <= Duration::from_secs(3600));
        assert_eq!(refused.standing.remaining, 0);
        // Another key counts apart.
        assert!(admit(&limiter, "other").await.is_ok());
    }

    #[tokio::test]
    async fn a_concurrency_slot_is_free_again_when_its_request_ends() {
        let limiter = limiter(
            "  rules:\n    - {name: one, key: [api_key], counts: concurrent, limit: 1, window: minute}",
        );
        let first = admit(&limiter, "k").await.ok().unwrap();
        let refused = refused(&limiter, "k").await;
        assert_eq!(
            (refused.kind, refused.retry_after),
            (RefusedKind::Limited, Duration::from_secs(1))
        );
        drop(first);
        assert!(admit(&limiter, "k").await.is_ok());
    }

    /// While Redis is down, the configured policy decides, and nothing
    /// waits on Redis.
    #[tokio::test]
    async fn while_redis_is_down_the_policy_decides() {
        let redis_limiter = |on_error: &str| {
            limiter(&format!(
                "  mode: hybrid\n  redis: {{url: \"redis://127.0.0.1:1\", expected_replicas: 2, on_error: {on_error}}}\n  rules:\n    - {{name: four, key: [api_key], counts: requests, limit: 4, window: hour}}"
            ))
        };
        for (on_error, kind) in [
            ("closed503", RefusedKind::Unavailable),
            ("closed429", RefusedKind::Limited),
        ] {
            let limiter = redis_limiter(on_error);
            limiter.shared.as_ref().unwrap().health.failed();
            let refused = refused(&limiter, "k").await;
            assert_eq!(refused.kind, kind, "{on_error}");
        }
        // Open: this replica's share, limit / expected replicas.
        let limiter = redis_limiter("open");
        limiter.shared.as_ref().unwrap().health.failed();
        for _ in 0..2 {
            assert!(admit(&limiter, "k").await.is_ok());
        }
        let refused = refused(&limiter, "k").await;
        assert_eq!(refused.kind, RefusedKind::Limited);
    }
}
