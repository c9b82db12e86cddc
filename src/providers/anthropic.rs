//! `anthropic`: Anthropic's API: the key in `x-api-key`, and the API
//! version every request must name (a backend's `headers` may name
//! another).

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::{key_header, Call, Provider, Spec};
use crate::config::check::Lowered;
use crate::llm::Dialect;

/// The API version sent when neither the client nor the config names one.
const API_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub struct Anthropic {
    headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn build(spec: &Spec<'_>) -> Lowered<Arc<dyn Provider>> {
    spec.no_options()?;
    let mut headers: Vec<_> = key_header(spec, "x-api-key", str::to_string)?
        .into_iter()
        .collect();
    headers.push((
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(API_VERSION),
    ));
    Ok(Arc::new(Anthropic { headers }))
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn path(&self, call: &Call<'_>) -> Option<String> {
        call.translated
            .then(|| Dialect::Anthropic.upstream().chat_path().to_string())
    }

    fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}
