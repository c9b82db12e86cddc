//! The file format translated into the model: every check, parse and
//! default happens here, once, and every fault names its field. Numbers that
//! size memory or time have an upper bound as well as a lower one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use sha2::{Digest, Sha256};

use super::cidr::Cidr;
use super::glob::Glob;
use super::keyword::{
    choices, AccessLogFormat, AuthMethod, LimitCounts, LimitKeyPart, LimitMode, LimitWindow,
    ProviderKind, RedisFailure, RetryOn, Strategy,
};
use super::model::*;
use super::schema;
use super::secret::Secret;
use super::tls::{CaBundle, ClientCa, ServerCertificate};
use super::url::{check_fetch_url, BaseUrl};

/// A fault: the dotted path of the field, and what is wrong with it.
#[derive(Debug)]
pub struct Fault {
    pub field: String,
    pub message: String,
}

type Result<T> = std::result::Result<T, Fault>;

/// Expands `${NAME}` references from the environment, and remembers every
/// secret it expands, so the logger can scrub them from every line.
pub struct Expander<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    found: std::cell::RefCell<Vec<Secret>>,
}

impl<'a> Expander<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            found: Default::default(),
        }
    }

    fn remember(&self, secret: &str) {
        self.found.borrow_mut().push(Secret::new(secret));
    }
}

type Env<'a> = &'a Expander<'a>;

fn fault<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(Fault {
        field: field.into(),
        message: message.into(),
    })
}

fn ensure(ok: bool, field: impl FnOnce() -> String, message: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        fault(field(), message)
    }
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Models a route may fall back to: each may cost a full set of attempts.
const MAX_FALLBACKS: usize = 5;

/// `min <= value <= max`, for counts.
fn count_in<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T> {
    if value < min || value > max {
        return fault(field, format!("must be between {min} and {max}"));
    }
    Ok(value)
}

/// A duration above zero and at most `max` (it is added to instants).
fn positive_up_to(field: &str, value: Duration, max: Duration) -> Result<Duration> {
    if value.is_zero() {
        return fault(field, "must be above zero");
    }
    up_to(field, value, max)
}

/// A duration of at most `max`.
fn up_to(field: &str, value: Duration, max: Duration) -> Result<Duration> {
    if value > max {
        return fault(field, format!("must be at most {}", human(max)));
    }
    Ok(value)
}

/// `min <= value <= max`, for durations with a floor above zero.
fn duration_in(field: &str, value: Duration, min: Duration, max: Duration) -> Result<Duration> {
    if value < min || value > max {
        return fault(
            field,
            format!("must be between {} and {}", human(min), human(max)),
        );
    }
    Ok(value)
}

/// `24h`, `1m`, `100ms`: a bound the way config writes durations.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A config word of the kind `parse` reads.
fn keyword<K: Copy>(
    field: &str,
    word: &str,
    parse: fn(&str) -> Option<K>,
    all: &[K],
    as_str: fn(K) -> &'static str,
) -> Result<K> {
    parse(word).ok_or_else(|| {
        let words: Vec<&str> = all.iter().map(|k| as_str(*k)).collect();
        Fault {
            field: field.to_string(),
            message: format!("unknown value `{word}` (expected {})", choices(&words)),
        }
    })
}

macro_rules! word {
    ($kind:ident, $field:expr, $word:expr) => {
        keyword($field, $word, $kind::parse, $kind::ALL, $kind::as_str)
    };
}

fn expand(field: &str, secret: &Secret, env: Env<'_>) -> Result<Secret> {
    let mut secret = secret.clone();
    match secret.expand(env.env) {
        Ok(()) => {
            env.remember(secret.expose());
            Ok(secret)
        }
        Err(e) => fault(field, e),
    }
}

/// A name that must be given and not used twice among its kind.
fn unique_name<'a>(
    seen: &mut HashSet<&'a str>,
    field: String,
    name: &'a str,
    kind: &str,
) -> Result<()> {
    if name.is_empty() {
        return fault(field, "must not be empty");
    }
    if !seen.insert(name) {
        return fault(field, format!("`{name}` is used by another {kind}"));
    }
    Ok(())
}

fn socket_addr(field: &str, text: &str) -> Result<SocketAddr> {
    text.parse().or_else(|_| {
        fault(
            field,
            format!("`{text}` is not an ip:port address (e.g. 0.0.0.0:8080)"),
        )
    })
}

fn ca_bundle(field: &str, path: &Option<String>) -> Result<Option<CaBundle>> {
    match path {
        None => Ok(None),
        Some(path) => CaBundle::load(path).map(Some).or_else(|e| fault(field, e)),
    }
}

