//! Messages stream events, read into and written from the internal
//! stream events.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::llm::ir::*;
use crate::llm::wire::{event_object, expect, object_or_absent, str_of, token_count, Malformed};

use super::answer::{parse_error, render_error, render_usage, stop_of, stop_reason, usage_of};

/// Reads Anthropic events into stream events.
#[derive(Default)]
pub struct Decoder {
    /// Anthropic block index → tool call index.
    tools: HashMap<u64, usize>,
    usage: Usage,
}

impl Decoder {
    pub fn event(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), Malformed> {
        let event = event_object(data)?;
        check_shape(&event)?;
        match str_of(&event, "type") {
            Some("message_start") => {
                let message = &event["message"];
                out.push(StreamEvent::Start {
                    id: str_of(message, "id").unwrap_or_default().to_string(),
                    model: str_of(message, "model").unwrap_or_default().to_string(),
                });
                // An answer that reports no usage is not one of no tokens.
                if message["usage"].is_object() {
                    self.usage = usage_of(&message["usage"]);
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            Some("content_block_start") => {
                let block = &event["content_block"];
                match str_of(block, "type") {
                    Some("tool_use") => {
                        let index = self.tools.len();
                        self.tools
                            .insert(event["index"].as_u64().unwrap_or(0), index);
                        out.push(StreamEvent::ToolStart {
                            index,
                            id: str_of(block, "id").unwrap_or_default().to_string(),
                            name: str_of(block, "name").unwrap_or_default().to_string(),
                        });
                    }
                    Some("text") => {
                        if let Some(text) = str_of(block, "text").filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::Text(text.to_string()));
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let delta = &event["delta"];
                match str_of(delta, "type") {
                    Some("text_delta") => out.push(StreamEvent::Text(
                        str_of(delta, "text").unwrap_or("").to_string(),
                    )),
                    Some("input_json_delta") => {
                        let block = event["index"].as_u64().unwrap_or(0);
                        if let Some(&index) = self.tools.get(&block) {
                            let fragment = str_of(delta, "partial_json").unwrap_or("");
                            if !fragment.is_empty() {
                                out.push(StreamEvent::ToolArguments {
                                    index,
                                    fragment: fragment.to_string(),
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    out.push(StreamEvent::Stop(stop_of(Some(reason))));
                }
                let usage = &event["usage"];
                if !usage.is_object() {
                    return Ok(());
                }
                if !usage["output_tokens"].is_null() {
                    self.usage.output = token_count(usage.get("output_tokens"));
                }
                if !usage["input_tokens"].is_null() {
                    let late = usage_of(usage);
                    self.usage.input = late.input;
                    self.usage.cache_read = late.cache_read;
                    self.usage.cache_write = late.cache_write;
                }
                out.push(StreamEvent::Usage(self.usage));
            }
            Some("message_stop") => out.push(StreamEvent::Done),
            Some("error") => {
                let (kind, message) = parse_error(&event)
                    .unwrap_or((ErrorKind::Server, "The upstream failed mid-stream.".into()));
                out.push(StreamEvent::Error { kind, message });
            }
            // `ping`, and event types to come.
            _ => {}
        }
        Ok(())
    }
}

/// The members the decoder reads have the types the API gives them;
/// members and event types it does not know are skipped.
fn check_shape(event: &Value) -> Result<(), Malformed> {
    expect(event["type"].is_string(), "it has no `type`")?;
    let (member, what) = match str_of(event, "type") {
        Some("message_start") => ("message", "`message` is not an object"),
        Some("content_block_start") => ("content_block", "`content_block` is not an object"),
        Some("content_block_delta") => ("delta", "`delta` is not an object"),
        Some("message_delta") => ("delta", "`delta` is not an object"),
        _ => return Ok(()),
    };
    expect(event[member].is_object(), what)?;
    expect(
        object_or_absent(&event["usage"]),
        "`usage` is not an object",
    )
}

/// The block being written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    Text,
    Tool(usize),
}

/// Writes stream events as Anthropic events.
#[derive(Default)]
pub struct Encoder {
    open: Option<(u64, Open)>,
    next_block: u64,
    stop: Option<StopReason>,
    usage: Usage,
}

impl Encoder {
    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn open(&mut self, out: &mut Vec<u8>, kind: Open, block: Value) -> u64 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, kind));
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    pub fn event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => emit(
                out,
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": id, "type": "message", "role": "assistant", "content": [], "model": model,
                    "stop_reason": null, "stop_sequence": null, "usage": render_usage(&self.usage),
                }}),
            ),
            StreamEvent::Text(text) => {
                let index = match self.open {
                    Some((index, Open::Text)) => index,
                    _ => self.open(out, Open::Text, json!({"type": "text", "text": ""})),
                };
                emit(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
                );
            }
            StreamEvent::ToolStart { index, id, name } => {
                self.open(
                    out,
                    Open::Tool(*index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                );
            }
            StreamEvent::ToolArguments { index, fragment } => {
                // Arguments of the tool call being written; OpenAI streams
                // one tool call after the other.
                if let Some((block, Open::Tool(open))) = self.open {
                    if open == *index {
                        emit(
                            out,
                            "content_block_delta",
                            &json!({"type": "content_block_delta", "index": block, "delta": {"type": "input_json_delta", "partial_json": fragment}}),
                        );
                    }
                }
            }
            StreamEvent::Stop(reason) => self.stop = Some(*reason),
            StreamEvent::Usage(usage) => self.usage = *usage,
            StreamEvent::Error { kind, message } => {
                emit(out, "error", &render_error(&ErrorBody::new(*kind, message)))
            }
            StreamEvent::Done => {
                self.close(out);
                let mut usage = render_usage(&self.usage);
                usage["output_tokens"] = json!(self.usage.output);
                emit(
                    out,
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {
                        "stop_reason": stop_reason(self.stop.unwrap_or(StopReason::EndTurn)),
                        "stop_sequence": null,
                    }, "usage": usage}),
                );
                emit(out, "message_stop", &json!({"type": "message_stop"}));
            }
        }
    }
}

pub(super) fn emit(out: &mut Vec<u8>, name: &str, value: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}
