//! Authentication: API keys, JWTs with configured keys, JWTs with keys from
//! an OIDC issuer's JWKS, and verified TLS client certificates. Every method
//! produces one [`Identity`].

mod admin_token;
mod api_key;
mod client_cert;
mod credentials;

mod jwks;
mod jwt;
mod keys;
pub mod settings;
mod token_cache;

use std::sync::Arc;

use http::HeaderMap;

pub use admin_token::AdminToken;
pub use api_key::{hash_key, ApiKeyStore};
pub use jwks::JwksRefresher;
pub use jwt::JwtVerifier;

use crate::config::{AuthMethod, Glob};
pub use crate::edge::tls::ClientCertificate;
use crate::error::{ApiError, ErrorCode};
use crate::observability::metrics::metrics;
use client_cert::ClientCertStore;
use credentials::Credential;

/// Who is calling, as the rest of the gateway sees it. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub method: AuthMethod,
    /// The API key's id, the token's subject or the client certificate's id.
    pub id: String,
    /// Who the key belongs to (API keys' `owner`), for the access log.
    pub owner: Option<String>,
    pub team: Option<String>,
    /// Models the caller may use; empty: every model.
    pub models: Vec<Glob>,
    /// What the caller is granted; routes may require scopes.
    pub scopes: Vec<String>,
    /// Names of limit rules that apply to the caller.
    pub limits: Vec<String>,
}

impl Identity {
    fn new(method: AuthMethod, id: &str, grants: &settings::Grants) -> Self {
        Self {
            method,
            id: id.to_string(),
            owner: grants.owner.clone(),
            team: grants.team.clone(),
            models: grants.models.clone(),
            scopes: grants.scopes.clone(),
            limits: grants.limits.clone(),
        }
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|glob| glob.matches(model))
    }

    /// Whether the caller holds every scope in `required`.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|scope| self.scopes.contains(scope))
    }
}

/// A configured caller (an API key, a client certificate), as the stores
/// keep it: its identity, built once, and whether it may be used.
struct Caller {
    identity: Arc<Identity>,
    enabled: bool,
}

impl Caller {
    fn new(method: AuthMethod, id: &str, grants: &settings::Grants) -> Self {
        Self {
            identity: Arc::new(Identity::new(method, id, grants)),
            enabled: grants.enabled,
        }
    }

    /// The identity, when enabled; a disabled caller looks unknown.
    fn identity(&self) -> Result<Arc<Identity>, Failure> {
        if self.enabled {
            Ok(self.identity.clone())
        } else {
            Err(Failure::UnknownKey)
        }
    }
}

/// Why authentication failed: the bounded `reason` label of `auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Missing,
    Malformed,
    Expired,
    NotYetValid,
    BadSignature,
    BadIssuer,
    BadAudience,
    UnknownKey,
    TooLarge,
    ForbiddenModel,
    InsufficientScope,
}

impl Failure {
    /// Every failure, for metrics that start each reason at zero.
    pub const ALL: [Failure; 11] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::BadSignature,
        Failure::BadIssuer,
        Failure::BadAudience,
        Failure::UnknownKey,
        Failure::TooLarge,
        Failure::ForbiddenModel,
        Failure::InsufficientScope,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::BadSignature => "bad_signature",
            Failure::BadIssuer => "bad_issuer",
            Failure::BadAudience => "bad_audience",
            Failure::UnknownKey => "unknown_key",
            Failure::TooLarge => "too_large",
            Failure::ForbiddenModel => "forbidden_model",
            Failure::InsufficientScope => "insufficient_scope",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750), for 401s.
    pub fn challenge(self) -> Option<&'static str> {
        match self {
            Failure::ForbiddenModel => None,
            Failure::InsufficientScope => {
                Some("Bearer realm=\"ai-api-gateway\", error=\"insufficient_scope\"")
            }
            Failure::Missing => Some("Bearer realm=\"ai-api-gateway\""),
            _ => Some("Bearer realm=\"ai-api-gateway\", error=\"invalid_token\""),
        }
    }

    /// The client's answer. Messages say what to fix without revealing which
    /// keys exist.
    pub fn to_api_error(self, model: Option<&str>) -> ApiError {
        let mut error = self.answer(model);
        error.challenge = self.challenge();
        error
    }

    fn answer(self, model: Option<&str>) -> ApiError {
        match self {
            Failure::ForbiddenModel => ApiError::new(
                ErrorCode::ModelNotAllowed,
                format!(
                    "You are not allowed to use the model `{}`.",
                    model.unwrap_or_default()
                ),
            ),
            Failure::InsufficientScope => ApiError::new(
                ErrorCode::InsufficientScope,
                "Your credentials do not grant the scopes this endpoint requires.",
            ),
            Failure::Missing => ApiError::new(
                ErrorCode::MissingCredentials,
                "No credentials: send `Authorization: Bearer <key or token>` or `x-api-key`.",
            ),
            Failure::TooLarge => ApiError::new(
                ErrorCode::InvalidCredentials,
                "The credentials are too large.",
            ),
            Failure::Expired => {
                ApiError::new(ErrorCode::InvalidCredentials, "The token has expired.")
            }
            _ => ApiError::new(
                ErrorCode::InvalidCredentials,
                "The credentials are not valid.",
            ),
        }
    }
}