pub fn translate(file: schema::File, env: Env<'_>) -> Result<Config> {
    let process = Process {
        server: server(&file.server)?,
        listen: listen(&file.listen)?,
        mock_upstream: match &file.mock_upstream {
            Some(mock) => Some(socket_addr("mock_upstream.listen", &mock.listen)?),
            None => None,
        },
        reload: Reload {
            watch: file.reload.watch,
            interval: duration_in(
                "reload.interval",
                file.reload.interval,
                Duration::from_millis(100),
                DAY,
            )?,
        },
        access_log_output: AccessLogOutput {
            path: match &file.access_log.path {
                Some(path) if path.trim().is_empty() => {
                    return fault(
                        "access_log.path",
                        "must not be empty (leave it out for stdout)",
                    )
                }
                path => path.clone(),
            },
            buffer_bytes: count_in(
                "access_log.buffer_bytes",
                file.access_log.buffer_bytes,
                4096,
                1 << 30,
            )?,
        },
        tracing: tracing(&file.tracing)?,
    };
    let request = request(&file.request)?;
    let access_log = AccessLog {
        enabled: file.access_log.enabled,
        format: word!(
            AccessLogFormat,
            "access_log.format",
            &file.access_log.format
        )?,
    };
    ensure(
        !file.upstreams.is_empty(),
        || "upstreams".into(),
        "needs at least one pool",
    )?;
    let pools = file
        .upstreams
        .iter()
        .map(|(name, pool)| self::pool(name, pool, env))
        .collect::<Result<Vec<_>>>()?;
    let auth = match &file.auth {
        Some(auth) => self::auth(auth, env)?,
        None => Auth::default(),
    };
    let verifies_clients = process
        .listen
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_ca.is_some());
    if !auth.client_certs.is_empty() && !verifies_clients {
        return fault(
            "auth.client_certs",
            "needs listen.tls.client_ca_file (client certificates are verified at the handshake)",
        );
    }
    let limits = match &file.limits {
        Some(limits) => self::limits(limits, !file.pricing.is_empty(), env)?,
        None => Limits::default(),
    };
    let rule_names: HashSet<&str> = limits.rules.iter().map(|r| r.name.as_str()).collect();
    let check_rule_refs = |at: &str, names: &[String]| -> Result<()> {
        for (i, name) in names.iter().enumerate() {
            if !rule_names.contains(name.as_str()) {
                return fault(
                    format!("{at}[{i}]"),
                    format!("no limit rule is named `{name}`"),
                );
            }
        }
        Ok(())
    };
    for (i, key) in auth.api_keys.iter().enumerate() {
        check_rule_refs(&format!("auth.api_keys[{i}].limits"), &key.grants.limits)?;
    }
    for (i, cert) in auth.client_certs.iter().enumerate() {
        check_rule_refs(
            &format!("auth.client_certs[{i}].limits"),
            &cert.grants.limits,
        )?;
    }
    check_rule_refs("limits.global_rules", &limits.global_rules)?;
    ensure(
        !file.routes.is_empty(),
        || "routes".into(),
        "needs at least one route",
    )?;
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(file.routes.len());
    for (i, route) in file.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        unique_name(&mut names, format!("{at}.name"), &route.name, "route")?;
        check_rule_refs(&format!("{at}.limits"), &route.limits)?;
        routes.push(self::route(
            &at,
            route,
            &file,
            &auth,
            limits.default_max_tokens,
        )?);
    }
    // A fallback is a model another route serves.
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
    let admin_token = match &file.admin {
        Some(admin) => Some(self::admin_token(&admin.token, env)?),
        None => None,
    };
    let secrets = env.found.take();
    Ok(Config {
        process,
        secrets,
        max_connections: file.listen.max_connections,
        metrics_on_proxy: file.listen.metrics_on_proxy,
        trusted_proxies: file
            .listen
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Cidr::parse(text).or_else(|e| fault(format!("listen.trusted_proxies[{i}]"), e))
            })
            .collect::<Result<_>>()?,
        request,
        access_log,
        auth,
        limits,
        pools,
        routes,
        pricing: pricing(&file.pricing)?,
        admin_token,
    })
}

/// `None` when tracing is off (`enabled: false`, or `OTEL_SDK_DISABLED=true`
/// as the OpenTelemetry SDKs agree).
fn tracing(t: &schema::Tracing) -> Result<Option<TracingSettings>> {
    let disabled_by_env =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !t.enabled || disabled_by_env {
        return Ok(None);
    }
    if let Some(endpoint) = &t.endpoint {
        // The exporter's HTTP client speaks cleartext: a collector on the
        // pod or cluster network (sidecar, DaemonSet agent, gateway).
        let uri: http::Uri = endpoint
            .parse()
            .or_else(|e| fault("tracing.endpoint", format!("not a URL: {e}")))?;
        ensure(
            uri.scheme_str() == Some("http") && uri.host().is_some(),
            || "tracing.endpoint".into(),
            "must be an http:// URL of an OTLP collector (e.g. http://otel-collector:4318/v1/traces)",
        )?;
    }
    if let Some(ratio) = t.sample_ratio {
        ensure(
            (0.0..=1.0).contains(&ratio),
            || "tracing.sample_ratio".into(),
            "must be between 0 and 1",
        )?;
    }
    Ok(Some(TracingSettings {
        endpoint: t.endpoint.clone(),
        service_name: t.service_name.clone(),
        sample_ratio: t.sample_ratio,
        queue_size: count_in("tracing.queue_size", t.queue_size, 16, 1 << 20)?,
        export_interval: duration_in(
            "tracing.export_interval",
            t.export_interval,
            Duration::from_millis(10),
            MINUTE,
        )?,
        export_timeout: duration_in(
            "tracing.export_timeout",
            t.export_timeout,
            Duration::from_millis(10),
            MINUTE,
        )?,
    }))
}

