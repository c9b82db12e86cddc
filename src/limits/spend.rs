//! What budget (`cost_usd`) rules have spent, for `GET /v1/spend`.
//!
//! Each replica books, per counter and window, the spend it settled and the
//! reservations it holds for requests in flight. In local mode the book is
//! the answer. With Redis, each sync adds the newly settled spend to the
//! window's spend key and publishes this replica's reservations in a hash
//! (one field per replica, stamped with the time), so any replica answers
//! for the whole cluster. Spend counted while Redis was away stays in the
//! book until a sync delivers it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::rules::{is_current, window_bounds, window_id, Counter, Rule};
use super::store::RedisStore;
use crate::config::{LimitCounts, LimitWindow};

/// Most counters one `/v1/spend` answer lists per rule.
const MAX_LISTED: usize = 10_000;

/// One budget counter's standing in its current window.
#[derive(Debug, Clone)]
pub struct SpendLine {
    pub rule: String,
    /// The rule's key parts and this counter's values, as in config.
    pub key: Vec<(&'static str, String)>,
    pub window: LimitWindow,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    /// Micro-USD, as every amount here.
    pub limit: u64,
    pub spent: u64,
    pub reserved: u64,
}

/// Why spend cannot be shown.
#[derive(Debug)]
pub enum SpendError {
    /// No budget rule by that name.
    UnknownRule(String),
    /// Redis did not answer.
    Unavailable(String),
}

/// What `/v1/spend` asks for: a rule, and a counter by its key values
/// (in the rule's key order, joined by `,`); either may be left out.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpendQuery<'a> {
    pub rule: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// One counter's spend in its current window, on this replica.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Booked {
    pub window_id: u64,
    /// Settled in this window by this replica (micro-USD).
    pub spent: u64,
    /// Held for requests in flight (micro-USD).
    pub reserved: u64,
}

#[derive(Default)]
struct Entry {
    booked: Booked,
    /// Settled spend not yet added to Redis.
    unsent: u64,
    /// The reservation last published to Redis (`None`: never).
    published: Option<u64>,
}

/// What a sync sends to Redis for one counter and window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub counter: Counter,
    pub window_id: u64,
    /// Settled spend to add to the window's spend key.
    pub spent: u64,
    /// This replica's reservation, when it must be (re)published.
    pub reserved: Option<u64>,
}

#[derive(Default)]
pub struct SpendBook {
    entries: Mutex<HashMap<Counter, Entry>>,
    /// Spend settled into windows that had already turned over here.
    late: Mutex<Vec<Update>>,
}

impl SpendBook {
    fn with_entry<T>(
        &self,
        counter: &Counter,
        window_id: u64,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(counter.clone()).or_default();
        if entry.booked.window_id != window_id && window_id > entry.booked.window_id {
            if entry.unsent > 0 {
                self.late_spend(counter, entry.booked.window_id, entry.unsent);
            }
            *entry = Entry {
                booked: Booked {
                    window_id,
                    ..Booked::default()
                },
                // What was published for the old window is not this one's.
                published: None,
                unsent: 0,
            };
        }
        f(entry)
    }

    fn late_spend(&self, counter: &Counter, window_id: u64, spent: u64) {
        let mut late = self.late.lock().unwrap_or_else(|p| p.into_inner());
        late.push(Update {
            counter: counter.clone(),
            window_id,
            spent,
            reserved: None,
        });
    }

    /// A request was admitted holding `amount`.
    pub fn reserve(&self, counter: &Counter, window_id: u64, amount: u64) {
        self.with_entry(counter, window_id, |e| {
            if e.booked.window_id == window_id {
                e.booked.reserved += amount;
            }
        });
    }

    /// A request ended: its reservation of `reserved` becomes `used` spent.
    pub fn settle(&self, counter: &Counter, window_id: u64, reserved: u64, used: u64) {
        let current = self.with_entry(counter, window_id, |e| {
            if e.booked.window_id != window_id {
                return false;
            }
            e.booked.reserved = e.booked.reserved.saturating_sub(reserved);
            e.booked.spent += used;
            e.unsent += used;
            true
        });
        if !current && used > 0 {
            self.late_spend(counter, window_id, used);
        }
    }

