//! Azure OpenAI, as strict as Azure: the deployments form needs an
//! `api-version`, the v1 form refuses a dated one, the key goes in
//! `api-key` (or an Entra ID token from the mock's token endpoint in
//! `Authorization`), and answers carry Azure's content-filter annotations.
//! A prompt containing `CONTENT_FILTER_PROMPT` is refused as Azure refuses
//! one; `CONTENT_FILTER_OUTPUT` makes the answer end filtered.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::chat::event_stream;
use super::responses::{self, full, Body, Dialect, Knobs};
use super::state::MockState;

/// Paths under `/openai/`: the deployments form and the v1 form.
pub fn handle(
    state: &Arc<MockState>,
    parts: &http::request::Parts,
    body: &Bytes,
    knobs: &Knobs,
) -> Response<Body> {
    let path = parts.uri.path();
    let api_version = query(parts, "api-version");
    let (deployment, operation) = if let Some(rest) = path.strip_prefix("/openai/v1/") {
        if api_version.is_some_and(|v| v != "preview") {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "API version not supported",
            );
        }
        (None, rest)
    } else if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let Some((deployment, operation)) = rest.split_once('/') else {
            return not_found();
        };
        if api_version.is_none() {
            return not_found();
        }
        (Some(deployment.to_string()), operation)
    } else {
        return not_found();
    };
    if let Some(refusal) = authenticate(state, &parts.headers) {
        return refusal;
    }
    if let Some(status) = knobs.status {
        return error(status, &status.as_u16().to_string(), "mock upstream failed");
    }
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The body is not JSON.",
        );
    };
    match (operation, deployment) {
        ("chat/completions", Some(deployment)) => {
            // The deployment is the model; a body's `model` is ignored.
            request["model"] = json!(deployment);
            chat(state, &request, body.len(), knobs)
        }
        ("chat/completions", None) => chat(state, &request, body.len(), knobs),
        ("embeddings", _) => full(
            StatusCode::OK,
            "application/json",
            responses::embeddings(&request).to_string(),
        ),
        _ => not_found(),
    }
}

fn query<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// `api-key`, or an Entra ID token the mock issued.
fn authenticate(state: &MockState, headers: &http::HeaderMap) -> Option<Response<Body>> {
    if let Some(key) = headers.get("api-key") {
        if super::cloud::Cloud::key_matches(&state.cloud.azure_key, key.to_str().ok()) {
            return None;
        }
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        ));
    }
    if state.cloud.valid_bearer(headers) {
        return None;
    }
    Some(full(
        StatusCode::UNAUTHORIZED,
        "application/json",
        json!({"statusCode": 401, "message": "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."}).to_string(),
    ))
}

fn chat(state: &Arc<MockState>, request: &Value, body_len: usize, knobs: &Knobs) -> Response<Body> {
    if let Err(problem) = super::checks::check(Dialect::OpenAi, &http::HeaderMap::new(), request) {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("mock: {problem}"),
        );
    }
    let prompt = request["messages"].to_string();
    if prompt.contains("CONTENT_FILTER_PROMPT") {
        return content_filter_refusal();
    }
    let filtered = prompt.contains("CONTENT_FILTER_OUTPUT");
    let prompt_tokens = (body_len / 4).max(1) as u64;
    if !request["stream"].as_bool().unwrap_or(false) {
        let mut answer = responses::chat_completion(request, knobs, prompt_tokens);
        answer["prompt_filter_results"] = prompt_filter_results();
        answer["choices"][0]["content_filter_results"] = filter_results(filtered);
        if filtered {
            answer["choices"][0]["finish_reason"] = json!("content_filter");
            answer["choices"][0]["message"]["content"] = json!("");
        }
        return full(StatusCode::OK, "application/json", answer.to_string());
    }
    let mut events = responses::chat_stream(request, knobs, prompt_tokens);
    // Azure's first chunk annotates the prompt: no id, no choices.
    let annotation = json!({"id": "", "object": "", "created": 0, "model": "",
        "prompt_filter_results": prompt_filter_results(), "choices": [], "usage": null});
    events.insert(0, format!("data: {annotation}\n\n"));
    if filtered {
        let finish = events
            .iter()
            .position(|e| e.contains("\"finish_reason\":\"stop\""));
        if let Some(at) = finish {
            let stop = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                "model": request["model"], "choices": [{"index": 0, "delta": {},
                "finish_reason": "content_filter", "content_filter_results": filter_results(true)}]});
            events[at] = format!("data: {stop}\n\n");
        }
    }
    event_stream(state, knobs, events)
}

fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": filter_results(false)}])
}

fn filter_results(violence: bool) -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({
        "hate": safe, "self_harm": safe, "sexual": safe,
        "violence": if violence { json!({"filtered": true, "severity": "medium"}) } else { safe.clone() },
    })
}

fn content_filter_refusal() -> Response<Body> {
    let body = json!({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
        "type": null, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": filter_results(true)},
    }});
    full(
        StatusCode::BAD_REQUEST,
        "application/json",
        body.to_string(),
    )
}

/// Azure's error envelope: a string `code`.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    full(
        status,
        "application/json",
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "404", "Resource not found")
}