/// Shorter than this, a token can be guessed by a patient scanner.
const MIN_ADMIN_TOKEN: usize = 16;

fn admin_token(token: &Secret, env: Env<'_>) -> Result<Secret> {
    let token = expand("admin.token", token, env)?;
    ensure(
        token.expose().len() >= MIN_ADMIN_TOKEN,
        || "admin.token".into(),
        &format!("must be at least {MIN_ADMIN_TOKEN} characters"),
    )?;
    Ok(token)
}

/// A price above this (USD per million tokens) is a typo, not a model.
const MAX_PRICE_PER_MILLION: f64 = 1_000_000.0;

fn pricing(prices: &[schema::Price]) -> Result<Vec<Price>> {
    prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let model = Glob::new(&p.model).ok_or_else(|| Fault {
                field: format!("pricing[{i}].model"),
                message: "must not be empty".into(),
            })?;
            let cached = p.cached_input_per_million.unwrap_or(p.input_per_million);
            for (name, value) in [
                ("input_per_million", p.input_per_million),
                ("output_per_million", p.output_per_million),
                ("cached_input_per_million", cached),
            ] {
                ensure(
                    value.is_finite() && (0.0..=MAX_PRICE_PER_MILLION).contains(&value),
                    || format!("pricing[{i}].{name}"),
                    "must be a number of USD between 0 and 1000000",
                )?;
            }
            Ok(Price {
                model,
                input_per_million: p.input_per_million,
                output_per_million: p.output_per_million,
                cached_input_per_million: cached,
            })
        })
        .collect()
}

fn server(s: &schema::Server) -> Result<Server> {
    for (field, set) in [
        ("grace_period_seconds", s.grace_period_seconds.is_some()),
        (
            "graceful_shutdown_timeout_seconds",
            s.graceful_shutdown_timeout_seconds.is_some(),
        ),
    ] {
        ensure(
            !set,
            || format!("server.{field}"),
            "was replaced by `server.drain_timeout` (e.g. 300s): the gateway now serves \
             requests in flight until the last one ends or the drain timeout passes",
        )?;
    }
    Ok(Server {
        threads: count_in("server.threads", s.threads, 1, 1024)?,
        drain_timeout: positive_up_to("server.drain_timeout", s.drain_timeout, DAY)?,
        upgrade_sock: s.upgrade_sock.clone(),
        pid_file: s.pid_file.clone(),
        error_log: s.error_log.clone(),
        daemon: s.daemon,
        upstream_keepalive_pool_size: count_in(
            "server.upstream_keepalive_pool_size",
            s.upstream_keepalive_pool_size,
            0,
            1_000_000,
        )?,
    })
}

fn listen(l: &schema::Listen) -> Result<Listen> {
    ensure(
        !l.proxy.is_empty() || !l.proxy_tls.is_empty(),
        || "listen.proxy".into(),
        "needs at least one address (here or in listen.proxy_tls)",
    )?;
    let addresses = |field: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, addr)| socket_addr(&format!("{field}[{i}]"), addr))
            .collect::<Result<Vec<_>>>()
    };
    let proxy = addresses("listen.proxy", &l.proxy)?;
    let proxy_tls = addresses("listen.proxy_tls", &l.proxy_tls)?;
    // A connection is told TLS from cleartext by the port it came in on.
    for (i, addr) in proxy_tls.iter().enumerate() {
        if proxy.iter().any(|plain| plain.port() == addr.port()) {
            return fault(
                format!("listen.proxy_tls[{i}]"),
                format!("port {} is also a cleartext listen.proxy port", addr.port()),
            );
        }
    }
    ensure(
        l.read_buffer_bytes <= 1024 * 1024,
        || "listen.read_buffer_bytes".into(),
        "must be at most 1048576 (it is allocated for every connection)",
    )?;
    let tls = match (&l.tls, proxy_tls.is_empty()) {
        (None, true) => None,
        (None, false) => return fault("listen.tls", "is needed by listen.proxy_tls"),
        (Some(_), true) => return fault("listen.proxy_tls", "needs an address for listen.tls"),
        (Some(tls), false) => Some(edge_tls(tls)?),
    };
    Ok(Listen {
        proxy,
        proxy_tls,
        admin: socket_addr("listen.admin", &l.admin)?,
        read_buffer_bytes: l.read_buffer_bytes,
        tls,
        h2c: l.h2c,
        proxy_protocol: l.proxy_protocol,
    })
}

