//! Messages requests, read into and written from the internal model.

use serde_json::{json, Map, Value};

use crate::llm::hints::{Dropped, Hint};
use crate::llm::ir::*;
use crate::llm::wire::{number, str_of, tool_of, unsupported, Options, TranslateError};
use crate::llm::Dialect;

pub fn parse_request(
    value: &Value,
    to: Dialect,
    options: &Options,
) -> Result<ChatRequest, TranslateError> {
    let body = value
        .as_object()
        .ok_or_else(|| TranslateError::invalid("body", "must be a JSON object"))?;
    let mut r = ChatRequest::default();
    let mut thinking_budget = None;
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        let param = key.as_str();
        match param {
            "model" => {
                r.model = value
                    .as_str()
                    .ok_or_else(|| TranslateError::invalid(param, "must be a string"))?
                    .to_string()
            }
            "max_tokens" => {
                r.max_tokens =
                    Some(value.as_u64().ok_or_else(|| {
                        TranslateError::invalid(param, "must be a positive integer")
                    })?)
            }
            "messages" => parse_messages(value, &mut r, to, options)?,
            "system" => r.system.extend(system_blocks(value)?),
            "stop_sequences" => {
                r.stop = value
                    .as_array()
                    .ok_or_else(|| TranslateError::invalid(param, "must be a list"))?
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            }
            "stream" => r.stream = value.as_bool().unwrap_or(false),
            "temperature" => r.temperature = Some(number(param, value)?),
            "top_p" => r.top_p = Some(number(param, value)?),
            "tools" => r.tools = parse_tools(value, to, options)?,
            "tool_choice" => {
                r.tool_choice = match str_of(value, "type") {
                    Some("auto") => Some(ToolChoice::Auto),
                    Some("any") => Some(ToolChoice::Required),
                    Some("none") => Some(ToolChoice::None),
                    Some("tool") => Some(ToolChoice::Tool(
                        str_of(value, "name")
                            .ok_or_else(|| TranslateError::invalid(param, "needs a `name`"))?
                            .to_string(),
                    )),
                    _ => {
                        return Err(TranslateError::invalid(
                            param,
                            "must be auto, any, tool or none",
                        ))
                    }
                };
                if value["disable_parallel_tool_use"].as_bool() == Some(true) {
                    r.parallel_tool_calls = Some(false);
                }
            }
            "metadata" => r.user = str_of(value, "user_id").map(str::to_string),
            "output_config" => {
                if let Some(effort) = str_of(value, "effort") {
                    r.reasoning_effort = Some(effort.to_string());
                }
                if let Some(format) = value.get("format").filter(|f| !f.is_null()) {
                    let schema = format.get("schema").cloned().ok_or_else(|| {
                        TranslateError::invalid("output_config.format", "needs a `schema`")
                    })?;
                    r.json_schema = Some(("output".to_string(), schema));
                }
            }
            "thinking" => thinking_budget = thinking(value)?,
            // They steer Anthropic's own servers only: dropped, and named
            // (`provider_hints`).
            "cache_control" | "context_management" | "service_tier" | "speed" => {}
            "container" | "mcp_servers" => {
                unsupported(param, to, "it runs at Anthropic's servers only", options)?
            }
            "top_k" | "diagnostics" | "inference_geo" | "user_profile_id" | "workspace_id" => {
                unsupported(param, to, "the target API has no such parameter", options)?
            }
            _ => unsupported(param, to, "not a Messages parameter", options)?,
        }
    }
    if r.model.is_empty() {
        return Err(TranslateError::invalid("model", "is required"));
    }
    // An effort the client named wins over one read from a budget.
    if r.reasoning_effort.is_none() {
        r.reasoning_effort = thinking_budget.map(|budget| effort_of_budget(budget).to_string());
    }
    Ok(r)
}

/// `thinking`: the budget of `enabled` thinking; `adaptive` (the model
/// decides how much to think, at `output_config.effort` when given) and
/// `disabled` carry none.
fn thinking(value: &Value) -> Result<Option<u64>, TranslateError> {
    match str_of(value, "type") {
        Some("disabled" | "adaptive") => Ok(None),
        Some("enabled") => value["budget_tokens"].as_u64().map(Some).ok_or_else(|| {
            TranslateError::invalid("thinking.budget_tokens", "must be a positive integer")
        }),
        _ => Err(TranslateError::invalid(
            "thinking",
            "`type` must be enabled, adaptive or disabled",
        )),
    }
}

