//! Where a rule's counts are kept: one interface over the three modes.
//!
//! - `Local`: this replica's counters (pingora-limits), nothing shared.
//! - `Lease` (hybrid): budget leased from Redis in slices and spent locally;
//!   idle slices are handed back.
//! - `Redis`: every decision is one atomic script in Redis.
//!
//! A ledger charges, adjusts what it charged (undo, settlement) and hands
//! back what it holds. What to do when Redis fails is the limiter's policy,
//! not the ledger's: a ledger reports [`Charge::Unavailable`].

use std::sync::Arc;

use super::claims::Claims;
use super::lease::LeaseTable;
use super::local::LocalCounters;
use super::rules::{is_current, ttl_secs, Counter, Rule};
use super::store::{Lost, RedisStore, StoreError};
use crate::observability::metrics::metrics;

/// A counter at a moment: what a ledger needs to charge it.
pub struct Spot<'a> {
    pub rule: &'a Rule,
    pub counter: &'a Counter,
    pub window_id: u64,
    /// Now, on the shared clock (ms).
    pub now_ms: u64,
}

/// What a ledger says to a charge.
pub enum Charge {
    /// Taken; this much of the limit is left.
    Admitted { remaining: u64 },
    /// The rule has no room for it.
    Refused,
    /// Redis could not be asked.
    Unavailable(StoreError),
    /// Redis failed moments ago; it was not asked again.
    BackingOff,
    /// Redis had lost this replica's part of the window (it restarted
    /// empty): the part is restored, nothing was charged.
    Lost,
}

pub enum Ledger {
    Local,
    Lease {
        store: Arc<RedisStore>,
        leases: LeaseTable,
        /// Share of a limit one lease takes.
        fraction: f64,
        claims: Claims,
    },
    Redis {
        store: Arc<RedisStore>,
        claims: Claims,
    },
}

impl Ledger {
    /// The Redis store behind the ledger, if any.
    fn store(&self) -> Option<&Arc<RedisStore>> {
        match self {
            Ledger::Local => None,
            Ledger::Lease { store, .. } | Ledger::Redis { store, .. } => Some(store),
        }
    }

    /// What this replica took of each window, for Redis to learn again.
    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Ledger::Local => None,
            Ledger::Lease { claims, .. } | Ledger::Redis { claims, .. } => Some(claims),
        }
    }

    pub async fn charge(&self, local: &LocalCounters, at: &Spot<'_>, amount: u64) -> Charge {
        let rule = at.rule;
        match self {
            Ledger::Local => {
                let (admitted, used) =
                    local.charge(rule.window, at.window_id, at.counter, rule.limit, amount);
                if admitted {
                    Charge::Admitted {
                        remaining: rule.limit.saturating_sub(used),
                    }
                } else {
                    Charge::Refused
                }
            }
            Ledger::Redis { store, claims } => {
                let key = rule.redis_key(at.counter, at.window_id);
                let claim = claims.get(at.counter, at.window_id);
                match store
                    .charge(&key, rule.limit, amount, ttl_secs(rule.window), claim)
                    .await
                {
                    Ok(Err(Lost)) => Charge::Lost,
                    Ok(Ok((true, used))) => {
                        claims.add(at.counter, at.window_id, amount as i64);
                        Charge::Admitted {
                            remaining: rule.limit.saturating_sub(used),
                        }
                    }
                    Ok(Ok((false, _))) => Charge::Refused,
                    Err(e) => Charge::Unavailable(e),
                }
            }
            Ledger::Lease {
                store,
                leases,
                fraction,
                claims,
            } => lease_charge(store, leases, claims, *fraction, at, amount).await,
        }
    }

    /// Moves a charge by `delta`: negative gives budget back (undo, usage
    /// under the reservation), positive records usage over it. False when
    /// Redis could not be told.
    pub async fn adjust(
        &self,
        local: &LocalCounters,
        rule: &Rule,
        counter: &Counter,
        window_id: u64,
        delta: i64,
    ) -> bool {
        if delta == 0 {
            return true;
        }
        match self {
            Ledger::Local => {
                local.adjust(rule.window, window_id, counter, delta);
                true
            }
            Ledger::Lease {
                store,
                leases,
                claims,
                ..
            } => {
                let same_window = leases
                    .find(counter)
                    .filter(|lease| lease.window_id() == window_id);
                match same_window {
                    // Budget given back stays in this replica's lease.
                    Some(lease) if delta < 0 => {
                        lease.give_back(delta.unsigned_abs());
                        true
                    }
                    // Usage over the reservation is recorded in Redis at once.
                    _ if delta > 0 => record(store, claims, rule, counter, window_id, delta).await,
                    // Its window is over: nothing left to give back.
                    _ => true,
                }
            }
            Ledger::Redis { store, claims } => {
                record(store, claims, rule, counter, window_id, delta).await
            }
        }
    }

    /// Hands back to Redis the budget of leases idle since `idle_before_ms`
    /// (all of it with `u64::MAX`); leases of ended windows are dropped.
    /// Returns how much Redis took back.
    pub async fn hand_back(&self, rules: &[Arc<Rule>], idle_before_ms: u64) -> i64 {
        let Ledger::Lease {
            store,
            leases,
            claims,
            ..
        } = self
        else {
            return 0;
        };
        let now = store.now_ms();
        let unspent = leases.collect_idle(idle_before_ms, is_current(rules, now));
        let mut returned = 0;
        for (counter, wid, amount) in unspent {
            let Some(rule) = rules.get(counter.rule) else {
                continue;
            };
            let key = rule.redis_key(&counter, wid);
            match store.adjust(&key, -amount, ttl_secs(rule.window)).await {
                Ok(_) => {
                    claims.add(&counter, wid, -amount);
                    returned += amount
                }
                Err(e) => {
                    metrics().rate_limit_redis_errors.inc();
                    log::debug!("cannot hand lease budget back to Redis: {}", e.0);
                }
            }
        }
        returned
    }

    /// Drops the claims of windows that ended.
    pub fn forget_old_claims(&self, rules: &[Arc<Rule>]) {
        if let (Some(store), Some(claims)) = (self.store(), self.claims()) {
            claims.forget_ended(is_current(rules, store.now_ms()));
        }
    }

    /// Raises this replica's part of every current window to what it took:
    /// after Redis failed or failed over, it may have lost writes.
    pub async fn reassert(&self, rules: &[Arc<Rule>]) {
        let (Some(store), Some(claims)) = (self.store(), self.claims()) else {
            return;
        };
        for (counter, window_id, taken) in claims.current(is_current(rules, store.now_ms())) {
            let Some(rule) = rules.get(counter.rule) else {
                continue;
            };
            let key = rule.redis_key(&counter, window_id);
            if let Err(e) = store.claim(&key, taken, ttl_secs(rule.window)).await {
                metrics().rate_limit_redis_errors.inc();
                log::debug!("cannot restate this replica's part of a limit: {}", e.0);
            }
        }
    }
}