    /// This replica's spend per counter in the current windows (local mode's
    /// answer), for counters `is_current` accepts.
    pub fn booked(&self, is_current: impl Fn(&Counter, u64) -> bool) -> Vec<(Counter, Booked)> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|counter, e| {
            is_current(counter, e.booked.window_id) || e.unsent > 0 || e.booked.reserved > 0
        });
        entries
            .iter()
            .filter(|(counter, e)| is_current(counter, e.booked.window_id))
            .map(|(counter, e)| (counter.clone(), e.booked))
            .collect()
    }

    /// What Redis must learn since the last sync: settled spend, and
    /// reservations that changed or are still held (republished so that
    /// readers can tell them from a dead replica's). Entries of ended windows
    /// with nothing left to send are dropped.
    pub fn take_updates(&self, is_current: impl Fn(&Counter, u64) -> bool) -> Vec<Update> {
        let mut out = std::mem::take(&mut *self.late.lock().unwrap_or_else(|p| p.into_inner()));
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|counter, e| {
            let reserved = e.booked.reserved;
            let publish = reserved > 0 || e.published.is_some_and(|p| p != reserved);
            if e.unsent > 0 || publish {
                out.push(Update {
                    counter: counter.clone(),
                    window_id: e.booked.window_id,
                    spent: std::mem::take(&mut e.unsent),
                    reserved: publish.then_some(reserved),
                });
                e.published = Some(reserved);
            }
            is_current(counter, e.booked.window_id) || reserved > 0
        });
        out
    }

    /// Updates Redis did not take: their spend is sent at the next sync.
    pub fn restore(&self, failed: Vec<Update>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut late = self.late.lock().unwrap_or_else(|p| p.into_inner());
        for update in failed {
            match entries.get_mut(&update.counter) {
                Some(e) if e.booked.window_id == update.window_id => {
                    e.unsent += update.spent;
                    // Redis may hold any reservation of ours: publish the
                    // current one next time, even 0.
                    e.published = Some(u64::MAX);
                }
                _ if update.spent > 0 => late.push(Update {
                    reserved: None,
                    ..update
                }),
                _ => {}
            }
        }
    }
}

/// Where a report reads: this replica's book, or Redis for the cluster.
pub enum Source<'a> {
    Book,
    Redis {
        store: &'a RedisStore,
        /// Reservations published before this (cluster ms) are a gone
        /// replica's and do not count.
        fresh_after_ms: u64,
    },
}

/// The standing of every budget counter the query names, in its rule's
/// current window.
pub async fn report(
    rules: &[Arc<Rule>],
    book: &SpendBook,
    source: Source<'_>,
    now_ms: u64,
    query: SpendQuery<'_>,
) -> Result<Vec<SpendLine>, SpendError> {
    let budgets: Vec<&Arc<Rule>> = rules
        .iter()
        .filter(|r| r.counts == LimitCounts::CostUsd)
        .filter(|r| query.rule.is_none_or(|name| r.name == name))
        .collect();
    if let (Some(name), true) = (query.rule, budgets.is_empty()) {
        return Err(SpendError::UnknownRule(name.to_string()));
    }
    let booked = book.booked(is_current(rules, now_ms));
    let mut lines = Vec::new();
    for rule in budgets {
        let wid = window_id(now_ms, rule.window);
        let (start, end) = window_bounds(wid, rule.window);
        let wanted = |counter: &Counter| {
            query.key.is_none_or(|key| {
                let values: Vec<&str> = rule.key_values(counter).iter().map(|(_, v)| *v).collect();
                values.join(",") == key
            })
        };
        let line = |counter: &Counter, spent: u64, reserved: u64| SpendLine {
            rule: rule.name.clone(),
            key: rule
                .key_values(counter)
                .into_iter()
                .map(|(part, value)| (part, value.to_string()))
                .collect(),
            window: rule.window,
            window_start_ms: start,
            window_end_ms: end,
            limit: rule.limit,
            spent,
            reserved,
        };
        match source {
            Source::Book => {
                for (counter, b) in booked.iter().filter(|(c, _)| c.rule == rule.index) {
                    if wanted(counter) {
                        lines.push(line(counter, b.spent, b.reserved));
                    }
                }
            }
            Source::Redis {
                store,
                fresh_after_ms,
            } => {
                let keys = store
                    .scan(&rule.spend_pattern(wid), MAX_LISTED * 2)
                    .await
                    .map_err(|e| SpendError::Unavailable(e.0))?;
                let counters: BTreeSet<Counter> = keys
                    .iter()
                    .filter_map(|key| rule.counter_of_spend_key(key, wid))
                    .filter(|counter| wanted(counter))
                    .take(MAX_LISTED)
                    .collect();
                for counter in counters {
                    let (spent, published) = store
                        .read_spend(&rule.spend_keys(&counter, wid))
                        .await
                        .map_err(|e| SpendError::Unavailable(e.0))?;
                    let reserved = published
                        .iter()
                        .filter_map(|(_, value)| parse_reservation(value))
                        .filter(|&(_, at)| at >= fresh_after_ms)
                        .map(|(amount, _)| amount)
                        .sum();
                    lines.push(line(&counter, spent, reserved));
                }
            }
        }
    }
    lines.sort_by(|a, b| (&a.rule, &a.key).cmp(&(&b.rule, &b.key)));
    Ok(lines)
}

