//! Where the gateway meets `limits/`: admission in `request_filter`, the
//! `x-ratelimit-*` headers, and settlement of real token usage in `logging`.

use std::sync::Arc;

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::RequestCtx;
use crate::config::{AuthMethod, LimitCounts};
use crate::error::ApiError;
use crate::limits::{Charge, Limiter, Rejection, RequestFacts, Standing};

/// Charges the request against its rules; a refusal becomes the answer.
pub async fn admit(
    limiter: &Arc<Limiter>,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let Some(route) = ctx.route.clone() else {
        return Ok(());
    };
    let caller_limits = ctx.identity.iter().flat_map(|i| i.limits.iter());
    let rules = limiter.rules_for(route.limits.iter().chain(caller_limits));
    if rules.is_empty() {
        return Ok(());
    }
    let identity = ctx.identity.as_ref();
    let facts = RequestFacts {
        api_key: identity
            .filter(|i| i.method == AuthMethod::ApiKey)
            .map(|i| i.id.as_str()),
        subject: identity
            .filter(|i| i.method == AuthMethod::Jwt)
            .map(|i| i.id.as_str()),
        team: identity.and_then(|i| i.team.as_deref()),
        model: ctx.model.as_deref(),
        route: &route.name,
        client_ip: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string()),
    };
    // A reservation: prompt size / 4 plus the most the answer may take.
    let reserve = if route.needs_model() {
        Charge {
            input_tokens: (ctx.prompt_bytes as u64).div_ceil(4),
            output_tokens: ctx.max_tokens.unwrap_or(limiter.default_max_tokens),
        }
    } else {
        Charge::default()
    };
    match limiter.admit(&rules, &facts, reserve).await {
        Ok(admission) => {
            // Settled by the limiter that charged it, even across a reload.
            ctx.admission = Some((limiter.clone(), admission));
            Ok(())
        }
        Err(rejection) => Err(rejection_error(&rejection)),
    }
}

fn rejection_error(r: &Rejection) -> ApiError {
    let mut error = if r.status == 503 {
        ApiError::new(
            503,
            "server_error",
            "rate_limit_unavailable",
            format!(
                "Rate limit `{}` cannot be checked right now; retry shortly.",
                r.rule
            ),
        )
    } else {
        let what = match r.counts {
            LimitCounts::Requests => "requests",
            LimitCounts::Concurrent => "concurrent requests",
            _ => "tokens",
        };
        ApiError::new(
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
            format!(
                "Rate limit `{}` reached: {} {what} per {}. Retry in {} s.",
                r.rule,
                r.standing.limit,
                window_word(r),
                r.retry_after_secs
            ),
        )
    };
    let kind = if r.counts.is_tokens() {
        "tokens"
    } else {
        "requests"
    };
    error.extra_headers = vec![
        ("retry-after", r.retry_after_secs.to_string()),
        (limit_header(kind), r.standing.limit.to_string()),
        (remaining_header(kind), "0".to_string()),
        (reset_header(kind), format_reset(r.standing.reset_ms)),
    ];
    error
}

fn window_word(r: &Rejection) -> &'static str {
    match r.counts {
        LimitCounts::Concurrent => "moment",
        _ => match r.standing.reset_ms {
            0..=1_000 => "second",
            1_001..=60_000 => "minute",
            60_001..=3_600_000 => "hour",
            _ => "day",
        },
    }
}

fn limit_header(kind: &str) -> &'static str {
    if kind == "tokens" {
        "x-ratelimit-limit-tokens"
    } else {
        "x-ratelimit-limit-requests"
    }
}

fn remaining_header(kind: &str) -> &'static str {
    if kind == "tokens" {
        "x-ratelimit-remaining-tokens"
    } else {
        "x-ratelimit-remaining-requests"
    }
}

fn reset_header(kind: &str) -> &'static str {
    if kind == "tokens" {
        "x-ratelimit-reset-tokens"
    } else {
        "x-ratelimit-reset-requests"
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
    let Some((_, admission)) = &ctx.admission else {
        return Ok(());
    };
    let mut put = |kind: &str, s: &Standing| -> pingora::Result<()> {
        resp.insert_header(limit_header(kind), s.limit)?;
        resp.insert_header(remaining_header(kind), s.remaining)?;
        resp.insert_header(reset_header(kind), format_reset(s.reset_ms))
    };
    if let Some(s) = &admission.requests {
        put("requests", s)?;
    }
    if let Some(s) = &admission.tokens {
        put("tokens", s)?;
    }
    Ok(())
}

/// Records the real usage: token metrics, and settlement of token rules.
pub async fn settle(ctx: &mut RequestCtx) {
    if let (Some(usage), Some(route)) = (ctx.usage, &ctx.route) {
        let model = ctx.model.as_deref().unwrap_or("-");
        let provider = ctx.backend.as_ref().map_or("-", |b| b.provider.as_str());
        route
            .metrics
            .add_tokens(model, provider, usage.input, usage.output);
    }
    if let Some((limiter, admission)) = ctx.admission.take() {
        let actual = match (ctx.usage, ctx.backend.is_some()) {
            (Some(u), _) => Some(Charge {
                input_tokens: u.input,
                output_tokens: u.output,
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
    use super::format_reset;

    #[test]
    fn resets_read_like_openai() {
        assert_eq!(format_reset(250), "250ms");
        assert_eq!(format_reset(12_000), "12s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(3_723_000), "1h2m3s");
    }
}
