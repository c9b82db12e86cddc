//! Gemini `generateContent` requests, written from the internal model.

use serde_json::{json, Map, Value};

use super::ids;
use crate::llm::ir::*;
use crate::llm::wire::{Options, TranslateError};
use crate::llm::Dialect;

/// `thinkingBudget` for a reasoning effort (Gemini 2.5 and 3 both take it).
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "none" | "minimal" => Some(0),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" | "xhigh" | "max" => Some(24576),
        _ => None,
    }
}

pub(super) fn render_request(r: &ChatRequest, _: &Options) -> Result<Value, TranslateError> {
    let mut contents: Vec<(Role, Vec<Value>)> = Vec::new();
    for (i, message) in r.messages.iter().enumerate() {
        let parts = render_parts(i, message, &r.messages)?;
        if parts.is_empty() {
            continue;
        }
        // Consecutive turns of one role are one content.
        match contents.last_mut() {
            Some((role, existing)) if *role == message.role => existing.extend(parts),
            _ => contents.push((message.role, parts)),
        }
    }
    let contents: Vec<Value> = contents
        .into_iter()
        .map(|(role, parts)| {
            let role = match role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            json!({"role": role, "parts": parts})
        })
        .collect();
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !r.system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": r.system.join("\n\n")}]}),
        );
    }
    let mut config = Map::new();
    if let Some(n) = r.max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = r.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = r.top_p {
        config.insert("topP".into(), json!(p));
    }
    if !r.stop.is_empty() {
        config.insert("stopSequences".into(), json!(r.stop));
    }
    if let Some((_, schema)) = &r.json_schema {
        config.insert("responseMimeType".into(), json!("application/json"));
        config.insert("responseJsonSchema".into(), schema.clone());
    }
    if let Some(effort) = &r.reasoning_effort {
        let budget = thinking_budget(effort).ok_or_else(|| {
            TranslateError::invalid(
                "reasoning_effort",
                format!("`{effort}` is not a reasoning effort (none, minimal, low, medium, high)"),
            )
        })?;
        config.insert("thinkingConfig".into(), json!({"thinkingBudget": budget}));
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    if !r.tools.is_empty() {
        let declarations: Vec<Value> = r
            .tools
            .iter()
            .map(|t| {
                let mut declaration = json!({"name": t.name, "parametersJsonSchema": t.schema});
                if let Some(description) = &t.description {
                    declaration["description"] = json!(description);
                }
                declaration
            })
            .collect();
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
    }
    if let Some(choice) = &r.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": config}),
        );
    }
    Ok(Value::Object(body))
}

fn render_parts(
    i: usize,
    message: &Message,
    history: &[Message],
) -> Result<Vec<Value>, TranslateError> {
    let mut parts = Vec::with_capacity(message.content.len());
    for part in &message.content {
        match part {
            Part::Text(text) if text.is_empty() => {}
            Part::Text(text) => parts.push(json!({"text": text})),
            Part::Image(image) => parts.push(render_image(i, image)?),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let (id, signature) = ids::unpack(id);
                let args: Value = serde_json::from_str(arguments).map_err(|_| {
                    TranslateError::invalid(
                        format!("messages[{i}]"),
                        format!("the arguments of tool call `{id}` are not JSON"),
                    )
                })?;
                let mut call = json!({"functionCall": {"id": id, "name": name, "args": args}});
                if let Some(signature) = signature {
                    call["thoughtSignature"] = json!(signature);
                }
                parts.push(call);
            }
            Part::ToolResult {
                id,
                content,
                is_error,
            } => {
                let name = call_name(history, id).ok_or_else(|| {
                    TranslateError::invalid(
                        format!("messages[{i}]"),
                        format!("the tool result `{id}` answers no tool call of the conversation"),
                    )
                })?;
                let (id, _) = ids::unpack(id);
                let text: String = content
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                let response = if *is_error {
                    json!({"error": text})
                } else {
                    json!({"result": text})
                };
                parts.push(
                    json!({"functionResponse": {"id": id, "name": name, "response": response}}),
                );
            }
        }
    }
    Ok(parts)
}

/// The name of the tool call `id` answers.
fn call_name<'a>(history: &'a [Message], id: &str) -> Option<&'a str> {
    history
        .iter()
        .flat_map(|m| &m.content)
        .find_map(|p| match p {
            Part::ToolCall { id: call, name, .. } if call == id => Some(name.as_str()),
            _ => None,
        })
}

/// Inline data only: the gateway never fetches a URL.
fn render_image(i: usize, image: &Image) -> Result<Value, TranslateError> {
    match image {
        Image::Base64 { media_type, data } => {
            Ok(json!({"inlineData": {"mimeType": media_type, "data": data}}))
        }
        Image::Url(_) => Err(TranslateError::unsupported(
            format!("messages[{i}].content"),
            Dialect::Gemini,
            "an image must be inline data (a `data:` URL): the gateway never fetches URLs",
        )),
    }
}
