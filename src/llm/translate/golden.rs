//! Golden translations: each mapping of the tables in docs/routing-and-translation.md, both ways.

use serde_json::{json, Value};

use super::*;
use crate::llm::ClientDialect;

const OPTIONS: Options = Options {
    drop_unsupported: false,
    default_max_tokens: 512,
    max_output_tokens: None,
};

/// The client dialect that is `d` (every dialect here is one).
fn client(d: Dialect) -> ClientDialect {
    ClientDialect::ALL
        .into_iter()
        .find(|c| *c == d)
        .expect("a client dialect")
}

fn request(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    options: &Options,
) -> Result<Vec<u8>, TranslateError> {
    super::request(client(from), to, body, options).map(|t| t.body)
}

fn response(from: Dialect, to: Dialect, body: &[u8]) -> Option<(Vec<u8>, Usage)> {
    let translated = super::response(from, client(to), body).ok()?;
    Some((translated.body, translated.usage.unwrap_or_default()))
}

fn error(from: Dialect, to: Dialect, status: u16, body: &[u8]) -> Vec<u8> {
    super::error(from, client(to), status, body, &|_| None)
}

fn translator(
    from: Dialect,
    to: Dialect,
    include_usage: bool,
    max_event: usize,
) -> StreamTranslator {
    StreamTranslator::new(from, client(to), include_usage, max_event)
}

fn translate(from: Dialect, to: Dialect, body: Value) -> Result<Value, TranslateError> {
    request(from, to, body.to_string().as_bytes(), &OPTIONS)
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn an_openai_request_becomes_an_anthropic_one() {
    let got = translate(
        Dialect::OpenAi,
        Dialect::Anthropic,
        json!({
            "model": "claude-x",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
                {"role": "user", "content": "Thanks."},
            ],
            "max_completion_tokens": 100,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "parallel_tool_calls": false,
            "user": "user-42",
            "n": 1,
        }),
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "model": "claude-x",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18 C"}]},
                    {"type": "text", "text": "Thanks."},
                ]},
            ],
            "stream": true,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "user-42"},
        })
    );
}

#[test]
fn an_anthropic_request_becomes_an_openai_one() {
    let got = translate(
        Dialect::Anthropic,
        Dialect::OpenAi,
        json!({
            "model": "gpt-x",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                    {"type": "text", "text": "And tomorrow?"},
                ]},
            ],
            "stop_sequences": ["END", "STOP"],
            "temperature": 0.2,
            "stream": true,
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "user-42"},
            "thinking": {"type": "disabled"},
        }),
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "model": "gpt-x",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                ]},
                {"role": "assistant", "content": "Let me look.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
                {"role": "user", "content": "And tomorrow?"},
            ],
            "max_tokens": 64,
            "temperature": 0.2,
            "stop": ["END", "STOP"],
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "user-42",
        })
    );
}

#[test]
fn anthropic_needs_max_tokens_and_a_temperature_it_takes() {
    let got = translate(
        Dialect::OpenAi,
        Dialect::Anthropic,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .unwrap();
    assert_eq!(got["max_tokens"], 512);
    let err = translate(
        Dialect::OpenAi,
        Dialect::Anthropic,
        json!({"model": "m", "messages": [], "temperature": 1.5}),
    )
    .unwrap_err();
    assert_eq!(err.param(), "temperature");
}

#[test]
fn unsupported_parameters_are_refused_by_name_or_dropped_when_asked() {
    let body = json!({"model": "m", "messages": [], "seed": 7, "n": 1, "logprobs": false});
    let err = translate(Dialect::OpenAi, Dialect::Anthropic, body.clone()).unwrap_err();
    assert_eq!(err.param(), "seed");
    assert!(matches!(err, TranslateError::Unsupported { .. }));
    assert!(err.to_string().contains("`seed`"), "{err}");
    let dropping = Options {
        drop_unsupported: true,
        ..OPTIONS
    };
    let got: Value = serde_json::from_slice(
        &request(
            Dialect::OpenAi,
            Dialect::Anthropic,
            body.to_string().as_bytes(),
            &dropping,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(got.get("seed").is_none());
    let err = translate(
        Dialect::OpenAi,
        Dialect::Anthropic,
        json!({"model": "m", "messages": [], "n": 2}),
    )
    .unwrap_err();
    assert_eq!(err.param(), "n");
    let err = translate(
        Dialect::Anthropic,
        Dialect::OpenAi,
        json!({"model": "m", "max_tokens": 5, "messages": [], "top_k": 5}),
    )
    .unwrap_err();
    assert_eq!(err.param(), "top_k");
    let err = translate(
        Dialect::Anthropic,
        Dialect::OpenAi,
        json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "sometimes"}}),
    )
    .unwrap_err();
    assert_eq!(err.param(), "thinking");
}