/// The reasoning effort closest to a thinking budget: the budgets Gemini's
/// efforts stand for (`low` 1,024, `medium` 8,192, `high` 24,576 tokens),
/// split halfway.
fn effort_of_budget(budget: u64) -> &'static str {
    match budget {
        0..=4_095 => "low",
        4_096..=16_383 => "medium",
        _ => "high",
    }
}

/// The parameters of `body` that steer Anthropic's own servers only: at
/// the top, and `cache_control` or `defer_loading` on any block or tool.
pub fn provider_hints(body: &Value) -> Dropped {
    let mut dropped = Dropped::default();
    let Some(top) = body.as_object() else {
        return dropped;
    };
    for (key, value) in top {
        if let Some(hint) = Hint::of_parameter(key).filter(|_| !value.is_null()) {
            dropped.add(hint);
        }
    }
    let blocks = top
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            top.get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .flat_map(|block| {
                    // A tool result's own blocks may carry breakpoints.
                    std::iter::once(block).chain(block["content"].as_array().into_iter().flatten())
                }),
        );
    for block in blocks {
        if block.get("cache_control").is_some_and(|c| !c.is_null()) {
            dropped.add(Hint::CacheControl);
        }
    }
    for tool in top
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if tool.get("cache_control").is_some_and(|c| !c.is_null()) {
            dropped.add(Hint::CacheControl);
        }
        if tool["defer_loading"] == true {
            dropped.add(Hint::DeferLoading);
        }
    }
    dropped
}

/// `system`: a string or a list of text blocks.
pub(super) fn system_blocks(value: &Value) -> Result<Vec<String>, TranslateError> {
    match value {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(blocks) => Ok(blocks
            .iter()
            .filter_map(|b| str_of(b, "text").map(str::to_string))
            .collect()),
        _ => Err(TranslateError::invalid(
            "system",
            "must be a string or a list of text blocks",
        )),
    }
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
        let content = message.get("content").unwrap_or(&Value::Null);
        let role = match str_of(message, "role") {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system") => {
                r.system.extend(system_blocks(content)?);
                continue;
            }
            _ => {
                return Err(TranslateError::invalid(
                    &at,
                    "`role` must be user or assistant",
                ))
            }
        };
        r.messages.push(Message {
            role,
            content: parse_blocks(&at, content, to, options)?,
        });
    }
    Ok(())
}

