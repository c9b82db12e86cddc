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
#[derive(Debug, Default)]
pub struct Knobs {
    pub latency: Duration,
    pub status: Option<StatusCode>,
    pub chunks: usize,
    pub chunk_delay: Duration,
    pub response_size: Option<usize>,
    pub drop_after: Option<usize>,
    pub hold: Option<String>,
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
        }
    }
}

fn model_of(request: &serde_json::Value) -> String {
    request["model"].as_str().unwrap_or("mock").to_string()
}

/// The content pieces of an answer: `chunks` words, or `response_size` bytes.
fn pieces(knobs: &Knobs) -> Vec<String> {
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

pub fn error(status: StatusCode) -> http::Response<Body> {
    let kind = match status.as_u16() {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    let body = serde_json::json!({"error": {
        "message": format!("mock upstream answered {}", status.as_u16()),
        "type": kind,
        "code": status.as_u16().to_string(),
    }});
    full(status, "application/json", body.to_string())
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
    let parts = pieces(knobs);
    let completion_tokens = parts.len() as u64;
    serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model_of(request),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": parts.concat()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })
}

pub fn chat_stream(request: &serde_json::Value, knobs: &Knobs, prompt_tokens: u64) -> Vec<String> {
    let model = model_of(request);
    let parts = pieces(knobs);
    let completion_tokens = parts.len() as u64;
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let value = serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {value}\n\n")
    };
    let mut events: Vec<String> = parts
        .iter()
        .map(|text| chunk(serde_json::json!({"content": text}), None))
        .collect();
    events.push(chunk(serde_json::json!({}), Some("stop")));
    if request["stream_options"]["include_usage"].as_bool() == Some(true) {
        let value = serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}});
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
    let parts = pieces(knobs);
    serde_json::json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model_of(request),
        "content": [{"type": "text", "text": parts.concat()}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": parts.len()},
    })
}

pub fn anthropic_stream(
    request: &serde_json::Value,
    knobs: &Knobs,
    prompt_tokens: u64,
) -> Vec<String> {
    let parts = pieces(knobs);
    let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
            "role": "assistant", "model": model_of(request), "content": [], "stop_reason": null,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}}),
    )];
    events.push(event(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    for text in &parts {
        events.push(event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": parts.len()}}),
    ));
    events.push(event(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    events
}
