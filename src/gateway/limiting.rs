//! Where the gateway meets `limits/` once a request is admitted (see
//! `admission.rs`): the answer to a refusal, the `x-ratelimit-*` headers,
//! and settlement of real token usage in `logging`.

use http::HeaderValue;
use pingora::http::ResponseHeader;

use super::RequestCtx;
use crate::config::LimitCounts;
use crate::error::{ApiError, ErrorCode};
use crate::limits::{Charge, Refused, RefusedKind, Standing};
use crate::llm::Dialect;

/// The client's answer to a refusal by a limit rule: 503 when the limit
/// could not be checked, else 429.
pub fn refusal_error(r: &Refused, dialect: Dialect) -> ApiError {
    let retry_after_secs = r.retry_after.as_secs();
    let mut error = if r.kind == RefusedKind::Unavailable {
        ApiError::new(
            ErrorCode::RateLimitUnavailable,
            format!(
                "Rate limit `{}` cannot be checked right now; retry shortly.",
                r.rule
            ),
        )
    } else if r.counts == LimitCounts::CostUsd {
        ApiError::new(
            ErrorCode::BudgetExceeded,
            format!(
                "Budget `{}` reached: ${} per {}. Retry in {} s.",
                r.rule,
                usd(r.standing.limit),
                r.window.as_str(),
                retry_after_secs
            ),
        )
    } else {
        let what = match r.counts {
            LimitCounts::Requests => "requests",
            LimitCounts::Concurrent => "concurrent requests",
            _ => "tokens",
        };
        ApiError::new(
            ErrorCode::RateLimitExceeded,
            format!(
                "Rate limit `{}` reached: {} {what} per {}. Retry in {} s.",
                r.rule,
                r.standing.limit,
                window_word(r),
                retry_after_secs
            ),
        )
    };
    let kind = if r.counts.is_tokens() {
        Kind::Tokens
    } else {
        Kind::Requests
    };
    error.extra_headers = vec![("retry-after", retry_after_secs.to_string())];
    // A budget's standing is in dollars, not in any `x-ratelimit-*`
    // header's unit.
    if r.counts != LimitCounts::CostUsd {
        error.extra_headers.extend(
            standing_headers(dialect, kind, &r.standing)
                .into_iter()
                .map(|(name, value)| (name, value.to_str().unwrap_or_default().to_string())),
        );
    }
    error
}

/// Micro-USD in dollars, with as many decimals as it takes (at most 6).
pub fn usd(micro: u64) -> String {
    let (whole, frac) = (micro / 1_000_000, micro % 1_000_000);
    if frac == 0 {
        return format!("{whole}.00");
    }
    let digits = format!("{frac:06}");
    let digits = digits.trim_end_matches('0');
    format!("{whole}.{digits:0<2}")
}

/// What a standing counts, for header names.
#[derive(Clone, Copy)]
enum Kind {
    Requests,
    Tokens,
}

/// The standing of a rule in each dialect's convention: OpenAI's
/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` with a duration,
/// Anthropic's `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`
/// with the moment of the reset (RFC 3339). Values are built straight into
/// header values: these go out on every answer of a limited route.
fn standing_headers(
    dialect: Dialect,
    kind: Kind,
    s: &Standing,
) -> [(&'static str, HeaderValue); 3] {
    let (limit, remaining, reset) = match (dialect, kind) {
        (Dialect::OpenAi, Kind::Requests) => (
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ),
        (Dialect::OpenAi, Kind::Tokens) => (
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ),
        (Dialect::Anthropic, Kind::Requests) => (
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
        ),
        (Dialect::Anthropic, Kind::Tokens) => (
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ),
    };
    let reset_value = match dialect {
        Dialect::OpenAi => format_reset(s.reset_ms),
        Dialect::Anthropic => {
            let at = std::time::SystemTime::now() + std::time::Duration::from_millis(s.reset_ms);
            humantime::format_rfc3339_seconds(at).to_string()
        }
    };
    [
        (limit, HeaderValue::from(s.limit)),
        (remaining, HeaderValue::from(s.remaining)),
        // Digits, letters, `-`, `:`: always a valid header value.
        (
            reset,
            HeaderValue::try_from(reset_value).unwrap_or(HeaderValue::from_static("0s")),
        ),
    ]
}

fn window_word(r: &Refused) -> &'static str {
    match r.counts {
        LimitCounts::Concurrent => "moment",
        _ => r.window.as_str(),
    }
}

/// OpenAI's duration style: `250ms`, `12s`, `6m0s`, `1h2m3s`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// `x-ratelimit-*` on answers to limited routes.
pub fn add_standing_headers(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    let Some((_, admission)) = ctx.admitted.as_ref().and_then(|a| a.limits.as_ref()) else {
        return Ok(());
    };
    let standings = [
        (Kind::Requests, &admission.requests),
        (Kind::Tokens, &admission.tokens),
    ];
    for (kind, standing) in standings {
        if let Some(s) = standing {
            for (name, value) in standing_headers(ctx.dialect, kind, s) {
                resp.insert_header(name, value)?;
            }
        }
    }
    Ok(())
}

/// Records the real usage: token and cost metrics (`cost_nano_usd` from
/// `report::cost`), and settlement of token rules.
pub async fn settle(ctx: &mut RequestCtx, cost_nano_usd: Option<u64>) {
    let usage = ctx.response.usage;
    let reached_upstream = ctx.upstream.backend.is_some();
    let provider = ctx
        .upstream
        .backend
        .as_ref()
        .map_or("-", |b| b.provider.as_str());
    let Some(admitted) = ctx.admitted.as_mut() else {
        return;
    };
    if let Some(usage) = usage {
        let model = admitted
            .model_request
            .as_ref()
            .map_or("other", |m| m.model_label);
        admitted
            .route
            .metrics
            .add_usage(model, provider, usage.input, usage.output, cost_nano_usd);
    }
    if let Some((limiter, admission)) = admitted.limits.take() {
        let actual = match (usage, reached_upstream) {
            (Some(u), _) => Some(Charge {
                input_tokens: u.input,
                output_tokens: u.output,
                // An unpriced model costs no budget (it is counted apart).
                cost_micro_usd: cost_nano_usd.map_or(0, crate::llm::micro_usd),
            }),
            // Never reached an upstream: nothing was used.
            (None, false) => Some(Charge::default()),
            // Reached one but no usage was reported: keep the reservation.
            (None, true) => None,
        };
        limiter.settle(admission, actual).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{format_reset, usd};

    #[test]
    fn budgets_read_in_dollars() {
        assert_eq!(usd(25_000_000), "25.00");
        assert_eq!(usd(1_500_000), "1.50");
        assert_eq!(usd(2_000_450), "2.00045");
        assert_eq!(usd(7), "0.000007");
    }

    #[test]
    fn resets_read_like_openai() {
        assert_eq!(format_reset(250), "250ms");
        assert_eq!(format_reset(12_000), "12s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(3_723_000), "1h2m3s");
    }
}
