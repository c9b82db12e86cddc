//! Chat Completions requests, read into and written from the internal
//! model.

use serde_json::{json, Map, Value};

use crate::llm::hints::{Dropped, Hint};
use crate::llm::ir::*;
use crate::llm::wire::{number, str_of, tool_of, unsupported, Options, TranslateError};
use crate::llm::Dialect;

use super::answer::text_of;
use super::answer::{assistant_message, image_url};

pub(super) fn string(param: &str, value: &Value) -> Result<String, TranslateError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| TranslateError::invalid(param, "must be a string"))
}

/// Whether a value asks for nothing beyond the default.
pub(super) fn is_neutral(value: &Value, neutral: &Value) -> bool {
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
            // They steer OpenAI's own servers only: dropped, and named
            // (`provider_hints`).
            "prompt_cache_key" | "prompt_cache_retention" | "service_tier" => {}
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
            | "prompt_cache_options"
            | "seed"
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

pub(super) fn parse_messages(
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
pub(super) fn parse_content(
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
pub(super) fn image_of_url(url: &str) -> Image {
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

pub(super) fn parse_tools(
    value: &Value,
    to: Dialect,
    options: &Options,
) -> Result<Vec<Tool>, TranslateError> {
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

pub(super) fn parse_tool_choice(value: &Value) -> Result<ToolChoice, TranslateError> {
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
pub(super) fn render_user(message: &Message, out: &mut Vec<Value>) {
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

pub(super) fn render_assistant(message: &Message) -> Value {
    assistant_message(&message.content, false)
}

/// The parameters of `body` that steer OpenAI's own servers only.
pub fn provider_hints(body: &Value) -> Dropped {
    let mut dropped = Dropped::default();
    for (key, value) in body.as_object().into_iter().flatten() {
        match Hint::of_parameter(key) {
            Some(
                hint @ (Hint::PromptCacheKey | Hint::PromptCacheRetention | Hint::ServiceTier),
            ) if !value.is_null() => dropped.add(hint),
            _ => {}
        }
    }
    dropped
}
