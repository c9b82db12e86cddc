//! What the mock answers: OpenAI and Anthropic bodies and event streams.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use bytes::Bytes;
use http::Response;
use http_body_util::{combinators::BoxBody, BodyExt, Full};

#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

/// A response body of the mock: whole, or an event stream.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A whole response.
pub fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    resp
}

/// Per-request behaviour, from `x-mock-*` headers.
#[derive(Debug, Default, Clone)]
pub struct Knobs {
    pub latency: Duration,
    pub status: Option<StatusCode>,
    pub chunks: usize,
    pub chunk_delay: Duration,
    pub response_size: Option<usize>,
    pub drop_after: Option<usize>,
    pub hold: Option<String>,
    /// Of the prompt's tokens, this many were read from the prompt cache.
    pub cached_tokens: u64,
    /// How a successful chat answer misbehaves (`faults.rs`).
    pub fault: Option<super::faults::Fault>,
}

impl Knobs {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let number = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            latency: Duration::from_millis(number("x-mock-latency-ms").unwrap_or(0)),
            status: number("x-mock-status").and_then(|s| StatusCode::from_u16(s as u16).ok()),
            chunks: number("x-mock-chunks").unwrap_or(3).clamp(1, 100_000) as usize,
            chunk_delay: Duration::from_millis(number("x-mock-chunk-delay-ms").unwrap_or(0)),
            response_size: number("x-mock-response-size").map(|n| n.min(64 << 20) as usize),
            drop_after: number("x-mock-drop-after").map(|n| n as usize),
            hold: get("x-mock-hold").map(str::to_string),
            cached_tokens: number("x-mock-cached-tokens").unwrap_or(0),
            fault: get("x-mock-fault").and_then(super::faults::Fault::parse),
        }
    }
}

fn model_of(request: &serde_json::Value) -> String {
    request["model"].as_str().unwrap_or("mock").to_string()
}

/// The content pieces of an answer: `chunks` words, or `response_size` bytes.
pub fn pieces(knobs: &Knobs) -> Vec<String> {
    match knobs.response_size {
        Some(size) => {
            let per = (size / knobs.chunks).max(1);
            let mut left = size;
            let mut out = Vec::with_capacity(knobs.chunks);
            while left > 0 {
                let n = per.min(left);
                out.push("x".repeat(n));
                left -= n;
            }
            out
        }
        None => (0..knobs.chunks).map(|i| format!("word{i} ")).collect(),
    }
}

/// An error answer in the dialect of the endpoint asked.
pub fn error(status: StatusCode, dialect: Dialect) -> http::Response<Body> {
    error_with(
        status,
        dialect,
        &format!("mock upstream answered {}", status.as_u16()),
    )
}

/// An error in the shape and with the type and code the real API gives
/// for `status` (OpenAI: `invalid_api_key`, `model_not_found`,
/// `rate_limit_exceeded`, ...; never a bare status number).
pub fn error_with(status: StatusCode, dialect: Dialect, message: &str) -> http::Response<Body> {
    let code = status.as_u16();
    let body = match dialect {
        Dialect::OpenAi => {
            let (kind, code) = match code {
                401 => ("invalid_request_error", Some("invalid_api_key")),
                403 => (
                    "request_forbidden",
                    Some("unsupported_country_region_territory"),
                ),
                404 => ("invalid_request_error", Some("model_not_found")),
                429 => ("requests", Some("rate_limit_exceeded")),
                400..=499 => ("invalid_request_error", None),
                _ => ("server_error", None),
            };
            serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Dialect::Anthropic => {
            let kind = match code {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 | 503 => "overloaded_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            };
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message},
                "request_id": "req_mock"})
        }
    };
    full(status, "application/json", body.to_string())
}

/// A token count of a Messages request: a quarter of its body's bytes.
pub fn anthropic_token_count(body: &[u8]) -> serde_json::Value {
    serde_json::json!({"input_tokens": (body.len() / 4).max(1)})
}

pub fn models() -> serde_json::Value {
    serde_json::json!({"object": "list", "data": [
        {"id": "mock-gpt", "object": "model", "created": 0, "owned_by": "mock"},
        {"id": "mock-claude", "object": "model", "created": 0, "owned_by": "mock"},
    ]})
}

pub fn embeddings(request: &serde_json::Value) -> serde_json::Value {
    let inputs = match &request["input"] {
        serde_json::Value::Array(items) => items.len().max(1),
        _ => 1,
    };
    let data: Vec<_> = (0..inputs)
        .map(|i| serde_json::json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}))
        .collect();
    serde_json::json!({"object": "list", "data": data, "model": model_of(request),
        "usage": {"prompt_tokens": inputs * 4, "total_tokens": inputs * 4}})
}