/// Thinking becomes the target's reasoning effort: a budget the nearest
/// effort, an effort the client named that effort; adaptive thinking with
/// no effort leaves the target to decide.
#[test]
fn thinking_becomes_a_reasoning_effort() {
    let ask = |thinking: Value, output_config: Value| {
        let mut body = json!({"model": "m", "max_tokens": 32000,
            "messages": [{"role": "user", "content": "hi"}], "thinking": thinking});
        if !output_config.is_null() {
            body["output_config"] = output_config;
        }
        translate(Dialect::Anthropic, Dialect::OpenAi, body).unwrap()["reasoning_effort"].clone()
    };
    let enabled = |budget: u64| json!({"type": "enabled", "budget_tokens": budget});
    assert_eq!(ask(enabled(1024), Value::Null), "low");
    assert_eq!(ask(enabled(8192), Value::Null), "medium");
    assert_eq!(ask(enabled(24576), Value::Null), "high");
    assert_eq!(ask(enabled(1024), json!({"effort": "high"})), "high");
    assert_eq!(ask(json!({"type": "adaptive"}), Value::Null), Value::Null);
    assert_eq!(
        ask(
            json!({"type": "adaptive", "display": "omitted"}),
            json!({"effort": "max"})
        ),
        "max"
    );
    assert_eq!(ask(json!({"type": "disabled"}), Value::Null), Value::Null);
}

/// What steers only Anthropic's servers is dropped and named, wherever it
/// sits: at the top, on system and message blocks, inside a tool result,
/// on tools; and the beta header.
#[test]
fn provider_hints_are_dropped_and_named() {
    let body = json!({"model": "m", "max_tokens": 64,
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"name": "Read", "input_schema": {"type": "object"}, "defer_loading": true}]});
    let to_openai = |body: &Value| {
        super::request(
            ClientDialect::Anthropic,
            Dialect::OpenAi,
            body.to_string().as_bytes(),
            &OPTIONS,
        )
        .unwrap()
    };
    let translated = to_openai(&body);
    assert_eq!(
        translated.dropped.to_string(),
        "cache_control,context_management,defer_loading"
    );
    let sent: Value = serde_json::from_slice(&translated.body).unwrap();
    let text = sent.to_string();
    for hint in ["cache_control", "context_management", "defer_loading"] {
        assert!(!text.contains(hint), "{hint} reached the target: {text}");
    }
    let nested = json!({"model": "m", "max_tokens": 64, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}]}]});
    assert_eq!(to_openai(&nested).dropped.to_string(), "cache_control");
    let plain =
        json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    assert!(to_openai(&plain).dropped.is_empty());
}

/// The section of docs/routing-and-translation.md under `heading`, up to the next heading.
fn doc_section(heading: &str) -> &'static str {
    let doc = include_str!("../../../docs/routing-and-translation.md");
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/routing-and-translation.md has no `{heading}`"));
    let rest = &doc[start + heading.len()..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    &rest[..end]
}

