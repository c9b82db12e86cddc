//! `gemini`: Google's Gemini API (`generativelanguage.googleapis.com`): the
//! model in the path (`/v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for streams), the key in
//! `x-goog-api-key`. Clients reach it translated from their dialect.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::{key_header, percent_encode_segment, Call, Provider, Spec};
use crate::config::check::{fault, Lowered};
use crate::llm::Dialect;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// `v1beta` (where new features land) or `v1`.
    #[serde(default = "default_version")]
    api_version: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_version: default_version(),
        }
    }
}

fn default_version() -> String {
    "v1beta".into()
}

#[derive(Debug)]
pub struct Gemini {
    api_version: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn build(spec: &Spec<'_>) -> Lowered<Arc<dyn Provider>> {
    let options: Options = spec.options()?;
    if !matches!(options.api_version.as_str(), "v1" | "v1beta") {
        return fault(
            format!("{}.options.api_version", spec.at),
            "must be `v1beta` or `v1`",
        );
    }
    let Some(headers) = key_header(spec, "x-goog-api-key", str::to_string)? else {
        return fault(
            format!("{}.api_key", spec.at),
            "a gemini backend needs its API key",
        );
    };
    Ok(Arc::new(Gemini {
        api_version: options.api_version,
        headers: vec![headers],
    }))
}

/// `/{models path}:generateContent`, or the stream's method with `alt=sse`.
pub fn generate_path(models: &str, model: &str, stream: bool) -> String {
    let model = percent_encode_segment(model.strip_prefix("models/").unwrap_or(model));
    if stream {
        format!("{models}/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{models}/{model}:generateContent")
    }
}

impl Provider for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Gemini
    }

    fn path(&self, call: &Call<'_>) -> Option<String> {
        let model = call.model?;
        Some(generate_path(
            &format!("/{}/models", self.api_version),
            model,
            call.stream,
        ))
    }

    fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}
