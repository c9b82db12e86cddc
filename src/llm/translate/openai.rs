//! OpenAI Chat Completions: requests read into and written from the
//! internal model, answers, stream chunks and errors.

use serde_json::{json, Map, Value};

use super::ir::*;
use super::{number, str_of, tool_of, unix_now, unsupported, Options, TranslateError};
use crate::llm::Dialect;

/// Parameters of a Chat Completions request, and what happens to each on
/// the way to another dialect. `golden.rs` holds the parser and the
/// README's table to it.
#[cfg(test)]
pub const PARAMETERS: &[(&str, &str)] = &[
    ("messages", "translated"),
    ("model", "translated"),
    ("max_tokens", "translated"),
    ("max_completion_tokens", "translated"),
    ("temperature", "translated (Anthropic takes 0 to 1)"),
    ("top_p", "translated"),
    ("stop", "translated"),
    ("stream", "translated"),
    ("stream_options", "translated (`include_usage`)"),
    ("tools", "translated (function tools)"),
    ("tool_choice", "translated"),
    ("parallel_tool_calls", "translated"),
    ("user", "translated"),
    (
        "safety_identifier",
        "translated (as the user, when `user` is not set)",
    ),
    ("reasoning_effort", "translated"),
    ("response_format", "translated (`text`, `json_schema`)"),
    ("n", "accepted when 1"),
    ("logprobs", "accepted when false"),
    ("top_logprobs", "accepted when 0"),
    ("frequency_penalty", "accepted when 0"),
    ("presence_penalty", "accepted when 0"),
    ("logit_bias", "accepted when empty"),
    ("modalities", "accepted when [\"text\"]"),
    ("store", "accepted when false"),
    ("audio", "refused"),
    ("function_call", "refused (use tool_choice)"),
    ("functions", "refused (use tools)"),
    ("metadata", "refused"),
    ("moderation", "refused"),
    ("prediction", "refused"),
    ("prompt_cache_key", "refused"),
    ("prompt_cache_options", "refused"),
    ("prompt_cache_retention", "refused"),
    ("seed", "refused"),
    ("service_tier", "refused"),
    ("verbosity", "refused"),
    ("web_search_options", "refused"),
];

fn string(param: &str, value: &Value) -> Result<String, TranslateError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| TranslateError::invalid(param, "must be a string"))
}

/// Whether a value asks for nothing beyond the default.
fn is_neutral(value: &Value, neutral: &Value) -> bool {
    value == neutral || value.is_null()
}

pub fn parse_request(
    value: &Value,
    to: Dialect,
    options: &Options,
) -> Result<ChatRequest, TranslateError> {
    let body = value
        .as_object()
        .ok_or_else(|| TranslateError::invalid("body", "must be a JSON object"))?;
    let mut r = ChatRequest::default();
    let mut safety_identifier = None;
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        let param = key.as_str();
        match param {
            "model" => r.model = string(param, value)?,
            "messages" => parse_messages(value, &mut r, to, options)?,
            "max_tokens" | "max_completion_tokens" => {
                r.max_tokens =
                    Some(value.as_u64().ok_or_else(|| {
                        TranslateError::invalid(param, "must be a positive integer")
                    })?)
            }
            "temperature" => r.temperature = Some(number(param, value)?),
            "top_p" => r.top_p = Some(number(param, value)?),
            "stop" => {
                r.stop = match value {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items
                        .iter()
                        .map(|s| string(param, s))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(TranslateError::invalid(param, "must be a string or a list")),
                }
            }
            "stream" => r.stream = value.as_bool().unwrap_or(false),
            "stream_options" => {
                for (option, setting) in value.as_object().into_iter().flatten() {
                    match option.as_str() {
                        "include_usage" => r.include_usage = setting.as_bool().unwrap_or(false),
                        _ if setting.is_null() || setting == &Value::Bool(false) => {}
                        _ => unsupported(
                            &format!("stream_options.{option}"),
                            to,
                            "only `include_usage` has a meaning there",
                            options,
                        )?,
                    }
                }
            }
            "tools" => r.tools = parse_tools(value, to, options)?,
            "tool_choice" => r.tool_choice = Some(parse_tool_choice(value)?),
            "parallel_tool_calls" => r.parallel_tool_calls = value.as_bool(),
            "user" => r.user = Some(string(param, value)?),
            "safety_identifier" => safety_identifier = Some(string(param, value)?),
            "reasoning_effort" => r.reasoning_effort = Some(string(param, value)?),
            "response_format" => match str_of(value, "type") {
                Some("text") => {}
                Some("json_schema") => {
                    let spec = &value["json_schema"];
                    let schema = spec.get("schema").cloned().ok_or_else(|| {
                        TranslateError::invalid(param, "`json_schema.schema` is missing")
                    })?;
                    let name = str_of(spec, "name").unwrap_or("output").to_string();
                    r.json_schema = Some((name, schema));
                }
                _ => unsupported(
                    param,
                    to,
                    "only `text` and `json_schema` formats can be translated",
                    options,
                )?,
            },
            "n" if is_neutral(value, &json!(1)) => {}
            "logprobs" if is_neutral(value, &json!(false)) => {}
            "top_logprobs" if is_neutral(value, &json!(0)) => {}
            "frequency_penalty" | "presence_penalty" if value.as_f64() == Some(0.0) => {}
            "logit_bias" if value.as_object().is_some_and(Map::is_empty) => {}
            "modalities" if is_neutral(value, &json!(["text"])) => {}
            "store" if is_neutral(value, &json!(false)) => {}
            "n"
            | "logprobs"
            | "top_logprobs"
            | "frequency_penalty"
            | "presence_penalty"
            | "logit_bias"
            | "modalities"
            | "store"
            | "audio"
            | "metadata"
            | "moderation"
            | "prediction"
            | "prompt_cache_key"
            | "prompt_cache_options"
            | "prompt_cache_retention"
            | "seed"
            | "service_tier"
            | "verbosity"
            | "web_search_options" => {
                unsupported(param, to, "the target API has no such parameter", options)?
            }
            "functions" | "function_call" => unsupported(
                param,
                to,
                "deprecated; use `tools` and `tool_choice`",
                options,
            )?,
            _ => unsupported(param, to, "not a Chat Completions parameter", options)?,
        }
    }
    if r.user.is_none() {
        r.user = safety_identifier;
    }
    if r.model.is_empty() {
        return Err(TranslateError::invalid("model", "is required"));
    }
    Ok(r)
}

