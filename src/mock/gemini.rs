//! Gemini, as strict as Google: the Gemini API
//! (`/v1beta/models/{model}:generateContent`, the key in `x-goog-api-key`)
//! and Vertex AI (`/v1/projects/{p}/locations/{l}/publishers/google/
//! models/{model}:...`, an OAuth2 token the mock issued, `role` required).
//! Unknown fields are refused as Google refuses them; a tool call carries
//! an id and a thought signature, which must come back on the next turn.
//! A prompt containing `BLOCK_ME` is blocked; `x-mock-status` answers with
//! Google's error envelope (429 with its RetryInfo). Claude on Vertex
//! (`publishers/anthropic/...:rawPredict`) takes Anthropic's body without
//! `model` and with `anthropic_version`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::chat::event_stream;
use super::cloud::Cloud;
use super::responses::{self, full, Body, Dialect, Knobs};
use super::state::MockState;

/// What the path asks for.
struct Target<'a> {
    model: &'a str,
    method: &'a str,
    vertex: bool,
}

fn target(path: &str) -> Option<Target<'_>> {
    let (rest, vertex) = if let Some(rest) = path.strip_prefix("/v1beta/models/") {
        (rest, false)
    } else if let Some(rest) = path.strip_prefix("/v1/models/") {
        (rest, false)
    } else if path.starts_with("/v1/projects/") {
        let (_, rest) = path.split_once("/publishers/google/models/")?;
        (rest, true)
    } else {
        return None;
    };
    let (model, method) = rest.split_once(':')?;
    Some(Target {
        model,
        method,
        vertex,
    })
}

/// The Gemini and Vertex routes, if `path` is one of them.
pub fn handle(
    state: &Arc<MockState>,
    parts: &http::request::Parts,
    body: &Bytes,
    knobs: &Knobs,
) -> Option<Response<Body>> {
    let path = parts.uri.path();
    if path.starts_with("/v1/projects/") && path.contains("/publishers/anthropic/models/") {
        return Some(claude(state, parts, body, knobs));
    }
    let target = target(path)?;
    Some(generate(state, parts, body, knobs, &target))
}

