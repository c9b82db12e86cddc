//! `auth`: API keys, client certificates and JWTs.

use std::time::Duration;

use schemars::JsonSchema;

use super::super::json_schema as js;
use serde::Deserialize;

use super::super::duration::serde_str as duration;
use super::super::secret::Secret;

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// Identities of TLS client certificates (mTLS).
    #[serde(default)]
    pub client_certs: Vec<ClientCert>,
    #[serde(default)]
    pub jwt: Option<Jwt>,
}

/// Declares a kind of configured caller (an API key, a client
/// certificate): its own fields, then the grants every caller carries,
/// spelled once here so that a new grant is added once. (`#[serde(flatten)]`
/// would do the same, but serde cannot deny unknown fields next to a
/// flattened type, and errors in it lose their field's name.)
macro_rules! caller {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            #[serde(default)]
            pub owner: Option<String>,
            #[serde(default)]
            pub team: Option<String>,
            #[serde(default)]
            pub models: Vec<String>,
            #[serde(default)]
            pub limits: Vec<String>,
            #[serde(default)]
            pub scopes: Vec<String>,
            #[serde(default = "default_true")]
            pub enabled: bool,
        }

        impl $name {
            /// What the caller is granted.
            pub fn grants(&self) -> Grants<'_> {
                Grants {
                    owner: self.owner.as_deref(),
                    team: self.team.as_deref(),
                    models: &self.models,
                    limits: &self.limits,
                    scopes: &self.scopes,
                    enabled: self.enabled,
                }
            }
        }
    };
}

/// Who a configured caller is and what it may do, as every kind of caller
/// spells it.
pub struct Grants<'a> {
    pub owner: Option<&'a str>,
    pub team: Option<&'a str>,
    pub models: &'a [String],
    pub limits: &'a [String],
    pub scopes: &'a [String],
    pub enabled: bool,
}

caller! {
    pub struct ApiKey {
        pub id: String,
        #[serde(default)]
        pub sha256: Option<String>,
        #[serde(default)]
        pub key: Option<Secret>,
    }
}

caller! {
    /// A verified client certificate's identity: the certificate is matched
    /// by its subject's common name or by one of its alternative names.
    pub struct ClientCert {
        pub id: String,
        #[serde(default)]
        pub subject: Option<String>,
        #[serde(default)]
        pub san: Option<String>,
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    #[serde(default = "default_leeway", with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub leeway: Duration,
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    #[serde(default)]
    pub oidc: Option<Oidc>,
    #[serde(default)]
    pub claims: ClaimNames,
    /// Verified tokens remembered until their `exp` (0: verify every time).
    #[serde(default = "default_token_cache")]
    pub cache_tokens: usize,
}

fn default_token_cache() -> usize {
    10_000
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    #[serde(default)]
    pub kid: Option<String>,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub public_key_file: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Oidc {
    #[serde(default)]
    pub issuer_url: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_oidc_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_refresh", with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub refresh_interval: Duration,
    #[serde(default = "default_cooldown", with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub refetch_cooldown: Duration,
    #[serde(default = "default_fetch_timeout", with = "duration")]
    #[schemars(schema_with = "js::duration")]
    pub fetch_timeout: Duration,
    #[serde(default)]
    pub allow_http_loopback: bool,
    #[serde(default)]
    pub ca_file: Option<String>,
}

fn default_oidc_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_refresh() -> Duration {
    Duration::from_secs(600)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: String,
    pub team: String,
    pub models: String,
    pub scopes: String,
    pub limits: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            team: "team".into(),
            models: "models".into(),
            scopes: "scope".into(),
            limits: "limits".into(),
        }
    }
}
