//! Budget leases (hybrid mode): a replica takes a slice of a window's budget
//! from Redis atomically and spends it locally, so no replica can spend what
//! the cluster did not grant it; slices left idle are handed back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::rules::Counter;

/// One counter's lease in its current window.
pub struct Lease {
    window_id: AtomicU64,
    /// Budget held here and not spent; negative after usage settled over it.
    remaining: AtomicI64,
    /// The window's total use in Redis after our last grant.
    used_global: AtomicU64,
    /// Redis had nothing left in this window.
    exhausted: AtomicBool,
    last_spend_ms: AtomicU64,
    /// Single flight for refills.
    refill: tokio::sync::Mutex<()>,
}

impl Lease {
    fn new(window_id: u64) -> Self {
        Self {
            window_id: AtomicU64::new(window_id),
            remaining: AtomicI64::new(0),
            used_global: AtomicU64::new(0),
            exhausted: AtomicBool::new(false),
            last_spend_ms: AtomicU64::new(0),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    pub fn window_id(&self) -> u64 {
        self.window_id.load(Ordering::Acquire)
    }

    /// Budget held and not spent (negative after usage settled over it).
    pub fn remaining(&self) -> i64 {
        self.remaining.load(Ordering::Acquire)
    }

    /// Budget held, as a count the client may see.
    pub fn held(&self) -> u64 {
        self.remaining().max(0) as u64
    }

    /// The window's total use in Redis after the last grant.
    pub fn used_global(&self) -> u64 {
        self.used_global.load(Ordering::Acquire)
    }

    /// Redis had nothing more to grant in this window.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Acquire)
    }

    /// Records a grant from Redis: `granted` more budget, the window's use
    /// after it, and whether that was all Redis had left.
    pub fn grant(&self, granted: u64, used_global: u64, exhausted: bool) {
        self.remaining.fetch_add(granted as i64, Ordering::AcqRel);
        self.used_global.store(used_global, Ordering::Release);
        if exhausted {
            self.exhausted.store(true, Ordering::Release);
        }
    }

    /// Budget a request gave back (refused elsewhere, or used less than it
    /// reserved) stays here to be spent or handed back.
    pub fn give_back(&self, n: u64) {
        self.remaining.fetch_add(n as i64, Ordering::AcqRel);
    }

    /// Waits for the right to ask Redis for more: one refill at a time.
    pub async fn refill_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.refill.lock().await
    }

    /// Moves the lease to `window_id` when the window turned over: what
    /// was left of the old window's grant is gone with it.
    pub fn roll(&self, window_id: u64) {
        let current = self.window_id.load(Ordering::Acquire);
        if current != window_id
            && self
                .window_id
                .compare_exchange(current, window_id, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.remaining.store(0, Ordering::Release);
            self.used_global.store(0, Ordering::Release);
            self.exhausted.store(false, Ordering::Release);
        }
    }

    /// Spends `n` from what is held; false (and nothing spent) when short.
    pub fn try_spend(&self, n: u64, now_ms: u64) -> bool {
        let n = n as i64;
        let mut current = self.remaining.load(Ordering::Acquire);
        loop {
            if current < n {
                return false;
            }
            match self.remaining.compare_exchange_weak(
                current,
                current - n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.last_spend_ms.store(now_ms, Ordering::Relaxed);
                    return true;
                }
                Err(seen) => current = seen,
            }
        }
    }
}

/// Unspent budget to hand back: a counter, its window, how much.
pub type Unspent = (Counter, u64, i64);

#[derive(Default)]
pub struct LeaseTable {
    leases: Mutex<HashMap<Counter, Arc<Lease>>>,
}

impl LeaseTable {
    /// The counter's lease, moved to `window_id` if its window turned over.
    pub fn get(&self, counter: &Counter, window_id: u64) -> Arc<Lease> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lease) = leases.get(counter) {
            let lease = lease.clone();
            drop(leases);
            lease.roll(window_id);
            return lease;
        }
        let lease = Arc::new(Lease::new(window_id));
        leases.insert(counter.clone(), lease.clone());
        lease
    }

    pub fn find(&self, counter: &Counter) -> Option<Arc<Lease>> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.get(counter).cloned()
    }

    /// Leases idle since `idle_before_ms` with budget left: the caller hands
    /// the budget back to Redis. Leases of ended windows are dropped.
    pub fn collect_idle(
        &self,
        idle_before_ms: u64,
        is_current: impl Fn(&Counter, u64) -> bool,
    ) -> Vec<Unspent> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        leases.retain(|counter, lease| {
            let window = lease.window_id();
            if !is_current(counter, window) {
                return false;
            }
            if lease.last_spend_ms.load(Ordering::Relaxed) < idle_before_ms {
                let left = lease.remaining.swap(0, Ordering::AcqRel);
                if left > 0 {
                    out.push((counter.clone(), window, left));
                } else if left < 0 {
                    lease.remaining.fetch_add(left, Ordering::AcqRel);
                }
            }
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(name: &str) -> Counter {
        Counter::new(0, name)
    }

    #[test]
    fn spend_never_goes_below_zero() {
        let table = LeaseTable::default();
        let lease = table.get(&counter("c"), 7);
        lease.grant(3, 3, false);
        assert!(lease.try_spend(2, 1));
        assert!(!lease.try_spend(2, 1));
        assert!(lease.try_spend(1, 1));
        assert_eq!(lease.remaining(), 0);
    }

    #[test]
    fn a_new_window_starts_empty() {
        let table = LeaseTable::default();
        let lease = table.get(&counter("c"), 7);
        lease.grant(5, 5, true);
        let lease = table.get(&counter("c"), 8);
        assert_eq!(lease.remaining(), 0);
        assert!(!lease.is_exhausted());
    }

    #[test]
    fn idle_budget_is_collected_and_old_windows_dropped() {
        let table = LeaseTable::default();
        table.get(&counter("a"), 1).grant(4, 4, false);
        let busy = table.get(&counter("b"), 1);
        busy.grant(5, 5, false);
        assert!(busy.try_spend(1, 100));
        table.get(&counter("old"), 0).grant(9, 9, false);
        let back = table.collect_idle(50, |_, w| w == 1);
        assert_eq!(back, vec![(counter("a"), 1, 4)]);
        assert!(table.find(&counter("old")).is_none());
        assert_eq!(busy.remaining(), 4);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Spends from a lease never take more than it holds.
        #[test]
        fn spends_stay_within_the_grant(grant in 0u64..1000, spends in proptest::collection::vec(1u64..50, 0..100)) {
            let table = LeaseTable::default();
            let lease = table.get(&Counter::new(0, "c"), 1);
            lease.grant(grant, grant, false);
            let spent: u64 = spends.iter().filter(|&&n| lease.try_spend(n, 1)).sum();
            prop_assert!(spent <= grant);
            prop_assert_eq!(lease.remaining(), grant as i64 - spent as i64);
        }
    }
}
