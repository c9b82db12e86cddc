//! Golden translations to and from Gemini's `generateContent`: each row of
//! the Gemini table of docs/routing-and-translation.md, from both client dialects.

use serde_json::{json, Value};

use super::*;

const WEATHER_SCHEMA: &str = r#"{"type":"object","properties":{"city":{"type":"string"}}}"#;

fn schema() -> Value {
    serde_json::from_str(WEATHER_SCHEMA).unwrap()
}

#[test]
fn an_openai_request_becomes_a_gemini_one() {
    let got = translate(
        Dialect::OpenAi,
        Dialect::Gemini,
        json!({
            "model": "gemini-x",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use metric units."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
                {"role": "user", "content": "Thanks."},
            ],
            "max_completion_tokens": 100,
            "temperature": 1.5,
            "top_p": 0.9,
            "stop": ["END"],
            "stream": true,
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now", "parameters": schema()}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema()}},
            "reasoning_effort": "low",
            "user": "user-42",
        }),
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief.\n\nUse metric units."}]},
            "contents": [
                {"role": "user", "parts": [
                    {"text": "What is this, and the weather?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                ]},
                {"role": "model", "parts": [
                    {"functionCall": {"id": "call_1", "name": "weather", "args": {"city": "Paris"}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_1", "name": "weather", "response": {"result": "18 C"}}},
                    {"text": "Thanks."},
                ]},
            ],
            "generationConfig": {
                "maxOutputTokens": 100,
                "temperature": 1.5,
                "topP": 0.9,
                "stopSequences": ["END"],
                "responseMimeType": "application/json",
                "responseJsonSchema": schema(),
                "thinkingConfig": {"thinkingBudget": 1024},
            },
            "tools": [{"functionDeclarations": [
                {"name": "weather", "description": "Weather now", "parametersJsonSchema": schema()},
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}},
        })
    );
}

#[test]
fn an_anthropic_request_becomes_a_gemini_one() {
    let got = translate(
        Dialect::Anthropic,
        Dialect::Gemini,
        json!({
            "model": "gemini-x",
            "max_tokens": 50,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true, "content": "no station"},
                ]},
            ],
            "temperature": 0.2,
            "top_p": 0.5,
            "stop_sequences": ["END"],
            "tools": [{"name": "weather", "description": "Weather now", "input_schema": schema()}],
            "tool_choice": {"type": "any"},
            "output_config": {"effort": "high"},
            "metadata": {"user_id": "user-42"},
        }),
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {"role": "user", "parts": [
                    {"text": "Weather?"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                ]},
                {"role": "model", "parts": [
                    {"functionCall": {"id": "toolu_1", "name": "weather", "args": {"city": "Paris"}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "toolu_1", "name": "weather", "response": {"error": "no station"}}},
                ]},
            ],
            "generationConfig": {
                "maxOutputTokens": 50,
                "temperature": 0.2,
                "topP": 0.5,
                "stopSequences": ["END"],
                "thinkingConfig": {"thinkingBudget": 24576},
            },
            "tools": [{"functionDeclarations": [
                {"name": "weather", "description": "Weather now", "parametersJsonSchema": schema()},
            ]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        })
    );
}

#[test]
fn gemini_takes_only_inline_images_and_answered_tool_results() {
    for (from, body) in [
        (
            Dialect::OpenAi,
            json!({"model": "g", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ]}]}),
        ),
        (
            Dialect::Anthropic,
            json!({"model": "g", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ]}]}),
        ),
    ] {
        let err = translate(from, Dialect::Gemini, body).unwrap_err();
        assert!(matches!(err, TranslateError::Unsupported { .. }), "{err:?}");
        assert_eq!(err.param(), "messages[0].content");
        assert!(err.to_string().contains("never fetches URLs"), "{err}");
    }
    // Gemini names the function a result answers: a result for no call
    // of the conversation has none to name.
    let err = translate(
        Dialect::OpenAi,
        Dialect::Gemini,
        json!({"model": "g", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_9", "content": "x"},
        ]}),
    )
    .unwrap_err();
    assert_eq!(err.param(), "messages[1]");
    // An effort Gemini has no budget for is named.
    let err = translate(
        Dialect::OpenAi,
        Dialect::Gemini,
        json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"}),
    )
    .unwrap_err();
    assert_eq!(err.param(), "reasoning_effort");
}

/// A Gemini answer with a thought (never shown), text, a call carrying a
/// thought signature and one without an id.
pub(super) fn gemini_answer(finish: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Planning the lookup.", "thought": true},
                {"text": "Checking."},
                {"functionCall": {"id": "fc-1", "name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
            ]},
            "finishReason": finish,
            "index": 0,
        }],
        "usageMetadata": {
            "promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3,
            "cachedContentTokenCount": 4, "totalTokenCount": 18,
        },
        "modelVersion": "gemini-x",
        "responseId": "resp-1",
    })
}

