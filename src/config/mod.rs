//! The gateway's configuration file, the bottom layer: it imports nothing
//! from the rest of the gateway. Here the YAML is read and parsed into the
//! file format (`schema.rs`), `${ENV}` secrets are expanded (`expand.rs`),
//! and the values a config holds are parsed (durations, globs, CIDRs, URLs,
//! TLS material, keywords). Each section is lowered into what it configures
//! by the module that builds it, reporting faults with [`Fault`] and the
//! checks in `check.rs`; `settings.rs` at the top puts the sections
//! together.

pub mod check;
mod cidr;
mod duration;
mod expand;
mod glob;
pub mod json_schema;
pub mod keyword;
pub mod schema;
mod secret;
mod tls;
mod url;

use std::fmt;
use std::path::Path;

pub use check::{Fault, Lowered};
pub use cidr::Cidr;
pub use expand::{expand, Env, Expander};
pub use glob::Glob;
pub use keyword::{
    AccessLogFormat, AuthMethod, Keyword, LimitCounts, LimitKeyPart, LimitMode, LimitWindow,
    RedisFailure, RetryOn, Strategy,
};
pub use secret::Secret;
pub use tls::{AltName, CaBundle, CertificateNames, ClientCa, ServerCertificate};
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

impl ConfigError {
    /// A lowering's fault in `file`.
    pub fn at(file: &str, fault: Fault) -> Self {
        Self {
            file: file.to_string(),
            field: fault.field,
            message: fault.message,
        }
    }
}

/// The text of the config file at `path`, and its name for errors.
pub fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, file)),
        Err(e) => Err(ConfigError {
            file,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        }),
    }
}

/// Parses config text into the file format; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<schema::File, ConfigError> {
    serde_yaml::from_str(text).map_err(|e| {
        // serde_yaml puts the field path first ("routes[0]: unknown field ..."),
        // so the message already names the field.
        ConfigError {
            file: file.to_string(),
            field: String::new(),
            message: e.to_string(),
        }
    })
}
