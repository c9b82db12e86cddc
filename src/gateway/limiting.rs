//! Where the gateway meets `limits/` once a request is admitted (see
//! `admission.rs`): the answer to a refusal, the `x-ratelimit-*` headers,
//! and settlement of real token usage in `logging`.

use http::HeaderValue;
use pingora::http::ResponseHeader;

use super::RequestCtx;
use crate::config::LimitCounts;
use crate::error::{ApiError, ErrorCode};
use crate::limits::{Charge, Refused, RefusedKind, Standing};
use crate::llm::wire::{self, StandingKind};
use crate::llm::ClientDialect;

/// The client's answer to a refusal by a limit rule: 503 when the limit
/// could not be checked, else 429.
pub fn refusal_error(r: &Refused, dialect: ClientDialect) -> ApiError {
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
        StandingKind::Tokens
    } else {
        StandingKind::Requests
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

/// The standing of a rule in the client dialect's convention.
fn standing_headers(
    dialect: ClientDialect,
    kind: StandingKind,
    s: &Standing,
) -> [(&'static str, HeaderValue); 3] {
    let standing = wire::Standing {
        limit: s.limit,
        remaining: s.remaining,
        reset_ms: s.reset_ms,
    };
    dialect.client().standing_headers(kind, &standing)
}

fn window_word(r: &Refused) -> &'static str {
    match r.counts {
        LimitCounts::Concurrent => "moment",
        _ => r.window.as_str(),
    }
}

/// `x-ratelimit-*` on answers to limited routes.
pub fn add_standing_headers(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    let Some((_, admission)) = ctx.admitted.as_ref().and_then(|a| a.limits.as_ref()) else {
        return Ok(());
    };
    let standings = [
        (StandingKind::Requests, &admission.requests),
        (StandingKind::Tokens, &admission.tokens),
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
        .map_or("-", |b| b.provider.name());
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
    use super::usd;

    #[test]
    fn budgets_read_in_dollars() {
        assert_eq!(usd(25_000_000), "25.00");
        assert_eq!(usd(1_500_000), "1.50");
        assert_eq!(usd(2_000_450), "2.00045");
        assert_eq!(usd(7), "0.000007");
    }
}
