//! Gemini's `generateContent` (the Gemini API and Vertex AI), an upstream
//! dialect: no client speaks it to the gateway. Tool-call ids carry
//! Gemini's thought signatures (`ids.rs`).

mod answer;
mod ids;
mod request;
mod stream;

use serde_json::Value;

use super::{Options, StreamDecoder, TranslateError, UpstreamWire, UsageReading};
use crate::llm::ir::{ChatRequest, ChatResponse, ErrorKind, StreamEvent, Usage};

pub struct Gemini;

pub static GEMINI: Gemini = Gemini;

impl UpstreamWire for Gemini {
    /// The model is in the path: its provider builds it.
    fn chat_path(&self) -> &'static str {
        ":generateContent"
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

    /// Gemini answers are always translated: nothing reads their usage in
    /// passing.
    fn usage_in_event(&self, data: &[u8]) -> Option<UsageReading> {
        let chunk: Value = serde_json::from_slice(data).ok()?;
        let usage = chunk.get("usageMetadata")?;
        Some(UsageReading {
            usage: answer::usage_of(usage),
            usage_only: false,
        })
    }

    fn usage_in_member(&self, _usage: &[u8]) -> Option<Usage> {
        None
    }

    fn finish_reason_key(&self) -> &'static [u8] {
        b"\"finishReason\""
    }
}

impl StreamDecoder for stream::Decoder {
    fn event(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), super::Malformed> {
        stream::Decoder::event(self, data, out)
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        stream::Decoder::finish(self, out)
    }
}
