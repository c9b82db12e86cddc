//! `vertex`: Google Cloud's Vertex AI. Gemini models (publisher `google`)
//! in Gemini's dialect, and Claude (publisher `anthropic`) in Anthropic's,
//! at `/v1/projects/{project}/locations/{location}/publishers/{publisher}/
//! models/{model}:{method}`. Requests carry an OAuth2 access token: one
//! given, or fetched for a service account's key file or from the
//! metadata server (GKE workload identity), refreshed before it expires.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::services::background::BackgroundService;
use serde::Deserialize;
use serde_json::Value;

use super::credentials::google::{Metadata, ServiceAccount};
use super::credentials::TokenCache;
use super::gemini::generate_path;
use super::{percent_encode_segment, Call, Provider, Spec, Unavailable};
use crate::config::check::{fault, sensitive_value, Lowered};
use crate::config::{check_fetch_url, Secret};
use crate::llm::Dialect;

/// What Claude on Vertex takes in place of a model in the body.
const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    project: String,
    location: String,
    /// `google` (Gemini) or `anthropic` (Claude).
    #[serde(default)]
    publisher: Option<String>,
    #[serde(default)]
    credentials: Option<Credentials>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    /// A service account's JSON key file.
    service_account_file: Option<String>,
    /// The metadata server (`host` defaults to `GCE_METADATA_HOST`, then
    /// `metadata.google.internal`).
    metadata: Option<MetadataOptions>,
    /// An access token (`${ENV}`).
    token: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataOptions {
    host: Option<String>,
}

#[derive(Debug)]
enum Credential {
    Static(Vec<(HeaderName, HeaderValue)>),
    Token(Arc<TokenCache>),
}

#[derive(Debug)]
pub struct Vertex {
    /// `/v1/projects/{project}/locations/{location}/publishers/{publisher}/models`.
    models: String,
    dialect: Dialect,
    credential: Credential,
}

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

pub fn build(spec: &Spec<'_>) -> Lowered<Arc<dyn Provider>> {
    let options: Options = spec.options()?;
    let at = format!("{}.options", spec.at);
    for (field, value) in [
        ("project", &options.project),
        ("location", &options.location),
    ] {
        let ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return fault(
                format!("{at}.{field}"),
                "must be a Google Cloud name (letters, digits, - and _)",
            );
        }
    }
    let dialect = match options.publisher.as_deref() {
        None | Some("google") => Dialect::Gemini,
        Some("anthropic") => Dialect::Anthropic,
        Some(other) => {
            return fault(
                format!("{at}.publisher"),
                format!("unknown value `{other}` (expected `google` or `anthropic`)"),
            )
        }
    };
    if spec.api_key.is_some() {
        return fault(
            format!("{}.api_key", spec.at),
            "Vertex AI takes OAuth2 tokens, not API keys: set options.credentials",
        );
    }
    let credential = credential(spec, &at, options.credentials)?;
    let publisher = if dialect == Dialect::Anthropic {
        "anthropic"
    } else {
        "google"
    };
    Ok(Arc::new(Vertex {
        models: format!(
            "/v1/projects/{}/locations/{}/publishers/{publisher}/models",
            options.project, options.location
        ),
        dialect,
        credential,
    }))
}

/// The credentials the options name; with none, a key file in
/// `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server (as Google's
/// own libraries look for them).
fn credential(spec: &Spec<'_>, at: &str, given: Option<Credentials>) -> Lowered<Credential> {
    let given = given.unwrap_or(Credentials {
        service_account_file: spec.env.var("GOOGLE_APPLICATION_CREDENTIALS"),
        metadata: None,
        token: None,
    });
    let at = format!("{at}.credentials");
    let source: Arc<dyn super::credentials::TokenSource> =
        match (given.service_account_file, given.metadata, given.token) {
            (None, None, Some(token)) => {
                let token = spec.secret("credentials.token", &token)?;
                let value = sensitive_value(
                    &format!("{at}.token"),
                    &format!("Bearer {}", token.expose()),
                )?;
                return Ok(Credential::Static(vec![(
                    http::header::AUTHORIZATION,
                    value,
                )]));
            }
            (Some(path), None, None) => {
                let field = format!("{at}.service_account_file");
                let text = std::fs::read_to_string(&path)
                    .or_else(|e| fault(&field, format!("cannot read `{path}`: {e}")))?;
                let account = ServiceAccount::of_key_file(&text, FETCH_TIMEOUT)
                    .or_else(|e| fault(&field, format!("`{path}`: {e}")))?;
                check_fetch_url(&account.token_uri, true)
                    .or_else(|e| fault(&field, format!("`{path}`: token_uri: {e}")))?;
                Arc::new(account)
            }
            (None, metadata, None) => {
                let host = metadata
                    .and_then(|m| m.host)
                    .or_else(|| spec.env.var("GCE_METADATA_HOST"))
                    .unwrap_or_else(|| "metadata.google.internal".into());
                Arc::new(Metadata::at(&host, FETCH_TIMEOUT))
            }
            _ => {
                return fault(
                    at,
                    "needs one of `service_account_file`, `metadata` and `token`",
                )
            }
        };
    Ok(Credential::Token(TokenCache::shared("vertex", source)))
}

impl Provider for Vertex {
    fn name(&self) -> &'static str {
        "vertex"
    }

    fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn path(&self, call: &Call<'_>) -> Option<String> {
        let model = call.model?;
        if self.dialect == Dialect::Gemini {
            return Some(generate_path(&self.models, model, call.stream));
        }
        if call.client_path.starts_with("/v1/messages/count_tokens") {
            return Some(format!("{}/count-tokens:rawPredict", self.models));
        }
        let method = if call.stream {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        Some(format!(
            "{}/{}:{method}",
            self.models,
            percent_encode_segment(model)
        ))
    }

    fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        match &self.credential {
            Credential::Static(headers) => headers,
            Credential::Token(_) => &[],
        }
    }

    fn authenticate(&self, request: &mut RequestHeader) -> Result<(), Unavailable> {
        let fetched;
        let headers = match &self.credential {
            Credential::Static(headers) => headers.as_slice(),
            Credential::Token(cache) => {
                fetched = [(http::header::AUTHORIZATION, cache.header()?)];
                &fetched
            }
        };
        for (name, value) in headers {
            request
                .insert_header(name.clone(), value.clone())
                .map_err(|e| Unavailable(e.to_string()))?;
        }
        Ok(())
    }

    /// Claude on Vertex: the model is in the path, the body names
    /// Vertex's Anthropic version instead.
    fn adapt_body(&self, body: &Bytes, _call: &Call<'_>) -> Option<Bytes> {
        if self.dialect != Dialect::Anthropic {
            return None;
        }
        let mut value: Value = serde_json::from_slice(body).ok()?;
        let object = value.as_object_mut()?;
        object.remove("model");
        object
            .entry("anthropic_version")
            .or_insert_with(|| Value::from(ANTHROPIC_VERSION));
        serde_json::to_vec(&value).ok().map(Bytes::from)
    }

    fn background(&self) -> Option<Box<dyn BackgroundService + Send + Sync>> {
        match &self.credential {
            Credential::Token(cache) => Some(cache.refresher()),
            Credential::Static(_) => None,
        }
    }

    fn readiness(&self) -> Option<String> {
        match &self.credential {
            Credential::Token(cache) => cache.readiness(),
            Credential::Static(_) => None,
        }
    }
}