/// Each dialect's parameter table is a contract: every parameter is listed
/// in docs/routing-and-translation.md with its fate, and every one the table refuses, or
/// accepts only at a neutral value, is refused by name with an unusual
/// value and dropped when the route allows it.
#[test]
fn the_parameter_tables_hold_and_the_readme_lists_them() {
    let tables = [
        (
            Dialect::OpenAi,
            Dialect::Anthropic,
            crate::llm::wire::openai::parameters::PARAMETERS,
            "#### OpenAI client, Anthropic or Gemini model",
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            Dialect::Anthropic,
            Dialect::OpenAi,
            crate::llm::wire::anthropic::parameters::PARAMETERS,
            "#### Anthropic client, OpenAI or Gemini model",
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    let dropping = Options {
        drop_unsupported: true,
        ..OPTIONS
    };
    for (from, to, table, heading, base) in tables {
        let section = doc_section(heading);
        for (param, fate) in table {
            let row = format!("| `{param}` | {fate} |");
            assert!(
                section.contains(&row),
                "docs/routing-and-translation.md lacks `{row}` under {heading}"
            );
            if fate.starts_with("dropped") {
                // Any value: gone from the translation, and named.
                let mut body = base.clone();
                body[*param] = json!({"unusual": true});
                for to in [to, Dialect::Gemini] {
                    let translated =
                        super::request(client(from), to, body.to_string().as_bytes(), &OPTIONS)
                            .unwrap_or_else(|e| panic!("{param} -> {to:?}: {e}"));
                    let sent: Value = serde_json::from_slice(&translated.body).unwrap();
                    assert!(sent.get(*param).is_none(), "{param} reached {to:?}");
                    let hint = crate::llm::Hint::of_parameter(param).expect("a known hint");
                    assert!(translated.dropped.contains(hint), "{param} not named");
                }
                continue;
            }
            if !(fate.starts_with("refused") || fate.starts_with("accepted when")) {
                continue;
            }
            let mut body = base.clone();
            body[*param] = json!({"unusual": true});
            // A parameter's fate is the same whichever dialect the model's
            // provider speaks.
            for to in [to, Dialect::Gemini] {
                let err = translate(from, to, body.clone()).unwrap_err();
                assert_eq!(err.param(), *param, "{from:?} -> {to:?}");
                assert!(matches!(err, TranslateError::Unsupported { .. }), "{param}");
                let kept: Value = serde_json::from_slice(
                    &request(from, to, body.to_string().as_bytes(), &dropping).unwrap(),
                )
                .unwrap();
                assert!(kept.get(*param).is_none(), "{param} reached {to:?}");
            }
        }
        let rows = section.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(
            rows,
            table.len(),
            "docs/routing-and-translation.md rows under {heading} beyond the table"
        );
    }
}

/// An Anthropic answer with text, a tool call and cached input.
fn anthropic_answer() -> Value {
    json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4},
    })
}

#[test]
fn whole_answers_both_ways() {
    let anthropic = anthropic_answer();
    let (bytes, usage) = response(
        Dialect::Anthropic,
        Dialect::OpenAi,
        anthropic.to_string().as_bytes(),
    )
    .unwrap();
    let openai: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        usage,
        Usage {
            input: 14,
            output: 5,
            cache_read: 4,
            cache_write: 0
        }
    );
    assert_eq!(openai["object"], "chat.completion");
    assert_eq!(openai["id"], "msg_1");
    assert!(openai["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        openai["choices"][0],
        json!({"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
            "role": "assistant", "content": "Checking.", "refusal": null,
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}],
        }})
    );
    assert_eq!(
        openai["usage"],
        json!({"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19, "prompt_tokens_details": {"cached_tokens": 4}})
    );
    // And back: Anthropic's shape again, cached input apart.
    let (bytes, _) = response(Dialect::OpenAi, Dialect::Anthropic, &bytes).unwrap();
    let back: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back["content"], anthropic["content"]);
    assert_eq!(back["stop_reason"], "tool_use");
    assert_eq!(back["usage"]["input_tokens"], 10);
    assert_eq!(back["usage"]["cache_read_input_tokens"], 4);
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
    ] {
        let openai = json!({"id": "c", "model": "g", "choices": [{"message": {"content": "x"}, "finish_reason": finish}], "usage": {}});
        let (bytes, _) = response(
            Dialect::OpenAi,
            Dialect::Anthropic,
            openai.to_string().as_bytes(),
        )
        .unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got["stop_reason"], stop);
    }
}

#[test]
fn errors_keep_their_kind_in_the_other_shape() {
    let openai = br#"{"error":{"message":"Bad key.","type":"authentication_error","code":"invalid_api_key"}}"#;
    let got: Value =
        serde_json::from_slice(&error(Dialect::OpenAi, Dialect::Anthropic, 401, openai)).unwrap();
    assert_eq!(
        got,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "Bad key."}})
    );
    let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Busy."}}"#;
    let got: Value =
        serde_json::from_slice(&error(Dialect::Anthropic, Dialect::OpenAi, 529, anthropic))
            .unwrap();
    assert_eq!(got["error"]["message"], "Busy.");
    assert_eq!(got["error"]["type"], "server_error");
    let got: Value = serde_json::from_slice(&error(
        Dialect::OpenAi,
        Dialect::Anthropic,
        429,
        b"not json",
    ))
    .unwrap();
    assert_eq!(got["error"]["type"], "rate_limit_error");
}