pub(super) fn parse_blocks(
    at: &str,
    content: &Value,
    to: Dialect,
    options: &Options,
) -> Result<Vec<Part>, TranslateError> {
    let blocks = match content {
        Value::String(text) => return Ok(vec![Part::Text(text.clone())]),
        Value::Array(blocks) => blocks,
        Value::Null => return Ok(Vec::new()),
        _ => {
            return Err(TranslateError::invalid(
                at,
                "`content` must be a string or a list",
            ))
        }
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.iter().enumerate() {
        let field = format!("{at}.content[{j}]");
        match str_of(block, "type") {
            Some("text") => out.push(Part::Text(str_of(block, "text").unwrap_or("").to_string())),
            Some("image") => {
                let source = &block["source"];
                let image = match str_of(source, "type") {
                    Some("base64") => Image::Base64 {
                        media_type: str_of(source, "media_type")
                            .unwrap_or("image/png")
                            .to_string(),
                        data: str_of(source, "data").unwrap_or("").to_string(),
                    },
                    Some("url") => Image::Url(str_of(source, "url").unwrap_or("").to_string()),
                    _ => {
                        unsupported(
                            &field,
                            to,
                            "only base64 and url images can be translated",
                            options,
                        )?;
                        continue;
                    }
                };
                out.push(Part::Image(image));
            }
            Some("tool_use") => out.push(Part::ToolCall {
                id: str_of(block, "id").unwrap_or_default().to_string(),
                name: str_of(block, "name").unwrap_or_default().to_string(),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            }),
            Some("tool_result") => out.push(Part::ToolResult {
                id: str_of(block, "tool_use_id").unwrap_or_default().to_string(),
                content: parse_blocks(
                    &field,
                    block.get("content").unwrap_or(&Value::Null),
                    to,
                    options,
                )?,
                is_error: block["is_error"].as_bool().unwrap_or(false),
            }),
            // The model's own earlier reasoning: another model cannot read it.
            Some("thinking") | Some("redacted_thinking") => {}
            _ => unsupported(
                &field,
                to,
                "only text, image, tool_use and tool_result blocks can be translated",
                options,
            )?,
        }
    }
    Ok(out)
}

pub(super) fn parse_tools(
    value: &Value,
    to: Dialect,
    options: &Options,
) -> Result<Vec<Tool>, TranslateError> {
    let mut tools = Vec::new();
    for (i, tool) in value.as_array().into_iter().flatten().enumerate() {
        let at = format!("tools[{i}]");
        if !matches!(str_of(tool, "type"), None | Some("custom")) {
            unsupported(
                &format!("{at}.type"),
                to,
                "server tools run at Anthropic only",
                options,
            )?;
            continue;
        }
        tools.push(tool_of(tool, &at, "input_schema")?);
    }
    Ok(tools)
}

pub fn render_request(r: &ChatRequest, options: &Options) -> Result<Value, TranslateError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(r.model));
    // Anthropic requires it.
    body.insert(
        "max_tokens".into(),
        json!(r.max_tokens.unwrap_or(options.default_max_tokens)),
    );
    let mut messages: Vec<(Role, Vec<Value>)> = Vec::new();
    for message in &r.messages {
        let blocks = render_blocks(&message.content)?;
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants turns to alternate: consecutive ones are merged.
        match messages.last_mut() {
            Some((role, existing)) if *role == message.role => existing.extend(blocks),
            _ => messages.push((message.role, blocks)),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| {
            let role = if role == Role::User {
                "user"
            } else {
                "assistant"
            };
            json!({"role": role, "content": content})
        })
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    if !r.system.is_empty() {
        let blocks: Vec<Value> = r
            .system
            .iter()
            .map(|t| json!({"type": "text", "text": t}))
            .collect();
        body.insert("system".into(), Value::Array(blocks));
    }
    if r.stream {
        body.insert("stream".into(), json!(true));
    }
    if let Some(t) = r.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(TranslateError::invalid(
                "temperature",
                "Anthropic models take a temperature between 0 and 1",
            ));
        }
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = r.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !r.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(r.stop));
    }
    if !r.tools.is_empty() {
        let tools: Vec<Value> = r
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({"name": t.name, "input_schema": t.schema});
                if let Some(description) = &t.description {
                    tool["description"] = json!(description);
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = r.tool_choice.as_ref().map(|choice| match choice {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
    });
    if r.parallel_tool_calls == Some(false) && !r.tools.is_empty() {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(choice) = choice {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(user) = &r.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    let mut output = Map::new();
    if let Some(effort) = &r.reasoning_effort {
        output.insert("effort".into(), json!(effort));
    }
    if let Some((_, schema)) = &r.json_schema {
        output.insert(
            "format".into(),
            json!({"type": "json_schema", "schema": schema}),
        );
    }
    if !output.is_empty() {
        body.insert("output_config".into(), Value::Object(output));
    }
    Ok(Value::Object(body))
}

pub(super) fn render_blocks(parts: &[Part]) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            // Anthropic refuses empty text blocks.
            Part::Text(text) if text.is_empty() => {}
            Part::Text(text) => blocks.push(json!({"type": "text", "text": text})),
            Part::Image(image) => blocks.push(render_image(image)),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let input: Value = serde_json::from_str(arguments).map_err(|_| {
                    TranslateError::invalid(
                        "tool_calls.function.arguments",
                        format!("the arguments of tool call `{id}` are not JSON"),
                    )
                })?;
                blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            }
            Part::ToolResult {
                id,
                content,
                is_error,
            } => {
                let mut block = json!({
                    "type": "tool_result",
                    "tool_use_id": id,
                    "content": render_blocks(content)?,
                });
                if *is_error {
                    block["is_error"] = json!(true);
                }
                blocks.push(block);
            }
        }
    }
    Ok(blocks)
}

pub(super) fn render_image(image: &Image) -> Value {
    match image {
        Image::Base64 { media_type, data } => json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }),
        Image::Url(url) => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}