/// Checks callers against the configured keys and issuers.
pub struct Authenticator {
    api_keys: ApiKeyStore,
    client_certs: ClientCertStore,
    jwt: Option<Arc<JwtVerifier>>,
}

impl Authenticator {
    pub fn new(settings: &settings::Auth) -> Self {
        // Every failure reason starts at zero, so rate() and alerts work from
        // the first scrape.
        for failure in Failure::ALL {
            metrics()
                .auth_failures
                .with_label_values(&[failure.reason()]);
        }
        Self {
            api_keys: ApiKeyStore::new(&settings.api_keys),
            client_certs: ClientCertStore::new(&settings.client_certs),
            jwt: settings
                .jwt
                .as_ref()
                .map(|jwt| Arc::new(JwtVerifier::new(jwt))),
        }
    }

    /// The background JWKS refresh, when an OIDC issuer is configured.
    pub fn jwks_refresher(&self) -> Option<JwksRefresher> {
        self.jwt.as_ref().and_then(|j| j.jwks_refresher())
    }

    /// Authenticates a request for a route accepting `methods`, from its
    /// headers and its connection's verified client certificate. `Ok(None)`
    /// when the route needs no credentials. A certificate, when the route
    /// takes them, is looked at first: it was proven at the handshake.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        client_cert: Option<&ClientCertificate>,
        methods: &[AuthMethod],
    ) -> Result<Option<Arc<Identity>>, Failure> {
        if methods.contains(&AuthMethod::None) {
            return Ok(None);
        }
        let accepts_cert =
            methods.contains(&AuthMethod::ClientCert) && !self.client_certs.is_empty();
        if let (true, Some(certificate)) = (accepts_cert, client_cert) {
            let only_certificates = methods.len() == 1;
            match self.client_certs.lookup(certificate) {
                Ok(identity) => return Ok(Some(identity)),
                // An unknown certificate may still come with a key or a token.
                Err(failure) if only_certificates => return Err(failure),
                Err(_) => {}
            }
        }
        let accepts_jwt = methods.contains(&AuthMethod::Jwt) && self.jwt.is_some();
        let accepts_key = methods.contains(&AuthMethod::ApiKey);
        match credentials::extract(headers)? {
            Credential::Bearer(token) if accepts_jwt && credentials::looks_like_jwt(token) => {
                match &self.jwt {
                    Some(jwt) => jwt.verify(token).await.map(Some),
                    None => Err(Failure::Missing),
                }
            }
            Credential::Bearer(key) | Credential::KeyHeader(key) if accepts_key => {
                self.api_keys.lookup(key).map(Some)
            }
            Credential::Bearer(token) if accepts_jwt => match &self.jwt {
                Some(jwt) => jwt.verify(token).await.map(Some),
                None => Err(Failure::Missing),
            },
            // A credential of a kind this route does not take.
            Credential::Bearer(_) | Credential::KeyHeader(_) => Err(Failure::Malformed),
            Credential::None => Err(Failure::Missing),
        }
    }
}
