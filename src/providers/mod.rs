//! Upstream providers, one module each: what a backend of a kind is beyond
//! the wire format it speaks (`llm::wire`): where a request goes (paths with
//! a model or a deployment in them, query parameters), how it is
//! authenticated, and how its answers are framed. The phases ask the
//! backend's provider; nothing outside this folder matches on a
//! provider's name. A provider is one module here, one entry in
//! [`KINDS`], its mock and its tests.

mod anthropic;
mod azure;
pub mod credentials;
mod gemini;
mod openai;
mod vertex;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::services::background::BackgroundService;
use serde_json::Value;

use crate::config::check::{fault, sensitive_value, Lowered};
use crate::config::keyword::choices;
use crate::config::{expand, Env, Secret};
use crate::llm::ir::ErrorKind;
use crate::llm::Dialect;
use serde::de::DeserializeOwned;

/// One backend's provider, built from its config.
pub trait Provider: Send + Sync + fmt::Debug {
    /// Its config keyword, also the `provider` label of metrics and spans.
    fn name(&self) -> &'static str;
    /// The API its chat endpoint speaks.
    fn dialect(&self) -> Dialect;
    /// The path and query a request goes to, after the base URL's path
    /// prefix; `None` keeps the client's.
    fn path(&self, call: &Call<'_>) -> Option<String>;
    /// The headers every request to it carries that never change: its
    /// key in its header, the API version it requires (marked sensitive:
    /// they never print). Health checks send these.
    fn headers(&self) -> &[(HeaderName, HeaderValue)];
    /// Adds what a request to it carries now: [`Provider::headers`], and a
    /// token source's current token. An error when no valid credential is
    /// in hand (the request is answered 503 with the reason).
    fn authenticate(&self, request: &mut RequestHeader) -> Result<(), Unavailable> {
        for (name, value) in self.headers() {
            request
                .insert_header(name.clone(), value.clone())
                .map_err(|e| Unavailable(e.to_string()))?;
        }
        Ok(())
    }
    /// The body its API takes in place of its dialect's, when they differ
    /// (a model named in the path instead of the body, say).
    fn adapt_body(&self, _body: &Bytes, _call: &Call<'_>) -> Option<Bytes> {
        None
    }
    /// Whether an answer with these headers is a stream of events.
    fn streams(&self, response: &ResponseHeader) -> bool {
        is_event_stream(response)
    }
    /// An error answer's kind and message, for envelopes its dialect's
    /// wire does not read.
    fn parse_error(&self, _body: &Value) -> Option<(ErrorKind, String)> {
        None
    }
    /// Work it needs done off the request path (refreshing a token).
    fn background(&self) -> Option<Box<dyn BackgroundService + Send + Sync>> {
        None
    }
    /// Why it cannot take requests now (no token yet); `None` when it can.
    fn readiness(&self) -> Option<String> {
        None
    }
}

/// Why a provider cannot authenticate a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

/// What a provider needs to know of a request to send it on.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The client's path and query.
    pub client_path: &'a str,
    /// The body is a translation into the provider's dialect.
    pub translated: bool,
    /// The model the upstream is asked for (after aliases), for a request
    /// that names one.
    pub model: Option<&'a str>,
    pub stream: bool,
}

/// What a backend's config says of its provider.
pub struct Spec<'a> {
    /// Where in the config the backend is, for faults.
    pub at: &'a str,
    /// The provider key, expanded (`api_key`).
    pub api_key: Option<&'a Secret>,
    /// The provider's own settings (`options`), as written.
    pub options: Option<&'a serde_yaml::Value>,
    /// Expands `${ENV}` in them.
    pub env: Env<'a>,
}

impl Spec<'_> {
    /// The `options` as the provider's settings type `T` (its defaults
    /// when there are none); unknown fields are refused.
    pub fn options<T: DeserializeOwned + Default>(&self) -> Lowered<T> {
        match self.options {
            None => Ok(T::default()),
            Some(value) => serde_yaml::from_value(value.clone())
                .or_else(|e| fault(format!("{}.options", self.at), e.to_string())),
        }
    }

    /// A provider with no settings of its own refuses `options`.
    fn no_options(&self) -> Lowered<()> {
        match self.options {
            None => Ok(()),
            Some(_) => fault(
                format!("{}.options", self.at),
                "this provider takes no options",
            ),
        }
    }

    /// A secret of the options, `${ENV}` expanded; `field` is its name
    /// under `options`.
    pub fn secret(&self, field: &str, value: &Secret) -> Lowered<Secret> {
        expand(&format!("{}.options.{field}", self.at), value, self.env)
    }
}

/// How a backend's config builds a provider of one kind.
type Build = fn(&Spec<'_>) -> Lowered<Arc<dyn Provider>>;

/// Every provider kind: its keyword and its build.
pub const KINDS: &[(&str, Build)] = &[
    ("openai", openai::build),
    ("anthropic", anthropic::build),
    ("azure", azure::build),
    ("gemini", gemini::build),
    ("vertex", vertex::build),
];

/// The provider a backend names (`provider:`), built from its config.
pub fn build(name: &str, spec: &Spec<'_>) -> Lowered<Arc<dyn Provider>> {
    match KINDS.iter().find(|(kind, _)| *kind == name) {
        Some((_, build)) => build(spec),
        None => {
            let names: Vec<&str> = KINDS.iter().map(|(kind, _)| *kind).collect();
            fault(
                format!("{}.provider", spec.at),
                format!("unknown value `{name}` (expected {})", choices(&names)),
            )
        }
    }
}

/// The provider key in the header `name`, as `format` writes it.
fn key_header(
    spec: &Spec<'_>,
    name: &'static str,
    format: impl Fn(&str) -> String,
) -> Lowered<Option<(HeaderName, HeaderValue)>> {
    let Some(key) = spec.api_key else {
        return Ok(None);
    };
    let value = sensitive_value(&format!("{}.api_key", spec.at), &format(key.expose()))?;
    Ok(Some((HeaderName::from_static(name), value)))
}

/// A path segment with every byte but unreserved ones percent-encoded, so
/// a model or deployment name can never change the path it is put in.
pub fn percent_encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_event_stream(response: &ResponseHeader) -> bool {
    response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}
