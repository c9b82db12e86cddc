//! The `upstreams` and `routes` sections, lowered: pools and their
//! backends, health checks and timeouts; routes, their models, aliases,
//! retries, credentials and fallbacks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::config::check::{
    ca_bundle, count_in, duration_in, ensure, fault, globs, positive_up_to, sensitive_value,
    unique_name, up_to, word, Lowered, DAY, HOUR,
};
use crate::config::{expand, schema, AuthMethod, BaseUrl, CaBundle, Env, Glob, RetryOn, Strategy};
use crate::limits::MAX_CHARGE as MAX_LIMIT;
use crate::providers::{self, Provider};

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub strategy: Strategy,
    pub backends: Vec<Backend>,
    pub health_check: Option<HealthCheck>,
    pub passive: PassiveHealth,
    pub timeouts: Timeouts,
    /// CA trusted for the pool's https backends instead of the system roots.
    pub ca: Option<CaBundle>,
    /// Server name sent and verified instead of each backend's host.
    pub sni: Option<String>,
    /// Upstream model (or glob) → the most output tokens it gives, the
    /// most specific first.
    pub max_output_tokens: Vec<(Glob, u64)>,
}

#[derive(Debug)]
pub struct Backend {
    pub url: BaseUrl,
    pub weight: u32,
    pub provider: Arc<dyn Provider>,
    /// Headers the config adds to every request to this backend, after the
    /// provider's own (so they may replace one).
    /// Marked sensitive, so even debug logs mask them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// A backend failing this many requests in a row is out for `cooldown`.
#[derive(Debug, Clone, Copy)]
pub struct PassiveHealth {
    pub consecutive_failures: u32,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Time to first byte, and silence between two chunks of an answer.
    pub read: Duration,
    pub write: Duration,
    /// The whole exchange, retries and streams included.
    pub total: Duration,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub paths: Vec<String>,
    /// Empty: the route takes any body and forwards it as it streams in.
    pub models: Vec<Glob>,
    /// The pool's name; the translation made sure it exists.
    pub pool: String,
    /// Client model name → upstream model name.
    /// Client model name (or glob) → upstream model name.
    pub aliases: Vec<(Glob, String)>,
    pub retry: Retry,
    pub limits: Vec<String>,
    /// The credentials the route accepts, defaults applied.
    pub auth: Vec<AuthMethod>,
    /// Scopes a caller must hold, every one of them.
    pub scopes: Vec<String>,
    /// `max_tokens` sent to providers that require it (Anthropic) and
    /// reserved against token limits when the client set none.
    pub default_max_tokens: u64,
    /// Translation drops what the target cannot honour instead of refusing it.
    pub drop_unsupported_params: bool,
    /// Models tried in turn when the route's pool fails; each served by a route.
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Retry {
    /// Tries per request, the first included.
    pub attempts: u32,
    pub on: Vec<RetryOn>,
}

/// Models a route may fall back to: each may cost a full set of attempts.
const MAX_FALLBACKS: usize = 5;

fn pool(name: &str, p: &schema::Pool, env: Env<'_>) -> Lowered<Pool> {
    let at = format!("upstreams.{name}");
    ensure(
        !p.backends.is_empty(),
        || format!("{at}.backends"),
        "needs at least one backend",
    )?;
    let backends = p
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| backend(&format!("{at}.backends[{i}]"), b, env))
        .collect::<Lowered<Vec<_>>>()?;
    let health_check = match &p.health_check {
        None => None,
        Some(hc) => {
            let at = format!("{at}.health_check");
            ensure(
                hc.path.starts_with('/'),
                || format!("{at}.path"),
                "must start with `/`",
            )?;
            Some(HealthCheck {
                path: hc.path.clone(),
                interval: duration_in(
                    &format!("{at}.interval"),
                    hc.interval,
                    Duration::from_millis(100),
                    DAY,
                )?,
                timeout: positive_up_to(&format!("{at}.timeout"), hc.timeout, HOUR)?,
                healthy_threshold: count_in(
                    &format!("{at}.healthy_threshold"),
                    hc.healthy_threshold,
                    1,
                    1000,
                )?,
                unhealthy_threshold: count_in(
                    &format!("{at}.unhealthy_threshold"),
                    hc.unhealthy_threshold,
                    1,
                    1000,
                )?,
            })
        }
    };
    let t = &p.timeouts;
    let timeout =
        |field: &str, value| positive_up_to(&format!("{at}.timeouts.{field}"), value, DAY);
    Ok(Pool {
        name: name.to_string(),
        strategy: word::<Strategy>(&format!("{at}.strategy"), &p.strategy)?,
        backends,
        health_check,
        passive: PassiveHealth {
            consecutive_failures: count_in(
                &format!("{at}.passive_health.consecutive_failures"),
                p.passive_health.consecutive_failures,
                1,
                10_000,
            )?,
            cooldown: up_to(
                &format!("{at}.passive_health.cooldown"),
                p.passive_health.cooldown,
                DAY,
            )?,
        },
        timeouts: Timeouts {
            connect: timeout("connect", t.connect)?,
            read: timeout("read", t.read)?,
            write: timeout("write", t.write)?,
            total: timeout("total", t.total)?,
        },
        ca: ca_bundle(&format!("{at}.tls.ca_file"), &p.tls.ca_file)?,
        sni: p.tls.sni.clone(),
        max_output_tokens: most_specific_first(&p.max_output_tokens)
            .into_iter()
            .map(|(model, tokens)| {
                let field = format!("{at}.max_output_tokens.{}", model.as_str());
                Ok((model, count_in(&field, tokens, 1, MAX_LIMIT)?))
            })
            .collect::<Lowered<Vec<_>>>()?,
    })
}

fn backend(at: &str, b: &schema::Backend, env: Env<'_>) -> Lowered<Backend> {
    let url = BaseUrl::parse(&b.base_url).or_else(|e| fault(format!("{at}.base_url"), e))?;
    let api_key = match &b.api_key {
        Some(key) => Some(expand(&format!("{at}.api_key"), key, env)?),
        None => None,
    };
    let provider = providers::build(
        &b.provider,
        &providers::Spec {
            at,
            api_key: api_key.as_ref(),
            options: b.options.as_ref(),
            env,
        },
    )?;
    let mut headers = Vec::new();
    for (name, value) in &b.headers {
        let field = format!("{at}.headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .or_else(|_| fault(&field, "is not a valid header name"))?;
        let value = expand(&field, value, env)?;
        headers.push((header, sensitive_value(&field, value.expose())?));
    }
    Ok(Backend {
        url,
        weight: count_in(&format!("{at}.weight"), b.weight, 1, 1000)?,
        provider,
        headers,
    })
}

/// The methods a route accepts when its config names none: every method the
/// `auth` section configures, or none.
fn default_methods(configured: &[AuthMethod]) -> Vec<AuthMethod> {
    if configured.is_empty() {
        vec![AuthMethod::None]
    } else {
        configured.to_vec()
    }
}

/// The `upstreams` section: at least one pool.
pub fn pools(
    upstreams: &std::collections::BTreeMap<String, schema::Pool>,
    env: Env<'_>,
) -> Lowered<Vec<Pool>> {
    ensure(
        !upstreams.is_empty(),
        || "upstreams".into(),
        "needs at least one pool",
    )?;
    upstreams
        .iter()
        .map(|(name, p)| pool(name, p, env))
        .collect()
}

/// What the routes are lowered against: the pools, the credentials the
/// `auth` section configures, the limit rules, and the output tokens
/// reserved when a request names none.
pub struct RouteContext<'a> {
    pub pools: &'a [Pool],
    pub auth_methods: &'a [AuthMethod],
    pub rule_names: &'a HashSet<&'a str>,
    pub default_max_tokens: u64,
}

/// The `routes` section, in order: at least one, each with a unique name,
/// and every fallback a model another route serves.
pub fn routes(list: &[schema::Route], context: &RouteContext<'_>) -> Lowered<Vec<Route>> {
    ensure(
        !list.is_empty(),
        || "routes".into(),
        "needs at least one route",
    )?;
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let at = format!("routes[{i}]");
        unique_name(&mut names, format!("{at}.name"), &r.name, "route")?;
        rule_refs(&format!("{at}.limits"), &r.limits, context.rule_names)?;
        routes.push(route(&at, r, context)?);
    }
    for (i, route) in routes.iter().enumerate() {
        if route.fallbacks.len() > MAX_FALLBACKS {
            return fault(
                format!("routes[{i}].fallbacks"),
                format!(
                    "lists {} models; at most {MAX_FALLBACKS}",
                    route.fallbacks.len()
                ),
            );
        }
        for (j, model) in route.fallbacks.iter().enumerate() {
            let serves = |r: &Route| r.models.iter().any(|glob| glob.matches(model));
            let field = || format!("routes[{i}].fallbacks[{j}]");
            if serves(route) {
                return fault(field(), format!("this route serves `{model}` itself"));
            }
            if !routes.iter().any(serves) {
                return fault(field(), format!("no route serves the model `{model}`"));
            }
        }
    }
    Ok(routes)
}

