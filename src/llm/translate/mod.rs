//! Translation between the chat dialects: requests, whole answers, streamed
//! answers (event by event, never buffered whole) and errors, both ways,
//! through the small internal model in [`ir`]. Same-dialect traffic never
//! comes here.
//!
//! Every top-level parameter of each dialect's request is either
//! translated, accepted because its value changes nothing on the target
//! (`n: 1`, `logprobs: false`), ignored because it changes cost and never
//! the answer (Anthropic's `cache_control`), or refused with a 400 naming
//! it, unless the route allows dropping it (`drop_unsupported_params`).

mod anthropic;
pub mod ir;
mod openai;
mod stream;

use std::fmt;

use serde_json::Value;

pub use ir::{ChatRequest, ChatResponse, ErrorBody, ErrorKind, StreamEvent, Usage};
pub use stream::StreamTranslator;

use super::Dialect;

/// What a translation of a request may do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Drop parameters the target cannot honour instead of refusing them.
    pub drop_unsupported: bool,
    /// `max_tokens` for a target that requires it when the client set none.
    pub default_max_tokens: u64,
}

/// Why a request cannot be translated: the client's answer is a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranslateError {
    /// A parameter the target dialect cannot honour.
    Unsupported {
        param: String,
        target: Dialect,
        why: &'static str,
    },
    /// A parameter whose value is not what its dialect allows.
    Invalid { param: String, message: String },
}

impl TranslateError {
    pub fn param(&self) -> &str {
        match self {
            TranslateError::Unsupported { param, .. } | TranslateError::Invalid { param, .. } => {
                param
            }
        }
    }

    fn unsupported(param: impl Into<String>, target: Dialect, why: &'static str) -> Self {
        TranslateError::Unsupported {
            param: param.into(),
            target,
            why,
        }
    }

    fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TranslateError::Unsupported { param, target, why } => write!(
                f,
                "`{param}` is not supported by this model's provider ({} API): {why}. \
                 Remove it, or ask for `drop_unsupported_params` on the route.",
                target.as_str()
            ),
            TranslateError::Invalid { param, message } => write!(f, "`{param}`: {message}"),
        }
    }
}

/// The request body for `to`, from a client's body in `from`.
pub fn request(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    options: &Options,
) -> Result<Vec<u8>, TranslateError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::invalid("body", format!("not valid JSON: {e}")))?;
    let request = match from {
        Dialect::OpenAi => openai::parse_request(&parsed, to, options)?,
        Dialect::Anthropic => anthropic::parse_request(&parsed, to, options)?,
    };
    let rendered = match to {
        Dialect::OpenAi => openai::render_request(&request),
        Dialect::Anthropic => anthropic::render_request(&request, options)?,
    };
    Ok(rendered.to_string().into_bytes())
}

/// A whole answer in `to`, from the upstream's in `from`; with its usage.
pub fn response(from: Dialect, to: Dialect, body: &[u8]) -> Option<(Vec<u8>, Usage)> {
    let parsed: Value = serde_json::from_slice(body).ok()?;
    let answer = match from {
        Dialect::OpenAi => openai::parse_response(&parsed)?,
        Dialect::Anthropic => anthropic::parse_response(&parsed)?,
    };
    let rendered = match to {
        Dialect::OpenAi => openai::render_response(&answer),
        Dialect::Anthropic => anthropic::render_response(&answer),
    };
    Some((rendered.to_string().into_bytes(), answer.usage))
}

/// An upstream's error answer in `to`'s shape (the status stays).
pub fn error(from: Dialect, to: Dialect, status: u16, body: &[u8]) -> Vec<u8> {
    let (mut kind, message) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| match from {
            Dialect::OpenAi => openai::parse_error(&v),
            Dialect::Anthropic => anthropic::parse_error(&v),
        })
        .unwrap_or_else(|| {
            (
                ErrorKind::of_status(status),
                format!("The upstream answered {status}."),
            )
        });
    // The status says more than a generic kind: OpenAI has no kind of its
    // own for 413, and calls 503 a `server_error` where Anthropic's clients
    // expect `overloaded_error`.
    if status == 413 || kind == ErrorKind::Server {
        kind = ErrorKind::of_status(status);
    }
    error_body(to, &ErrorBody::new(kind, &message))
}

/// An error body in `dialect`'s shape: each client dialect has one
/// renderer, used for the gateway's own errors and translated ones alike.
pub fn error_body(dialect: Dialect, error: &ErrorBody<'_>) -> Vec<u8> {
    let value = match dialect {
        Dialect::OpenAi => openai::render_error(error),
        Dialect::Anthropic => anthropic::render_error(error),
    };
    value.to_string().into_bytes()
}

/// Seconds since the epoch, for answers that carry a creation time.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A parameter the target cannot honour: refused, or dropped when the
/// route allows it.
fn unsupported(
    param: &str,
    to: Dialect,
    why: &'static str,
    options: &Options,
) -> Result<(), TranslateError> {
    if options.drop_unsupported {
        Ok(())
    } else {
        Err(TranslateError::unsupported(param, to, why))
    }
}

/// A tool definition: `spec` holds its `name`, `description` and, under
/// `schema_key`, its JSON Schema (an empty object schema when missing).
fn tool_of(spec: &Value, at: &str, schema_key: &str) -> Result<ir::Tool, TranslateError> {
    let name = str_of(spec, "name").ok_or_else(|| TranslateError::invalid(at, "needs a `name`"))?;
    Ok(ir::Tool {
        name: name.to_string(),
        description: str_of(spec, "description").map(str::to_string),
        schema: spec
            .get(schema_key)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
    })
}

fn number(param: &str, value: &Value) -> Result<f64, TranslateError> {
    value
        .as_f64()
        .ok_or_else(|| TranslateError::invalid(param, "must be a number"))
}

/// A string field, or `None`.
fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod golden;
