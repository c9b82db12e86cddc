//! The whole configuration, lowered: the file is read and parsed by
//! `config/`, and each section is lowered by the module that builds it
//! (routes and pools in `routing/`, callers in `auth/`, limits in
//! `limits/`, tracing and the access log in `observability/`, listeners
//! and request bounds in `edge/`, prices in `llm/`). What spans sections
//! (a route naming a limit rule, client certificates needing a client CA)
//! is checked here, and so are the process's own settings (Pingora's, the
//! reload, the demo's mock). Every fault names the file, the field and what
//! is wrong, so `check`, a failed start and a refused reload say the same
//! thing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::auth::settings as auth;
use crate::config::check::{
    count_in, duration_in, ensure, fault, positive_up_to, socket_addr, Lowered, DAY,
};
use crate::config::{self, schema, Cidr, ConfigError, Env, Expander, Secret};
use crate::edge::settings as edge;
use crate::limits::settings as limits;
use crate::llm::{self, Price};
use crate::observability::settings as observability;
use crate::routing::settings as routing;

#[derive(Debug)]
pub struct Settings {
    /// Bound when the process starts: a change takes a graceful upgrade.
    pub process: Process,
    /// Every secret the file named (expanded `${ENV}` values, passwords):
    /// what the logger scrubs from every line.
    pub secrets: Vec<Secret>,
    /// Most client connections open at once (0: no cap); follows reloads.
    pub max_connections: usize,
    /// Answer `/metrics` on the proxy port too; follows reloads.
    pub metrics_on_proxy: bool,
    /// Peers whose `X-Forwarded-For` names the client; follows reloads.
    pub trusted_proxies: Vec<Cidr>,
    pub request: edge::RequestLimits,
    pub answers: llm::AnswerBounds,
    pub access_log: observability::AccessLog,
    pub auth: auth::Auth,
    pub limits: limits::Limits,
    pub pools: Vec<routing::Pool>,
    pub routes: Vec<routing::Route>,
    pub pricing: Vec<Price>,
    /// The bearer token of the admin endpoints beyond health and metrics;
    /// `None`: they answer 401.
    pub admin_token: Option<Secret>,
}

/// What a running process cannot change. A reload compares it whole, so a
/// field added here is a field a reload reports as needing an upgrade.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub server: Server,
    pub listen: edge::Listen,
    /// Start the repo's mock LLM upstream inside the gateway (demo).
    pub mock_upstream: Option<SocketAddr>,
    pub reload: Reload,
    /// Where the access log goes: its writer starts with the process.
    pub access_log_output: observability::AccessLogOutput,
    /// OpenTelemetry trace export, started with the process; `None`: off.
    pub tracing: Option<observability::TracingSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub threads: usize,
    pub drain_timeout: Duration,
    pub upgrade_sock: String,
    pub pid_file: String,
    pub error_log: Option<String>,
    pub daemon: bool,
    pub upstream_keepalive_pool_size: usize,
}

