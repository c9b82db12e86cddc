//! Hostile upstreams on request: `x-mock-fault: <name>` makes a successful
//! chat answer (OpenAI's or Anthropic's, streamed or whole) misbehave after
//! its 200, the way broken providers and proxies do.
//!
//! | fault | a stream | a whole answer |
//! | --- | --- | --- |
//! | `cut-mid-event` | half the events, then half of one, then a reset | half the body, then a reset |
//! | `cut-mid-char` | cut inside a 4-byte UTF-8 character of the text | the same, in the body |
//! | `not-json` | an event whose data is not JSON | a body that is not JSON |
//! | `wrong-shape` | a known event with members of the wrong type | an answer whose `choices` / `content` is a string |
//! | `unknown-events` | events of a type no API has, and unknown members in every event | unknown members |
//! | `silent` | the first event, then nothing, the connection open | the headers, then nothing |
//! | `endless` | content events every `x-mock-chunk-delay-ms` (100 by default), never the end | half the body, then a space at that pace, forever |
//! | `trailing-data` | more events after the final one | more JSON after the answer |
//! | `error-event` | an error event after the first content | a 200 whose body is an error |
//! | `usage-missing` / `usage-negative` / `usage-huge` | usage removed, -5, or 10^15 tokens | the same |

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::responses::Dialect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    CutMidEvent,
    CutMidChar,
    NotJson,
    WrongShape,
    UnknownEvents,
    Silent,
    Endless,
    TrailingData,
    ErrorEvent,
    UsageMissing,
    UsageNegative,
    UsageHuge,
}

impl Fault {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim() {
            "cut-mid-event" => Fault::CutMidEvent,
            "cut-mid-char" => Fault::CutMidChar,
            "not-json" => Fault::NotJson,
            "wrong-shape" => Fault::WrongShape,
            "unknown-events" => Fault::UnknownEvents,
            "silent" => Fault::Silent,
            "endless" => Fault::Endless,
            "trailing-data" => Fault::TrailingData,
            "error-event" => Fault::ErrorEvent,
            "usage-missing" => Fault::UsageMissing,
            "usage-negative" => Fault::UsageNegative,
            "usage-huge" => Fault::UsageHuge,
            _ => return None,
        })
    }
}

/// What the mock sends, in order.
#[derive(Debug, Clone)]
pub enum Step {
    Send(Bytes),
    /// Break the connection.
    Reset,
    /// Send nothing more and keep the connection open.
    Hang,
    /// Send this every `pace`, never ending.
    Forever(Bytes, Duration),
}

/// Text with a character of four UTF-8 bytes, where a cut can fall inside.
const WIDE_TEXT: &str = "caf\u{e9} \u{1F600} ok";

/// The steps of a stream of `events` (each a whole SSE event) as `fault`
/// makes it misbehave.
pub fn stream(
    fault: Fault,
    dialect: Dialect,
    mut events: Vec<String>,
    pace: Duration,
) -> Vec<Step> {
    let send = |events: &[String]| -> Vec<Step> {
        events
            .iter()
            .map(|e| Step::Send(Bytes::from(e.clone())))
            .collect()
    };
    // The first event opens the answer; the second carries text.
    let first = 1.min(events.len());
    match fault {
        Fault::CutMidEvent => {
            let half = events.len() / 2;
            let mut steps = send(&events[..half]);
            if let Some(event) = events.get(half) {
                let bytes = event.as_bytes();
                steps.push(Step::Send(Bytes::copy_from_slice(
                    &bytes[..bytes.len() / 2],
                )));
            }
            steps.push(Step::Reset);
            steps
        }
        Fault::CutMidChar => {
            let event = text_event(dialect, WIDE_TEXT);
            let inside = event.find('\u{1F600}').map_or(event.len() / 2, |at| at + 2);
            let mut steps = send(&events[..first]);
            steps.push(Step::Send(Bytes::copy_from_slice(
                &event.as_bytes()[..inside],
            )));
            steps.push(Step::Reset);
            steps
        }
        Fault::NotJson | Fault::WrongShape | Fault::ErrorEvent => {
            let odd = match (fault, dialect) {
                (Fault::NotJson, Dialect::OpenAi) => "data: this is not json\n\n".to_string(),
                (Fault::NotJson, Dialect::Anthropic) => {
                    "event: content_block_delta\ndata: this is not json\n\n".to_string()
                }
                (Fault::WrongShape, Dialect::OpenAi) => {
                    format!(
                        "data: {}\n\n",
                        json!({"id": "chatcmpl-mock", "choices": "none"})
                    )
                }
                (Fault::WrongShape, Dialect::Anthropic) => sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": "none"}),
                ),
                (_, Dialect::OpenAi) => format!(
                    "data: {}\n\n",
                    json!({"error": {"message": "mock: the model failed mid-answer", "type": "server_error", "param": null, "code": null}})
                ),
                (_, Dialect::Anthropic) => sse(
                    "error",
                    &json!({"type": "error", "error": {"type": "overloaded_error", "message": "mock: overloaded mid-answer"}}),
                ),
            };
            // After the first text, so the client has seen part of the answer.
            let at = (first + 1).min(events.len());
            events.insert(at, odd);
            if fault == Fault::ErrorEvent {
                // A provider that reports an error ends its stream there.
                events.truncate(at + 1);
            }
            send(&events)
        }
        Fault::UnknownEvents => {
            for event in &mut events {
                *event = edit_data(event, |v| {
                    if let Some(object) = v.as_object_mut() {
                        object.insert("x_mock_future".into(), json!({"nested": [1, 2]}));
                    }
                });
            }
            let unknown = match dialect {
                Dialect::OpenAi => format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-mock", "object": "chat.completion.future", "choices": []})
                ),
                Dialect::Anthropic => sse("mock_future", &json!({"type": "mock_future", "x": 1})),
            };
            events.insert(first, unknown);
            events.insert(first, ": a comment line\n\n".into());
            send(&events)
        }
        Fault::Silent => {
            let mut steps = send(&events[..(first + 1).min(events.len())]);
            steps.push(Step::Hang);
            steps
        }
        Fault::Endless => {
            let mut steps = send(&events[..first]);
            steps.push(Step::Forever(
                Bytes::from(text_event(dialect, "more ")),
                pace,
            ));
            steps
        }
        Fault::TrailingData => {
            let mut steps = send(&events);
            steps.push(Step::Send(Bytes::from(text_event(
                dialect,
                "after the end",
            ))));
            steps
        }
        Fault::UsageMissing | Fault::UsageNegative | Fault::UsageHuge => {
            for event in &mut events {
                *event = edit_data(event, |v| edit_usage(v, fault));
            }
            send(&events)
        }
    }
}

