//! OpenAI Chat Completions (`POST /v1/chat/completions`), the wire of
//! OpenAI and of every OpenAI-compatible server (vLLM, Ollama, Azure, ...).

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
use crate::llm::ir::{ChatRequest, ChatResponse, ErrorBody, ErrorKind, Usage};
use crate::llm::Dialect;

pub struct OpenAiChat;

pub static OPENAI_CHAT: OpenAiChat = OpenAiChat;

impl ClientWire for OpenAiChat {
    fn chat_path(&self) -> &'static str {
        "/v1/chat/completions"
    }

    fn own_headers(&self) -> &'static [HeaderName] {
        &[]
    }

    fn request_id_header(&self) -> Option<&'static str> {
        None
    }

    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, the reset
    /// as a duration (`6m0s`).
    fn standing_headers(
        &self,
        kind: StandingKind,
        s: &Standing,
    ) -> [(&'static str, HeaderValue); 3] {
        let (limit, remaining, reset) = match kind {
            StandingKind::Requests => (
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ),
            StandingKind::Tokens => (
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ),
        };
        [
            (limit, HeaderValue::from(s.limit)),
            (remaining, HeaderValue::from(s.remaining)),
            // Digits and letters: always a valid header value.
            (
                reset,
                HeaderValue::try_from(format_reset(s.reset_ms))
                    .unwrap_or(HeaderValue::from_static("0s")),
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

    fn stream_encoder(&self, include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::Encoder::new(include_usage))
    }
}

impl UpstreamWire for OpenAiChat {
    fn chat_path(&self) -> &'static str {
        "/v1/chat/completions"
    }
    fn render_request(&self, r: &ChatRequest, _: &Options) -> Result<Value, TranslateError> {
        Ok(request::render_request(r))
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

    fn usage_in_event(&self, data: &[u8]) -> Option<UsageReading> {
        let envelope: Envelope = serde_json::from_slice(data).ok()?;
        Some(UsageReading {
            usage: envelope.usage?.usage(),
            usage_only: envelope.choices.is_some_and(|c| c.is_empty()),
        })
    }

    fn usage_in_member(&self, usage: &[u8]) -> Option<Usage> {
        super::first_value::<UsageFields>(usage).map(|f| f.usage())
    }

    fn finish_reason_key(&self) -> &'static [u8] {
        b"\"finish_reason\""
    }
}

/// What a chunk or an answer says of its usage; the rest is skipped.
#[derive(Deserialize)]
struct Envelope {
    usage: Option<UsageFields>,
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct UsageFields {
    #[serde(default, deserialize_with = "super::deserialize_token_count")]
    prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "super::deserialize_token_count")]
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default, deserialize_with = "super::deserialize_token_count")]
    cached_tokens: Option<u64>,
}

impl UsageFields {
    fn usage(self) -> Usage {
        let input = self.prompt_tokens.unwrap_or(0);
        let cached = self
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        Usage {
            input,
            output: self.completion_tokens.unwrap_or(0),
            cache_read: cached.min(input),
            cache_write: 0,
        }
    }
}

/// OpenAI's duration style: `250ms`, `12s`, `6m0s`, `1h2m3s`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

impl StreamDecoder for stream::Decoder {
    fn event(
        &mut self,
        data: &str,
        out: &mut Vec<crate::llm::ir::StreamEvent>,
    ) -> Result<(), super::Malformed> {
        stream::Decoder::event(self, data, out)
    }
}

impl StreamEncoder for stream::Encoder {
    fn event(&mut self, event: &crate::llm::ir::StreamEvent, out: &mut Vec<u8>) {
        stream::Encoder::event(self, event, out)
    }
}

#[cfg(test)]
mod tests {
    use super::format_reset;

    #[test]
    fn resets_read_like_openai() {
        assert_eq!(format_reset(250), "250ms");
        assert_eq!(format_reset(12_000), "12s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(3_723_000), "1h2m3s");
    }
}