fn edge_tls(t: &schema::ListenTls) -> Result<EdgeTls> {
    ensure(
        !t.certificates.is_empty(),
        || "listen.tls.certificates".into(),
        "needs at least one {cert_file, key_file}",
    )?;
    let mut certificates = Vec::with_capacity(t.certificates.len());
    for (i, files) in t.certificates.iter().enumerate() {
        ServerCertificate::load(&files.cert_file, &files.key_file)
            .or_else(|e| fault(format!("listen.tls.certificates[{i}]"), e))?;
        certificates.push(CertificateFiles {
            cert_file: files.cert_file.clone(),
            key_file: files.key_file.clone(),
        });
    }
    let client_ca = match &t.client_ca_file {
        Some(path) => {
            Some(ClientCa::load(path).or_else(|e| fault("listen.tls.client_ca_file", e))?)
        }
        None => None,
    };
    let client_cert_required = match (t.client_auth.as_deref(), &client_ca) {
        (None | Some("required"), Some(_)) => true,
        (Some("optional"), Some(_)) => false,
        (Some("required" | "optional"), None) => {
            return fault("listen.tls.client_auth", "needs listen.tls.client_ca_file")
        }
        (None, None) => false,
        (Some(other), _) => {
            return fault(
                "listen.tls.client_auth",
                format!("`{other}` is not one of `required`, `optional`"),
            )
        }
    };
    Ok(EdgeTls {
        certificates,
        client_ca,
        client_cert_required,
        reload_interval: duration_in(
            "listen.tls.reload_interval",
            t.reload_interval,
            Duration::from_millis(100),
            HOUR,
        )?,
        handshake_timeout: duration_in(
            "listen.tls.handshake_timeout",
            t.handshake_timeout,
            Duration::from_millis(100),
            MINUTE,
        )?,
    })
}

fn request(r: &schema::Request) -> Result<RequestLimits> {
    // The client deadlines are added to instants on every request.
    Ok(RequestLimits {
        max_body_bytes: count_in("request.max_body_bytes", r.max_body_bytes, 1, 1 << 30)?,
        max_headers: count_in("request.max_headers", r.max_headers, 8, 10_000)?,
        max_header_bytes: count_in(
            "request.max_header_bytes",
            r.max_header_bytes,
            1024,
            1024 * 1024,
        )?,
        body_timeout: positive_up_to("request.body_timeout", r.body_timeout, DAY)?,
        header_timeout: positive_up_to("request.header_timeout", r.header_timeout, DAY)?,
        idle_timeout: positive_up_to("request.idle_timeout", r.idle_timeout, DAY)?,
        write_timeout: positive_up_to("request.write_timeout", r.write_timeout, DAY)?,
    })
}

fn pool(name: &str, p: &schema::Pool, env: Env<'_>) -> Result<Pool> {
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
        .collect::<Result<Vec<_>>>()?;
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
        strategy: word!(Strategy, &format!("{at}.strategy"), &p.strategy)?,
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
    })
}

