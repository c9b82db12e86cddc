//! Budget leases (hybrid mode): a replica takes a slice of a window's budget
//! from Redis atomically and spends it locally, so no replica can spend what
//! the cluster did not grant it; slices left idle are handed back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Lease {
    pub window_id: AtomicU64,
    /// Budget held here and not spent; negative after usage settled over it.
    pub remaining: AtomicI64,
    /// The window's total use in Redis after our last grant.
    pub used_global: AtomicU64,
    /// Redis had nothing left in this window.
    pub exhausted: AtomicBool,
    pub last_spend_ms: AtomicU64,
    /// Single flight for refills.
    pub refill: tokio::sync::Mutex<()>,
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

#[derive(Default)]
pub struct LeaseTable {
    leases: Mutex<HashMap<String, Arc<Lease>>>,
}

impl LeaseTable {
    pub fn get(&self, counter: &str, window_id: u64) -> Arc<Lease> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lease) = leases.get(counter) {
            let lease = lease.clone();
            drop(leases);
            lease.roll(window_id);
            return lease;
        }
        let lease = Arc::new(Lease::new(window_id));
        leases.insert(counter.to_string(), lease.clone());
        lease
    }

    pub fn find(&self, counter: &str) -> Option<Arc<Lease>> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.get(counter).cloned()
    }

    /// Leases idle since `idle_before_ms` with budget left: the caller hands
    /// the budget back to Redis. Leases of ended windows are dropped.
    pub fn collect_idle(
        &self,
        idle_before_ms: u64,
        is_current: impl Fn(&str, u64) -> bool,
    ) -> Vec<(String, u64, i64)> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        leases.retain(|counter, lease| {
            let window = lease.window_id.load(Ordering::Acquire);
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

    #[test]
    fn spend_never_goes_below_zero() {
        let table = LeaseTable::default();
        let lease = table.get("c", 7);
        lease.remaining.store(3, Ordering::SeqCst);
        assert!(lease.try_spend(2, 1));
        assert!(!lease.try_spend(2, 1));
        assert!(lease.try_spend(1, 1));
        assert_eq!(lease.remaining.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_new_window_starts_empty() {
        let table = LeaseTable::default();
        let lease = table.get("c", 7);
        lease.remaining.store(5, Ordering::SeqCst);
        lease.exhausted.store(true, Ordering::SeqCst);
        let lease = table.get("c", 8);
        assert_eq!(lease.remaining.load(Ordering::SeqCst), 0);
        assert!(!lease.exhausted.load(Ordering::SeqCst));
    }

    #[test]
    fn idle_budget_is_collected_and_old_windows_dropped() {
        let table = LeaseTable::default();
        table.get("a", 1).remaining.store(4, Ordering::SeqCst);
        let busy = table.get("b", 1);
        busy.remaining.store(4, Ordering::SeqCst);
        busy.last_spend_ms.store(100, Ordering::SeqCst);
        table.get("old", 0).remaining.store(9, Ordering::SeqCst);
        let back = table.collect_idle(50, |_, w| w == 1);
        assert_eq!(back, vec![("a".to_string(), 1, 4)]);
        assert!(table.find("old").is_none());
        assert_eq!(busy.remaining.load(Ordering::SeqCst), 4);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Spends from a lease never take more than it holds.
        #[test]
        fn spends_stay_within_the_grant(grant in 0i64..1000, spends in proptest::collection::vec(1u64..50, 0..100)) {
            let table = LeaseTable::default();
            let lease = table.get("c", 1);
            lease.remaining.store(grant, Ordering::SeqCst);
            let spent: u64 = spends.iter().filter(|&&n| lease.try_spend(n, 1)).sum();
            prop_assert!(spent as i64 <= grant);
            prop_assert_eq!(lease.remaining.load(Ordering::SeqCst), grant - spent as i64);
        }
    }
}
