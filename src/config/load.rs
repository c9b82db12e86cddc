//! Reading and validating a config file. Every fault names the file, the
//! field and what is wrong, so `-t` and a failed start say the same thing.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::Uri;

use super::{AuthMethod, AuthSettings, BackendSettings, Config, UpstreamPool};

#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    /// Dotted path of the faulty field, empty when the fault is the whole file.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates `path`, expanding `${ENV}` references.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        field: String::new(),
        message: format!("cannot read the file: {e}"),
    })?;
    load_str(&text, &file, |name| std::env::var(name).ok())
}

/// Parses and validates config text; `file` names it in errors and `env` looks
/// up `${NAME}` references.
pub fn load_str(
    text: &str,
    file: &str,
    env: impl Fn(&str) -> Option<String> + Copy,
) -> Result<Config, ConfigError> {
    let mut config: Config = serde_yaml::from_str(text).map_err(|e| {
        // serde_yaml puts the field path first ("routes[0]: unknown field ..."),
        // so the message already names the field.
        ConfigError {
            file: file.to_string(),
            field: String::new(),
            message: e.to_string(),
        }
    })?;
    let mut faults = Validator::default();
    expand_secrets(&mut config, env, &mut faults);
    validate(&config, &mut faults);
    match faults.first {
        None => Ok(config),
        Some((field, message)) => Err(ConfigError {
            file: file.to_string(),
            field,
            message,
        }),
    }
}

/// Keeps the first fault found; validation goes on so the order of checks
/// stays readable, but one clear message is what an operator needs.
#[derive(Default)]
struct Validator {
    first: Option<(String, String)>,
}

impl Validator {
    fn fault(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.first.is_none() {
            self.first = Some((field.into(), message.into()));
        }
    }

    fn check(&mut self, ok: bool, field: impl FnOnce() -> String, message: &str) {
        if !ok {
            self.fault(field(), message);
        }
    }
}

fn expand_secrets(
    config: &mut Config,
    env: impl Fn(&str) -> Option<String> + Copy,
    faults: &mut Validator,
) {
    if let Some(redis) = config.limits.as_mut().and_then(|l| l.redis.as_mut()) {
        if let Err(e) = redis.url.expand(env) {
            faults.fault("limits.redis.url", e);
        }
    }
    if let Some(auth) = config.auth.as_mut() {
        for (i, key) in auth.api_keys.iter_mut().enumerate() {
            if let Some(secret) = key.key.as_mut() {
                if let Err(e) = secret.expand(env) {
                    faults.fault(format!("auth.api_keys[{i}].key"), e);
                }
            }
        }
        if let Some(jwt) = auth.jwt.as_mut() {
            for (i, key) in jwt.keys.iter_mut().enumerate() {
                if let Some(secret) = key.secret.as_mut() {
                    if let Err(e) = secret.expand(env) {
                        faults.fault(format!("auth.jwt.keys[{i}].secret"), e);
                    }
                }
            }
        }
    }
    for (pool_name, pool) in config.upstreams.iter_mut() {
        for (i, backend) in pool.backends.iter_mut().enumerate() {
            let at = format!("upstreams.{pool_name}.backends[{i}]");
            if let Some(key) = backend.api_key.as_mut() {
                if let Err(e) = key.expand(env) {
                    faults.fault(format!("{at}.api_key"), e);
                }
            }
            for (name, value) in backend.headers.iter_mut() {
                if let Err(e) = value.expand(env) {
                    faults.fault(format!("{at}.headers.{name}"), e);
                }
            }
        }
    }
}

