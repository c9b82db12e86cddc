//! Limit rules, the counters they keep per request key, and window
//! arithmetic on a shared clock.

use std::fmt::Write;
use std::sync::Arc;

use super::calendar;
use super::settings::LimitRule;
use super::store::SpendKeys;
use crate::config::{LimitCounts, LimitKeyPart, LimitWindow};

/// What a request is known by, for building limit keys.
#[derive(Debug, Default, Clone)]
pub struct RequestFacts<'a> {
    pub api_key: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub team: Option<&'a str>,
    pub model: Option<&'a str>,
    pub route: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// Its place in the limiter's rule list: what counters refer to it by.
    pub index: usize,
    pub name: String,
    pub key: Vec<LimitKeyPart>,
    pub counts: LimitCounts,
    pub limit: u64,
    pub window: LimitWindow,
}

impl Rule {
    pub fn new(index: usize, rule: &LimitRule) -> Self {
        Self {
            index,
            name: rule.name.clone(),
            key: rule.key.clone(),
            counts: rule.counts,
            limit: rule.limit,
            window: rule.window,
        }
    }

    /// The counter of this rule for a request. Missing parts count as `-`,
    /// so e.g. anonymous callers share one `api_key` bucket.
    pub fn counter_for(&self, facts: &RequestFacts<'_>) -> Counter {
        let mut parts = String::with_capacity(48);
        for part in &self.key {
            let (label, value) = match part {
                LimitKeyPart::ApiKey => ("k", facts.api_key),
                LimitKeyPart::Subject => ("s", facts.subject),
                LimitKeyPart::Team => ("t", facts.team),
                LimitKeyPart::Model => ("m", facts.model),
                LimitKeyPart::Route => ("r", Some(facts.route)),
                LimitKeyPart::ClientIp => {
                    // Formatted only for the rules keyed by it.
                    let _ = match facts.client_ip {
                        Some(ip) => write!(parts, "|ip={ip}"),
                        None => write!(parts, "|ip=-"),
                    };
                    continue;
                }
                LimitKeyPart::Global => ("g", Some("*")),
            };
            let _ = write!(parts, "|{label}={}", value.unwrap_or("-"));
        }
        Counter {
            rule: self.index,
            parts,
        }
    }

    /// The Redis key of a counter of this rule in a window:
    /// `aigw:lim:<rule>|<part>=<value>...:<window>`, a hash of what each
    /// replica took. Every replica spells it the same. (Versions before
    /// per-replica parts counted in a string at `aigw:rl:`: during a rollout
    /// from one of them, the two count apart.)
    pub fn redis_key(&self, counter: &Counter, window_id: u64) -> String {
        format!("aigw:lim:{}{}:{window_id}", self.name, counter.parts)
    }

    /// The Redis key of a concurrency counter's slots (no window):
    /// `aigw:slots:<rule>|<part>=<value>...`.
    pub fn slots_key(&self, counter: &Counter) -> String {
        format!("aigw:slots:{}{}", self.name, counter.parts)
    }

    /// The Redis keys of a budget counter's spend in a window.
    pub fn spend_keys(&self, counter: &Counter, window_id: u64) -> SpendKeys {
        let spent = format!("aigw:spend:{}{}:{window_id}", self.name, counter.parts);
        SpendKeys {
            reserved: format!("{spent}:reserved"),
            spent,
        }
    }

    /// A `SCAN` pattern for the spend keys of every counter of this rule in
    /// a window (the rule's name taken literally).
    pub fn spend_pattern(&self, window_id: u64) -> String {
        let mut name = String::with_capacity(self.name.len());
        for c in self.name.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                name.push('\\');
            }
            name.push(c);
        }
        format!("aigw:spend:{name}|*:{window_id}*")
    }

    /// The counter whose spend key (or reservations key) is `key`, if it is
    /// one of this rule's in the window.
    pub fn counter_of_spend_key(&self, key: &str, window_id: u64) -> Option<Counter> {
        let key = key.strip_suffix(":reserved").unwrap_or(key);
        let parts = key
            .strip_prefix("aigw:spend:")?
            .strip_prefix(self.name.as_str())?
            .strip_suffix(&format!(":{window_id}"))?;
        parts
            .starts_with('|')
            .then(|| Counter::new(self.index, parts))
    }

    /// The values of a counter's key parts, named as in config.
    pub fn key_values<'c>(&self, counter: &'c Counter) -> Vec<(&'static str, &'c str)> {
        let values = counter
            .parts
            .split('|')
            .skip(1)
            .map(|part| part.split_once('=').map_or(part, |(_, value)| value));
        self.key.iter().map(|p| p.as_str()).zip(values).collect()
    }
}

/// One counter: a rule and the request's values of the rule's key parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Counter {
    /// The rule's index in the limiter.
    pub rule: usize,
    /// `|label=value` per key part, in the rule's order.
    pub parts: String,
}

impl Counter {
    pub fn new(rule: usize, parts: impl Into<String>) -> Self {
        Self {
            rule,
            parts: parts.into(),
        }
    }
}