fn parse_messages(
    value: &Value,
    r: &mut ChatRequest,
    to: Dialect,
    options: &Options,
) -> Result<(), TranslateError> {
    let messages = value
        .as_array()
        .ok_or_else(|| TranslateError::invalid("messages", "must be a list"))?;
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = str_of(message, "role")
            .ok_or_else(|| TranslateError::invalid(&at, "needs a `role`"))?;
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                for part in parse_content(&at, content, to, options)? {
                    if let Part::Text(text) = part {
                        r.system.push(text);
                    }
                }
            }
            "user" => r.messages.push(Message {
                role: Role::User,
                content: parse_content(&at, content, to, options)?,
            }),
            "assistant" => {
                let mut parts = parse_content(&at, content, to, options)?;
                for (j, call) in message
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let field = format!("{at}.tool_calls[{j}]");
                    let function = &call["function"];
                    parts.push(Part::ToolCall {
                        id: str_of(call, "id")
                            .ok_or_else(|| TranslateError::invalid(&field, "needs an `id`"))?
                            .to_string(),
                        name: str_of(function, "name")
                            .ok_or_else(|| {
                                TranslateError::invalid(&field, "needs a function `name`")
                            })?
                            .to_string(),
                        arguments: str_of(function, "arguments").unwrap_or("{}").to_string(),
                    });
                }
                r.messages.push(Message {
                    role: Role::Assistant,
                    content: parts,
                });
            }
            "tool" => {
                let id = str_of(message, "tool_call_id")
                    .ok_or_else(|| {
                        TranslateError::invalid(&at, "a tool message needs `tool_call_id`")
                    })?
                    .to_string();
                r.messages.push(Message {
                    role: Role::User,
                    content: vec![Part::ToolResult {
                        id,
                        content: parse_content(&at, content, to, options)?,
                        is_error: false,
                    }],
                });
            }
            _ => {
                return Err(TranslateError::unsupported(
                    format!("{at}.role"),
                    to,
                    "only system, developer, user, assistant and tool messages can be translated",
                ))
            }
        }
    }
    Ok(())
}

/// A message's `content`: a string, or a list of parts.
fn parse_content(
    at: &str,
    content: &Value,
    to: Dialect,
    options: &Options,
) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![Part::Text(text.clone())]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let field = format!("{at}.content[{j}]");
                match str_of(part, "type") {
                    Some("text") => {
                        out.push(Part::Text(str_of(part, "text").unwrap_or("").to_string()))
                    }
                    // An assistant's refusal, sent back in the history.
                    Some("refusal") => out.push(Part::Text(
                        str_of(part, "refusal").unwrap_or("").to_string(),
                    )),
                    Some("image_url") => {
                        let url = part["image_url"]["url"].as_str().ok_or_else(|| {
                            TranslateError::invalid(&field, "needs `image_url.url`")
                        })?;
                        out.push(Part::Image(image_of_url(url)));
                    }
                    _ => unsupported(
                        &field,
                        to,
                        "only text and image parts can be translated",
                        options,
                    )?,
                }
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(
            at,
            "`content` must be a string or a list",
        )),
    }
}