fn validate(config: &Config, v: &mut Validator) {
    let server = &config.server;
    v.check(
        server.threads >= 1,
        || "server.threads".into(),
        "must be at least 1",
    );
    v.check(
        !server.drain_timeout.is_zero() && server.drain_timeout <= Duration::from_secs(24 * 3600),
        || "server.drain_timeout".into(),
        "must be above zero and at most 24h",
    );
    for (field, set) in [
        (
            "grace_period_seconds",
            server.grace_period_seconds.is_some(),
        ),
        (
            "graceful_shutdown_timeout_seconds",
            server.graceful_shutdown_timeout_seconds.is_some(),
        ),
    ] {
        v.check(
            !set,
            || format!("server.{field}"),
            "was replaced by `server.drain_timeout` (e.g. 300s): the gateway now serves \
             requests in flight until the last one ends or the drain timeout passes",
        );
    }
    v.check(
        config.request.max_body_bytes >= 1,
        || "request.max_body_bytes".into(),
        "must be at least 1",
    );
    // The client deadlines are added to instants (gateway/connection.rs), so
    // they are bounded; the body timeout goes to Pingora, which copes.
    let day = Duration::from_secs(24 * 3600);
    for (field, timeout, bounded) in [
        ("body_timeout", config.request.body_timeout, false),
        ("header_timeout", config.request.header_timeout, true),
        ("idle_timeout", config.request.idle_timeout, true),
    ] {
        v.check(
            !timeout.is_zero(),
            || format!("request.{field}"),
            "must be above zero",
        );
        v.check(
            !bounded || timeout <= day,
            || format!("request.{field}"),
            "must be at most 24h",
        );
    }
    v.check(
        config.listen.read_buffer_bytes <= 1024 * 1024,
        || "listen.read_buffer_bytes".into(),
        "must be at most 1048576 (it is allocated for every connection)",
    );
    v.check(
        config.request.max_headers >= 8,
        || "request.max_headers".into(),
        "must be at least 8",
    );
    v.check(
        config.request.max_header_bytes >= 1024,
        || "request.max_header_bytes".into(),
        "must be at least 1024",
    );
    v.check(
        !config.listen.proxy.is_empty(),
        || "listen.proxy".into(),
        "needs at least one address",
    );
    for (i, addr) in config.listen.proxy.iter().enumerate() {
        check_socket_addr(v, &format!("listen.proxy[{i}]"), addr);
    }
    check_socket_addr(v, "listen.admin", &config.listen.admin);
    if let Some(mock) = &config.mock_upstream {
        check_socket_addr(v, "mock_upstream.listen", &mock.listen);
    }

    v.check(
        !config.upstreams.is_empty(),
        || "upstreams".into(),
        "needs at least one pool",
    );
    for (name, pool) in &config.upstreams {
        validate_pool(v, name, pool);
    }

    if let Some(auth) = &config.auth {
        validate_auth(v, auth);
    }
    let rule_names: HashSet<&str> = config
        .limits
        .iter()
        .flat_map(|l| l.rules.iter().map(|r| r.name.as_str()))
        .collect();
    if let Some(limits) = &config.limits {
        validate_limits(v, limits);
    }
    let mut check_rule_refs = |at: String, names: &[String]| {
        for (i, name) in names.iter().enumerate() {
            if !rule_names.contains(name.as_str()) {
                v.fault(
                    format!("{at}[{i}]"),
                    format!("no limit rule is named `{name}`"),
                );
            }
        }
    };
    for (i, route) in config.routes.iter().enumerate() {
        check_rule_refs(format!("routes[{i}].limits"), &route.limits);
    }
    if let Some(auth) = &config.auth {
        for (i, key) in auth.api_keys.iter().enumerate() {
            check_rule_refs(format!("auth.api_keys[{i}].limits"), &key.limits);
        }
    }
    if let Some(limits) = &config.limits {
        check_rule_refs("limits.global_rules".into(), &limits.global_rules);
    }
    v.check(
        !config.routes.is_empty(),
        || "routes".into(),
        "needs at least one route",
    );
    let mut names = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        v.check(
            !route.name.is_empty(),
            || format!("{at}.name"),
            "must not be empty",
        );
        if !names.insert(route.name.as_str()) {
            v.fault(
                format!("{at}.name"),
                format!("`{}` is used by another route", route.name),
            );
        }
        v.check(
            !route.paths.is_empty(),
            || format!("{at}.paths"),
            "needs at least one path",
        );
        for (j, path) in route.paths.iter().enumerate() {
            v.check(
                path.starts_with('/') && !path.contains(['?', '#', ' ']),
                || format!("{at}.paths[{j}]"),
                "must be a path starting with `/` and without query",
            );
        }
        if !config.upstreams.contains_key(&route.upstream) {
            v.fault(
                format!("{at}.upstream"),
                format!("no upstream pool is named `{}`", route.upstream),
            );
        }
        for (j, model) in route.models.iter().enumerate() {
            v.check(
                !model.is_empty(),
                || format!("{at}.models[{j}]"),
                "must not be empty",
            );
        }
        for (alias, target) in &route.model_aliases {
            let covered = route
                .models
                .iter()
                .any(|glob| crate::routing::glob_matches(glob, alias));
            if !covered {
                v.fault(
                    format!("{at}.model_aliases.{alias}"),
                    "is not matched by any of the route's `models`, so it could never be used",
                );
            }
            v.check(
                !target.is_empty(),
                || format!("{at}.model_aliases.{alias}"),
                "the upstream model name must not be empty",
            );
        }
        v.check(
            (1..=10).contains(&route.retry.attempts),
            || format!("{at}.retry.attempts"),
            "must be between 1 and 10",
        );
        if let Some(methods) = &route.auth {
            validate_route_auth(v, &format!("{at}.auth"), methods, config.auth.as_ref());
        }
    }
}