/// An Anthropic stream with text and a tool call whose arguments come in pieces.
pub const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me \"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"check.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

/// The OpenAI chunks of the same answer, as `data:` JSON values.
fn openai_chunks(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Each chunk's delta, finish reason and usage, its id and model checked.
fn deltas(chunks: &[Value], id: &str, model: &str) -> Vec<Value> {
    chunks
        .iter()
        .map(|c| {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["id"], id);
            assert_eq!(c["model"], model);
            json!([
                c["choices"][0]["delta"],
                c["choices"][0]["finish_reason"],
                c["usage"]
            ])
        })
        .collect()
}

#[test]
fn an_anthropic_stream_becomes_openai_chunks() {
    let mut t = translator(
        Dialect::Anthropic,
        Dialect::OpenAi,
        true,
        crate::llm::sse::DEFAULT_MAX_EVENT,
    );
    let mut out = t.feed(ANTHROPIC_STREAM.as_bytes()).to_vec();
    out.extend_from_slice(&t.finish());
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(
        deltas(&openai_chunks(&text), "msg_1", "claude-x"),
        vec![
            json!([{"role": "assistant", "content": ""}, null, null]),
            json!([{"content": "Let me "}, null, null]),
            json!([{"content": "check."}, null, null]),
            json!([{"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}, null, null]),
            json!([{"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}, null, null]),
            json!([{"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}, null, null]),
            json!([{}, "tool_calls", null]),
            json!([null, null, {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 0}}]),
        ]
    );
    assert_eq!(
        t.usage(),
        Some(Usage {
            input: 12,
            output: 9,
            cache_read: 0,
            cache_write: 0
        })
    );
    // Without include_usage, no usage chunk, but the usage is still read.
    let mut t = translator(
        Dialect::Anthropic,
        Dialect::OpenAi,
        false,
        crate::llm::sse::DEFAULT_MAX_EVENT,
    );
    let text = String::from_utf8(t.feed(ANTHROPIC_STREAM.as_bytes()).to_vec()).unwrap();
    assert!(!text.contains("\"usage\":{"), "{text}");
    assert_eq!(t.usage().map(|u| u.output), Some(9));
}

/// The OpenAI stream of an answer with text and a tool call.
pub const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me check.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\"\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\": \\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":7,\"total_tokens\":27}}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn an_openai_stream_becomes_anthropic_events() {
    let mut t = translator(
        Dialect::OpenAi,
        Dialect::Anthropic,
        false,
        crate::llm::sse::DEFAULT_MAX_EVENT,
    );
    let mut out = t.feed(OPENAI_STREAM.as_bytes()).to_vec();
    out.extend_from_slice(&t.finish());
    let text = String::from_utf8(out).unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_string();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(events[0].1["message"]["id"], "chatcmpl-1");
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "text_delta", "text": "Let me check."})
    );
    assert_eq!(
        events[4].1,
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}})
    );
    let arguments: String = events[5..7]
        .iter()
        .map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[8].1["usage"]["output_tokens"], 7);
    assert_eq!(events[8].1["usage"]["input_tokens"], 20);
    assert_eq!(t.usage().map(|u| (u.input, u.output)), Some((20, 7)));
}

/// A stream the upstream ended before its end ends with an error event in
/// the client's dialect, never with its completion marker.
#[test]
fn a_cut_stream_ends_with_an_error_event() {
    let cut = &ANTHROPIC_STREAM[..ANTHROPIC_STREAM.find("event: message_delta").unwrap()];
    let mut t = translator(
        Dialect::Anthropic,
        Dialect::OpenAi,
        true,
        crate::llm::sse::DEFAULT_MAX_EVENT,
    );
    let mut out = t.feed(cut.as_bytes()).to_vec();
    out.extend_from_slice(&t.finish());
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("[DONE]"), "{out}");
    let last = out.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("data: {\"error\":"), "{out}");
    assert_eq!(t.fault(), Some(crate::llm::AnswerFault::Cut));

    let cut = &OPENAI_STREAM[..OPENAI_STREAM.find("data: [DONE]").unwrap()];
    let mut t = translator(
        Dialect::OpenAi,
        Dialect::Anthropic,
        false,
        crate::llm::sse::DEFAULT_MAX_EVENT,
    );
    let mut out = t.feed(cut.as_bytes()).to_vec();
    out.extend_from_slice(&t.finish());
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("message_stop"), "{out}");
    let last = out.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\n"), "{out}");
    assert_eq!(t.fault(), Some(crate::llm::AnswerFault::Cut));
}

