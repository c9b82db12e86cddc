//! The YAML file format: what serde reads, with the defaults of every field,
//! one file per group of sections. Unknown fields are errors. Each section's
//! module lowers its part into what it configures, and that lowering is
//! the validation.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

mod auth;
mod limits;
mod process;
mod routing;

pub use auth::*;
pub use limits::*;
pub use process::*;
pub use routing::*;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub request: Request,
    #[serde(default)]
    pub answers: Answers,
    #[serde(default)]
    pub access_log: AccessLog,
    #[serde(default)]
    pub reload: Reload,
    #[serde(default)]
    pub mock_upstream: Option<MockUpstream>,
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub limits: Option<Limits>,
    pub upstreams: BTreeMap<String, Pool>,
    pub routes: Vec<Route>,
    /// USD per million tokens, by model name or glob; the first match wins.
    #[serde(default)]
    pub pricing: Vec<Price>,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub tracing: Tracing,
}