/// A published reservation: `amount@time_ms`.
fn parse_reservation(value: &str) -> Option<(u64, u64)> {
    let (amount, at) = value.split_once('@')?;
    Some((amount.parse().ok()?, at.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> Counter {
        Counter::new(0, "|t=ml")
    }

    #[test]
    fn reservations_become_spend_and_are_sent_once() {
        let book = SpendBook::default();
        let c = counter();
        book.reserve(&c, 7, 100);
        book.reserve(&c, 7, 50);
        book.settle(&c, 7, 100, 30);
        let booked = book.booked(|_, w| w == 7);
        assert_eq!(
            booked,
            vec![(
                c.clone(),
                Booked {
                    window_id: 7,
                    spent: 30,
                    reserved: 50
                }
            )]
        );
        let sent = book.take_updates(|_, w| w == 7);
        assert_eq!(
            sent,
            vec![Update {
                counter: c.clone(),
                window_id: 7,
                spent: 30,
                reserved: Some(50)
            }]
        );
        book.settle(&c, 7, 50, 50);
        // Spend is sent once; a reservation that went to 0 is published once.
        let sent = book.take_updates(|_, w| w == 7);
        assert_eq!(sent[0].spent, 50);
        assert_eq!(sent[0].reserved, Some(0));
        assert!(book.take_updates(|_, w| w == 7).is_empty());
    }

    #[test]
    fn spend_a_sync_could_not_deliver_is_sent_again() {
        let book = SpendBook::default();
        let c = counter();
        book.reserve(&c, 7, 10);
        book.settle(&c, 7, 10, 10);
        let failed = book.take_updates(|_, w| w == 7);
        book.restore(failed);
        let sent = book.take_updates(|_, w| w == 7);
        assert_eq!(sent[0].spent, 10);
        assert_eq!(sent[0].reserved, Some(0));
    }

    #[test]
    fn a_window_that_turned_over_keeps_its_late_spend_apart() {
        let book = SpendBook::default();
        let c = counter();
        book.reserve(&c, 7, 10);
        // The next window starts before the old reservation settles.
        book.reserve(&c, 8, 5);
        book.settle(&c, 7, 10, 4);
        let mut sent = book.take_updates(|_, w| w == 8);
        sent.sort_by_key(|u| u.window_id);
        assert_eq!(
            sent[0],
            Update {
                counter: c.clone(),
                window_id: 7,
                spent: 4,
                reserved: None
            }
        );
        assert_eq!(sent[1].window_id, 8);
        assert_eq!(sent[1].reserved, Some(5));
        assert_eq!(book.booked(|_, w| w == 8)[0].1.spent, 0);
    }
}