/// A header value from config: valid, and masked in every log.
fn sensitive_value(field: &str, value: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value)
        .or_else(|_| fault(field, "contains characters not allowed in an HTTP header"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn backend(at: &str, b: &schema::Backend, env: Env<'_>) -> Result<Backend> {
    let url = BaseUrl::parse(&b.base_url).or_else(|e| fault(format!("{at}.base_url"), e))?;
    let provider = word!(ProviderKind, &format!("{at}.provider"), &b.provider)?;
    let mut headers = Vec::new();
    if let Some(key) = &b.api_key {
        let field = format!("{at}.api_key");
        let key = expand(&field, key, env)?;
        let (name, value) = match provider {
            ProviderKind::Openai => ("authorization", format!("Bearer {}", key.expose())),
            ProviderKind::Anthropic => ("x-api-key", key.expose().to_string()),
        };
        headers.push((
            HeaderName::from_static(name),
            sensitive_value(&field, &value)?,
        ));
    }
    if provider == ProviderKind::Anthropic && !b.headers.contains_key("anthropic-version") {
        headers.push((
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static("2023-06-01"),
        ));
    }
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

fn auth(a: &schema::Auth, env: Env<'_>) -> Result<Auth> {
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut api_keys = Vec::with_capacity(a.api_keys.len());
    for (i, key) in a.api_keys.iter().enumerate() {
        let at = format!("auth.api_keys[{i}]");
        unique_name(&mut ids, format!("{at}.id"), &key.id, "key")?;
        let sha256: [u8; 32] = match (&key.sha256, &key.key) {
            (Some(hex), None) => decode_hex(hex).ok_or_else(|| Fault {
                field: format!("{at}.sha256"),
                message: "must be 64 hex digits (`ai-api-gateway hash-key` prints it)".into(),
            })?,
            (None, Some(secret)) => {
                let secret = expand(&format!("{at}.key"), secret, env)?;
                ensure(
                    !secret.expose().is_empty(),
                    || format!("{at}.key"),
                    "must not be empty",
                )?;
                Sha256::digest(secret.expose().as_bytes()).into()
            }
            _ => return fault(at, "needs exactly one of `sha256` and `key`"),
        };
        if !hashes.insert(sha256) {
            return fault(at, "the same key is configured twice");
        }
        api_keys.push(ApiKey {
            id: key.id.clone(),
            sha256,
            grants: grants(&at, key.grants())?,
        });
    }
    let jwt = match &a.jwt {
        Some(jwt) => Some(self::jwt(jwt, env)?),
        None => None,
    };
    let mut names = HashSet::new();
    let mut client_certs = Vec::with_capacity(a.client_certs.len());
    for (i, cert) in a.client_certs.iter().enumerate() {
        let at = format!("auth.client_certs[{i}]");
        unique_name(&mut ids, format!("{at}.id"), &cert.id, "identity")?;
        let name = match (&cert.subject, &cert.san) {
            (Some(cn), None) if !cn.is_empty() => CertificateName::Subject(cn.clone()),
            (None, Some(san)) if !san.is_empty() => CertificateName::AltName(san.clone()),
            _ => return fault(at, "needs exactly one non-empty `subject` or `san`"),
        };
        if !names.insert(name.clone()) {
            return fault(at, "the same certificate name is configured twice");
        }
        client_certs.push(ClientCert {
            id: cert.id.clone(),
            name,
            grants: grants(&at, cert.grants())?,
        });
    }
    Ok(Auth {
        api_keys,
        client_certs,
        jwt,
    })
}

/// A caller's grants, at `at`.
fn grants(at: &str, g: schema::Grants<'_>) -> Result<Grants> {
    Ok(Grants {
        owner: g.owner.map(str::to_string),
        team: g.team.map(str::to_string),
        models: globs(&format!("{at}.models"), g.models)?,
        limits: g.limits.to_vec(),
        scopes: g.scopes.to_vec(),
        enabled: g.enabled,
    })
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Algorithm names of one key: one family (one key verifies one family),
/// and never HMAC for keys that come from a JWKS.
pub fn parse_algorithms(
    names: &[String],
    no_hmac: bool,
) -> std::result::Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Err("needs at least one algorithm".into());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let alg: Algorithm = name.parse().map_err(|_| {
            format!("unknown algorithm `{name}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)")
        })?;
        if no_hmac && alg.family() == AlgorithmFamily::Hmac {
            return Err(format!("`{name}`: HMAC keys are never taken from a JWKS"));
        }
        out.push(alg);
    }
    if !no_hmac && out.iter().any(|a| a.family() != out[0].family()) {
        return Err("one key's algorithms must be of one family (e.g. RS256 and PS256, not RS256 and ES256)".into());
    }
    Ok(out)
}

fn jwt(j: &schema::Jwt, env: Env<'_>) -> Result<Jwt> {
    ensure(
        !j.keys.is_empty() || j.oidc.is_some(),
        || "auth.jwt".into(),
        "needs `keys` or `oidc`",
    )?;
    let mut keys = Vec::with_capacity(j.keys.len());
    for (i, key) in j.keys.iter().enumerate() {
        let at = format!("auth.jwt.keys[{i}]");
        let algorithms = parse_algorithms(&key.algorithms, false)
            .or_else(|e| fault(format!("{at}.algorithms"), e))?;
        let family = algorithms[0].family();
        let decoding = match (family, &key.secret, &key.public_key_file) {
            (AlgorithmFamily::Hmac, Some(secret), None) => {
                let secret = expand(&format!("{at}.secret"), secret, env)?;
                DecodingKey::from_secret(secret.expose().as_bytes())
            }
            (AlgorithmFamily::Hmac, _, _) => {
                return fault(
                    at,
                    "HS* algorithms need `secret` (and no `public_key_file`)",
                )
            }
            (family, None, Some(file)) => {
                let field = format!("{at}.public_key_file");
                let pem = std::fs::read(file)
                    .or_else(|e| fault(&field, format!("cannot read `{file}`: {e}")))?;
                let parsed = match family {
                    AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                    AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                };
                parsed.or_else(|e| {
                    fault(&field, format!("`{file}` is not a usable public key: {e}"))
                })?
            }
            _ => {
                return fault(
                    at,
                    "this algorithm needs `public_key_file` (and no `secret`)",
                )
            }
        };
        keys.push(JwtKey {
            kid: key.kid.clone(),
            algorithms,
            key: decoding,
        });
    }
    let oidc = match &j.oidc {
        Some(oidc) => Some(self::oidc(oidc)?),
        None => None,
    };
    let c = &j.claims;
    Ok(Jwt {
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        leeway: up_to("auth.jwt.leeway", j.leeway, HOUR)?,
        keys,
        oidc,
        claims: ClaimNames {
            subject: c.subject.clone(),
            team: c.team.clone(),
            models: c.models.clone(),
            scopes: c.scopes.clone(),
            limits: c.limits.clone(),
        },
        cache_tokens: count_in("auth.jwt.cache_tokens", j.cache_tokens, 0, 10_000_000)?,
    })
}

fn oidc(o: &schema::Oidc) -> Result<Oidc> {
    let at = "auth.jwt.oidc";
    let (field, url) = match (&o.issuer_url, &o.jwks_uri) {
        (Some(url), None) => ("issuer_url", url),
        (None, Some(url)) => ("jwks_uri", url),
        _ => return fault(at, "needs exactly one of `issuer_url` and `jwks_uri`"),
    };
    check_fetch_url(url, o.allow_http_loopback).or_else(|e| fault(format!("{at}.{field}"), e))?;
    let source = if field == "issuer_url" {
        OidcSource::Discovery {
            issuer_url: url.clone(),
            allow_http_loopback: o.allow_http_loopback,
        }
    } else {
        OidcSource::Jwks(url.clone())
    };
    Ok(Oidc {
        source,
        algorithms: parse_algorithms(&o.algorithms, true)
            .or_else(|e| fault(format!("{at}.algorithms"), e))?,
        refresh_interval: duration_in(
            &format!("{at}.refresh_interval"),
            o.refresh_interval,
            SECOND,
            DAY,
        )?,
        refetch_cooldown: up_to(&format!("{at}.refetch_cooldown"), o.refetch_cooldown, DAY)?,
        fetch_timeout: positive_up_to(&format!("{at}.fetch_timeout"), o.fetch_timeout, MINUTE)?,
        ca: ca_bundle(&format!("{at}.ca_file"), &o.ca_file)?,
    })
}

/// A rule's limit: a whole count from 1 to 2^48, or for a budget USD above
/// zero, counted inside in micro-USD.
fn rule_limit(field: &str, counts: LimitCounts, limit: f64) -> Result<u64> {
    if counts == LimitCounts::CostUsd {
        let most = MAX_LIMIT / 1_000_000;
        if !(limit > 0.0 && limit <= most as f64) {
            return fault(
                field,
                format!("must be a number of USD above 0 and at most {most}"),
            );
        }
        return Ok(((limit * 1e6).round() as u64).max(1));
    }
    if !(limit.fract() == 0.0 && (1.0..=MAX_LIMIT as f64).contains(&limit)) {
        return fault(
            field,
            format!("must be a whole number from 1 to 2^48 ({MAX_LIMIT})"),
        );
    }
    Ok(limit as u64)
}

fn limits(l: &schema::Limits, priced: bool, env: Env<'_>) -> Result<Limits> {
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(l.rules.len());
    for (i, rule) in l.rules.iter().enumerate() {
        let at = format!("limits.rules[{i}]");
        unique_name(&mut names, format!("{at}.name"), &rule.name, "rule")?;
        ensure(
            !rule.key.is_empty(),
            || format!("{at}.key"),
            "needs at least one part (e.g. [api_key])",
        )?;
        let key = rule
            .key
            .iter()
            .enumerate()
            .map(|(j, part)| word!(LimitKeyPart, &format!("{at}.key[{j}]"), part))
            .collect::<Result<Vec<_>>>()?;
        let counts = word!(LimitCounts, &format!("{at}.counts"), &rule.counts)?;
        rules.push(LimitRule {
            name: rule.name.clone(),
            key,
            counts,
            limit: rule_limit(&format!("{at}.limit"), counts, rule.limit)?,
            window: word!(LimitWindow, &format!("{at}.window"), &rule.window)?,
        });
        if counts == LimitCounts::CostUsd && !priced {
            return fault(
                format!("{at}.counts"),
                "`cost_usd` needs a `pricing` table: without prices nothing costs anything",
            );
        }
    }
    let mode = match &l.mode {
        Some(mode) => word!(LimitMode, "limits.mode", mode)?,
        None if l.redis.is_some() => LimitMode::Hybrid,
        None => LimitMode::Local,
    };
    if mode != LimitMode::Local && l.redis.is_none() {
        return fault(
            "limits.mode",
            "`hybrid` and `redis` need a `limits.redis` section",
        );
    }
    let redis = match &l.redis {
        Some(r) => Some(self::redis(r, env)?),
        None => None,
    };
    Ok(Limits {
        mode,
        redis,
        rules,
        global_rules: l.global_rules.clone(),
        default_max_tokens: count_in(
            "limits.default_max_tokens",
            l.default_max_tokens,
            1,
            MAX_LIMIT,
        )?,
    })
}

/// The client for `limits.redis`: the URL, then the ACL user and password
/// and the TLS roots when set. Errors name what is wrong without echoing
/// the URL or a password.
/// A Redis node's URL (`redis://` or `rediss://`), `${ENV}` expanded.
fn redis_url(field: &str, url: &Secret, env: Env<'_>) -> Result<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let url = expand(field, url, env)?;
    ensure(
        url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"),
        || field.to_string(),
        "must be a redis:// or rediss:// URL",
    )?;
    url.expose()
        .into_connection_info()
        .or_else(|e| fault(field, format!("not a usable Redis URL ({:?})", e.kind())))
}

fn is_tls(info: &redis::ConnectionInfo) -> bool {
    matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })
}