/// Google's error envelope.
fn error(code: u16, status: &str, message: &str) -> Response<Body> {
    let mut error = json!({"code": code, "message": message, "status": status});
    if code == 429 {
        error["details"] =
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]);
    }
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        "application/json",
        json!({"error": error}).to_string(),
    )
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn authenticate(
    state: &MockState,
    parts: &http::request::Parts,
    vertex: bool,
) -> Option<Response<Body>> {
    if vertex {
        if state.cloud.valid_bearer(&parts.headers) {
            return None;
        }
        return Some(error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    let key = parts
        .headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok());
    if Cloud::key_matches(&state.cloud.gemini_key, key) {
        return None;
    }
    Some(error(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
    ))
}

fn generate(
    state: &Arc<MockState>,
    parts: &http::request::Parts,
    body: &Bytes,
    knobs: &Knobs,
    target: &Target<'_>,
) -> Response<Body> {
    if let Some(refusal) = authenticate(state, parts, target.vertex) {
        return refusal;
    }
    let stream = match target.method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return error(404, "NOT_FOUND", "Method not found."),
    };
    if stream && parts.uri.query() != Some("alt=sse") {
        return error(
            400,
            "INVALID_ARGUMENT",
            "mock: streams are served with alt=sse only",
        );
    }
    if let Some(status) = knobs.status {
        let code = status.as_u16();
        return error(code, status_name(code), "mock upstream failed");
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let mut problems = Vec::new();
    check_known(&request, "", &SCHEMA, &mut problems);
    if let Some(problem) = problems.first() {
        return error(400, "INVALID_ARGUMENT", problem);
    }
    if let Err(problem) = check_turns(&request, target.vertex) {
        return error(400, "INVALID_ARGUMENT", &problem);
    }
    let prompt_tokens = (body.len() / 4).max(1) as u64;
    let usage = |output: u64, thoughts: u64| {
        let cached = knobs.cached_tokens.min(prompt_tokens);
        json!({"promptTokenCount": prompt_tokens, "candidatesTokenCount": output,
            "thoughtsTokenCount": thoughts, "cachedContentTokenCount": cached,
            "totalTokenCount": prompt_tokens + output + thoughts})
    };
    let envelope = |parts: Value, finish: Option<&str>, usage: Value| {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        json!({"candidates": [candidate], "usageMetadata": usage,
            "modelVersion": target.model, "responseId": "mock-response-1"})
    };
    if request.to_string().contains("BLOCK_ME") {
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": usage(0, 0), "modelVersion": target.model});
        return if stream {
            event_stream(state, knobs, vec![format!("data: {blocked}\r\n\r\n")])
        } else {
            full(StatusCode::OK, "application/json", blocked.to_string())
        };
    }
    let thinking = request["generationConfig"]["thinkingConfig"]["includeThoughts"] == true;
    let call = tool_call(&request);
    if !stream {
        let mut parts = Vec::new();
        if thinking {
            parts.push(json!({"text": "Thinking it over.", "thought": true}));
        }
        let output = match &call {
            Some(call) => {
                parts.push(call.clone());
                8
            }
            None => {
                let text = answer_text(&request, knobs);
                let n = text.len() as u64;
                parts.push(json!({"text": text.concat()}));
                n
            }
        };
        let answer = envelope(
            Value::Array(parts),
            Some("STOP"),
            usage(output, u64::from(thinking) * 4),
        );
        return full(StatusCode::OK, "application/json", answer.to_string());
    }
    let mut events = Vec::new();
    let data = |value: Value| format!("data: {value}\r\n\r\n");
    if thinking {
        events.push(data(envelope(
            json!([{"text": "Thinking it over.", "thought": true}]),
            None,
            json!({"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}),
        )));
    }
    let output = match &call {
        Some(call) => {
            events.push(data(envelope(json!([call]), None, usage(0, 0))));
            8
        }
        None => {
            let text = answer_text(&request, knobs);
            for (i, piece) in text.iter().enumerate() {
                events.push(data(envelope(
                    json!([{"text": piece}]),
                    None,
                    usage(i as u64 + 1, 0),
                )));
            }
            text.len() as u64
        }
    };
    events.push(data(envelope(
        json!([{"text": ""}]),
        Some("STOP"),
        usage(output, u64::from(thinking) * 4),
    )));
    event_stream(state, knobs, events)
}

/// The answer's text: what the tool said, when the last turn carries its
/// response, then the configured words.
fn answer_text(request: &Value, knobs: &Knobs) -> Vec<String> {
    let mut pieces = responses::pieces(knobs);
    let last = request["contents"].as_array().and_then(|c| c.last());
    let said = last
        .and_then(|c| c["parts"].as_array())
        .into_iter()
        .flatten()
        .find_map(|p| p.get("functionResponse"))
        .map(|r| {
            let response = &r["response"];
            response["result"]
                .as_str()
                .or(response["error"].as_str())
                .map_or_else(|| response.to_string(), str::to_string)
        });
    if let Some(said) = said {
        pieces.insert(0, format!("The tool said: {said}. "));
    }
    pieces
}

/// A call of the first declared function when none has answered yet.
fn tool_call(request: &Value) -> Option<Value> {
    let declaration = request["tools"][0]["functionDeclarations"].get(0)?;
    let last = request["contents"].as_array()?.last()?;
    let answered = last["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p.get("functionResponse").is_some());
    if answered || request["toolConfig"]["functionCallingConfig"]["mode"] == "NONE" {
        return None;
    }
    let schema = declaration
        .get("parametersJsonSchema")
        .or(declaration.get("parameters"))?;
    let mut args = Map::new();
    for (property, spec) in schema["properties"].as_object().into_iter().flatten() {
        let value = match spec["type"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("number" | "integer") => json!(1),
            Some("boolean") => json!(true),
            _ => json!("Paris"),
        };
        args.insert(property.clone(), value);
    }
    Some(
        json!({"functionCall": {"id": "fc-mock-1", "name": declaration["name"], "args": args},
        "thoughtSignature": "bW9jay1zaWduYXR1cmU="}),
    )
}

/// Gemini 3's rule: in the current turn (after the last user content that
/// is not function responses), each model step's first function call
/// carries its thought signature, and function responses name the ids of
/// the calls they answer. Vertex also demands a role on every content.
fn check_turns(request: &Value, vertex: bool) -> Result<(), String> {
    let contents = request["contents"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    for content in contents {
        match content["role"].as_str() {
            Some("user" | "model") => {}
            None if !vertex => {}
            _ => return Err("Please use a valid role: user, model.".into()),
        }
    }
    let is_user_text = |c: &Value| {
        c["role"] != "model"
            && c["parts"]
                .as_array()
                .is_some_and(|p| p.iter().any(|part| part.get("text").is_some()))
    };
    let start = contents.iter().rposition(is_user_text).unwrap_or(0);
    let mut calls = Vec::new();
    for (i, content) in contents.iter().enumerate().skip(start) {
        let parts = content["parts"].as_array().into_iter().flatten();
        let mut first_call = true;
        for part in parts {
            if let Some(call) = part.get("functionCall") {
                if first_call && part.get("thoughtSignature").is_none() {
                    return Err(format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.", call["name"].as_str().unwrap_or(""), i + 1));
                }
                first_call = false;
                calls.push(call["id"].clone());
            }
            if let Some(response) = part.get("functionResponse") {
                if response["name"].as_str().is_none_or(str::is_empty) {
                    return Err("* GenerateContentRequest.contents.parts.function_response.name: Name cannot be empty.".into());
                }
                if response.get("id").is_some() && !calls.contains(&response["id"]) {
                    return Err("functionResponse.id does not match any functionCall.id of the previous turn.".into());
                }
            }
        }
    }
    Ok(())
}

/// The request fields Google knows, as a tree: `Any` takes whatever comes.
enum Shape {
    Object(&'static [(&'static str, &'static Shape)]),
    ListOf(&'static Shape),
    Any,
}

use Shape::{Any, ListOf, Object};

static PART: Shape = Object(&[
    ("text", &Any),
    (
        "inlineData",
        &Object(&[("mimeType", &Any), ("data", &Any), ("displayName", &Any)]),
    ),
    (
        "fileData",
        &Object(&[("mimeType", &Any), ("fileUri", &Any), ("displayName", &Any)]),
    ),
    (
        "functionCall",
        &Object(&[("id", &Any), ("name", &Any), ("args", &Any)]),
    ),
    (
        "functionResponse",
        &Object(&[
            ("id", &Any),
            ("name", &Any),
            ("response", &Any),
            ("parts", &Any),
        ]),
    ),
    ("thought", &Any),
    ("thoughtSignature", &Any),
]);
static CONTENT: Shape = Object(&[("role", &Any), ("parts", &ListOf(&PART))]);
static SCHEMA: Shape = Object(&[
    ("contents", &ListOf(&CONTENT)),
    ("systemInstruction", &CONTENT),
    (
        "generationConfig",
        &Object(&[
            ("maxOutputTokens", &Any),
            ("temperature", &Any),
            ("topP", &Any),
            ("topK", &Any),
            ("stopSequences", &Any),
            ("candidateCount", &Any),
            ("seed", &Any),
            ("presencePenalty", &Any),
            ("frequencyPenalty", &Any),
            ("responseMimeType", &Any),
            ("responseSchema", &Any),
            ("responseJsonSchema", &Any),
            ("responseModalities", &Any),
            (
                "thinkingConfig",
                &Object(&[
                    ("thinkingBudget", &Any),
                    ("includeThoughts", &Any),
                    ("thinkingLevel", &Any),
                ]),
            ),
        ]),
    ),
    (
        "tools",
        &ListOf(&Object(&[(
            "functionDeclarations",
            &ListOf(&Object(&[
                ("name", &Any),
                ("description", &Any),
                ("parameters", &Any),
                ("parametersJsonSchema", &Any),
                ("response", &Any),
                ("responseJsonSchema", &Any),
            ])),
        )])),
    ),
    (
        "toolConfig",
        &Object(&[(
            "functionCallingConfig",
            &Object(&[("mode", &Any), ("allowedFunctionNames", &Any)]),
        )]),
    ),
    ("safetySettings", &Any),
    ("cachedContent", &Any),
    ("labels", &Any),
    ("serviceTier", &Any),
]);

/// Every unknown field of `value`, in Google's words.
fn check_known(value: &Value, at: &str, shape: &Shape, problems: &mut Vec<String>) {
    match (shape, value) {
        (Object(fields), Value::Object(object)) => {
            for (key, inner) in object {
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, shape)) => {
                        let path = if at.is_empty() {
                            snake(key)
                        } else {
                            format!("{at}.{}", snake(key))
                        };
                        check_known(inner, &path, shape, problems);
                    }
                    None if at.is_empty() => problems.push(format!(
                        "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
                    )),
                    None => problems.push(format!(
                        "Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."
                    )),
                }
            }
        }
        (ListOf(item), Value::Array(items)) => {
            for (i, inner) in items.iter().enumerate() {
                check_known(inner, &format!("{at}[{i}]"), item, problems);
            }
        }
        _ => {}
    }
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Claude on Vertex: Anthropic's body, the model in the path.
fn claude(
    state: &Arc<MockState>,
    parts: &http::request::Parts,
    body: &Bytes,
    knobs: &Knobs,
) -> Response<Body> {
    if !state.cloud.valid_bearer(&parts.headers) {
        return error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if let Some(status) = knobs.status {
        return responses::error(status, Dialect::Anthropic);
    }
    let path = parts.uri.path();
    let Some((model, method)) = path
        .split_once("/publishers/anthropic/models/")
        .and_then(|(_, rest)| rest.split_once(':'))
    else {
        return error(404, "NOT_FOUND", "Not found.");
    };
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    if request.get("model").is_some() {
        return responses::error_with(
            StatusCode::BAD_REQUEST,
            Dialect::Anthropic,
            "model: Extra inputs are not permitted",
        );
    }
    let version = request["anthropic_version"].as_str();
    if !matches!(version, Some("vertex-2023-10-16" | "2026-10-21")) {
        return responses::error_with(
            StatusCode::BAD_REQUEST,
            Dialect::Anthropic,
            "anthropic_version: Field required",
        );
    }
    let stream = match method {
        "rawPredict" => false,
        "streamRawPredict" => true,
        _ => return error(404, "NOT_FOUND", "Method not found."),
    };
    if stream != (request["stream"] == true) {
        return responses::error_with(
            StatusCode::BAD_REQUEST,
            Dialect::Anthropic,
            "mock: streamRawPredict is for streams, rawPredict for the rest",
        );
    }
    if let Some(object) = request.as_object_mut() {
        object.remove("anthropic_version");
        object.insert("model".into(), json!(model));
    }
    let mut headers = parts.headers.clone();
    headers.insert(
        "anthropic-version",
        http::HeaderValue::from_static("2023-06-01"),
    );
    let body = Bytes::from(request.to_string());
    super::chat::completion(state, &headers, &body, knobs, Dialect::Anthropic)
}