fn validate_limits(v: &mut Validator, limits: &super::LimitSettings) {
    use super::LimitMode;
    let mut names = HashSet::new();
    for (i, rule) in limits.rules.iter().enumerate() {
        let at = format!("limits.rules[{i}]");
        v.check(
            !rule.name.is_empty(),
            || format!("{at}.name"),
            "must not be empty",
        );
        if !names.insert(rule.name.as_str()) {
            v.fault(
                format!("{at}.name"),
                format!("`{}` is used by another rule", rule.name),
            );
        }
        v.check(
            !rule.key.is_empty(),
            || format!("{at}.key"),
            "needs at least one part (e.g. [api_key])",
        );
        v.check(
            rule.limit >= 1,
            || format!("{at}.limit"),
            "must be at least 1",
        );
        v.check(
            rule.limit <= crate::limits::MAX_CHARGE,
            || format!("{at}.limit"),
            "must be at most 2^48 (281474976710656)",
        );
    }
    let mode = limits.mode;
    if matches!(mode, Some(LimitMode::Hybrid | LimitMode::Redis)) && limits.redis.is_none() {
        v.fault(
            "limits.mode",
            "`hybrid` and `redis` need a `limits.redis` section",
        );
    }
    if let Some(redis) = &limits.redis {
        v.check(
            redis.url.expose().starts_with("redis://")
                || redis.url.expose().starts_with("rediss://"),
            || "limits.redis.url".into(),
            "must be a redis:// or rediss:// URL",
        );
        v.check(
            redis.lease_fraction > 0.0 && redis.lease_fraction <= 1.0,
            || "limits.redis.lease_fraction".into(),
            "must be above 0 and at most 1",
        );
        v.check(
            redis.expected_replicas >= 1,
            || "limits.redis.expected_replicas".into(),
            "must be at least 1",
        );
        v.check(
            !redis.timeout.is_zero(),
            || "limits.redis.timeout".into(),
            "must be above zero",
        );
        v.check(
            !redis.sync_interval.is_zero(),
            || "limits.redis.sync_interval".into(),
            "must be above zero",
        );
    }
}

fn validate_route_auth(
    v: &mut Validator,
    at: &str,
    methods: &[AuthMethod],
    auth: Option<&AuthSettings>,
) {
    v.check(
        !methods.is_empty(),
        || at.to_string(),
        "needs at least one method (or `none`)",
    );
    if methods.contains(&AuthMethod::None) && methods.len() > 1 {
        v.fault(at, "`none` cannot be combined with other methods");
    }
    let has_keys = auth.is_some_and(|a| !a.api_keys.is_empty());
    let has_jwt = auth.is_some_and(|a| a.jwt.is_some());
    if methods.contains(&AuthMethod::ApiKey) && !has_keys {
        v.fault(at, "`api_key` needs keys in `auth.api_keys`");
    }
    if methods.contains(&AuthMethod::Jwt) && !has_jwt {
        v.fault(at, "`jwt` needs an `auth.jwt` section");
    }
}

