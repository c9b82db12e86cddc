//! Chat Completions answers and errors, read and written.

use serde_json::{json, Value};

use crate::llm::ir::*;
use crate::llm::wire::{str_of, unix_now};

/// An assistant message of `content`: its text, and its tool calls if any;
/// an answer's (`in_answer`) also says it refused nothing.
pub(super) fn assistant_message(content: &[Part], in_answer: bool) -> Value {
    let text = text_of(content);
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { json!(text) },
    });
    if in_answer {
        message["refusal"] = Value::Null;
    }
    let calls: Vec<Value> = content
        .iter()
        .filter_map(|part| match part {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(json!({
                "id": id, "type": "function", "function": {"name": name, "arguments": arguments},
            })),
            _ => None,
        })
        .collect();
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

pub(super) fn image_url(image: &Image) -> String {
    match image {
        Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        Image::Url(url) => url.clone(),
    }
}

/// The text parts of a content list, joined.
pub(super) fn text_of(content: &[Part]) -> String {
    content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("")
}

pub(super) fn stop_of(reason: Option<&str>) -> StopReason {
    match reason {
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("content_filter") => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
    }
}

pub(super) fn usage_of(usage: &Value) -> Usage {
    let n = |key: &str| crate::llm::wire::token_count(usage.get(key));
    Usage {
        input: n("prompt_tokens"),
        output: n("completion_tokens"),
        cache_read: crate::llm::wire::token_count(
            usage["prompt_tokens_details"].get("cached_tokens"),
        ),
        cache_write: 0,
    }
}

pub(super) fn render_usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input.saturating_add(usage.output),
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
    })
}

pub fn parse_response(value: &Value) -> Option<ChatResponse> {
    let choice = value["choices"].get(0)?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = str_of(message, "content").filter(|t| !t.is_empty()) {
        content.push(Part::Text(text.to_string()));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        content.push(Part::ToolCall {
            id: str_of(call, "id").unwrap_or_default().to_string(),
            name: call["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            arguments: call["function"]["arguments"]
                .as_str()
                .unwrap_or("{}")
                .to_string(),
        });
    }
    Some(ChatResponse {
        id: str_of(value, "id").unwrap_or_default().to_string(),
        model: str_of(value, "model").unwrap_or_default().to_string(),
        content,
        stop: stop_of(str_of(choice, "finish_reason")),
        usage: value["usage"]
            .is_object()
            .then(|| usage_of(&value["usage"])),
    })
}

pub fn render_response(r: &ChatResponse) -> Value {
    let message = assistant_message(&r.content, true);
    json!({
        "id": r.id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": r.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(r.stop), "logprobs": null}],
        "usage": render_usage(&r.usage.unwrap_or_default()),
    })
}

pub fn parse_error(value: &Value) -> Option<(ErrorKind, String)> {
    let error = value.get("error")?;
    let message = str_of(error, "message")?.to_string();
    let kind = match str_of(error, "type") {
        Some("authentication_error") => ErrorKind::Authentication,
        Some("permission_error") => ErrorKind::Permission,
        Some("not_found_error") => ErrorKind::NotFound,
        Some("rate_limit_error")
        | Some("insufficient_quota")
        | Some("tokens")
        | Some("requests") => ErrorKind::RateLimit,
        Some("invalid_request_error") => ErrorKind::InvalidRequest,
        Some("overloaded_error") => ErrorKind::Overloaded,
        _ => ErrorKind::Server,
    };
    Some((kind, message))
}

pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::TooLarge => {
            "invalid_request_error"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Overloaded | ErrorKind::Server => "server_error",
    }
}

/// OpenAI's error envelope: `{"error":{"message","type","param","code"}}`.
pub fn render_error(e: &ErrorBody<'_>) -> Value {
    json!({"error": {"message": e.message, "type": error_type(e.kind), "param": e.param, "code": e.code}})
}
