//! The wire formats the gateway speaks, one module each: how a request,
//! an answer, a stream and an error are read into and written from the
//! internal model ([`crate::llm::ir`]), which headers and paths belong to
//! it, how its answers report usage and finish reasons, and how its
//! clients expect rate-limit standings. A [`Dialect`] names one; its
//! [`UpstreamWire`] is how the gateway talks to an upstream of it, and, for
//! a dialect clients speak, its [`ClientWire`] is how the gateway serves
//! them. Nothing outside a wire's module matches on which one it is.

pub mod anthropic;
pub mod gemini;
pub mod openai;

use std::fmt;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::hints::Dropped;
use super::ir::{ChatRequest, ChatResponse, ErrorBody, ErrorKind, StreamEvent, Tool, Usage};
use super::Dialect;

pub use anthropic::ANTHROPIC;
pub use gemini::GEMINI;
pub use openai::OPENAI_CHAT;

/// How the gateway serves a client of one wire format.
pub trait ClientWire: Sync {
    /// Where its clients send a chat request.
    fn chat_path(&self) -> &'static str;
    /// Headers of this dialect that mean nothing, or something else, to an
    /// upstream of another: dropped from a translated request.
    fn own_headers(&self) -> &'static [HeaderName];
    /// Where its clients look for the request id besides `x-request-id`.
    fn request_id_header(&self) -> Option<&'static str>;
    /// The rate-limit standing of a rule, as its clients read it.
    fn standing_headers(
        &self,
        kind: StandingKind,
        s: &Standing,
    ) -> [(&'static str, HeaderValue); 3];
    /// A client's request in this dialect, read for an upstream of `to`.
    fn parse_request(
        &self,
        body: &Value,
        to: Dialect,
        options: &Options,
    ) -> Result<ChatRequest, TranslateError>;
    /// The parameters of a client's request that steer only this
    /// dialect's own provider: a translation drops them and names them.
    fn provider_hints(&self, body: &Value) -> Dropped;
    fn render_response(&self, r: &ChatResponse) -> Value;
    /// The error envelope its clients expect.
    fn render_error(&self, e: &ErrorBody<'_>) -> Value;
    /// `include_usage`: a client asked for the final usage chunk.
    fn stream_encoder(&self, include_usage: bool) -> Box<dyn StreamEncoder>;
}

/// How the gateway talks to an upstream of one wire format.
pub trait UpstreamWire: Sync {
    /// Where a translated chat request goes, unless its provider says
    /// otherwise.
    fn chat_path(&self) -> &'static str;
    fn render_request(&self, r: &ChatRequest, options: &Options) -> Result<Value, TranslateError>;
    fn parse_response(&self, v: &Value) -> Option<ChatResponse>;
    /// An error answer's kind and message.
    fn parse_error(&self, v: &Value) -> Option<(ErrorKind, String)>;
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;
    /// The usage one stream event's data reports, read without building a
    /// tree of it.
    fn usage_in_event(&self, data: &[u8]) -> Option<UsageReading>;
    /// The usage a whole answer's `usage` member reports: `usage` starts
    /// with the member's value (what follows it is not read).
    fn usage_in_member(&self, usage: &[u8]) -> Option<Usage>;
    /// The JSON key its answers name a finish reason with, quotes and all.
    fn finish_reason_key(&self) -> &'static [u8];
}

/// The first JSON value of `data` (what follows it is not read).
pub fn first_value<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<T>()
        .next()?
        .ok()
}

/// Reads one upstream event's data into stream events.
pub trait StreamDecoder: Send + Sync {
    /// An event that is not JSON, or not of its dialect's shape, is
    /// `Malformed`: the stream cannot be read on.
    fn event(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), Malformed>;
    /// The upstream's stream ended (for dialects whose streams have no
    /// end marker of their own).
    fn finish(&mut self, _out: &mut Vec<StreamEvent>) {}
}

/// An upstream event the gateway cannot read, and what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// An event's data as the JSON object every dialect's events are.
pub fn event_object(data: &str) -> Result<Value, Malformed> {
    match serde_json::from_str::<Value>(data) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(Malformed("its data is JSON but not an object")),
        Err(_) => Err(Malformed("its data is not JSON")),
    }
}

/// `Malformed(what)` unless `shape_holds`.
pub fn expect(shape_holds: bool, what: &'static str) -> Result<(), Malformed> {
    if shape_holds {
        Ok(())
    } else {
        Err(Malformed(what))
    }
}

/// A member that, when present, must be an object (or null).
pub fn object_or_absent(value: &Value) -> bool {
    value.is_object() || value.is_null()
}

/// A token count: 0 when absent; a negative or fractional one is read as
/// `u64::MAX`, so that the plausibility check refuses it rather than
/// charging nothing.
pub fn token_count(value: Option<&Value>) -> u64 {
    match value {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().unwrap_or(u64::MAX),
    }
}

/// [`token_count`] for usage read with serde.
pub fn deserialize_token_count<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    let number = <Option<serde_json::Number> as serde::Deserialize>::deserialize(d)?;
    Ok(number.map(|n| n.as_u64().unwrap_or(u64::MAX)))
}

/// Writes stream events as a dialect's events.
pub trait StreamEncoder: Send + Sync {
    fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>);
}

/// What a piece of an answer said of its usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReading {
    /// Each field the piece named; those it did not are 0.
    pub usage: Usage,
    /// The piece is OpenAI's usage-only chunk (no choices).
    pub usage_only: bool,
}

/// What a standing counts, for header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandingKind {
    Requests,
    Tokens,
}

/// The standing of a request-count or token rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// What a translation of a request may do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Drop parameters the target cannot honour instead of refusing them.
    pub drop_unsupported: bool,
    /// `max_tokens` for a target that requires it when the client set none.
    pub default_max_tokens: u64,
    /// The most output tokens the target model gives (`max_output_tokens`
    /// of its pool): more is sent as this many.
    pub max_output_tokens: Option<u64>,
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

    pub fn unsupported(param: impl Into<String>, target: Dialect, why: &'static str) -> Self {
        TranslateError::Unsupported {
            param: param.into(),
            target,
            why,
        }
    }

    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
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

/// Seconds since the epoch, for answers that carry a creation time.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A parameter the target cannot honour: refused, or dropped when the
/// route allows it.
pub fn unsupported(
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
pub fn tool_of(spec: &Value, at: &str, schema_key: &str) -> Result<Tool, TranslateError> {
    let name = str_of(spec, "name").ok_or_else(|| TranslateError::invalid(at, "needs a `name`"))?;
    Ok(Tool {
        name: name.to_string(),
        description: str_of(spec, "description").map(str::to_string),
        schema: spec
            .get(schema_key)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
    })
}

pub fn number(param: &str, value: &Value) -> Result<f64, TranslateError> {
    value
        .as_f64()
        .ok_or_else(|| TranslateError::invalid(param, "must be a number"))
}

/// A string field, or `None`.
pub fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}