fn validate_auth(v: &mut Validator, auth: &AuthSettings) {
    let mut ids = HashSet::new();
    for (i, key) in auth.api_keys.iter().enumerate() {
        let at = format!("auth.api_keys[{i}]");
        v.check(
            !key.id.is_empty(),
            || format!("{at}.id"),
            "must not be empty",
        );
        if !ids.insert(key.id.as_str()) {
            v.fault(
                format!("{at}.id"),
                format!("`{}` is used by another key", key.id),
            );
        }
        match (&key.sha256, &key.key) {
            (Some(hash), None) => v.check(
                hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                || format!("{at}.sha256"),
                "must be 64 hex digits (`ai-api-gateway hash-key` prints it)",
            ),
            (None, Some(_)) => {}
            _ => v.fault(at.clone(), "needs exactly one of `sha256` and `key`"),
        }
        if let Some(secret) = &key.key {
            v.check(
                !secret.expose().is_empty(),
                || format!("{at}.key"),
                "must not be empty",
            );
        }
    }
    let Some(jwt) = &auth.jwt else {
        return;
    };
    v.check(
        !jwt.keys.is_empty() || jwt.oidc.is_some(),
        || "auth.jwt".into(),
        "needs `keys` or `oidc`",
    );
    for (i, key) in jwt.keys.iter().enumerate() {
        let at = format!("auth.jwt.keys[{i}]");
        if let Err(e) = crate::auth::parse_algorithms(&key.algorithms, false) {
            v.fault(format!("{at}.algorithms"), e);
        }
        let hmac = key.algorithms.iter().any(|a| a.starts_with("HS"));
        match (hmac, &key.secret, &key.public_key_file) {
            (true, Some(_), None) | (false, None, Some(_)) => {}
            (true, _, _) => v.fault(
                at.clone(),
                "HS* algorithms need `secret` (and no `public_key_file`)",
            ),
            (false, _, _) => v.fault(
                at.clone(),
                "this algorithm needs `public_key_file` (and no `secret`)",
            ),
        }
        if let Some(file) = &key.public_key_file {
            if let Err(e) = std::fs::metadata(file) {
                v.fault(
                    format!("{at}.public_key_file"),
                    format!("cannot read `{file}`: {e}"),
                );
            }
        }
    }
    if let Some(oidc) = &jwt.oidc {
        let at = "auth.jwt.oidc";
        let url = match (&oidc.issuer_url, &oidc.jwks_uri) {
            (Some(u), None) => Some(("issuer_url", u)),
            (None, Some(u)) => Some(("jwks_uri", u)),
            _ => {
                v.fault(at, "needs exactly one of `issuer_url` and `jwks_uri`");
                None
            }
        };
        if let Some((field, url)) = url {
            if let Err(e) = crate::auth::check_fetch_url(url, oidc.allow_http_loopback) {
                v.fault(format!("{at}.{field}"), e);
            }
        }
        if let Err(e) = crate::auth::parse_algorithms(&oidc.algorithms, true) {
            v.fault(format!("{at}.algorithms"), e);
        }
        if let Some(ca) = &oidc.ca_file {
            if let Err(e) = std::fs::metadata(ca) {
                v.fault(format!("{at}.ca_file"), format!("cannot read `{ca}`: {e}"));
            }
        }
    }
}

