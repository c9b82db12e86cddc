//! The background half of shared limits, every `sync_interval`: Redis'
//! clock read again, the concurrency slots' heartbeat, claims restated
//! after Redis failed, idle lease budget handed back, and settled spend
//! sent. A process that exits (or a limiter a reload replaced) hands
//! everything back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::limiter::{Limiter, Shared};
use super::rules::{is_current, ttl_secs};
use crate::config::LimitCounts;
use crate::observability::metrics::metrics;

impl Limiter {
    /// The background half of shared limits; `None` without Redis.
    pub fn sync_service(self: &Arc<Self>) -> Option<LimitSync> {
        self.shared.as_ref().map(|_| LimitSync {
            limiter: self.clone(),
        })
    }

    /// Hands every unspent lease back to Redis (hybrid mode), so a process
    /// that exits does not take a slice of every limit with it, and sends
    /// the spend it booked since the last sync.
    pub async fn return_leases(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        self.heartbeat_slots(shared).await;
        let returned = self.ledger.hand_back(self.rules(), u64::MAX).await;
        if returned > 0 {
            log::info!("handed {returned} unspent units of limit leases back to Redis");
        }
        self.send_spend(shared).await;
    }

    /// A reload replaced this limiter, but requests it admitted still settle
    /// here: keep handing idle leases back and sending spend until the last
    /// of them has ended (an hour at most), then return everything.
    pub async fn retire(self: Arc<Self>) {
        let Some(shared) = &self.shared else {
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3600);
        while Arc::strong_count(&self) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(shared.sync_interval).await;
            self.sync_once(shared).await;
        }
        self.return_leases().await;
    }

    async fn sync_once(&self, shared: &Shared) {
        let store = &shared.store;
        match store.sync_clock().await {
            Ok(()) => {
                self.redis_ok();
                self.check_marker(shared).await;
                self.check_persistence(shared).await;
            }
            Err(e) => {
                metrics().rate_limit_redis_errors.inc();
                log::debug!("Redis clock sync failed: {}", e.0);
            }
        }
        metrics()
            .rate_limit_sync_age
            .set(store.last_ok_age_secs().min(1e9));
        // First: the slots' expiry is the tightest deadline here.
        self.heartbeat_slots(shared).await;
        if shared.health.take_restate() {
            self.ledger.reassert(self.rules()).await;
        }
        self.ledger.forget_old_claims(self.rules());
        let idle_before = store
            .now_ms()
            .saturating_sub(shared.sync_interval.as_millis() as u64);
        self.ledger.hand_back(self.rules(), idle_before).await;
        self.send_spend(shared).await;
    }

    /// Reads the marker of Redis' data: another one than last time means
    /// Redis restarted empty (or was flushed) even if no call failed, so
    /// the restate below runs now and shares hold while replicas settle.
    async fn check_marker(&self, shared: &Shared) {
        let candidate = format!("{}@{}", shared.replica, shared.store.now_ms());
        let marker = match shared.store.marker(&candidate).await {
            Ok(marker) => marker,
            Err(e) => {
                metrics().rate_limit_redis_errors.inc();
                log::debug!("cannot read the marker of Redis' data: {}", e.0);
                return;
            }
        };
        let before = shared
            .marker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(marker.clone());
        if before.is_some_and(|before| before != marker) {
            self.redis_lost("its marker key changed");
        }
    }

    /// Once: budgets and other long windows live in Redis, so an empty
    /// restart loses what replicas that are not running took of them.
    /// Say so at start when Redis keeps no append-only file.
    async fn check_persistence(&self, shared: &Shared) {
        use std::sync::atomic::Ordering;
        if shared.persistence_checked.swap(true, Ordering::Relaxed) {
            return;
        }
        let long: Vec<&str> = self
            .rules()
            .iter()
            .filter(|r| r.window.seconds() >= 3600 || r.counts == LimitCounts::CostUsd)
            .map(|r| r.name.as_str())
            .collect();
        if long.is_empty() {
            return;
        }
        match shared.store.appends_to_disk().await {
            Ok(Some(false)) => log::warn!(
                "limits: Redis writes no append-only file (appendonly no): if it restarts empty, \
                 the rules {long:?} keep only what the replicas then running remember of their \
                 current windows; run Redis with appendonly yes for budgets that must survive"
            ),
            Ok(_) => {}
            Err(e) => log::debug!("cannot read Redis' persistence settings: {}", e.0),
        }
    }

    /// Hands idle slots back and renews this replica's hold on the rest
    /// (the heartbeat that keeps them counted).
    async fn heartbeat_slots(&self, shared: &Shared) {
        if shared.health.is_down() {
            // The fields expire meanwhile; the first sync that finds Redis
            // back rewrites them.
            return;
        }
        for (counter, lease) in shared.slots.all() {
            let Some(rule) = self.rules().get(counter.rule) else {
                continue;
            };
            // Not while a request is asking Redis for a slot of it: the two
            // would race to set this replica's field.
            let refill = lease.refill_lock().await;
            let held = lease.release_idle();
            let told = shared
                .store
                .hold_slots(&rule.slots_key(&counter), held, shared.slot_ttl_ms)
                .await;
            drop(refill);
            match told {
                Ok(()) if held == 0 => shared.slots.forget_if_idle(&counter, &lease),
                Ok(()) => {}
                Err(e) => {
                    metrics().rate_limit_redis_errors.inc();
                    log::debug!("cannot renew concurrency slots in Redis: {}", e.0);
                }
            }
        }
    }

    /// Adds the spend settled since the last sync to Redis and publishes the
    /// reservations this replica holds; what fails is sent next time.
    async fn send_spend(&self, shared: &Shared) {
        let store = &shared.store;
        let now = store.now_ms();
        let updates = self.spend.take_updates(is_current(self.rules(), now));
        let mut failed = Vec::new();
        for update in updates {
            let Some(rule) = self.rules().get(update.counter.rule) else {
                continue;
            };
            let keys = rule.spend_keys(&update.counter, update.window_id);
            let reserved = update.reserved.map(|r| (shared.replica.as_str(), r, now));
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
}

/// Runs the limiter's sync every `sync_interval` until shutdown.
pub struct LimitSync {
    limiter: Arc<Limiter>,
}

#[async_trait]
impl BackgroundService for LimitSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(shared) = &self.limiter.shared else {
            return;
        };
        loop {
            self.limiter.sync_once(shared).await;
            tokio::select! {
                _ = tokio::time::sleep(shared.sync_interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