/// Every name in `names` is a configured limit rule.
pub fn rule_refs(at: &str, names: &[String], rules: &HashSet<&str>) -> Lowered<()> {
    for (i, name) in names.iter().enumerate() {
        if !rules.contains(name.as_str()) {
            return fault(
                format!("{at}[{i}]"),
                format!("no limit rule is named `{name}`"),
            );
        }
    }
    Ok(())
}

fn route(at: &str, r: &schema::Route, context: &RouteContext<'_>) -> Lowered<Route> {
    ensure(
        !r.name.is_empty(),
        || format!("{at}.name"),
        "must not be empty",
    )?;
    ensure(
        !r.paths.is_empty(),
        || format!("{at}.paths"),
        "needs at least one path",
    )?;
    for (j, path) in r.paths.iter().enumerate() {
        ensure(
            path.starts_with('/') && !path.contains(['?', '#', ' ']),
            || format!("{at}.paths[{j}]"),
            "must be a path starting with `/` and without query",
        )?;
    }
    if !context.pools.iter().any(|p| p.name == r.upstream) {
        return fault(
            format!("{at}.upstream"),
            format!("no upstream pool is named `{}`", r.upstream),
        );
    }
    let models = globs(&format!("{at}.models"), &r.models)?;
    if !r.fallbacks.is_empty() && models.is_empty() {
        return fault(
            format!("{at}.fallbacks"),
            "a route without `models` reads no model, so it cannot fall back to one",
        );
    }
    for (alias, target) in &r.model_aliases {
        let field = format!("{at}.model_aliases.{alias}");
        if !models.iter().any(|glob| glob.matches(alias)) {
            return fault(
                field,
                "is not matched by any of the route's `models`, so it could never be used",
            );
        }
        ensure(
            !target.is_empty(),
            || field.clone(),
            "the upstream model name must not be empty",
        )?;
    }
    let retry_on = r
        .retry
        .on
        .iter()
        .enumerate()
        .map(|(j, text)| word::<RetryOn>(&format!("{at}.retry.on[{j}]"), text))
        .collect::<Lowered<Vec<_>>>()?;
    let methods = match &r.auth {
        None => default_methods(context.auth_methods),
        Some(words) => {
            let field = format!("{at}.auth");
            let methods = words
                .iter()
                .enumerate()
                .map(|(j, text)| word::<AuthMethod>(&format!("{field}[{j}]"), text))
                .collect::<Lowered<Vec<_>>>()?;
            route_methods(&field, methods, context.auth_methods)?
        }
    };
    if !r.scopes.is_empty() && methods == [AuthMethod::None] {
        return fault(
            format!("{at}.scopes"),
            "a route that needs no credentials cannot require scopes",
        );
    }
    Ok(Route {
        name: r.name.clone(),
        paths: r.paths.clone(),
        models,
        pool: r.upstream.clone(),
        aliases: most_specific_first(&r.model_aliases),
        retry: Retry {
            attempts: count_in(&format!("{at}.retry.attempts"), r.retry.attempts, 1, 10)?,
            on: retry_on,
        },
        limits: r.limits.clone(),
        auth: methods,
        scopes: r.scopes.clone(),
        default_max_tokens: match r.default_max_tokens {
            Some(n) => count_in(&format!("{at}.default_max_tokens"), n, 1, MAX_LIMIT)?,
            None => context.default_max_tokens,
        },
        drop_unsupported_params: r.drop_unsupported_params,
        fallbacks: r.fallbacks.clone(),
    })
}

