//! The gateway's configuration, the bottom layer: it imports nothing from
//! the rest of the gateway. The YAML file (`schema.rs`) is read, `${ENV}`
//! secrets are expanded, and the whole is translated once into the model
//! (`model.rs`) that everything above uses. The translation is the
//! validation: every fault names the file, the field and what is wrong, so
//! `-t`, a failed start and a refused reload say the same thing.

mod cidr;
mod duration;
mod glob;
mod keyword;
mod model;
mod schema;
mod secret;
mod tls;
mod translate;
mod url;

use std::fmt;
use std::path::Path;

pub use cidr::Cidr;
pub use glob::Glob;
pub use keyword::{
    AccessLogFormat, AuthMethod, LimitCounts, LimitKeyPart, LimitMode, LimitWindow, ProviderKind,
    RedisFailure, RetryOn, Strategy,
};
pub use model::*;
pub use secret::Secret;
pub use tls::{AltName, CaBundle, CertificateNames, ClientCa, ServerCertificate};
pub use translate::parse_algorithms;
pub use url::{check_fetch_url, BaseUrl};

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
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let parsed: schema::File = serde_yaml::from_str(text).map_err(|e| {
        // serde_yaml puts the field path first ("routes[0]: unknown field ..."),
        // so the message already names the field.
        ConfigError {
            file: file.to_string(),
            field: String::new(),
            message: e.to_string(),
        }
    })?;
    translate::translate(parsed, &translate::Expander::new(&env)).map_err(|fault| ConfigError {
        file: file.to_string(),
        field: fault.field,
        message: fault.message,
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
        assert_eq!(
            config.process.listen.proxy,
            vec!["0.0.0.0:8080".parse().unwrap()]
        );
        let backend = &config.pools[0].backends[0];
        assert_eq!(backend.weight, 1);
        assert_eq!(backend.provider, ProviderKind::Openai);
        assert_eq!(backend.headers[0].0, "authorization");
        assert_eq!(backend.headers[0].1, "Bearer sk-test");
        assert!(backend.headers[0].1.is_sensitive());
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