/// The steps of a whole answer `body` as `fault` makes it misbehave.
pub fn whole(fault: Fault, dialect: Dialect, body: Value, pace: Duration) -> Vec<Step> {
    let text = body.to_string();
    let half = Bytes::copy_from_slice(&text.as_bytes()[..text.len() / 2]);
    let one = |s: String| vec![Step::Send(Bytes::from(s))];
    match fault {
        Fault::CutMidEvent => vec![Step::Send(half), Step::Reset],
        Fault::CutMidChar => {
            let wide = text.replacen("word0", WIDE_TEXT, 1);
            let inside = wide.find('\u{1F600}').map_or(wide.len() / 2, |at| at + 2);
            vec![
                Step::Send(Bytes::copy_from_slice(&wide.as_bytes()[..inside])),
                Step::Reset,
            ]
        }
        Fault::NotJson => one("this is not json".into()),
        Fault::WrongShape => one(match dialect {
            Dialect::OpenAi => {
                json!({"id": "chatcmpl-mock", "object": "chat.completion", "choices": "none"})
                    .to_string()
            }
            Dialect::Anthropic => {
                json!({"id": "msg_mock", "type": "message", "role": "assistant", "content": "none"})
                    .to_string()
            }
        }),
        Fault::UnknownEvents => {
            let mut body = body;
            if let Some(object) = body.as_object_mut() {
                object.insert("x_mock_future".into(), json!({"nested": [1, 2]}));
            }
            one(body.to_string())
        }
        Fault::Silent => vec![Step::Hang],
        Fault::Endless => vec![Step::Send(half), Step::Forever(Bytes::from_static(b" "), pace)],
        Fault::TrailingData => one(format!("{text}\n{{\"trailing\": true}}")),
        Fault::ErrorEvent => one(match dialect {
            Dialect::OpenAi => json!({"error": {"message": "mock: the model failed", "type": "server_error", "param": null, "code": null}}),
            Dialect::Anthropic => json!({"type": "error", "error": {"type": "api_error", "message": "mock: the model failed"}}),
        }
        .to_string()),
        Fault::UsageMissing | Fault::UsageNegative | Fault::UsageHuge => {
            let mut body = body;
            edit_usage(&mut body, fault);
            one(body.to_string())
        }
    }
}

fn sse(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// One event carrying `text` in the dialect's stream.
fn text_event(dialect: Dialect, text: &str) -> String {
    match dialect {
        Dialect::OpenAi => format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": "mock",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
        ),
        Dialect::Anthropic => sse(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
    }
}

/// `event` with its JSON data changed by `edit` (unchanged when it has
/// none).
fn edit_data(event: &str, edit: impl Fn(&mut Value)) -> String {
    event
        .split_inclusive('\n')
        .map(|line| {
            let Some(data) = line.strip_prefix("data: ") else {
                return line.to_string();
            };
            match serde_json::from_str::<Value>(data.trim_end()) {
                Ok(mut value) => {
                    edit(&mut value);
                    format!("data: {value}\n")
                }
                Err(_) => line.to_string(),
            }
        })
        .collect()
}

/// Every `usage` object in `value` removed, or its counts made negative or
/// absurd.
fn edit_usage(value: &mut Value, fault: Fault) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    if fault == Fault::UsageMissing {
        object.remove("usage");
    } else if let Some(Value::Object(usage)) = object.get_mut("usage") {
        for count in usage.values_mut().filter(|v| v.is_u64()) {
            *count = match fault {
                Fault::UsageNegative => json!(-5),
                _ => json!(1_000_000_000_000_000u64),
            };
        }
    }
    for member in object.values_mut() {
        edit_usage(member, fault);
    }
}