/// Entries keyed by model name or glob, literal names first, then globs
/// from the most specific (longest) down: a lookup takes the first that
/// matches.
fn most_specific_first<T: Clone>(
    configured: &std::collections::BTreeMap<String, T>,
) -> Vec<(Glob, T)> {
    let mut out: Vec<(Glob, T)> = configured
        .iter()
        .filter_map(|(model, value)| Some((Glob::new(model)?, value.clone())))
        .collect();
    out.sort_by_key(|(alias, _)| (!alias.is_literal(), std::cmp::Reverse(alias.as_str().len())));
    out
}

fn route_methods(
    at: &str,
    methods: Vec<AuthMethod>,
    configured: &[AuthMethod],
) -> Lowered<Vec<AuthMethod>> {
    ensure(
        !methods.is_empty(),
        || at.to_string(),
        "needs at least one method (or `none`)",
    )?;
    if methods.contains(&AuthMethod::None) && methods.len() > 1 {
        return fault(at, "`none` cannot be combined with other methods");
    }
    for (method, needs) in [
        (
            AuthMethod::ApiKey,
            "`api_key` needs keys in `auth.api_keys`",
        ),
        (AuthMethod::Jwt, "`jwt` needs an `auth.jwt` section"),
        (
            AuthMethod::ClientCert,
            "`client_cert` needs identities in `auth.client_certs`",
        ),
    ] {
        if methods.contains(&method) && !configured.contains(&method) {
            return fault(at, needs);
        }
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_aliases_win_then_the_longest_glob() {
        let configured: std::collections::BTreeMap<String, String> = [
            ("claude-*", "general"),
            ("claude-haiku-*", "small"),
            ("claude-haiku-4-5", "exact"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let aliases = most_specific_first(&configured);
        let lookup = |model: &str| {
            aliases
                .iter()
                .find(|(alias, _)| alias.matches(model))
                .map(|(_, target)| target.as_str())
        };
        assert_eq!(lookup("claude-haiku-4-5"), Some("exact"));
        assert_eq!(lookup("claude-haiku-4-5-20251001"), Some("small"));
        assert_eq!(lookup("claude-sonnet-4-6"), Some("general"));
        assert_eq!(lookup("gpt-4o"), None);
    }
}
