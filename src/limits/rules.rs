//! Limit rules, the counters they keep per request key, and window
//! arithmetic on a shared clock.

use std::fmt::Write;

use crate::config::{self, LimitCounts, LimitKeyPart, LimitWindow};

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
    pub fn new(index: usize, rule: &config::LimitRule) -> Self {
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
    /// `aigw:rl:<rule>|<part>=<value>...:<window>`. Every replica, old
    /// and new during a rollout, spells it the same.
    pub fn redis_key(&self, counter: &Counter, window_id: u64) -> String {
        format!("aigw:rl:{}{}:{window_id}", self.name, counter.parts)
    }
}

/// One counter: a rule and the request's values of the rule's key parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// The window holding `now_ms` (milliseconds on the shared clock).
pub fn window_id(now_ms: u64, window: LimitWindow) -> u64 {
    now_ms / (window.seconds() * 1000)
}

/// Milliseconds until the window that holds `now_ms` ends.
pub fn reset_in_ms(now_ms: u64, window: LimitWindow) -> u64 {
    let len = window.seconds() * 1000;
    len - now_ms % len
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
        assert_eq!(r.redis_key(&counter, 7), "aigw:rl:r1|k=alice|m=gpt:7");
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
    fn windows_align_to_the_clock() {
        assert_eq!(window_id(59_999, LimitWindow::Minute), 0);
        assert_eq!(window_id(60_000, LimitWindow::Minute), 1);
        assert_eq!(reset_in_ms(61_500, LimitWindow::Minute), 58_500);
        assert_eq!(reset_in_ms(1_000, LimitWindow::Second), 1_000);
        assert_eq!(ttl_secs(LimitWindow::Minute), 121);
    }
}
