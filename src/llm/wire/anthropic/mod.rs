//! Anthropic Messages (`POST /v1/messages`): Anthropic's API, and Claude on
//! the clouds that serve it with Anthropic's body.

mod answer;
#[cfg(test)]
pub mod parameters;
mod request;
mod stream;

use crate::llm::hints::Dropped;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use super::{
    ClientWire, Options, Standing, StandingKind, StreamDecoder, StreamEncoder, TranslateError,
    UpstreamWire, UsageReading,
};
use crate::llm::ir::{ChatRequest, ChatResponse, ErrorBody, ErrorKind, StreamEvent, Usage};
use crate::llm::Dialect;

pub struct Anthropic;

pub static ANTHROPIC: Anthropic = Anthropic;

/// Headers only Anthropic's API reads.
static OWN_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
];

impl ClientWire for Anthropic {
    fn chat_path(&self) -> &'static str {
        "/v1/messages"
    }

    fn own_headers(&self) -> &'static [HeaderName] {
        &OWN_HEADERS
    }

    /// Where Anthropic's SDKs look for the request id.
    fn request_id_header(&self) -> Option<&'static str> {
        Some("request-id")
    }

    /// `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, the
    /// reset as the moment it comes (RFC 3339).
    fn standing_headers(
        &self,
        kind: StandingKind,
        s: &Standing,
    ) -> [(&'static str, HeaderValue); 3] {
        let (limit, remaining, reset) = match kind {
            StandingKind::Requests => (
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ),
            StandingKind::Tokens => (
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ),
        };
        let at = std::time::SystemTime::now() + std::time::Duration::from_millis(s.reset_ms);
        let reset_value = humantime::format_rfc3339_seconds(at).to_string();
        [
            (limit, HeaderValue::from(s.limit)),
            (remaining, HeaderValue::from(s.remaining)),
            // Digits, letters, `-`, `:`: always a valid header value.
            (
                reset,
                HeaderValue::try_from(reset_value).unwrap_or(HeaderValue::from_static("0s")),
            ),
        ]
    }

    fn parse_request(
        &self,
        body: &Value,
        to: Dialect,
        options: &Options,
    ) -> Result<ChatRequest, TranslateError> {
        request::parse_request(body, to, options)
    }

    fn provider_hints(&self, body: &Value) -> Dropped {
        request::provider_hints(body)
    }

    fn render_response(&self, r: &ChatResponse) -> Value {
        answer::render_response(r)
    }

    fn render_error(&self, e: &ErrorBody<'_>) -> Value {
        answer::render_error(e)
    }

    fn stream_encoder(&self, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::Encoder::default())
    }
}

impl UpstreamWire for Anthropic {
    fn chat_path(&self) -> &'static str {
        "/v1/messages"
    }
    fn render_request(&self, r: &ChatRequest, options: &Options) -> Result<Value, TranslateError> {
        request::render_request(r, options)
    }

    fn parse_response(&self, v: &Value) -> Option<ChatResponse> {
        answer::parse_response(v)
    }

    fn parse_error(&self, v: &Value) -> Option<(ErrorKind, String)> {
        answer::parse_error(v)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(stream::Decoder::default())
    }

    /// `message_start` nests its usage in `message`; cache reads and writes
    /// are counted apart from `input_tokens`, and part of the input here.
    fn usage_in_event(&self, data: &[u8]) -> Option<UsageReading> {
        let envelope: Envelope = serde_json::from_slice(data).ok()?;
        let fields = envelope.usage.or(envelope.message.and_then(|m| m.usage))?;
        Some(UsageReading {
            usage: fields.usage(),
            usage_only: false,
        })
    }

    fn usage_in_member(&self, usage: &[u8]) -> Option<Usage> {
        super::first_value::<UsageFields>(usage).map(|f| f.usage())
    }

    fn finish_reason_key(&self) -> &'static [u8] {
        b"\"stop_reason\""
    }
}

#[derive(Deserialize)]
struct Envelope {
    usage: Option<UsageFields>,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    usage: Option<UsageFields>,
}

#[derive(Deserialize)]
struct UsageFields {
    #[serde(default, deserialize_with = "super::deserialize_token_count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "super::deserialize_token_count")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "super::deserialize_token_count")]
    cache_read_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "super::deserialize_token_count")]
    cache_creation_input_tokens: Option<u64>,
}

impl UsageFields {
    /// Cache reads and writes count only with the input they are part of
    /// (`message_delta` may name them without it).
    fn usage(self) -> Usage {
        let Some(input) = self.input_tokens else {
            return Usage {
                output: self.output_tokens.unwrap_or(0),
                ..Usage::default()
            };
        };
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input: input.saturating_add(read).saturating_add(written),
            output: self.output_tokens.unwrap_or(0),
            cache_read: read,
            cache_write: written,
        }
    }
}

impl StreamDecoder for stream::Decoder {
    fn event(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), super::Malformed> {
        stream::Decoder::event(self, data, out)
    }
}

impl StreamEncoder for stream::Encoder {
    fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        stream::Encoder::event(self, event, out)
    }
}
