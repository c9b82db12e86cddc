//! Translation between the chat dialects: requests, whole answers, streamed
//! answers (event by event, never buffered whole) and errors, from any
//! dialect to any other, through the internal model in [`crate::llm::ir`]:
//! the source dialect's wire reads, the target's writes. Same-dialect
//! traffic never comes here.
//!
//! Every top-level parameter of each dialect's request is either
//! translated, accepted because its value changes nothing on the target
//! (`n: 1`, `logprobs: false`), dropped and named because it steers only
//! the client dialect's own provider (Anthropic's `cache_control`, see
//! [`crate::llm::Hint`]), or refused with a 400 naming it, unless the route
//! allows dropping it (`drop_unsupported_params`).

mod stream;

use serde_json::Value;

pub use crate::llm::ir::{ChatRequest, ChatResponse, ErrorBody, ErrorKind, StreamEvent, Usage};
pub use crate::llm::wire::{Options, TranslateError};
pub use stream::StreamTranslator;

use super::{ClientDialect, Dialect, Dropped};

/// A client's request translated.
#[derive(Debug)]
pub struct TranslatedRequest {
    pub body: Vec<u8>,
    /// What it carried that steers only the client dialect's provider.
    pub dropped: Dropped,
}

/// The request body for `to`, from a client's body in `from`.
pub fn request(
    from: ClientDialect,
    to: Dialect,
    body: &[u8],
    options: &Options,
) -> Result<TranslatedRequest, TranslateError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::invalid("body", format!("not valid JSON: {e}")))?;
    let wire = from.client();
    let mut request = wire.parse_request(&parsed, to, options)?;
    if let (Some(cap), Some(asked)) = (options.max_output_tokens, request.max_tokens) {
        request.max_tokens = Some(asked.min(cap));
    }
    let rendered = to.upstream().render_request(&request, options)?;
    Ok(TranslatedRequest {
        body: rendered.to_string().into_bytes(),
        dropped: wire.provider_hints(&parsed),
    })
}

/// Why a successful answer could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untranslatable {
    /// It is an error envelope after all: the upstream's kind and message.
    UpstreamError(ErrorKind, String),
    /// It is not JSON, or not an answer of its dialect.
    Invalid,
}

/// A whole answer translated.
#[derive(Debug)]
pub struct Translated {
    pub body: Vec<u8>,
    /// `None`: the answer reported none.
    pub usage: Option<Usage>,
    /// More followed the answer's JSON (dropped).
    pub trailing: bool,
}

/// A whole answer in `to`, from the upstream's in `from`.
pub fn response(
    from: Dialect,
    to: ClientDialect,
    body: &[u8],
) -> Result<Translated, Untranslatable> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let parsed = match values.next() {
        Some(Ok(value)) => value,
        _ => return Err(Untranslatable::Invalid),
    };
    let trailing = body[values.byte_offset()..]
        .iter()
        .any(|b| !b.is_ascii_whitespace());
    let wire = from.upstream();
    let Some(answer) = wire.parse_response(&parsed) else {
        return Err(match wire.parse_error(&parsed) {
            Some((kind, message)) => Untranslatable::UpstreamError(kind, message),
            None => Untranslatable::Invalid,
        });
    };
    let rendered = to.client().render_response(&answer);
    Ok(Translated {
        body: rendered.to_string().into_bytes(),
        usage: answer.usage,
        trailing,
    })
}

/// An upstream's error answer in `to`'s shape (the status stays).
/// `provider_error` reads envelopes of the upstream's own that its
/// dialect's wire does not.
pub fn error(
    from: Dialect,
    to: ClientDialect,
    status: u16,
    body: &[u8],
    provider_error: &dyn Fn(&Value) -> Option<(ErrorKind, String)>,
) -> Vec<u8> {
    let (mut kind, message) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| provider_error(&v).or_else(|| from.upstream().parse_error(&v)))
        .unwrap_or_else(|| {
            (
                ErrorKind::of_status(status),
                format!("The upstream answered {status}."),
            )
        });
    // A status with a kind of its own decides: OpenAI calls a bad key an
    // `invalid_request_error` and 503 a `server_error`, has no kind for 413,
    // and says `requests` for a 429, where Anthropic's clients expect
    // `authentication_error`, `overloaded_error`, `request_too_large` and
    // `rate_limit_error`. Otherwise the body's kind, unless it says only
    // "server".
    let by_status = ErrorKind::of_status(status);
    if !matches!(by_status, ErrorKind::InvalidRequest | ErrorKind::Server)
        || kind == ErrorKind::Server
    {
        kind = by_status;
    }
    error_body(to, &ErrorBody::new(kind, &message))
}

/// An error body in `dialect`'s shape: each client dialect has one
/// renderer, used for the gateway's own errors and translated ones alike.
pub fn error_body(dialect: ClientDialect, error: &ErrorBody<'_>) -> Vec<u8> {
    dialect
        .client()
        .render_error(error)
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod golden;