/// `username` and `password` (ACL), `${ENV}` expanded.
fn redis_credentials(r: &schema::Redis, env: Env<'_>) -> Result<(Option<String>, Option<String>)> {
    let at = "limits.redis";
    if r.username.is_some() {
        ensure(
            r.password.is_some(),
            || format!("{at}.username"),
            "needs a `password` too",
        )?;
    }
    let expose = |field: &str, value: &Option<Secret>| {
        value
            .as_ref()
            .map(|v| expand(&format!("{at}.{field}"), v, env).map(|v| v.expose().to_string()))
            .transpose()
    };
    Ok((
        expose("username", &r.username)?,
        expose("password", &r.password)?,
    ))
}

/// The CA of `tls.ca_file`, checked against the URLs' schemes.
fn redis_tls(r: &schema::Redis, tls_urls: bool) -> Result<Option<redis::TlsCertificates>> {
    let at = "limits.redis";
    let Some(tls) = &r.tls else {
        return Ok(None);
    };
    ensure(
        tls_urls,
        || format!("{at}.tls"),
        "needs a rediss:// URL (TLS is the URL's scheme)",
    )?;
    let root_cert = match &tls.ca_file {
        Some(path) => Some(std::fs::read(path).or_else(|e| {
            fault(
                format!("{at}.tls.ca_file"),
                format!("cannot read {path}: {e}"),
            )
        })?),
        None => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert,
    }))
}