/// The window holding `now_ms` (milliseconds on the shared clock): its
/// number since the epoch.
pub fn window_id(now_ms: u64, window: LimitWindow) -> u64 {
    match window {
        LimitWindow::Month => calendar::month_index(now_ms),
        fixed => now_ms / (fixed.seconds() * 1000),
    }
}

/// When window number `id` starts and ends (ms on the shared clock).
pub fn window_bounds(id: u64, window: LimitWindow) -> (u64, u64) {
    match window {
        LimitWindow::Month => (
            calendar::month_start_ms(id),
            calendar::month_start_ms(id + 1),
        ),
        fixed => {
            let len = fixed.seconds() * 1000;
            (id * len, (id + 1) * len)
        }
    }
}

/// Whether a counter's window `id` is its rule's current one at `now_ms`
/// (a counter of no rule never is): what leases and the spend book keep.
pub fn is_current(rules: &[Arc<Rule>], now_ms: u64) -> impl Fn(&Counter, u64) -> bool + '_ {
    move |counter, id| {
        rules
            .get(counter.rule)
            .is_some_and(|rule| window_id(now_ms, rule.window) == id)
    }
}

/// Milliseconds until the window that holds `now_ms` ends.
pub fn reset_in_ms(now_ms: u64, window: LimitWindow) -> u64 {
    window_bounds(window_id(now_ms, window), window).1 - now_ms
}

/// How long a window's Redis key lives: the window, the next one (a replica
/// whose clock lags may still settle into it), and a second more.
pub fn ttl_secs(window: LimitWindow) -> u64 {
    window.seconds() * 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(key: Vec<LimitKeyPart>) -> Rule {
        Rule {
            index: 3,
            name: "r1".into(),
            key,
            counts: LimitCounts::Requests,
            limit: 10,
            window: LimitWindow::Minute,
        }
    }

    #[test]
    fn counters_combine_parts_and_name_their_rule() {
        let facts = RequestFacts {
            api_key: Some("alice"),
            model: Some("gpt"),
            route: "chat",
            client_ip: Some([10, 0, 0, 1].into()),
            ..Default::default()
        };
        let r = rule(vec![LimitKeyPart::ApiKey, LimitKeyPart::Model]);
        let counter = r.counter_for(&facts);
        assert_eq!(counter, Counter::new(3, "|k=alice|m=gpt"));
        assert_eq!(r.redis_key(&counter, 7), "aigw:lim:r1|k=alice|m=gpt:7");
        assert_eq!(
            rule(vec![LimitKeyPart::Team]).counter_for(&facts).parts,
            "|t=-"
        );
        assert_eq!(
            rule(vec![LimitKeyPart::Global]).counter_for(&facts).parts,
            "|g=*"
        );
        assert_eq!(
            rule(vec![LimitKeyPart::ClientIp, LimitKeyPart::Route])
                .counter_for(&facts)
                .parts,
            "|ip=10.0.0.1|r=chat"
        );
    }

    #[test]
    fn spend_keys_name_their_counter_and_scan_literally() {
        let mut r = rule(vec![LimitKeyPart::Team, LimitKeyPart::Model]);
        let counter = Counter::new(3, "|t=ml|m=gpt-4o");
        let keys = r.spend_keys(&counter, 670);
        assert_eq!(keys.spent, "aigw:spend:r1|t=ml|m=gpt-4o:670");
        assert_eq!(keys.reserved, "aigw:spend:r1|t=ml|m=gpt-4o:670:reserved");
        assert_eq!(
            r.counter_of_spend_key(&keys.spent, 670),
            Some(counter.clone())
        );
        assert_eq!(
            r.counter_of_spend_key(&keys.reserved, 670),
            Some(counter.clone())
        );
        assert_eq!(r.counter_of_spend_key(&keys.spent, 671), None);
        assert_eq!(
            r.key_values(&counter),
            vec![("team", "ml"), ("model", "gpt-4o")]
        );
        r.name = "a*b".into();
        assert_eq!(r.spend_pattern(1), "aigw:spend:a\\*b|*:1*");
    }

    #[test]
    fn windows_align_to_the_clock() {
        assert_eq!(window_id(59_999, LimitWindow::Minute), 0);
        assert_eq!(window_id(60_000, LimitWindow::Minute), 1);
        assert_eq!(reset_in_ms(61_500, LimitWindow::Minute), 58_500);
        assert_eq!(reset_in_ms(1_000, LimitWindow::Second), 1_000);
        assert_eq!(ttl_secs(LimitWindow::Minute), 121);
        assert_eq!(window_bounds(2, LimitWindow::Hour), (7_200_000, 10_800_000));
        // 2026-11-27T12:00:00Z: the month ends at 2026-12-01T00:00:00Z.
        let now = 1_795_780_800_000;
        let december = 1_796_083_200_000;
        assert_eq!(reset_in_ms(now, LimitWindow::Month), december - now);
        let november = window_id(now, LimitWindow::Month);
        assert_eq!(window_bounds(november, LimitWindow::Month).1, december);
    }
}