impl Server {
    /// The one place our settings become Pingora's `ServerConf`; Pingora copies
    /// it at `Server` construction, so it must be complete before then.
    ///
    /// The gateway ends the process itself once drained (`lifecycle.rs`).
    /// Pingora's grace period is only a backstop: at its end Pingora shuts its
    /// runtimes down and drops every task, so it must outlast the drain,
    /// which may start after Pingora's fixed 5 s upgrade hand-over.
    pub fn to_pingora(&self) -> pingora::server::configuration::ServerConf {
        let drain_secs = self.drain_timeout.as_secs_f64().ceil() as u64;
        pingora::server::configuration::ServerConf {
            threads: self.threads,
            grace_period_seconds: Some(drain_secs + 10),
            graceful_shutdown_timeout_seconds: Some(1),
            upgrade_sock: self.upgrade_sock.clone(),
            pid_file: self.pid_file.clone(),
            error_log: self.error_log.clone(),
            daemon: self.daemon,
            upstream_keepalive_pool_size: self.upstream_keepalive_pool_size,
            // One single-threaded runtime per worker thread: a connection's
            // task stays on the thread that accepted it, which the memory
            // release after a surge counts on (memory.rs).
            work_stealing: false,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// Also reload when the file's modification time changes.
    pub watch: bool,
    pub interval: Duration,
}

/// Reads, parses and lowers `path`, expanding `${ENV}` references.
pub fn load_file(path: &Path) -> Result<Settings, ConfigError> {
    let (text, file) = config::read(path)?;
    load_str(&text, &file, |name| std::env::var(name).ok())
}

/// Parses and lowers config text; `file` names it in errors and `env` looks
/// up `${NAME}` references.
pub fn load_str(
    text: &str,
    file: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let parsed = config::parse(text, file)?;
    lower(parsed, &Expander::new(&env)).map_err(|fault| ConfigError::at(file, fault))
}

fn lower(file: schema::File, env: Env<'_>) -> Lowered<Settings> {
    let process = Process {
        server: server(&file.server)?,
        listen: edge::listen(&file.listen)?,
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
        access_log_output: observability::access_log_output(&file.access_log)?,
        tracing: observability::tracing(&file.tracing)?,
    };
    let request = edge::request(&file.request)?;
    let access_log = observability::access_log(&file.access_log)?;
    let pools = routing::pools(&file.upstreams, env)?;
    let auth = match &file.auth {
        Some(auth) => auth::auth(auth, env)?,
        None => auth::Auth::default(),
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
        Some(limits) => limits::limits(limits, !file.pricing.is_empty(), env)?,
        None => limits::Limits::default(),
    };
    let rule_names: HashSet<&str> = limits.rules.iter().map(|r| r.name.as_str()).collect();
    for (i, key) in auth.api_keys.iter().enumerate() {
        routing::rule_refs(
            &format!("auth.api_keys[{i}].limits"),
            &key.grants.limits,
            &rule_names,
        )?;
    }
    for (i, cert) in auth.client_certs.iter().enumerate() {
        routing::rule_refs(
            &format!("auth.client_certs[{i}].limits"),
            &cert.grants.limits,
            &rule_names,
        )?;
    }
    routing::rule_refs("limits.global_rules", &limits.global_rules, &rule_names)?;
    let routes = routing::routes(
        &file.routes,
        &routing::RouteContext {
            pools: &pools,
            auth_methods: &auth.methods(),
            rule_names: &rule_names,
            default_max_tokens: limits.default_max_tokens,
        },
    )?;
    let admin_token = match &file.admin {
        Some(admin) => Some(auth::admin_token(&admin.token, env)?),
        None => None,
    };
    let trusted_proxies = file
        .listen
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Cidr::parse(text).or_else(|e| fault(format!("listen.trusted_proxies[{i}]"), e))
        })
        .collect::<Lowered<_>>()?;
    Ok(Settings {
        process,
        secrets: env.secrets(),
        max_connections: file.listen.max_connections,
        metrics_on_proxy: file.listen.metrics_on_proxy,
        trusted_proxies,
        request,
        answers: llm::lower_answer_bounds(&file.answers)?,
        access_log,
        auth,
        limits,
        pools,
        routes,
        pricing: llm::lower_prices(&file.pricing)?,
        admin_token,
    })
}