/// `data:image/png;base64,...` is inline data; anything else an address.
fn image_of_url(url: &str) -> Image {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((media_type, data)) = rest.split_once(";base64,") {
            return Image::Base64 {
                media_type: media_type.to_string(),
                data: data.to_string(),
            };
        }
    }
    Image::Url(url.to_string())
}

fn parse_tools(value: &Value, to: Dialect, options: &Options) -> Result<Vec<Tool>, TranslateError> {
    let mut tools = Vec::new();
    for (i, tool) in value.as_array().into_iter().flatten().enumerate() {
        let at = format!("tools[{i}]");
        if str_of(tool, "type") != Some("function") {
            unsupported(
                &format!("{at}.type"),
                to,
                "only function tools can be translated",
                options,
            )?;
            continue;
        }
        tools.push(tool_of(
            &tool["function"],
            &format!("{at}.function"),
            "parameters",
        )?);
    }
    Ok(tools)
}

fn parse_tool_choice(value: &Value) -> Result<ToolChoice, TranslateError> {
    match value {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(TranslateError::invalid(
                "tool_choice",
                "must be auto, none, required or a function",
            )),
        },
        _ => value["function"]["name"]
            .as_str()
            .map(|name| ToolChoice::Tool(name.to_string()))
            .ok_or_else(|| TranslateError::invalid("tool_choice", "needs `function.name`")),
    }
}

pub fn render_request(r: &ChatRequest) -> Value {
    let mut messages = Vec::new();
    if !r.system.is_empty() {
        messages.push(json!({"role": "system", "content": r.system.join("\n\n")}));
    }
    for message in &r.messages {
        match message.role {
            Role::User => render_user(message, &mut messages),
            Role::Assistant => messages.push(render_assistant(message)),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(r.model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(n) = r.max_tokens {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = r.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = r.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !r.stop.is_empty() {
        body.insert("stop".into(), json!(r.stop));
    }
    if r.stream {
        body.insert("stream".into(), json!(true));
        // Usage is read from the stream for limits and metrics.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !r.tools.is_empty() {
        let tools: Vec<Value> = r
            .tools
            .iter()
            .map(|t| {
                let mut function = json!({"name": t.name, "parameters": t.schema});
                if let Some(description) = &t.description {
                    function["description"] = json!(description);
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &r.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
    }
    if let Some(parallel) = r.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), json!(parallel));
    }
    if let Some(user) = &r.user {
        body.insert("user".into(), json!(user));
    }
    if let Some(effort) = &r.reasoning_effort {
        body.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some((name, schema)) = &r.json_schema {
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
        );
    }
    Value::Object(body)
}

/// A user turn: tool results become `tool` messages, the rest one `user` message.
fn render_user(message: &Message, out: &mut Vec<Value>) {
    let mut parts = Vec::new();
    for part in &message.content {
        match part {
            Part::ToolResult {
                id,
                content,
                is_error,
            } => {
                let mut text = text_of(content);
                if *is_error {
                    text = format!("[tool error] {text}");
                }
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            Part::Text(text) => parts.push(json!({"type": "text", "text": text})),
            Part::Image(image) => {
                parts.push(json!({"type": "image_url", "image_url": {"url": image_url(image)}}))
            }
            Part::ToolCall { .. } => {}
        }
    }
    match parts.as_slice() {
        [] => {}
        [only] if only["type"] == "text" => {
            out.push(json!({"role": "user", "content": only["text"]}));
        }
        _ => out.push(json!({"role": "user", "content": parts})),
    }
}

fn render_assistant(message: &Message) -> Value {
    assistant_message(&message.content, false)
}

/// An assistant message of `content`: its text, and its tool calls if any;
/// an answer's (`in_answer`) also says it refused nothing.
fn assistant_message(content: &[Part], in_answer: bool) -> Value {
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

fn image_url(image: &Image) -> String {
    match image {
        Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        Image::Url(url) => url.clone(),
    }
}

/// The text parts of a content list, joined.
fn text_of(content: &[Part]) -> String {
    content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("")
}

fn stop_of(reason: Option<&str>) -> StopReason {
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

fn usage_of(usage: &Value) -> Usage {
    let n = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input: n("prompt_tokens"),
        output: n("completion_tokens"),
        cache_read: usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        cache_write: 0,
    }
}

fn render_usage(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
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
        usage: usage_of(&value["usage"]),
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
        "usage": render_usage(&r.usage),
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

/// Reads OpenAI chunks into stream events.
#[derive(Default)]
pub struct Decoder {
    started: bool,
}

impl Decoder {
    pub fn event(&mut self, data: &str, out: &mut Vec<StreamEvent>) {
        if data.trim() == "[DONE]" {
            out.push(StreamEvent::Done);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some((kind, message)) = parse_error(&chunk) {
            out.push(StreamEvent::Error { kind, message });
            return;
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
    }
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

fn data(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(b"data: ");
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}
