//! What the mock demands of a request in each dialect, as strictly as the
//! providers do: a request the gateway translated wrongly fails loudly
//! (400, saying what is wrong) instead of being answered.

use http::HeaderMap;
use serde_json::Value;

use super::responses::Dialect;

const OPENAI_PARAMETERS: &[&str] = &[
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "moderation",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// The Messages API's parameters (Anthropic's API reference, 2026),
/// beta ones included; [`BETA_PARAMETERS`] says which need their beta.
const ANTHROPIC_PARAMETERS: &[&str] = &[
    "max_tokens",
    "messages",
    "model",
    "cache_control",
    "container",
    "context_management",
    "diagnostics",
    "inference_geo",
    "mcp_servers",
    "metadata",
    "output_config",
    "service_tier",
    "speed",
    "stop_sequences",
    "stream",
    "system",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
    "user_profile_id",
    "workspace_id",
];

/// Parameters the API takes only with their beta named in `anthropic-beta`
/// (by the beta's name without its date).
const BETA_PARAMETERS: &[(&str, &str)] = &[
    ("context_management", "context-management-"),
    ("mcp_servers", "mcp-client-"),
];

/// What the mock signs its thinking blocks with; a thinking block sent
/// back with another signature is refused, as the API refuses one it did
/// not sign.
pub const THINKING_SIGNATURE: &str = "mock-signature-v1";

pub fn check(dialect: Dialect, headers: &HeaderMap, request: &Value) -> Result<(), String> {
    match dialect {
        Dialect::OpenAi => openai(request),
        Dialect::Anthropic => anthropic(headers, request),
    }
}

fn known_parameters(request: &Value, known: &[&str]) -> Result<(), String> {
    let body = request.as_object().ok_or("the body is not a JSON object")?;
    for key in body.keys() {
        if !known.contains(&key.as_str()) {
            return Err(format!("unknown parameter `{key}`"));
        }
    }
    if !request["model"].is_string() {
        return Err("`model` must be a string".into());
    }
    Ok(())
}

fn openai(request: &Value) -> Result<(), String> {
    known_parameters(request, OPENAI_PARAMETERS)?;
    let messages = request["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("`messages` must be a non-empty list")?;
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or("");
        let content = &message["content"];
        match role {
            "system" | "developer" | "user" => openai_content(i, content, false)?,
            "assistant" => {
                openai_content(i, content, true)?;
                for call in message["tool_calls"].as_array().into_iter().flatten() {
                    let ok = call["id"].is_string()
                        && call["type"] == "function"
                        && call["function"]["name"].is_string()
                        && call["function"]["arguments"].is_string();
                    if !ok {
                        return Err(format!("messages[{i}].tool_calls: not a function call"));
                    }
                }
            }
            "tool" => {
                if !message["tool_call_id"].is_string() {
                    return Err(format!(
                        "messages[{i}]: a tool message needs `tool_call_id`"
                    ));
                }
                openai_content(i, content, false)?;
            }
            other => return Err(format!("messages[{i}]: unknown role `{other}`")),
        }
    }
    for tool in request["tools"].as_array().into_iter().flatten() {
        if tool["type"] != "function" || !tool["function"]["name"].is_string() {
            return Err("tools: each must be `{type: function, function: {name, ...}}`".into());
        }
    }
    match &request["tool_choice"] {
        Value::Null => {}
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => {}
        choice if choice["type"] == "function" && choice["function"]["name"].is_string() => {}
        _ => return Err("`tool_choice` is not an OpenAI tool choice".into()),
    }
    if !request["stream_options"].is_null() && request["stream"] != true {
        return Err("`stream_options` needs `stream: true`".into());
    }
    Ok(())
}

fn openai_content(i: usize, content: &Value, may_be_null: bool) -> Result<(), String> {
    match content {
        Value::String(_) => Ok(()),
        Value::Null if may_be_null => Ok(()),
        Value::Array(parts) => {
            for part in parts {
                let ok = match part["type"].as_str() {
                    Some("text") => part["text"].is_string(),
                    Some("image_url") => part["image_url"]["url"].is_string(),
                    Some("refusal") => part["refusal"].is_string(),
                    _ => false,
                };
                if !ok {
                    return Err(format!("messages[{i}].content: bad part {part}"));
                }
            }
            Ok(())
        }
        _ => Err(format!("messages[{i}].content: must be a string or a list")),
    }
}

fn anthropic(headers: &HeaderMap, request: &Value) -> Result<(), String> {
    if !headers.contains_key("anthropic-version") {
        return Err("the `anthropic-version` header is required".into());
    }
    known_parameters(request, ANTHROPIC_PARAMETERS)?;
    let betas: Vec<&str> = headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for (param, beta) in BETA_PARAMETERS {
        if !request[*param].is_null() && !betas.iter().any(|b| b.starts_with(beta)) {
            return Err(format!(
                "`{param}` needs the `{beta}*` beta in `anthropic-beta`"
            ));
        }
    }
    if request["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return Err("`max_tokens` must be a positive integer".into());
    }
    anthropic_thinking(request)?;
    anthropic_prompt(request)?;
    if request["temperature"]
        .as_f64()
        .is_some_and(|t| !(0.0..=1.0).contains(&t))
    {
        return Err("`temperature` must be between 0 and 1".into());
    }
    Ok(())
}

/// What a token count takes: a message request without `max_tokens`.
pub fn anthropic_count_tokens(headers: &HeaderMap, request: &Value) -> Result<(), String> {
    if !headers.contains_key("anthropic-version") {
        return Err("the `anthropic-version` header is required".into());
    }
    const COUNTED: &[&str] = &[
        "messages",
        "model",
        "cache_control",
        "context_management",
        "mcp_servers",
        "output_config",
        "system",
        "thinking",
        "tool_choice",
        "tools",
    ];
    known_parameters(request, COUNTED)?;
    anthropic_prompt(request)
}

/// `thinking`: disabled, adaptive, or enabled with a budget of at least
/// 1,024 tokens below `max_tokens`.
fn anthropic_thinking(request: &Value) -> Result<(), String> {
    let thinking = &request["thinking"];
    match thinking["type"].as_str() {
        _ if thinking.is_null() => Ok(()),
        Some("disabled" | "adaptive") => Ok(()),
        Some("enabled") => {
            let budget = thinking["budget_tokens"]
                .as_u64()
                .ok_or("`thinking.budget_tokens` is required when thinking is enabled")?;
            let max = request["max_tokens"].as_u64().unwrap_or(0);
            if budget < 1024 || budget >= max {
                return Err(format!(
                    "`thinking.budget_tokens` must be at least 1024 and less than `max_tokens` ({max})"
                ));
            }
            Ok(())
        }
        _ => Err("`thinking.type` must be enabled, adaptive or disabled".into()),
    }
}

/// Messages, system and tools, as the API checks them.
fn anthropic_prompt(request: &Value) -> Result<(), String> {
    let messages = request["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("`messages` must be a non-empty list")?;
    for (i, message) in messages.iter().enumerate() {
        // Claude Code sends system messages between turns (2026).
        if !matches!(
            message["role"].as_str(),
            Some("user") | Some("assistant") | Some("system")
        ) {
            return Err(format!(
                "messages[{i}]: `role` must be user, assistant or system"
            ));
        }
        anthropic_content(&format!("messages[{i}]"), &message["content"])?;
    }
    match &request["system"] {
        Value::Null | Value::String(_) => {}
        Value::Array(blocks)
            if blocks
                .iter()
                .all(|b| b["type"] == "text" && b["text"].is_string()) => {}
        _ => return Err("`system` must be a string or text blocks".into()),
    }
    for tool in request["tools"].as_array().into_iter().flatten() {
        // A server tool (web search, code execution, ...) is named by its
        // versioned type; a client tool by its schema.
        let server_tool = tool["type"].as_str().is_some_and(|t| t != "custom");
        let ok = tool["name"].is_string() && (server_tool || tool["input_schema"].is_object());
        if !ok {
            return Err("tools: each needs `name` and `input_schema`".into());
        }
    }
    if !request["tool_choice"].is_null()
        && !matches!(
            request["tool_choice"]["type"].as_str(),
            Some("auto" | "any" | "tool" | "none")
        )
    {
        return Err("`tool_choice` is not an Anthropic tool choice".into());
    }
    Ok(())
}

fn anthropic_content(at: &str, content: &Value) -> Result<(), String> {
    let blocks = match content {
        Value::String(_) => return Ok(()),
        Value::Array(blocks) if !blocks.is_empty() => blocks,
        _ => {
            return Err(format!(
                "{at}.content: must be a string or a non-empty list"
            ))
        }
    };
    for block in blocks {
        let ok = match block["type"].as_str() {
            Some("text") => block["text"].as_str().is_some_and(|t| !t.is_empty()),
            Some("image") => match block["source"]["type"].as_str() {
                Some("base64") => {
                    block["source"]["media_type"].is_string() && block["source"]["data"].is_string()
                }
                Some("url") => block["source"]["url"].is_string(),
                _ => false,
            },
            Some("tool_use") => {
                block["id"].is_string() && block["name"].is_string() && block["input"].is_object()
            }
            Some("tool_result") => {
                block["tool_use_id"].is_string()
                    && (block["content"].is_null()
                        || block["content"].is_string()
                        || anthropic_content(at, &block["content"]).is_ok())
            }
            // The API checks the signature of thinking sent back, and
            // refuses a block it did not sign.
            Some("thinking") => {
                block["thinking"].is_string() && block["signature"] == THINKING_SIGNATURE
            }
            Some("redacted_thinking") => block["data"].is_string(),
            Some("document")
            | Some("search_result")
            | Some("server_tool_use")
            | Some("web_search_tool_result")
            | Some("container_upload") => true,
            _ => false,
        };
        if !ok {
            return Err(format!("{at}.content: bad block {block}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_dialects_fail_loudly() {
        let mut headers = HeaderMap::new();
        let anthropic_body =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        assert!(
            check(Dialect::Anthropic, &headers, &anthropic_body).is_err(),
            "no anthropic-version"
        );
        headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
        assert_eq!(check(Dialect::Anthropic, &headers, &anthropic_body), Ok(()));
        assert!(
            check(Dialect::OpenAi, &headers, &anthropic_body).is_ok(),
            "max_tokens is OpenAI too"
        );
        let openai_only = json!({"model": "m", "messages": [{"role": "system", "content": "s"}], "stream_options": {"include_usage": true}});
        assert!(check(Dialect::Anthropic, &headers, &openai_only).is_err());
        let anthropic_only =
            json!({"model": "m", "system": "s", "messages": [{"role": "user", "content": "x"}]});
        assert!(check(Dialect::OpenAi, &headers, &anthropic_only).is_err());
        let empty_text = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]});
        assert!(check(Dialect::Anthropic, &headers, &empty_text).is_err());
    }

    /// Beta parameters need their beta; thinking needs a sane budget; a
    /// thinking block comes back only with the mock's own signature; a
    /// truly unknown parameter is still refused.
    #[test]
    fn anthropic_checks_follow_todays_api() {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
        let base = json!({"model": "m", "max_tokens": 4096,
            "messages": [{"role": "user", "content": "hi"}]});
        let with = |key: &str, value: Value| {
            let mut body = base.clone();
            body[key] = value;
            body
        };
        let editing = with("context_management", json!({"edits": []}));
        assert!(check(Dialect::Anthropic, &headers, &editing).is_err());
        let mut beta = headers.clone();
        beta.insert(
            "anthropic-beta",
            "claude-code-20250219,context-management-2025-06-27"
                .parse()
                .unwrap(),
        );
        assert_eq!(check(Dialect::Anthropic, &beta, &editing), Ok(()));
        let unknown = with("made_up", json!(1));
        assert!(check(Dialect::Anthropic, &beta, &unknown).is_err());
        for (thinking, ok) in [
            (json!({"type": "adaptive", "display": "omitted"}), true),
            (json!({"type": "enabled", "budget_tokens": 2048}), true),
            (json!({"type": "enabled", "budget_tokens": 512}), false),
            (json!({"type": "enabled", "budget_tokens": 8192}), false),
            (json!({"type": "sometimes"}), false),
        ] {
            let body = with("thinking", thinking.clone());
            assert_eq!(
                check(Dialect::Anthropic, &headers, &body).is_ok(),
                ok,
                "{thinking}"
            );
        }
        let thinking_back = |signature: &str| {
            with(
                "messages",
                json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "t", "signature": signature},
                    {"type": "text", "text": "answer"}]},
                {"role": "user", "content": "more"}]),
            )
        };
        assert_eq!(
            check(
                Dialect::Anthropic,
                &headers,
                &thinking_back(THINKING_SIGNATURE)
            ),
            Ok(())
        );
        assert!(check(Dialect::Anthropic, &headers, &thinking_back("gw-made")).is_err());
    }
}