/// Spends from the counter's lease, asking Redis for another slice when it
/// runs short (one request at a time asks).
async fn lease_charge(
    store: &RedisStore,
    leases: &LeaseTable,
    claims: &Claims,
    fraction: f64,
    at: &Spot<'_>,
    amount: u64,
) -> Charge {
    let rule = at.rule;
    let lease = leases.get(at.counter, at.window_id);
    let admitted = |lease: &super::lease::Lease| Charge::Admitted {
        remaining: rule.limit.saturating_sub(lease.used_global()) + lease.held(),
    };
    loop {
        if lease.try_spend(amount, at.now_ms) {
            return admitted(&lease);
        }
        if lease.is_exhausted() {
            return Charge::Refused;
        }
        let _refill = lease.refill_lock().await;
        if lease.remaining() >= amount as i64 {
            continue; // another request refilled it
        }
        if lease.is_exhausted() {
            return Charge::Refused;
        }
        if store.backing_off(store.now_ms()) {
            // The request before us found Redis failing.
            return Charge::BackingOff;
        }
        let slice = ((rule.limit as f64 * fraction).ceil() as u64).max(1);
        let short = (amount as i64 - lease.remaining()).max(0) as u64;
        let want = slice.max(short);
        let key = rule.redis_key(at.counter, at.window_id);
        let claim = claims.get(at.counter, at.window_id);
        match store
            .lease(&key, rule.limit, want, ttl_secs(rule.window), claim)
            .await
        {
            Ok(Err(Lost)) => return Charge::Lost,
            Ok(Ok((granted, used))) => {
                claims.add(at.counter, at.window_id, granted as i64);
                lease.grant(granted, used, granted < want);
                if granted < want {
                    return if lease.try_spend(amount, at.now_ms) {
                        admitted(&lease)
                    } else {
                        Charge::Refused
                    };
                }
            }
            Err(e) => return Charge::Unavailable(e),
        }
    }
}

/// Adds `amount` this replica took on its share to its part of the window in
/// Redis (the share, not Redis, decided): while replicas settle after Redis
/// came back, so that Redis knows every share's use before anyone leases
/// again. The error when Redis could not be told (the claim has it).
pub async fn write_through(
    ledger: &Ledger,
    rule: &Rule,
    counter: &Counter,
    window_id: u64,
    amount: u64,
) -> Result<(), String> {
    let store = ledger.store().ok_or("no Redis")?;
    let key = rule.redis_key(counter, window_id);
    store
        .adjust(&key, amount as i64, ttl_secs(rule.window))
        .await
        .map(|_| ())
        .map_err(|e| e.0)
}

/// Adds `delta` to a counter in Redis, counting a failure; false then. The
/// claim takes it either way, so the restate that follows a failure tells
/// Redis what it missed.
async fn record(
    store: &RedisStore,
    claims: &Claims,
    rule: &Rule,
    counter: &Counter,
    window_id: u64,
    delta: i64,
) -> bool {
    claims.add(counter, window_id, delta);
    let key = rule.redis_key(counter, window_id);
    match store.adjust(&key, delta, ttl_secs(rule.window)).await {
        Ok(_) => true,
        Err(e) => {
            metrics().rate_limit_redis_errors.inc();
            log::debug!("cannot record a limit adjustment in Redis: {}", e.0);
            false
        }
    }
}