pub fn chat_completion(
    request: &serde_json::Value,
    knobs: &Knobs,
    prompt_tokens: u64,
) -> serde_json::Value {
    let (message, finish, completion_tokens) = match tool_call(request, Dialect::OpenAi) {
        Some((name, arguments)) => (
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_mock", "type": "function", "function": {"name": name, "arguments": arguments}},
            ]}),
            "tool_calls",
            8,
        ),
        None => {
            let parts = answer(request, Dialect::OpenAi, knobs);
            let n = parts.len() as u64;
            (
                serde_json::json!({"role": "assistant", "content": parts.concat()}),
                "stop",
                n,
            )
        }
    };
    serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model_of(request),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": openai_usage(prompt_tokens, completion_tokens, knobs),
    })
}

/// OpenAI counts cached prompt tokens inside `prompt_tokens`.
fn openai_usage(prompt_tokens: u64, completion_tokens: u64, knobs: &Knobs) -> serde_json::Value {
    let mut usage = serde_json::json!({"prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    if knobs.cached_tokens > 0 {
        usage["prompt_tokens_details"] =
            serde_json::json!({"cached_tokens": knobs.cached_tokens.min(prompt_tokens)});
    }
    usage
}

/// Anthropic counts cache reads apart from `input_tokens`.
fn anthropic_usage(prompt_tokens: u64, output_tokens: u64, knobs: &Knobs) -> serde_json::Value {
    let cached = knobs.cached_tokens.min(prompt_tokens);
    let mut usage =
        serde_json::json!({"input_tokens": prompt_tokens - cached, "output_tokens": output_tokens});
    if cached > 0 {
        usage["cache_read_input_tokens"] = cached.into();
        usage["cache_creation_input_tokens"] = 0.into();
    }
    usage
}

pub fn chat_stream(request: &serde_json::Value, knobs: &Knobs, prompt_tokens: u64) -> Vec<String> {
    let model = model_of(request);
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let value = serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {value}\n\n")
    };
    let (mut events, completion_tokens) = match tool_call(request, Dialect::OpenAi) {
        Some((name, arguments)) => {
            // The arguments come in two pieces, as real streams cut them.
            let (first, second) = arguments.split_at(arguments.len() / 2);
            let events = vec![
                chunk(
                    serde_json::json!({"role": "assistant", "content": null}),
                    None,
                ),
                chunk(
                    serde_json::json!({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                ),
                chunk(
                    serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": first}}]}),
                    None,
                ),
                chunk(
                    serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": second}}]}),
                    None,
                ),
                chunk(serde_json::json!({}), Some("tool_calls")),
            ];
            (events, 8)
        }
        None => {
            let parts = answer(request, Dialect::OpenAi, knobs);
            let n = parts.len() as u64;
            let mut events: Vec<String> = parts
                .iter()
                .map(|text| chunk(serde_json::json!({"content": text}), None))
                .collect();
            events.push(chunk(serde_json::json!({}), Some("stop")));
            (events, n)
        }
    };
    if request["stream_options"]["include_usage"].as_bool() == Some(true) {
        let value = serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [],
            "usage": openai_usage(prompt_tokens, completion_tokens, knobs)});
        events.push(format!("data: {value}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

pub fn anthropic_message(
    request: &serde_json::Value,
    knobs: &Knobs,
    prompt_tokens: u64,
) -> serde_json::Value {
    let (content, stop, output_tokens) = match tool_call(request, Dialect::Anthropic) {
        Some((name, arguments)) => (
            serde_json::json!([{"type": "tool_use", "id": "toolu_mock", "name": name,
                "input": serde_json::from_str::<serde_json::Value>(&arguments).unwrap_or_default()}]),
            "tool_use",
            8,
        ),
        None => {
            let parts = answer(request, Dialect::Anthropic, knobs);
            let n = parts.len();
            (
                serde_json::json!([{"type": "text", "text": parts.concat()}]),
                "end_turn",
                n,
            )
        }
    };
    let content = match (thinking_block(request), content) {
        (Some(thinking), serde_json::Value::Array(mut blocks)) => {
            blocks.insert(0, thinking);
            serde_json::Value::Array(blocks)
        }
        (_, content) => content,
    };
    serde_json::json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model_of(request),
        "content": content,
        "stop_reason": stop, "stop_sequence": null,
        "usage": anthropic_usage(prompt_tokens, output_tokens as u64, knobs),
    })
}

pub fn anthropic_stream(
    request: &serde_json::Value,
    knobs: &Knobs,
    prompt_tokens: u64,
) -> Vec<String> {
    let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
            "role": "assistant", "model": model_of(request), "content": [], "stop_reason": null,
            "usage": anthropic_usage(prompt_tokens, 1, knobs)}}),
    )];
    // The answer's block: after the thinking block, when there is one.
    let mut index = 0;
    if let Some(thinking) = thinking_block(request) {
        events.push(event(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ));
        events.push(event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": thinking["thinking"]}}),
        ));
        events.push(event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": thinking["signature"]}}),
        ));
        events.push(event(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": 0}),
        ));
        index = 1;
    }
    let (stop, output_tokens) = match tool_call(request, Dialect::Anthropic) {
        Some((name, arguments)) => {
            let (first, second) = arguments.split_at(arguments.len() / 2);
            events.push(event(
                "content_block_start",
                serde_json::json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}}),
            ));
            for piece in [first, second] {
                events.push(event(
                    "content_block_delta",
                    serde_json::json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            ("tool_use", 8)
        }
        None => {
            let parts = answer(request, Dialect::Anthropic, knobs);
            events.push(event(
                "content_block_start",
                serde_json::json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            ));
            for text in &parts {
                events.push(event(
                    "content_block_delta",
                    serde_json::json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            ("end_turn", parts.len())
        }
    };
    events.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": index}),
    ));
    events.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}}),
    ));
    events.push(event(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    events
}

/// The text of an answer: what a tool said, when the last turn carries a
/// tool's result, then the configured words.
fn answer(request: &serde_json::Value, dialect: Dialect, knobs: &Knobs) -> Vec<String> {
    let mut parts = pieces(knobs);
    if let Some(result) = tool_result(request, dialect) {
        parts.insert(0, format!("The tool said: {result}. "));
    }
    parts
}

/// The content of the tool result in the request's last message, if any.
fn tool_result(request: &serde_json::Value, dialect: Dialect) -> Option<String> {
    let last = last_turn(request)?;
    match dialect {
        Dialect::OpenAi => (last["role"] == "tool").then(|| text_of(&last["content"])),
        Dialect::Anthropic => last["content"]
            .as_array()?
            .iter()
            .find(|b| b["type"] == "tool_result")
            .map(|b| text_of(&b["content"])),
    }
}

fn text_of(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The tool call an answer makes, when the request offers tools and no
/// tool has answered yet: the one the last user turn asks for with a line
/// `mock-call: NAME {json arguments}`, else, when exactly one tool is
/// offered, a call of it with arguments made up from its schema. (An agent
/// offers dozens of tools; it gets a text answer unless its prompt names
/// one.) Returns (name, arguments as JSON text).
fn tool_call(request: &serde_json::Value, dialect: Dialect) -> Option<(String, String)> {
    let tools = request["tools"].as_array()?;
    let refused = match dialect {
        Dialect::OpenAi => request["tool_choice"] == "none",
        Dialect::Anthropic => request["tool_choice"]["type"] == "none",
    };
    if tools.is_empty() || refused || tool_result(request, dialect).is_some() {
        return None;
    }
    let name_of = |tool: &serde_json::Value| match dialect {
        Dialect::OpenAi => tool["function"]["name"].as_str().map(str::to_string),
        Dialect::Anthropic => tool["name"].as_str().map(str::to_string),
    };
    if let Some((name, arguments)) = prompted_call(request) {
        return tools
            .iter()
            .any(|t| name_of(t).as_deref() == Some(name.as_str()))
            .then_some((name, arguments));
    }
    let [tool] = tools.as_slice() else {
        return None;
    };
    let schema = match dialect {
        Dialect::OpenAi => &tool["function"]["parameters"],
        Dialect::Anthropic => &tool["input_schema"],
    };
    let mut arguments = serde_json::Map::new();
    for (property, spec) in schema["properties"].as_object().into_iter().flatten() {
        let value = match spec["type"].as_str() {
            Some("number") | Some("integer") => serde_json::json!(1),
            Some("boolean") => serde_json::json!(true),
            _ => serde_json::json!("Paris"),
        };
        arguments.insert(property.clone(), value);
    }
    Some((
        name_of(tool)?,
        serde_json::Value::Object(arguments).to_string(),
    ))
}

/// The last message that is not a system message (Claude Code sends
/// system messages after its user turn).
fn last_turn(request: &serde_json::Value) -> Option<&serde_json::Value> {
    request["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] != "system")
}

/// `mock-call: NAME {json}` in the last turn's text.
fn prompted_call(request: &serde_json::Value) -> Option<(String, String)> {
    let last = last_turn(request)?;
    let text = text_of(&last["content"]);
    let line = text
        .lines()
        .find_map(|l| l.split_once("mock-call:"))?
        .1
        .trim();
    let (name, arguments) = line.split_once(char::is_whitespace).unwrap_or((line, "{}"));
    let arguments: serde_json::Value =
        serde_json::from_str(arguments.trim()).unwrap_or_else(|_| serde_json::json!({}));
    Some((name.to_string(), arguments.to_string()))
}

/// The thinking block an Anthropic answer starts with when the request
/// turned thinking on (its text left out when `display` is `omitted`).
fn thinking_block(request: &serde_json::Value) -> Option<serde_json::Value> {
    let thinking = &request["thinking"];
    if !matches!(thinking["type"].as_str(), Some("enabled" | "adaptive")) {
        return None;
    }
    let text = if thinking["display"] == "omitted" {
        ""
    } else {
        "The user wants an answer; I will give one."
    };
    Some(serde_json::json!({"type": "thinking", "thinking": text,
        "signature": super::checks::THINKING_SIGNATURE}))
}
