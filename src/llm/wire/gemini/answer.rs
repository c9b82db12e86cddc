//! Gemini answers (`GenerateContentResponse`) and errors, read into the
//! internal model.

use serde_json::Value;

use super::ids;
use crate::llm::ir::*;
use crate::llm::wire::str_of;

/// A finish reason; `tool_calls` when the answer called a tool (Gemini
/// has no reason of its own for that: it says STOP).
pub(super) fn stop_of(reason: Option<&str>, called: bool) -> StopReason {
    match reason {
        Some("MAX_TOKENS") => StopReason::MaxTokens,
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "MODEL_ARMOR"
            | "LANGUAGE",
        ) => StopReason::ContentFilter,
        _ if called => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    }
}

/// `usageMetadata`: the prompt counts its cached tokens; thoughts are
/// output.
pub(super) fn usage_of(usage: &Value) -> Usage {
    let n = |key: &str| crate::llm::wire::token_count(usage.get(key));
    let input = n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount"));
    Usage {
        input,
        output: n("candidatesTokenCount").saturating_add(n("thoughtsTokenCount")),
        cache_read: n("cachedContentTokenCount").min(input),
        cache_write: 0,
    }
}

/// A stable id for the `n`th call of an answer that named none.
pub(super) fn made_up_id(answer: &Value, n: usize) -> String {
    let id: String = str_of(answer, "responseId")
        .unwrap_or("gemini")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    format!("call_{id}_{n}")
}

/// The parts of the answer's first candidate, as the model's: text (never
/// its thoughts) and tool calls, numbered from `calls`.
pub(super) fn parts_of(answer: &Value, calls: &mut usize) -> Vec<Part> {
    let mut out = Vec::new();
    let parts = answer["candidates"][0]["content"]["parts"].as_array();
    for part in parts.into_iter().flatten() {
        if let Some(call) = part.get("functionCall") {
            let signature = str_of(part, "thoughtSignature");
            let n = *calls;
            *calls += 1;
            out.push(Part::ToolCall {
                id: ids::pack(str_of(call, "id"), signature, || made_up_id(answer, n)),
                name: str_of(call, "name").unwrap_or_default().to_string(),
                arguments: call
                    .get("args")
                    .map_or_else(|| "{}".into(), Value::to_string),
            });
        } else if part["thought"].as_bool() != Some(true) {
            if let Some(text) = str_of(part, "text").filter(|t| !t.is_empty()) {
                out.push(Part::Text(text.to_string()));
            }
        }
    }
    out
}

/// Whether the prompt itself was blocked (no candidate, a block reason).
pub(super) fn prompt_blocked(answer: &Value) -> bool {
    answer["promptFeedback"]["blockReason"].is_string()
        && answer["candidates"].as_array().is_none_or(|c| c.is_empty())
}

pub(super) fn parse_response(value: &Value) -> Option<ChatResponse> {
    let value = unwrap_list(value);
    let candidates = value.get("candidates");
    if candidates.is_some_and(|c| !c.is_array()) || candidates.is_none() && !prompt_blocked(value) {
        return None;
    }
    let mut calls = 0;
    let content = parts_of(value, &mut calls);
    let stop = if prompt_blocked(value) {
        StopReason::ContentFilter
    } else {
        stop_of(str_of(&value["candidates"][0], "finishReason"), calls > 0)
    };
    Some(ChatResponse {
        id: str_of(value, "responseId").unwrap_or_default().to_string(),
        model: str_of(value, "modelVersion")
            .unwrap_or_default()
            .to_string(),
        content,
        stop,
        usage: value["usageMetadata"]
            .is_object()
            .then(|| usage_of(&value["usageMetadata"])),
    })
}

/// Without `alt=sse` Gemini answers in a list; errors come that way too.
fn unwrap_list(value: &Value) -> &Value {
    match value.as_array() {
        Some(items) if items.len() == 1 => &items[0],
        _ => value,
    }
}

/// `{"error": {"code", "message", "status"}}`, the status a google.rpc
/// code's name.
pub(super) fn parse_error(value: &Value) -> Option<(ErrorKind, String)> {
    let error = unwrap_list(value).get("error")?;
    let mut message = str_of(error, "message")?.to_string();
    if let Some(delay) = retry_delay(error) {
        message.push_str(&format!(" (RetryInfo: retry after {delay})"));
    }
    let kind = match str_of(error, "status") {
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            ErrorKind::InvalidRequest
        }
        Some("UNAUTHENTICATED") => ErrorKind::Authentication,
        Some("PERMISSION_DENIED") => ErrorKind::Permission,
        Some("NOT_FOUND") => ErrorKind::NotFound,
        Some("RESOURCE_EXHAUSTED") => ErrorKind::RateLimit,
        Some("UNAVAILABLE") => ErrorKind::Overloaded,
        _ => ErrorKind::Server,
    };
    Some((kind, message))
}

/// The `google.rpc.RetryInfo` delay of an error (`"59s"`), if it names
/// one: Google says when to retry only in the body.
fn retry_delay(error: &Value) -> Option<&str> {
    error["details"]
        .as_array()?
        .iter()
        .filter(|d| str_of(d, "@type").is_some_and(|t| t.ends_with("google.rpc.RetryInfo")))
        .find_map(|d| str_of(d, "retryDelay"))
        .filter(|delay| delay.len() <= 32)
}