#[test]
fn an_error_mid_stream_reaches_the_client_in_its_dialect() {
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    let mut t = translator(
        Dialect::Anthropic,
        Dialect::OpenAi,
        false,
        crate::llm::sse::DEFAULT_MAX_EVENT,
    );
    let text = String::from_utf8(t.feed(stream.as_bytes()).to_vec()).unwrap();
    assert!(text.contains(r#"data: {"error":{"code":null,"message":"Overloaded","param":null,"type":"server_error"}}"#), "{text}");
    assert!(!text.contains("[DONE]"));
}

mod gemini;

mod fuzz_seeds;

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn run(from: Dialect, to: Dialect, text: &str, cuts: &[usize]) -> (Vec<u8>, Option<Usage>) {
        let bytes = text.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut t = translator(from, to, true, crate::llm::sse::DEFAULT_MAX_EVENT);
        let mut out = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain(std::iter::once(bytes.len())) {
            out.extend_from_slice(&t.feed(&bytes[last..p]));
            last = p;
        }
        out.extend_from_slice(&t.finish());
        (out, t.usage())
    }

    /// The translated stream does not depend on how the upstream's bytes
    /// are cut, except for OpenAI's `created` (the translation's clock).
    fn normalized(out: &[u8]) -> String {
        let text = String::from_utf8(out.to_vec()).unwrap();
        let mut result = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\"created\":") {
            let after = at + "\"created\":".len();
            result.push_str(&rest[..after]);
            let digits = rest[after..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - after);
            result.push('0');
            rest = &rest[after + digits..];
        }
        result.push_str(rest);
        result
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_translation(cuts in proptest::collection::vec(any::<usize>(), 0..60)) {
            for (from, to, text) in [
                (Dialect::Anthropic, Dialect::OpenAi, ANTHROPIC_STREAM),
                (Dialect::OpenAi, Dialect::Anthropic, OPENAI_STREAM),
                (Dialect::Gemini, Dialect::OpenAi, gemini::GEMINI_STREAM),
                (Dialect::Gemini, Dialect::Anthropic, gemini::GEMINI_STREAM),
            ] {
                let (whole, whole_usage) = run(from, to, text, &[]);
                let (pieces, usage) = run(from, to, text, &cuts);
                prop_assert_eq!(normalized(&pieces), normalized(&whole));
                prop_assert_eq!(usage, whole_usage);
            }
        }
    }
}

/// Found by the `stream_translation` fuzz target: events after the final
/// one were told as trailing data only when they came in a later piece than
/// it. The found input (an Anthropic stream with events after
/// `message_stop`), whole and in its pieces, and a plain case.
#[test]
fn trailing_data_is_told_whatever_the_chunking() {
    let found: &[u8] =
        include_bytes!("../../../fuzz/seeds/stream_translation/regression_trailing_after_the_end");
    let (header, body) = found.split_at(5);
    let sizes: Vec<usize> = header[1..].iter().map(|&b| usize::from(b) + 1).collect();
    let run = |body: &[u8], sizes: &[usize]| {
        let mut t = translator(
            Dialect::Anthropic,
            Dialect::OpenAi,
            true,
            crate::llm::sse::DEFAULT_MAX_EVENT,
        );
        let mut out = Vec::new();
        let mut rest = body;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at(n.min(rest.len()));
            out.extend_from_slice(&t.feed(piece));
            rest = after;
        }
        out.extend_from_slice(&t.finish());
        (out, t.usage(), t.fault())
    };
    assert_eq!(run(body, &[body.len()]), run(body, &sizes));
    let trailing = format!("{ANTHROPIC_STREAM}event: ping\ndata: {{\"type\":\"ping\"}}\n\n");
    let whole = run(trailing.as_bytes(), &[trailing.len()]);
    assert_eq!(whole.2, Some(crate::llm::AnswerFault::TrailingData));
    for size in [1, 7, 64, ANTHROPIC_STREAM.len()] {
        assert_eq!(run(trailing.as_bytes(), &[size]), whole, "pieces of {size}");
    }
}
