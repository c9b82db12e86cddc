//! Counters inside one replica: pingora-limits' `Rate` per window length
//! (local mode, and the fallback while Redis is away), exact counters for
//! calendar months (a `Rate` turns over at a fixed period from the process'
//! start, never on the 1st), and `Inflight` for concurrency rules.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pingora_limits::inflight::{Guard, Inflight};
use pingora_limits::rate::Rate;

use super::rules::Counter;
use crate::config::LimitWindow;

/// Count-min sketch size: 4 rows of 16 Ki slots keep collisions (which only
/// ever over-count) rare up to tens of thousands of live keys per window.
const HASHES: usize = 4;
const SLOTS: usize = 16 * 1024;

pub struct LocalCounters {
    rates: HashMap<LimitWindow, Rate>,
    /// Month rules: each counter's month and its use in it. One entry per
    /// counter, replaced when its month turns over.
    months: Mutex<HashMap<Counter, (u64, i64)>>,
    inflight: Inflight,
}

impl Default for LocalCounters {
    fn default() -> Self {
        let rates = [
            LimitWindow::Second,
            LimitWindow::Minute,
            LimitWindow::Hour,
            LimitWindow::Day,
        ]
        .into_iter()
        .map(|w| {
            (
                w,
                Rate::new_with_estimator_config(Duration::from_secs(w.seconds()), HASHES, SLOTS),
            )
        })
        .collect();
        Self {
            rates,
            months: Mutex::default(),
            inflight: Inflight::new(),
        }
    }
}

impl LocalCounters {
    /// Charges `n` against `limit` in window `window_id` of `window`;
    /// refused charges are undone. Returns (admitted, used after).
    pub fn charge(
        &self,
        window: LimitWindow,
        window_id: u64,
        key: &Counter,
        limit: u64,
        n: u64,
    ) -> (bool, u64) {
        if window == LimitWindow::Month {
            let mut months = self.months.lock().unwrap_or_else(|p| p.into_inner());
            let entry = month_entry(&mut months, key, window_id);
            let used = (*entry).max(0) as u64 + n;
            if used > limit {
                return (false, used - n);
            }
            *entry += n as i64;
            return (true, used);
        }
        let Some(rate) = self.rates.get(&window) else {
            return (true, 0);
        };
        let used = rate.observe(key, n as isize).max(0) as u64;
        if used > limit {
            rate.observe(key, -(n as isize));
            return (false, used - n);
        }
        (true, used)
    }

    /// Adds `delta` (negative gives back) without a check.
    pub fn adjust(&self, window: LimitWindow, window_id: u64, key: &Counter, delta: i64) {
        if window == LimitWindow::Month {
            let mut months = self.months.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, used)) = months.get_mut(key) {
                // A settlement for a month that has ended changes nothing.
                if *id == window_id {
                    *used += delta;
                }
            }
            return;
        }
        if let Some(rate) = self.rates.get(&window) {
            rate.observe(key, delta as isize);
        }
    }

    /// Holds one concurrency slot while the guard lives; `None` when full.
    pub fn enter(&self, key: &Counter, limit: u64) -> Option<Guard> {
        let (guard, count) = self.inflight.incr(key, 1);
        (count as u64 <= limit).then_some(guard)
    }
}

/// A counter's use in month `window_id`, started at 0 when its month turned.
fn month_entry<'a>(
    months: &'a mut HashMap<Counter, (u64, i64)>,
    key: &Counter,
    window_id: u64,
) -> &'a mut i64 {
    let entry = months.entry(key.clone()).or_insert((window_id, 0));
    if entry.0 != window_id {
        *entry = (window_id, 0);
    }
    &mut entry.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_refusals_cost_nothing() {
        let c = LocalCounters::default();
        let k = Counter::new(0, "|g=*");
        assert_eq!(c.charge(LimitWindow::Minute, 0, &k, 3, 2), (true, 2));
        assert_eq!(c.charge(LimitWindow::Minute, 0, &k, 3, 2), (false, 2));
        assert_eq!(c.charge(LimitWindow::Minute, 0, &k, 3, 1), (true, 3));
        c.adjust(LimitWindow::Minute, 0, &k, -2);
        assert!(c.charge(LimitWindow::Minute, 0, &k, 3, 2).0);
        assert!(
            c.charge(LimitWindow::Minute, 0, &Counter::new(1, "|g=*"), 3, 3)
                .0
        );
    }

    #[test]
    fn month_counts_are_exact_and_start_over_each_month() {
        let c = LocalCounters::default();
        let k = Counter::new(0, "|t=ml");
        assert_eq!(c.charge(LimitWindow::Month, 5, &k, 10, 7), (true, 7));
        assert_eq!(c.charge(LimitWindow::Month, 5, &k, 10, 4), (false, 7));
        c.adjust(LimitWindow::Month, 5, &k, -2);
        assert_eq!(c.charge(LimitWindow::Month, 5, &k, 10, 5), (true, 10));
        // A late settlement of last month leaves this month alone.
        assert_eq!(c.charge(LimitWindow::Month, 6, &k, 10, 1), (true, 1));
        c.adjust(LimitWindow::Month, 5, &k, 5);
        assert_eq!(c.charge(LimitWindow::Month, 6, &k, 10, 9), (true, 10));
    }

    #[test]
    fn concurrency_slots_free_on_drop() {
        let c = LocalCounters::default();
        let k = Counter::new(0, "|g=*");
        let a = c.enter(&k, 2);
        let b = c.enter(&k, 2);
        assert!(a.is_some() && b.is_some());
        assert!(c.enter(&k, 2).is_none());
        drop(a);
        assert!(c.enter(&k, 2).is_some());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the charges, what is admitted never exceeds the limit.
        #[test]
        fn admitted_never_exceeds_the_limit(limit in 1u64..1000, charges in proptest::collection::vec(1u64..100, 1..200)) {
            let counters = LocalCounters::default();
            let admitted: u64 = charges
                .iter()
                .filter(|&&n| counters.charge(LimitWindow::Hour, 0, &Counter::new(0, "k"), limit, n).0)
                .sum();
            prop_assert!(admitted <= limit);
        }
    }
}