#[test]
fn gemini_answers_become_both_dialects() {
    let body = gemini_answer("STOP").to_string();
    let (bytes, usage) = response(Dialect::Gemini, Dialect::OpenAi, body.as_bytes()).unwrap();
    assert_eq!(
        usage,
        Usage {
            input: 10,
            output: 8,
            cache_read: 4,
            cache_write: 0
        }
    );
    let openai: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(openai["id"], "resp-1");
    assert_eq!(openai["model"], "gemini-x");
    let message = &openai["choices"][0]["message"];
    assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], "Checking.");
    let calls = message["tool_calls"].as_array().unwrap();
    let signed = calls[0]["id"].as_str().unwrap();
    assert!(signed.starts_with("gmi_"), "{signed}");
    assert_eq!(
        calls[1]["id"], "call_resp1_1",
        "a stable id where Gemini gave none"
    );
    assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Rome\"}");
    assert_eq!(
        openai["usage"],
        json!({"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 4}})
    );

    let (bytes, _) = response(Dialect::Gemini, Dialect::Anthropic, body.as_bytes()).unwrap();
    let anthropic: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(anthropic["stop_reason"], "tool_use");
    assert_eq!(
        anthropic["content"],
        json!([
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": signed, "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_resp1_1", "name": "weather", "input": {"city": "Rome"}},
        ])
    );
    assert_eq!(
        anthropic["usage"],
        json!({"input_tokens": 6, "output_tokens": 8, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0})
    );

    // The next turn gives Gemini its call id and signature back, unchanged.
    let next = translate(
        Dialect::OpenAi,
        Dialect::Gemini,
        json!({"model": "gemini-x", "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": signed, "content": "18 C"},
            {"role": "tool", "tool_call_id": "call_resp1_1", "content": "21 C"},
        ]}),
    )
    .unwrap();
    assert_eq!(
        next["contents"][1]["parts"],
        json!([
            {"functionCall": {"id": "fc-1", "name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnbmF0dXJl"},
            {"functionCall": {"id": "call_resp1_1", "name": "weather", "args": {"city": "Rome"}}},
        ])
    );
    assert_eq!(
        next["contents"][2]["parts"],
        json!([
            {"functionResponse": {"id": "fc-1", "name": "weather", "response": {"result": "18 C"}}},
            {"functionResponse": {"id": "call_resp1_1", "name": "weather", "response": {"result": "21 C"}}},
        ])
    );
}

#[test]
fn finish_reasons_and_blocks_map_to_each_dialect() {
    for (finish, openai, anthropic) in [
        ("STOP", "stop", "end_turn"),
        ("MAX_TOKENS", "length", "max_tokens"),
        ("SAFETY", "content_filter", "refusal"),
        ("RECITATION", "content_filter", "refusal"),
        ("PROHIBITED_CONTENT", "content_filter", "refusal"),
        ("OTHER", "stop", "end_turn"),
    ] {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
        })
        .to_string();
        let (bytes, _) = response(Dialect::Gemini, Dialect::OpenAi, body.as_bytes()).unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got["choices"][0]["finish_reason"], openai, "{finish}");
        let (bytes, _) = response(Dialect::Gemini, Dialect::Anthropic, body.as_bytes()).unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got["stop_reason"], anthropic, "{finish}");
    }
    // A blocked prompt has no candidate: it is a refusal with no content.
    let blocked = json!({
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
        "usageMetadata": {"promptTokenCount": 7},
    })
    .to_string();
    let (bytes, usage) = response(Dialect::Gemini, Dialect::Anthropic, blocked.as_bytes()).unwrap();
    let got: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(got["stop_reason"], "refusal");
    assert_eq!(got["content"], json!([]));
    assert_eq!(usage.input, 7);
    let (bytes, _) = response(Dialect::Gemini, Dialect::OpenAi, blocked.as_bytes()).unwrap();
    let got: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(got["choices"][0]["finish_reason"], "content_filter");
}

#[test]
fn gemini_errors_keep_their_kind_in_each_dialect() {
    for (status, code, openai, anthropic) in [
        (
            400,
            "INVALID_ARGUMENT",
            "invalid_request_error",
            "invalid_request_error",
        ),
        (
            401,
            "UNAUTHENTICATED",
            "authentication_error",
            "authentication_error",
        ),
        (
            403,
            "PERMISSION_DENIED",
            "permission_error",
            "permission_error",
        ),
        (404, "NOT_FOUND", "invalid_request_error", "not_found_error"),
        (
            429,
            "RESOURCE_EXHAUSTED",
            "rate_limit_error",
            "rate_limit_error",
        ),
        (503, "UNAVAILABLE", "server_error", "overloaded_error"),
        (500, "INTERNAL", "server_error", "api_error"),
    ] {
        let body =
            json!({"error": {"code": status, "message": "Said the upstream.", "status": code}})
                .to_string();
        // Without `alt=sse` Gemini wraps even its errors in a list.
        let listed = format!("[{body}]");
        for body in [body.as_bytes(), listed.as_bytes()] {
            let got: Value =
                serde_json::from_slice(&error(Dialect::Gemini, Dialect::OpenAi, status, body))
                    .unwrap();
            assert_eq!(got["error"]["type"], openai, "{code}");
            assert_eq!(got["error"]["message"], "Said the upstream.");
            let got: Value =
                serde_json::from_slice(&error(Dialect::Gemini, Dialect::Anthropic, status, body))
                    .unwrap();
            assert_eq!(got["error"]["type"], anthropic, "{code}");
        }
    }
}