fn validate_pool(v: &mut Validator, name: &str, pool: &UpstreamPool) {
    let at = format!("upstreams.{name}");
    v.check(
        !pool.backends.is_empty(),
        || format!("{at}.backends"),
        "needs at least one backend",
    );
    for (i, backend) in pool.backends.iter().enumerate() {
        validate_backend(v, &format!("{at}.backends[{i}]"), backend);
    }
    if let Some(hc) = &pool.health_check {
        v.check(
            hc.path.starts_with('/'),
            || format!("{at}.health_check.path"),
            "must start with `/`",
        );
        v.check(
            !hc.interval.is_zero(),
            || format!("{at}.health_check.interval"),
            "must be above zero",
        );
        v.check(
            !hc.timeout.is_zero(),
            || format!("{at}.health_check.timeout"),
            "must be above zero",
        );
        v.check(
            hc.healthy_threshold >= 1,
            || format!("{at}.health_check.healthy_threshold"),
            "must be at least 1",
        );
        v.check(
            hc.unhealthy_threshold >= 1,
            || format!("{at}.health_check.unhealthy_threshold"),
            "must be at least 1",
        );
    }
    v.check(
        pool.passive_health.consecutive_failures >= 1,
        || format!("{at}.passive_health.consecutive_failures"),
        "must be at least 1",
    );
    let t = &pool.timeouts;
    for (field, value) in [
        ("connect", t.connect),
        ("read", t.read),
        ("write", t.write),
        ("total", t.total),
    ] {
        v.check(
            !value.is_zero(),
            || format!("{at}.timeouts.{field}"),
            "must be above zero",
        );
    }
    if let Some(ca) = &pool.tls.ca_file {
        if let Err(e) = std::fs::metadata(ca) {
            v.fault(
                format!("{at}.tls.ca_file"),
                format!("cannot read `{ca}`: {e}"),
            );
        }
    }
}

fn validate_backend(v: &mut Validator, at: &str, backend: &BackendSettings) {
    if let Err(e) = parse_base_url(&backend.base_url) {
        v.fault(format!("{at}.base_url"), e);
    }
    v.check(
        backend.weight >= 1,
        || format!("{at}.weight"),
        "must be at least 1",
    );
    if let Some(key) = &backend.api_key {
        v.check(
            HeaderValue::from_str(key.expose()).is_ok(),
            || format!("{at}.api_key"),
            "contains characters not allowed in an HTTP header",
        );
    }
    for (name, value) in &backend.headers {
        v.check(
            HeaderName::from_bytes(name.as_bytes()).is_ok(),
            || format!("{at}.headers.{name}"),
            "is not a valid header name",
        );
        v.check(
            HeaderValue::from_str(value.expose()).is_ok(),
            || format!("{at}.headers.{name}"),
            "contains characters not allowed in an HTTP header",
        );
    }
}

fn check_socket_addr(v: &mut Validator, field: &str, addr: &str) {
    if addr.parse::<SocketAddr>().is_err() {
        v.fault(
            field,
            format!("`{addr}` is not an ip:port address (e.g. 0.0.0.0:8080)"),
        );
    }
}

/// A backend's base URL, split into what the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (empty for none).
    pub path_prefix: String,
}

