//! Upstream providers, one module each: what a backend of a kind is beyond
//! the wire format it speaks (`llm::wire`): where a request goes (paths with
//! a model or a deployment in them, query parameters), how it is
//! authenticated, and how its answers are framed. The phases ask the
//! backend's provider; nothing outside this folder matches on a
//! provider's name. A provider is one module here, one entry in
//! [`KINDS`], its mock and its tests.

mod anthropic;
mod openai;

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use crate::config::check::{fault, sensitive_value, Lowered};
use crate::config::keyword::choices;
use crate::config::Secret;
use crate::llm::Dialect;

/// One backend's provider, built from its config.
pub trait Provider: Send + Sync + fmt::Debug {
    /// Its config keyword, also the `provider` label of metrics and spans.
    fn name(&self) -> &'static str;
    /// The API its chat endpoint speaks.
    fn dialect(&self) -> Dialect;
    /// The path and query a request goes to, after the base URL's path
    /// prefix; `None` keeps the client's.
    fn path(&self, call: &Call<'_>) -> Option<String>;
    /// What every request to it carries: its credentials and the headers
    /// its API requires (marked sensitive: they never print).
    fn headers(&self) -> &[(HeaderName, HeaderValue)];
    /// Whether an answer with these headers is a stream of events.
    fn streams(&self, response: &ResponseHeader) -> bool {
        is_event_stream(response)
    }
}

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
}

/// How a backend's config builds a provider of one kind.
type Build = fn(&Spec<'_>) -> Lowered<Arc<dyn Provider>>;

/// Every provider kind: its keyword and its build.
pub const KINDS: &[(&str, Build)] = &[("openai", openai::build), ("anthropic", anthropic::build)];

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

fn is_event_stream(response: &ResponseHeader) -> bool {
    response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}
