//! `GET /v1/spend?rule=…&key=…`: the current window's spend of budget
//! (`cost_usd`) rules, per rule and key, in dollars and exact micro-dollars.
//! `rule` names one rule and `key` one counter by its key values in the
//! rule's key order, joined by `,`; without them every budget counter of
//! the window is listed.

use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};

use crate::error::{ApiError, ErrorCode};
use crate::limits::{Limiter, SpendError, SpendLine, SpendQuery};

#[derive(Serialize)]
struct Answer {
    object: &'static str,
    /// `redis` (the cluster's spend) or `local` (this replica's).
    source: &'static str,
    data: Vec<Line>,
}

#[derive(Serialize)]
struct Line {
    rule: String,
    key: serde_json::Map<String, serde_json::Value>,
    window: &'static str,
    window_start: String,
    window_end: String,
    limit_usd: f64,
    spent_usd: f64,
    reserved_usd: f64,
    remaining_usd: f64,
    limit_micro_usd: u64,
    spent_micro_usd: u64,
    reserved_micro_usd: u64,
}

fn dollars(micro: u64) -> f64 {
    micro as f64 / 1e6
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl From<SpendLine> for Line {
    fn from(l: SpendLine) -> Self {
        Self {
            key: l
                .key
                .into_iter()
                .map(|(part, value)| (part.to_string(), value.into()))
                .collect(),
            window: l.window.as_str(),
            window_start: rfc3339(l.window_start_ms),
            window_end: rfc3339(l.window_end_ms),
            limit_usd: dollars(l.limit),
            spent_usd: dollars(l.spent),
            reserved_usd: dollars(l.reserved),
            remaining_usd: dollars(l.limit.saturating_sub(l.spent + l.reserved)),
            limit_micro_usd: l.limit,
            spent_micro_usd: l.spent,
            reserved_micro_usd: l.reserved,
            rule: l.rule,
        }
    }
}

/// The answer to `/v1/spend` with `query` (the URI's query string).
pub async fn answer(limiter: &Limiter, query: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let mut rule = None;
    let mut key = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "rule" => rule = Some(value.into_owned()),
            "key" => key = Some(value.into_owned()),
            other => {
                let mut e = ApiError::new(
                    ErrorCode::UnknownParameter,
                    format!("Unknown query parameter `{other}`: use `rule` and `key`."),
                );
                e.param = Some(other.into());
                return Err(e);
            }
        }
    }
    let query = SpendQuery {
        rule: rule.as_deref(),
        key: key.as_deref(),
    };
    let lines = limiter.spend(query).await.map_err(|e| match e {
        SpendError::UnknownRule(name) => ApiError::new(
            ErrorCode::UnknownRule,
            format!("No limit rule `{name}` counts `cost_usd`."),
        ),
        SpendError::Unavailable(detail) => ApiError::new(
            ErrorCode::SpendUnavailable,
            format!("Spend cannot be read from Redis right now: {detail}"),
        ),
    })?;
    let answer = Answer {
        object: "spend",
        source: if limiter.is_shared() {
            "redis"
        } else {
            "local"
        },
        data: lines.into_iter().map(Line::from).collect(),
    };
    Ok(serde_json::to_vec(&answer).unwrap_or_default())
}
