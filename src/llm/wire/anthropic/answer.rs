//! Messages answers and errors, read and written.

use serde_json::{json, Value};

use crate::llm::ir::*;
use crate::llm::wire::str_of;

pub(super) fn stop_of(reason: Option<&str>) -> StopReason {
    match reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("tool_use") => StopReason::ToolUse,
        Some("refusal") => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

pub(super) fn stop_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter => "refusal",
    }
}

/// Anthropic counts cached input apart; the model counts it in `input`.
pub(super) fn usage_of(usage: &Value) -> Usage {
    let n = |key: &str| crate::llm::wire::token_count(usage.get(key));
    let (read, write) = (
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    Usage {
        input: n("input_tokens").saturating_add(read).saturating_add(write),
        output: n("output_tokens"),
        cache_read: read,
        cache_write: write,
    }
}

pub(super) fn render_usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input.saturating_sub(usage.cache_read.saturating_add(usage.cache_write)),
        "output_tokens": usage.output,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation_input_tokens": usage.cache_write,
    })
}

pub fn parse_response(value: &Value) -> Option<ChatResponse> {
    if str_of(value, "type") != Some("message") {
        return None;
    }
    let mut content = Vec::new();
    for block in value["content"].as_array()? {
        match str_of(block, "type") {
            Some("text") => {
                content.push(Part::Text(str_of(block, "text").unwrap_or("").to_string()))
            }
            Some("tool_use") => content.push(Part::ToolCall {
                id: str_of(block, "id").unwrap_or_default().to_string(),
                name: str_of(block, "name").unwrap_or_default().to_string(),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".into(), Value::to_string),
            }),
            _ => {}
        }
    }
    Some(ChatResponse {
        id: str_of(value, "id").unwrap_or_default().to_string(),
        model: str_of(value, "model").unwrap_or_default().to_string(),
        content,
        stop: stop_of(str_of(value, "stop_reason")),
        usage: value["usage"]
            .is_object()
            .then(|| usage_of(&value["usage"])),
    })
}

pub fn render_response(r: &ChatResponse) -> Value {
    let content: Vec<Value> = r
        .content
        .iter()
        .filter_map(|part| match part {
            Part::Text(text) if !text.is_empty() => Some(json!({"type": "text", "text": text})),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(json!({
                "type": "tool_use",
                "id": id,
                "name": name,
                "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
            })),
            _ => None,
        })
        .collect();
    json!({
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": stop_reason(r.stop),
        "stop_sequence": null,
        "usage": render_usage(&r.usage.unwrap_or_default()),
    })
}

pub fn parse_error(value: &Value) -> Option<(ErrorKind, String)> {
    let error = value.get("error")?;
    let message = str_of(error, "message")?.to_string();
    let kind = match str_of(error, "type") {
        Some("invalid_request_error") => ErrorKind::InvalidRequest,
        Some("request_too_large") => ErrorKind::TooLarge,
        Some("authentication_error") => ErrorKind::Authentication,
        Some("permission_error") | Some("billing_error") => ErrorKind::Permission,
        Some("not_found_error") => ErrorKind::NotFound,
        Some("rate_limit_error") => ErrorKind::RateLimit,
        Some("overloaded_error") => ErrorKind::Overloaded,
        _ => ErrorKind::Server,
    };
    Some((kind, message))
}

pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::TooLarge => "request_too_large",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Server => "api_error",
    }
}

/// Anthropic's error envelope: `{"type":"error","error":{"type","message"}}`.
pub fn render_error(e: &ErrorBody<'_>) -> Value {
    json!({"type": "error", "error": {"type": error_type(e.kind), "message": e.message}})
}
