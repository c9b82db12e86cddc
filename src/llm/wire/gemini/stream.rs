//! Gemini's stream (`streamGenerateContent?alt=sse`): every event a whole
//! `GenerateContentResponse` with the new parts, usage cumulative, and no
//! end marker: the answer is complete when a chunk named its finish reason
//! and the stream then ended.

use super::answer::{parse_error, parts_of, prompt_blocked, stop_of, usage_of};
use crate::llm::ir::*;
use crate::llm::wire::{event_object, expect, object_or_absent, str_of, Malformed};

#[derive(Default)]
pub(super) struct Decoder {
    started: bool,
    /// Tool calls so far (their index, and ids made up for them).
    calls: usize,
    /// The last finish reason a chunk named.
    stop: Option<StopReason>,
    failed: bool,
}

impl Decoder {
    pub fn event(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), Malformed> {
        let chunk = event_object(data)?;
        if let Some((kind, message)) = parse_error(&chunk) {
            self.failed = true;
            out.push(StreamEvent::Error { kind, message });
            return Ok(());
        }
        let candidates = &chunk["candidates"];
        expect(
            candidates.is_array() || candidates.is_null(),
            "`candidates` is not an array",
        )?;
        expect(
            object_or_absent(&chunk["usageMetadata"]),
            "`usageMetadata` is not an object",
        )?;
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: str_of(&chunk, "responseId").unwrap_or_default().to_string(),
                model: str_of(&chunk, "modelVersion")
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        for part in parts_of(&chunk, &mut self.calls) {
            match part {
                Part::Text(text) => out.push(StreamEvent::Text(text)),
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    // Gemini sends a call whole: its arguments in one piece.
                    let index = self.calls - 1;
                    out.push(StreamEvent::ToolStart { index, id, name });
                    out.push(StreamEvent::ToolArguments {
                        index,
                        fragment: arguments,
                    });
                }
                _ => {}
            }
        }
        if chunk["usageMetadata"].is_object() {
            out.push(StreamEvent::Usage(usage_of(&chunk["usageMetadata"])));
        }
        if prompt_blocked(&chunk) {
            self.stop = Some(StopReason::ContentFilter);
        } else if let Some(reason) = str_of(&chunk["candidates"][0], "finishReason") {
            self.stop = Some(stop_of(Some(reason), self.calls > 0));
        }
        Ok(())
    }

    /// The stream ended: complete when a finish reason came, else cut.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.failed {
            return;
        }
        if let Some(stop) = self.stop.take() {
            out.push(StreamEvent::Stop(stop));
            out.push(StreamEvent::Done);
        }
    }
}