impl BaseUrl {
    /// `host` or `host:port` as the Host header should carry it.
    pub fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

pub fn parse_base_url(text: &str) -> Result<BaseUrl, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(format!(
                "unsupported scheme `{other}` (expected http or https)"
            ))
        }
        None => return Err(format!("`{text}` needs a scheme (http:// or https://)")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{text}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if uri.query().is_some() {
        return Err(format!("`{text}` must not carry a query"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path_prefix = uri.path().trim_end_matches('/').to_string();
    Ok(BaseUrl {
        tls,
        host,
        port,
        path_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
upstreams:
  local:
    backends:
      - base_url: http://127.0.0.1:8000
        api_key: ${KEY}
routes:
  - name: chat
    paths: [/v1/chat/completions]
    models: ["gpt-*"]
    upstream: local
"#;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "sk-test".to_string())
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_str(text, "test.yaml", env)
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.listen.proxy, vec!["0.0.0.0:8080"]);
        assert_eq!(config.upstreams["local"].backends[0].weight, 1);
        let key = config.upstreams["local"].backends[0].api_key.as_ref();
        assert_eq!(key.map(|k| k.expose()), Some("sk-test"));
    }

    #[test]
    fn unknown_field_names_the_field() {
        let text = MINIMAL.replace(
            "    upstream: local",
            "    upstream: local\n    colour: red",
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("test.yaml: routes[0]: unknown field `colour`"),
            "{err}"
        );
    }

    #[test]
    fn missing_env_var_names_file_field_and_variable() {
        let text = MINIMAL.replace("${KEY}", "${OTHER}");
        let err = load(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "test.yaml: upstreams.local.backends[0].api_key: environment variable `OTHER` is not set"
        );
    }

    #[test]
    fn route_to_unknown_pool_is_rejected() {
        let text = MINIMAL.replace("upstream: local", "upstream: nowhere");
        let err = load(&text).unwrap_err();
        assert_eq!(err.field, "routes[0].upstream");
        assert!(err.message.contains("nowhere"));
    }

    #[test]
    fn bad_scheme_is_rejected() {
        let text = MINIMAL.replace("http://127.0.0.1:8000", "ftp://x");
        let err = load(&text).unwrap_err();
        assert_eq!(err.field, "upstreams.local.backends[0].base_url");
        assert!(err.message.contains("ftp"));
    }

    #[test]
    fn unreachable_alias_is_rejected() {
        let text = MINIMAL.replace(
            "    upstream: local",
            "    upstream: local\n    model_aliases: {claude: x}",
        );
        let err = load(&text).unwrap_err();
        assert_eq!(err.field, "routes[0].model_aliases.claude");
    }

    #[test]
    fn client_connection_settings_are_bounded() {
        let too_long = format!("request:\n  idle_timeout: 100y\n{MINIMAL}");
        let e = load(&too_long).unwrap_err();
        assert_eq!(e.field, "request.idle_timeout", "{e}");
        let zero = format!("request:\n  header_timeout: 0s\n{MINIMAL}");
        let e = load(&zero).unwrap_err();
        assert_eq!(e.field, "request.header_timeout", "{e}");
        let huge = format!("listen:\n  read_buffer_bytes: 1073741824\n{MINIMAL}");
        let e = load(&huge).unwrap_err();
        assert_eq!(e.field, "listen.read_buffer_bytes", "{e}");
    }

    #[test]
    fn bad_duration_is_rejected() {
        let text = MINIMAL.replace(
            "    backends:",
            "    timeouts: {connect: soon}\n    backends:",
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains("upstreams.local.timeouts"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("not a duration"), "{err}");
    }

    #[test]
    fn base_url_parts() {
        let url = parse_base_url("https://api.openai.com/").unwrap();
        assert_eq!(url.authority(), "api.openai.com");
        assert_eq!(url.port, 443);
        assert_eq!(url.path_prefix, "");
        let url = parse_base_url("http://10.0.0.1:8000/proxy/").unwrap();
        assert_eq!(url.authority(), "10.0.0.1:8000");
        assert_eq!(url.path_prefix, "/proxy");
        assert!(parse_base_url("localhost:8000").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is a config or a clear error, never a panic.
        #[test]
        fn any_text_loads_or_fails_cleanly(text in "\\PC{0,400}") {
            if let Err(e) = load_str(&text, "fuzz.yaml", |_| None) {
                prop_assert!(e.to_string().starts_with("fuzz.yaml: "));
            }
        }

        /// Mutations of a valid config never panic the validator.
        #[test]
        fn mutated_configs_fail_cleanly(cut in 0usize..400, insert in "\\PC{0,20}") {
            let base = "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\n        weight: 2\nroutes:\n  - {name: r, paths: [/v1], models: [\"m*\"], upstream: a, retry: {attempts: 2}}\n";
            let at = cut.min(base.len());
            let at = (0..=at).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
            let text = format!("{}{}{}", &base[..at], insert, &base[at..]);
            let _ = load_str(&text, "fuzz.yaml", |_| None);
        }
    }
}
