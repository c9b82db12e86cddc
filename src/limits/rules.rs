//! Limit rules and the keys they count per.

use std::fmt::Write;

use crate::config::{LimitCounts, LimitKeyPart, LimitRule, LimitWindow};

/// What a request is known by, for building limit keys.
#[derive(Debug, Default, Clone)]
pub struct RequestFacts<'a> {
    pub api_key: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub team: Option<&'a str>,
    pub model: Option<&'a str>,
    pub route: &'a str,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub key: Vec<LimitKeyPart>,
    pub counts: LimitCounts,
    pub limit: u64,
    pub window: LimitWindow,
}

impl Rule {
    pub fn from_config(rule: &LimitRule) -> Self {
        Self {
            name: rule.name.clone(),
            key: rule.key.clone(),
            counts: rule.counts,
            limit: rule.limit,
            window: rule.window,
        }
    }

    /// The counter key for a request: `rule|part=value|...`. Missing parts
    /// count as `-`, so e.g. anonymous callers share one `api_key` bucket.
    pub fn key_for(&self, facts: &RequestFacts<'_>) -> String {
        let mut key = String::with_capacity(64);
        key.push_str(&self.name);
        for part in &self.key {
            let (label, value) = match part {
                LimitKeyPart::ApiKey => ("k", facts.api_key),
                LimitKeyPart::Subject => ("s", facts.subject),
                LimitKeyPart::Team => ("t", facts.team),
                LimitKeyPart::Model => ("m", facts.model),
                LimitKeyPart::Route => ("r", Some(facts.route)),
                LimitKeyPart::ClientIp => ("ip", facts.client_ip.as_deref()),
                LimitKeyPart::Global => ("g", Some("*")),
            };
            let _ = write!(key, "|{label}={}", value.unwrap_or("-"));
        }
        key
    }
}

/// Window arithmetic on a shared clock (milliseconds since the epoch).
pub fn window_id(now_ms: u64, window: LimitWindow) -> u64 {
    now_ms / (window.seconds() * 1000)
}

/// Milliseconds until the window that holds `now_ms` ends.
pub fn reset_in_ms(now_ms: u64, window: LimitWindow) -> u64 {
    let len = window.seconds() * 1000;
    len - now_ms % len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(key: Vec<LimitKeyPart>) -> Rule {
        Rule {
            name: "r1".into(),
            key,
            counts: LimitCounts::Requests,
            limit: 10,
            window: LimitWindow::Minute,
        }
    }

    #[test]
    fn keys_combine_parts() {
        let facts = RequestFacts {
            api_key: Some("alice"),
            model: Some("gpt"),
            route: "chat",
            client_ip: Some("10.0.0.1".into()),
            ..Default::default()
        };
        assert_eq!(
            rule(vec![LimitKeyPart::ApiKey, LimitKeyPart::Model]).key_for(&facts),
            "r1|k=alice|m=gpt"
        );
        assert_eq!(rule(vec![LimitKeyPart::Team]).key_for(&facts), "r1|t=-");
        assert_eq!(rule(vec![LimitKeyPart::Global]).key_for(&facts), "r1|g=*");
        assert_eq!(
            rule(vec![LimitKeyPart::ClientIp, LimitKeyPart::Route]).key_for(&facts),
            "r1|ip=10.0.0.1|r=chat"
        );
    }

    #[test]
    fn windows_align_to_the_clock() {
        assert_eq!(window_id(59_999, LimitWindow::Minute), 0);
        assert_eq!(window_id(60_000, LimitWindow::Minute), 1);
        assert_eq!(reset_in_ms(61_500, LimitWindow::Minute), 58_500);
        assert_eq!(reset_in_ms(1_000, LimitWindow::Second), 1_000);
    }
}
