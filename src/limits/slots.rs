//! Concurrency shared across replicas (`counts: concurrent` in hybrid and
//! redis modes). A replica holds slots leased from Redis, one at a time as
//! requests need them; a request takes a held slot and frees it when it
//! ends, and each sync hands the idle ones back. In Redis a counter is a
//! hash with a field per replica, `held@expiry`: the sync rewrites this
//! replica's field with a new expiry (the heartbeat), and fields whose
//! expiry passed (a replica that died without a word) no longer count and
//! are removed. A replica never uses more slots than Redis granted it, so
//! the replicas together never admit more than the limit.
//!
//! While Redis fails, a replica may use up to its share
//! (`limit / expected_replicas`) of slots, the slots it held included; what
//! it uses is what it reports when Redis is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::rules::Counter;

/// One counter's slots in this replica: how many it holds from Redis and
/// how many requests use, packed in one word so both change together.
pub struct SlotLease {
    /// High half: held; low half: in use.
    state: AtomicU64,
    /// Single flight for asking Redis.
    refill: tokio::sync::Mutex<()>,
}

fn pack(held: u64, in_use: u64) -> u64 {
    (held.min(u32::MAX as u64) << 32) | in_use.min(u32::MAX as u64)
}

fn unpack(state: u64) -> (u64, u64) {
    (state >> 32, state & u32::MAX as u64)
}

impl SlotLease {
    fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// (held, in use).
    pub fn counts(&self) -> (u64, u64) {
        unpack(self.state.load(Ordering::Acquire))
    }

    fn update(&self, f: impl Fn(u64, u64) -> Option<(u64, u64)>) -> Option<(u64, u64)> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (held, in_use) = unpack(current);
            let (new_held, new_in_use) = f(held, in_use)?;
            match self.state.compare_exchange_weak(
                current,
                pack(new_held, new_in_use),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((new_held, new_in_use)),
                Err(seen) => current = seen,
            }
        }
    }

    /// Takes a held slot that no request uses.
    pub fn try_enter(self: &Arc<Self>) -> Option<SlotGuard> {
        self.update(|held, in_use| (in_use < held).then_some((held, in_use + 1)))
            .map(|_| SlotGuard(self.clone()))
    }

    /// While Redis fails: takes a slot while this replica uses fewer than
    /// `share`, the slots it held included; a slot beyond what it holds is
    /// held from then on, to be reported.
    pub fn try_enter_share(self: &Arc<Self>, share: u64) -> Option<SlotGuard> {
        self.update(|held, in_use| (in_use < share).then_some((held.max(in_use + 1), in_use + 1)))
            .map(|_| SlotGuard(self.clone()))
    }

    /// Redis granted `n` more slots.
    pub fn grant(&self, n: u64) {
        self.update(|held, in_use| Some((held + n, in_use)));
    }

    /// Hands back the slots no request uses: what is held from now on.
    pub fn release_idle(&self) -> u64 {
        self.update(|_, in_use| Some((in_use, in_use)))
            .map_or(0, |(held, _)| held)
    }

    pub async fn refill_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.refill.lock().await
    }
}

/// A slot a request uses; freed when the request ends (dropped).
pub struct SlotGuard(Arc<SlotLease>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0
            .update(|held, in_use| Some((held, in_use.saturating_sub(1))));
    }
}

#[derive(Default)]
pub struct SlotTable {
    by_counter: Mutex<HashMap<Counter, Arc<SlotLease>>>,
}

impl SlotTable {
    pub fn get(&self, counter: &Counter) -> Arc<SlotLease> {
        let mut leases = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        leases
            .entry(counter.clone())
            .or_insert_with(|| Arc::new(SlotLease::new()))
            .clone()
    }

    /// Every counter's lease, for the heartbeat.
    pub fn all(&self) -> Vec<(Counter, Arc<SlotLease>)> {
        let leases = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        leases
            .iter()
            .map(|(counter, lease)| (counter.clone(), lease.clone()))
            .collect()
    }

    /// Forgets `lease` if it is still the counter's, holds nothing and no
    /// request uses it. Called only after Redis was told it holds nothing:
    /// a lease made afresh before that could have its field erased by the
    /// telling.
    pub fn forget_if_idle(&self, counter: &Counter, lease: &Arc<SlotLease>) {
        let mut leases = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        let idle = leases.get(counter).is_some_and(|current| {
            // The map's reference and the caller's: no request holds it.
            Arc::ptr_eq(current, lease) && lease.counts() == (0, 0) && Arc::strong_count(lease) == 2
        });
        if idle {
            leases.remove(counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_used_within_what_is_held_and_idle_ones_go_back() {
        let table = SlotTable::default();
        let lease = table.get(&Counter::new(0, "|m=x"));
        assert!(lease.try_enter().is_none());
        lease.grant(2);
        let a = lease.try_enter().expect("a held slot");
        let b = lease.try_enter().expect("a held slot");
        assert!(lease.try_enter().is_none());
        drop(a);
        assert_eq!(lease.counts(), (2, 1));
        assert_eq!(lease.release_idle(), 1);
        assert_eq!(lease.counts(), (1, 1));
        drop(b);
        assert_eq!(lease.release_idle(), 0);
        // While Redis fails: up to the share, and what is used is held.
        let c = lease.try_enter_share(2).expect("within the share");
        let _d = lease.try_enter_share(2).expect("within the share");
        assert!(lease.try_enter_share(2).is_none());
        assert_eq!(lease.counts(), (2, 2));
        drop(c);
        assert_eq!(lease.counts(), (2, 1));
    }
}
