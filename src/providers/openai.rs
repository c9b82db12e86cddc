//! `openai`: OpenAI, and every server that speaks its API (vLLM, Ollama,
//! LiteLLM, ...): the key as a bearer token, the client's path as it is.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::{key_header, Call, Provider, Spec};
use crate::config::check::Lowered;
use crate::llm::Dialect;

#[derive(Debug)]
pub struct OpenAi {
    headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn build(spec: &Spec<'_>) -> Lowered<Arc<dyn Provider>> {
    spec.no_options()?;
    let headers = key_header(spec, "authorization", |key| format!("Bearer {key}"))?;
    Ok(Arc::new(OpenAi {
        headers: headers.into_iter().collect(),
    }))
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    /// A translated request goes to the chat endpoint; anything else where
    /// the client sent it (embeddings, models, ...).
    fn path(&self, call: &Call<'_>) -> Option<String> {
        call.translated
            .then(|| Dialect::OpenAi.upstream().chat_path().to_string())
    }

    fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}