fn redis_setup_fault<T>(field: &str, e: redis::RedisError) -> Result<T> {
    fault(
        field,
        format!(
            "cannot set up the Redis client ({:?}: {})",
            e.kind(),
            e.detail().unwrap_or("")
        ),
    )
}

/// The client of the one topology `limits.redis` names.
fn redis_client(r: &schema::Redis, env: Env<'_>) -> Result<RedisClient> {
    let at = "limits.redis";
    let named = [
        r.url.is_some(),
        !r.cluster_nodes.is_empty(),
        r.sentinel.is_some(),
    ];
    if named.iter().filter(|n| **n).count() != 1 {
        return fault(
            at,
            "needs exactly one of `url`, `cluster_nodes` and `sentinel`",
        );
    }
    let (username, password) = redis_credentials(r, env)?;
    if let Some(url) = &r.url {
        let mut info = redis_url(&format!("{at}.url"), url, env)?;
        let tls = redis_tls(r, is_tls(&info))?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = match tls {
            Some(certificates) => redis::Client::build_with_tls(info, certificates),
            None => redis::Client::open(info),
        };
        return client
            .map(RedisClient::Single)
            .or_else(|e| redis_setup_fault(&format!("{at}.tls"), e));
    }
    if let Some(sentinel) = &r.sentinel {
        ensure(
            !sentinel.master_name.is_empty(),
            || format!("{at}.sentinel.master_name"),
            "must not be empty",
        )?;
        ensure(
            !sentinel.nodes.is_empty(),
            || format!("{at}.sentinel.nodes"),
            "needs at least one sentinel",
        )?;
        let nodes = sentinel
            .nodes
            .iter()
            .enumerate()
            .map(|(i, url)| {
                redis_url(
                    &format!("{at}.sentinel.nodes[{i}]"),
                    &Secret::new(url.clone()),
                    env,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let tls_urls = nodes.iter().all(is_tls);
        ensure(
            tls_urls || !nodes.iter().any(is_tls),
            || format!("{at}.sentinel.nodes"),
            "mixes redis:// and rediss:// URLs",
        )?;
        return Ok(RedisClient::Sentinel(RedisSentinel {
            master_name: sentinel.master_name.clone(),
            tls: redis_tls(r, tls_urls)?,
            nodes,
            username,
            password,
        }));
    }
    let nodes = r
        .cluster_nodes
        .iter()
        .enumerate()
        .map(|(i, url)| redis_url(&format!("{at}.cluster_nodes[{i}]"), url, env))
        .collect::<Result<Vec<_>>>()?;
    let tls_urls = nodes.iter().all(is_tls);
    ensure(
        tls_urls || !nodes.iter().any(is_tls),
        || format!("{at}.cluster_nodes"),
        "mixes redis:// and rediss:// URLs",
    )?;
    let tls = redis_tls(r, tls_urls)?;
    let seeds = nodes.iter().map(|n| n.addr().to_string()).collect();
    let timeout = positive_up_to(&format!("{at}.timeout"), r.timeout, MINUTE)?;
    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(timeout)
        .response_timeout(timeout)
        // A request never waits past the timeout: the retries the crate
        // makes after MOVED or a failover all fit inside it, and more are
        // the next request's to make.
        .retries(2)
        .min_retry_wait(5)
        .max_retry_wait(50);
    if let Some(username) = &username {
        builder = builder.username(username);
    }
    if let Some(password) = &password {
        builder = builder.password(password);
    }
    if tls_urls {
        builder = builder.tls(redis::TlsMode::Secure);
    }
    if let Some(certificates) = tls {
        builder = builder.certs(certificates);
    }
    builder
        .build()
        .map(|client| RedisClient::Cluster {
            client: Box::new(client),
            seeds,
        })
        .or_else(|e| redis_setup_fault(&format!("{at}.cluster_nodes"), e))
}

fn redis(r: &schema::Redis, env: Env<'_>) -> Result<Redis> {
    let at = "limits.redis";
    let client = redis_client(r, env)?;
    if !(r.lease_fraction > 0.0 && r.lease_fraction <= 1.0) {
        return fault(
            format!("{at}.lease_fraction"),
            "must be above 0 and at most 1",
        );
    }
    Ok(Redis {
        client,
        timeout: positive_up_to(&format!("{at}.timeout"), r.timeout, MINUTE)?,
        sync_interval: duration_in(
            &format!("{at}.sync_interval"),
            r.sync_interval,
            Duration::from_millis(10),
            HOUR,
        )?,
        lease_fraction: r.lease_fraction,
        expected_replicas: count_in(
            &format!("{at}.expected_replicas"),
            r.expected_replicas,
            1,
            10_000,
        )?,
        on_error: word!(RedisFailure, &format!("{at}.on_error"), &r.on_error)?,
    })
}

fn globs(at: &str, patterns: &[String]) -> Result<Vec<Glob>> {
    patterns
        .iter()
        .enumerate()
        .map(|(j, p)| {
            Glob::new(p).ok_or_else(|| Fault {
                field: format!("{at}[{j}]"),
                message: "must not be empty".into(),
            })
        })
        .collect()
}

/// The methods a route accepts when its config names none: every method the
/// `auth` section configures, or none.
fn default_methods(auth: &Auth) -> Vec<AuthMethod> {
    let mut methods = Vec::new();
    if !auth.api_keys.is_empty() {
        methods.push(AuthMethod::ApiKey);
    }
    if auth.jwt.is_some() {
        methods.push(AuthMethod::Jwt);
    }
    if !auth.client_certs.is_empty() {
        methods.push(AuthMethod::ClientCert);
    }
    if methods.is_empty() {
        methods.push(AuthMethod::None);
    }
    methods
}

fn route(
    at: &str,
    r: &schema::Route,
    file: &schema::File,
    auth: &Auth,
    default_max_tokens: u64,
) -> Result<Route> {
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
    if !file.upstreams.contains_key(&r.upstream) {
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
        .map(|(j, word)| word!(RetryOn, &format!("{at}.retry.on[{j}]"), word))
        .collect::<Result<Vec<_>>>()?;
    let methods = match &r.auth {
        None => default_methods(auth),
        Some(words) => {
            let field = format!("{at}.auth");
            let methods = words
                .iter()
                .enumerate()
                .map(|(j, word)| word!(AuthMethod, &format!("{field}[{j}]"), word))
                .collect::<Result<Vec<_>>>()?;
            route_methods(&field, methods, auth)?
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
        aliases: r
            .model_aliases
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        retry: Retry {
            attempts: count_in(&format!("{at}.retry.attempts"), r.retry.attempts, 1, 10)?,
            on: retry_on,
        },
        limits: r.limits.clone(),
        auth: methods,
        scopes: r.scopes.clone(),
        default_max_tokens: match r.default_max_tokens {
            Some(n) => count_in(&format!("{at}.default_max_tokens"), n, 1, MAX_LIMIT)?,
            None => default_max_tokens,
        },
        drop_unsupported_params: r.drop_unsupported_params,
        fallbacks: r.fallbacks.clone(),
    })
}

fn route_methods(at: &str, methods: Vec<AuthMethod>, auth: &Auth) -> Result<Vec<AuthMethod>> {
    ensure(
        !methods.is_empty(),
        || at.to_string(),
        "needs at least one method (or `none`)",
    )?;
    if methods.contains(&AuthMethod::None) && methods.len() > 1 {
        return fault(at, "`none` cannot be combined with other methods");
    }
    if methods.contains(&AuthMethod::ApiKey) && auth.api_keys.is_empty() {
        return fault(at, "`api_key` needs keys in `auth.api_keys`");
    }
    if methods.contains(&AuthMethod::Jwt) && auth.jwt.is_none() {
        return fault(at, "`jwt` needs an `auth.jwt` section");
    }
    if methods.contains(&AuthMethod::ClientCert) && auth.client_certs.is_empty() {
        return fault(at, "`client_cert` needs identities in `auth.client_certs`");
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_lists_are_checked() {
        assert!(parse_algorithms(&["RS256".into(), "PS256".into()], false).is_ok());
        assert!(parse_algorithms(&["RS256".into(), "ES256".into()], false).is_err());
        assert!(parse_algorithms(&["none".into()], false).is_err());
        assert!(parse_algorithms(&["HS256".into()], true).is_err());
        assert!(parse_algorithms(&[], false).is_err());
    }

    #[test]
    fn bounds_read_like_config() {
        assert_eq!(human(DAY), "24h");
        assert_eq!(human(Duration::from_millis(100)), "100ms");
        assert_eq!(human(MINUTE), "1m");
    }
}
