//! Whether requests may trust Redis with the shared counts right now.
//!
//! Redis is *down* from the first failed call until a call answers again.
//! When it answers after failing, this replica restates what it took of
//! every current window at its next sync (Redis may have lost it), and
//! requests keep to their per-replica shares until every replica had time
//! to do the same: the *settle* period, so none leases what another took
//! while Redis was gone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
pub struct RedisHealth {
    down: AtomicBool,
    /// The next sync restates this replica's claims.
    restate: AtomicBool,
    /// Requests keep to their shares until this time (cluster clock, ms).
    shared_again_at_ms: AtomicU64,
}

/// What a call's outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    /// Redis failed after answering.
    WentDown,
    /// Redis answered after failing.
    CameBack,
}

impl RedisHealth {
    /// Whether requests may ask Redis at `now_ms`: not while it is down
    /// (only the sync probes it, so recovery is always noticed there, where
    /// this replica restates its part first), nor while replicas settle.
    pub fn shared_now(&self, now_ms: u64) -> bool {
        !self.down.load(Ordering::Relaxed)
            && now_ms >= self.shared_again_at_ms.load(Ordering::Relaxed)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// A call answered at `now_ms`; after a failure, shares hold for
    /// `settle_ms` more and the next sync restates this replica's claims.
    pub fn answered(&self, now_ms: u64, settle_ms: u64) -> Transition {
        if !self.down.swap(false, Ordering::Relaxed) {
            return Transition::None;
        }
        self.restate.store(true, Ordering::Relaxed);
        self.shared_again_at_ms
            .store(now_ms + settle_ms, Ordering::Relaxed);
        Transition::CameBack
    }

    /// Redis answers but lost its data (it restarted empty before this
    /// replica saw it fail): as when it comes back, the next sync restates
    /// this replica's claims and shares hold for `settle_ms`. True when
    /// this is news (shares were not holding already).
    pub fn lost(&self, now_ms: u64, settle_ms: u64) -> bool {
        self.restate.store(true, Ordering::Relaxed);
        let before = self
            .shared_again_at_ms
            .fetch_max(now_ms + settle_ms, Ordering::Relaxed);
        before <= now_ms && !self.is_down()
    }

    /// Whether Redis answers but requests keep to their shares (replicas
    /// settling after it came back or lost its data).
    pub fn settling(&self, now_ms: u64) -> bool {
        !self.is_down() && !self.shared_now(now_ms)
    }

    /// A call failed.
    pub fn failed(&self) -> Transition {
        if self.down.swap(true, Ordering::Relaxed) {
            Transition::None
        } else {
            Transition::WentDown
        }
    }

    /// Redis missed a write this replica made: restate at the next sync.
    pub fn restate_later(&self) {
        self.restate.store(true, Ordering::Relaxed);
    }

    /// Whether this sync must restate the claims (and the flag is cleared).
    pub fn take_restate(&self) -> bool {
        self.restate.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_hold_from_a_failure_until_every_replica_settled() {
        let health = RedisHealth::default();
        assert!(health.shared_now(0));
        assert_eq!(health.answered(0, 100), Transition::None);
        assert_eq!(health.failed(), Transition::WentDown);
        assert_eq!(health.failed(), Transition::None);
        assert!(!health.shared_now(10));
        assert!(!health.take_restate());
        assert_eq!(health.answered(1000, 500), Transition::CameBack);
        assert!(!health.shared_now(1499));
        assert!(health.shared_now(1500));
        assert!(health.take_restate());
        assert!(!health.take_restate());
        health.restate_later();
        assert!(health.take_restate());
        // Data lost while answering: shares hold, a restate is due, once.
        assert!(!health.settling(2000));
        assert!(health.lost(2000, 500));
        assert!(!health.lost(2100, 500));
        assert!(health.settling(2499));
        assert!(health.shared_now(2600));
        assert!(health.take_restate());
    }
}
