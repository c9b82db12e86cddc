//! Chat Completions stream chunks, read into and written from stream
//! events.

use serde_json::{json, Value};

use crate::llm::ir::*;
use crate::llm::wire::{event_object, expect, object_or_absent, str_of, unix_now, Malformed};

use super::answer::{finish_reason, parse_error, render_error, render_usage, stop_of, usage_of};

/// Reads OpenAI chunks into stream events.
#[derive(Default)]
pub struct Decoder {
    started: bool,
}

impl Decoder {
    pub fn event(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), Malformed> {
        if data.trim() == "[DONE]" {
            out.push(StreamEvent::Done);
            return Ok(());
        }
        let chunk = event_object(data)?;
        if let Some((kind, message)) = parse_error(&chunk) {
            out.push(StreamEvent::Error { kind, message });
            return Ok(());
        }
        check_shape(&chunk)?;
        // Azure's annotation chunks (prompt filter results, no choices, no
        // id) say nothing of the answer; nor do chunks of kinds to come.
        let says_nothing =
            chunk["choices"].as_array().is_none_or(|c| c.is_empty()) && !chunk["usage"].is_object();
        if says_nothing {
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: str_of(&chunk, "id").unwrap_or_default().to_string(),
                model: str_of(&chunk, "model").unwrap_or_default().to_string(),
            });
        }
        if let Some(choice) = chunk["choices"].get(0) {
            let delta = &choice["delta"];
            if let Some(text) = str_of(delta, "content").filter(|t| !t.is_empty()) {
                out.push(StreamEvent::Text(text.to_string()));
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap_or(0) as usize;
                if let Some(id) = str_of(call, "id") {
                    out.push(StreamEvent::ToolStart {
                        index,
                        id: id.to_string(),
                        name: call["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                if let Some(fragment) = call["function"]["arguments"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                {
                    out.push(StreamEvent::ToolArguments {
                        index,
                        fragment: fragment.to_string(),
                    });
                }
            }
            if let Some(reason) = str_of(choice, "finish_reason") {
                out.push(StreamEvent::Stop(stop_of(Some(reason))));
            }
        }
        if chunk["usage"].is_object() {
            out.push(StreamEvent::Usage(usage_of(&chunk["usage"])));
        }
        Ok(())
    }
}

/// The members the decoder reads have the types the API gives them;
/// members it does not know are skipped, as new ones appear.
fn check_shape(chunk: &Value) -> Result<(), Malformed> {
    let choices = &chunk["choices"];
    expect(
        choices.is_array() || choices.is_null(),
        "`choices` is not an array",
    )?;
    expect(
        object_or_absent(&chunk["usage"]),
        "`usage` is not an object",
    )?;
    let Some(choice) = choices.get(0) else {
        return Ok(());
    };
    let delta = &choice["delta"];
    expect(
        object_or_absent(delta),
        "`choices[0].delta` is not an object",
    )?;
    let content = &delta["content"];
    expect(
        content.is_string() || content.is_null(),
        "`choices[0].delta.content` is not a string",
    )?;
    let calls = &delta["tool_calls"];
    expect(
        calls.is_array() || calls.is_null(),
        "`choices[0].delta.tool_calls` is not an array",
    )
}

/// Writes stream events as OpenAI chunks, ending in `data: [DONE]`.
pub struct Encoder {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
}

impl Encoder {
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            id: String::new(),
            model: String::new(),
            created: unix_now(),
            usage: None,
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish_reason: Option<&str>) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
        });
        data(out, &chunk);
    }

    pub fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
                self.chunk(out, json!({"role": "assistant", "content": ""}), None);
            }
            StreamEvent::Text(text) => self.chunk(out, json!({"content": text}), None),
            StreamEvent::ToolStart { index, id, name } => self.chunk(
                out,
                json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            ),
            StreamEvent::ToolArguments { index, fragment } => self.chunk(
                out,
                json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                None,
            ),
            StreamEvent::Stop(reason) => self.chunk(out, json!({}), Some(finish_reason(*reason))),
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Error { kind, message } => {
                data(out, &render_error(&ErrorBody::new(*kind, message)))
            }
            StreamEvent::Done => {
                if self.include_usage {
                    let usage = self.usage.unwrap_or_default();
                    let chunk = json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": render_usage(&usage),
                    });
                    data(out, &chunk);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
    }
}

pub(super) fn data(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}
