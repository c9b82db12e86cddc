//! What this replica has taken of each counter's current window, as Redis
//! should know it: leases granted (less what was handed back), charges and
//! recorded usage, and what it admitted on its fallback share while Redis
//! failed.
//!
//! Redis keeps each replica's part of a window in its own hash field. When
//! Redis answers again after failing, the sync that finds it back raises
//! this replica's fields to these claims where Redis holds less, and
//! requests keep to their shares until every replica had time to do the
//! same. So a Redis that restarted empty, or a replica promoted after
//! losing the last writes, learns again what every replica took, and what
//! replicas admitted on their shares is counted before anything more is
//! leased: the window's total in Redis again equals what the cluster
//! admitted, and what is left is all that can be leased. (Raising only
//! then, not on every call: a call's claim can be older than a decrease of
//! the same replica that reached Redis first, and would undo it.)

use std::collections::HashMap;
use std::sync::Mutex;

use super::rules::Counter;

#[derive(Default)]
pub struct Claims {
    by_counter: Mutex<HashMap<Counter, Claim>>,
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    window_id: u64,
    taken: u64,
}

impl Claims {
    /// What this replica has taken of the counter's window.
    pub fn get(&self, counter: &Counter, window_id: u64) -> u64 {
        let claims = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        claims
            .get(counter)
            .filter(|c| c.window_id == window_id)
            .map_or(0, |c| c.taken)
    }

    /// Adds `delta` (negative: given back) to the counter's window, never
    /// below zero. A later window starts from zero; an earlier one is over
    /// and no longer claimed.
    pub fn add(&self, counter: &Counter, window_id: u64, delta: i64) {
        let mut claims = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        let claim = rolled(&mut claims, counter, window_id);
        if claim.window_id == window_id {
            claim.taken = claim.taken.saturating_add_signed(delta);
        }
    }

    /// Takes `amount` if what this replica took of the window stays within
    /// `cap` (its share while Redis fails); what it took after, or `None`.
    pub fn take_within(
        &self,
        counter: &Counter,
        window_id: u64,
        amount: u64,
        cap: u64,
    ) -> Option<u64> {
        let mut claims = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        let claim = rolled(&mut claims, counter, window_id);
        if claim.window_id != window_id || claim.taken.saturating_add(amount) > cap {
            return None;
        }
        claim.taken += amount;
        Some(claim.taken)
    }

    /// Every claim of a current window.
    pub fn current(&self, is_current: impl Fn(&Counter, u64) -> bool) -> Vec<(Counter, u64, u64)> {
        let claims = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        claims
            .iter()
            .filter(|(counter, claim)| claim.taken > 0 && is_current(counter, claim.window_id))
            .map(|(counter, claim)| (counter.clone(), claim.window_id, claim.taken))
            .collect()
    }

    /// Drops the claims of windows that ended.
    pub fn forget_ended(&self, is_current: impl Fn(&Counter, u64) -> bool) {
        let mut claims = self.by_counter.lock().unwrap_or_else(|p| p.into_inner());
        claims.retain(|counter, claim| is_current(counter, claim.window_id));
    }
}

/// The counter's claim, started afresh when `window_id` is a later window
/// (an earlier one is left as it is: it is over).
fn rolled<'a>(
    claims: &'a mut HashMap<Counter, Claim>,
    counter: &Counter,
    window_id: u64,
) -> &'a mut Claim {
    let claim = claims.entry(counter.clone()).or_insert(Claim {
        window_id,
        taken: 0,
    });
    if claim.window_id < window_id {
        *claim = Claim {
            window_id,
            taken: 0,
        };
    }
    claim
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_their_window_and_never_go_negative() {
        let claims = Claims::default();
        let c = Counter::new(0, "|k=a");
        claims.add(&c, 5, 10);
        claims.add(&c, 5, -3);
        assert_eq!(claims.get(&c, 5), 7);
        claims.add(&c, 5, -100);
        assert_eq!(claims.get(&c, 5), 0);
        claims.add(&c, 6, 4);
        assert_eq!(claims.get(&c, 6), 4);
        assert_eq!(claims.get(&c, 5), 0);
        // A late settlement of the old window changes nothing.
        claims.add(&c, 5, 9);
        assert_eq!(claims.get(&c, 6), 4);
        assert_eq!(claims.current(|_, w| w == 6), vec![(c.clone(), 6, 4)]);
        // A share of 10: 4 taken already, 6 more fit, the 7th does not.
        assert_eq!(claims.take_within(&c, 6, 6, 10), Some(10));
        assert_eq!(claims.take_within(&c, 6, 1, 10), None);
        assert!(claims.current(|_, w| w == 7).is_empty());
        // Window 6 ended: its claim goes.
        claims.forget_ended(|_, w| w == 7);
        assert_eq!(claims.get(&c, 6), 0);
    }
}