#[test]
fn a_retry_delay_reaches_the_client_in_the_message() {
    let body = json!({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38.5s"}]}});
    let got: Value = serde_json::from_slice(&error(
        Dialect::Gemini,
        Dialect::Anthropic,
        429,
        body.to_string().as_bytes(),
    ))
    .unwrap();
    assert_eq!(
        got["error"]["message"],
        "Quota exceeded. (RetryInfo: retry after 38.5s)"
    );
}

/// A Gemini stream (`alt=sse`, CRLF-framed as Google sends it): text in two
/// chunks, then a signed call with the finish reason; usage cumulative.
pub const GEMINI_STREAM: &str = concat!(
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Let me \"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"totalTokenCount\":12},\"modelVersion\":\"gemini-x\",\"responseId\":\"r1\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"check.\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":3,\"totalTokenCount\":15},\"modelVersion\":\"gemini-x\",\"responseId\":\"r1\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"weather\",\"args\":{\"city\":\"Paris\"}},\"thoughtSignature\":\"c2ln\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":9,\"thoughtsTokenCount\":2,\"totalTokenCount\":23},\"modelVersion\":\"gemini-x\",\"responseId\":\"r1\"}\r\n\r\n",
);

fn translated(to: Dialect, stream: &str, include_usage: bool) -> (String, Option<Usage>) {
    let mut t = translator(
        Dialect::Gemini,
        to,
        include_usage,
        crate::llm::sse::DEFAULT_MAX_EVENT,
    );
    let mut out = t.feed(stream.as_bytes()).to_vec();
    out.extend_from_slice(&t.finish());
    (String::from_utf8(out).unwrap(), t.usage())
}

const STREAM_USAGE: Usage = Usage {
    input: 12,
    output: 11,
    cache_read: 0,
    cache_write: 0,
};

#[test]
fn a_gemini_stream_becomes_openai_chunks() {
    let (text, usage) = translated(Dialect::OpenAi, GEMINI_STREAM, true);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(usage, Some(STREAM_USAGE));
    let chunks = openai_chunks(&text);
    let call_id = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].as_str())
        .unwrap()
        .to_string();
    assert!(call_id.starts_with("gmi_"), "the signature rides in the id");
    assert_eq!(
        deltas(&chunks, "r1", "gemini-x"),
        vec![
            json!([{"role": "assistant", "content": ""}, null, null]),
            json!([{"content": "Let me "}, null, null]),
            json!([{"content": "check."}, null, null]),
            json!([{"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": "weather", "arguments": ""}}]}, null, null]),
            json!([{"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]}, null, null]),
            json!([{}, "tool_calls", null]),
            json!([null, null, {"prompt_tokens": 12, "completion_tokens": 11, "total_tokens": 23, "prompt_tokens_details": {"cached_tokens": 0}}]),
        ]
    );
}

#[test]
fn a_gemini_stream_becomes_anthropic_events() {
    let (text, usage) = translated(Dialect::Anthropic, GEMINI_STREAM, false);
    assert_eq!(usage, Some(STREAM_USAGE));
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("event: "))
        .map(|e| e.split('\n').next().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert!(
        text.contains(r#""delta":{"text":"check.","type":"text_delta"}"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#""delta":{"partial_json":"{\"city\":\"Paris\"}","type":"input_json_delta"}"#
        ),
        "{text}"
    );
    assert!(text.contains(r#""stop_reason":"tool_use""#), "{text}");
    assert!(text.contains(r#""output_tokens":11"#), "{text}");
}

#[test]
fn a_cut_gemini_stream_stays_cut_and_errors_reach_the_client() {
    // Without a finish reason the stream did not end well.
    let cut = &GEMINI_STREAM[..GEMINI_STREAM.rfind("data: ").unwrap()];
    assert!(!translated(Dialect::OpenAi, cut, false).0.contains("[DONE]"));
    assert!(!translated(Dialect::Anthropic, cut, false)
        .0
        .contains("message_stop"));
    let failed = format!(
        "{cut}data: {}\r\n\r\n",
        json!({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}})
    );
    let (text, _) = translated(Dialect::OpenAi, &failed, false);
    assert!(text.contains(r#""message":"Quota exceeded.""#), "{text}");
    assert!(text.contains(r#""type":"rate_limit_error""#), "{text}");
    assert!(!text.contains("[DONE]"));
    let (text, _) = translated(Dialect::Anthropic, &failed, false);
    assert!(text.contains("event: error\n"), "{text}");
    assert!(!text.contains("message_stop"));
}