fn server(s: &schema::Server) -> Lowered<Server> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMethod, RetryOn};

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

    fn load(text: &str) -> Result<Settings, ConfigError> {
        load_str(text, "test.yaml", env)
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(
            config.process.listen.proxy,
            vec!["0.0.0.0:8080".parse().unwrap()]
        );
        let backend = &config.pools[0].backends[0];
        assert_eq!(backend.weight, 1);
        assert_eq!(backend.provider.name(), "openai");
        let (name, value) = &backend.provider.headers()[0];
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer sk-test");
        assert!(value.is_sensitive());
        assert_eq!(config.routes[0].auth, vec![AuthMethod::None]);
        assert_eq!(
            config.routes[0].retry.on,
            vec![RetryOn::ConnectError, RetryOn::Timeout]
        );
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

    /// Every kind of caller takes the same grants, and says which field of
    /// them is wrong.
    #[test]
    fn callers_share_their_grants_and_their_errors_name_the_field() {
        let text = format!(
            "auth:\n  api_keys:\n    - {{id: a, key: k, team: t, models: [\"gpt-*\"], scopes: [s], limits: [], enabled: false}}\n{MINIMAL}"
        );
        let config = load(&text).unwrap();
        let grants = &config.auth.api_keys[0].grants;
        assert_eq!(grants.team.as_deref(), Some("t"));
        assert_eq!(grants.scopes, ["s"]);
        assert!(!grants.enabled);
        for (line, error) in [
            (
                "{id: a, key: k, enabled: maybe}",
                "auth.api_keys[0].enabled: invalid type",
            ),
            (
                "{id: a, key: k, colour: red}",
                "auth.api_keys[0]: unknown field `colour`",
            ),
        ] {
            let text = format!("auth:\n  api_keys:\n    - {line}\n{MINIMAL}");
            let err = load(&text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("test.yaml: {error}")), "{err}");
        }
    }

    #[test]
    fn unknown_words_name_the_field_and_the_choices() {
        let text = MINIMAL.replace(
            "    upstream: local",
            "    upstream: local\n    retry: {on: [timeout, 6xx]}",
        );
        let err = load(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "test.yaml: routes[0].retry.on[1]: unknown value `6xx` (expected `connect_error`, `timeout`, `5xx` or `429`)"
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
    fn the_same_api_key_twice_is_refused() {
        let text = format!(
            "auth:\n  api_keys:\n    - {{id: a, key: same}}\n    - {{id: b, key: same}}\n{MINIMAL}"
        );
        let err = load(&text).unwrap_err();
        assert_eq!(err.field, "auth.api_keys[1]");
        assert_eq!(err.message, "the same key is configured twice");
    }

    #[test]
    fn numbers_that_size_memory_or_time_are_bounded() {
        for (setting, field) in [
            ("request:\n  idle_timeout: 100y\n", "request.idle_timeout"),
            ("request:\n  header_timeout: 0s\n", "request.header_timeout"),
            (
                "listen:\n  read_buffer_bytes: 1073741824\n",
                "listen.read_buffer_bytes",
            ),
            (
                "request:\n  max_body_bytes: 17179869184\n",
                "request.max_body_bytes",
            ),
            ("server:\n  threads: 100000\n", "server.threads"),
            ("reload:\n  interval: 0s\n", "reload.interval"),
        ] {
            let e = load(&format!("{setting}{MINIMAL}")).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let huge_total = MINIMAL.replace(
            "    backends:",
            "    timeouts: {total: 10000h}\n    backends:",
        );
        assert_eq!(
            load(&huge_total).unwrap_err().to_string(),
            "test.yaml: upstreams.local.timeouts.total: must be at most 24h"
        );
        let heavy = MINIMAL.replace(
            "        api_key:",
            "        weight: 4000000000\n        api_key:",
        );
        assert_eq!(
            load(&heavy).unwrap_err().to_string(),
            "test.yaml: upstreams.local.backends[0].weight: must be between 1 and 1000"
        );
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

        /// Mutations of a valid config never panic the translation.
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

/// The config file's JSON Schema: the file's types (`config::json_schema`)
/// with the words that live above the config layer filled in, the provider
/// kinds and the JWT algorithms.
pub fn json_schema() -> serde_json::Value {
    let mut schema = config::json_schema::file().to_value();
    let providers: Vec<&str> = crate::providers::KINDS.iter().map(|(k, _)| *k).collect();
    let defs = &mut schema["$defs"];
    defs["Backend"]["properties"]["provider"]["enum"] = serde_json::json!(providers);
    for (def, field) in [("JwtKey", "algorithms"), ("Oidc", "algorithms")] {
        defs[def]["properties"][field]["items"] = serde_json::json!({
            "type": "string",
            "enum": auth::ALGORITHMS,
        });
    }
    schema
}

/// [`json_schema`] as the shipped file holds it.
pub fn json_schema_text() -> String {
    serde_json::to_string_pretty(&json_schema()).unwrap_or_default()
}
