//! Both chat APIs for every model, over real sockets: an OpenAI client
//! reaching a model whose pool speaks Anthropic's API and the reverse, as
//! JSON and as streams, with tools and images; errors in the client's
//! dialect; and fallbacks across providers. The mocks check what they
//! receive in their own dialect, so a wrong translation fails loudly.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const KEY: &str = "sk-translation-test";

/// One mock speaking OpenAI's API behind `mock-gpt`, one speaking
/// Anthropic's behind `mock-claude`; `mock-gpt` falls back to
/// `mock-claude`. `extra` goes at the end of the routes.
struct Setup {
    openai: Mock,
    anthropic: Mock,
    gw: Gateway,
}

const AUTH_AND_LIMITS: &str = "request:
  max_body_bytes: 65536
auth:
  api_keys:
    - {id: tester, key: sk-translation-test}
    - {id: gpt-only, key: sk-gpt-only, models: [mock-gpt]}
limits:
  mode: local
  rules:
    - {name: one-per-minute, key: [api_key], counts: requests, limit: 1, window: minute}
    - {name: per-model, key: [model], counts: requests, limit: 100, window: minute}
  global_rules: [per-model]
access_log:
  enabled: true
";

const ROUTES: &str = "routes:
  - name: gpt
    paths: [/v1/chat/completions]
    models: [mock-gpt]
    upstream: openai-pool
    retry: {attempts: 1, on: [connect_error, timeout, 5xx, 429]}
    fallbacks: [mock-claude]
  - name: claude-tiny
    paths: [/v1/messages]
    models: [mock-claude-tiny]
    upstream: anthropic-pool
    limits: [one-per-minute]
  - name: claude
    paths: [/v1/messages]
    models: [\"mock-claude*\"]
    upstream: anthropic-pool
    default_max_tokens: 300
";

fn setup() -> Setup {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let gw = Gateway::start(&format!(
        "{AUTH_AND_LIMITS}{}{ROUTES}",
        provider_pools(&openai.url(), &anthropic.url())
    ));
    Setup {
        openai,
        anthropic,
        gw,
    }
}

fn openai_call(gw: &Gateway, body: Value) -> Response {
    post_json(
        &gw.url("/v1/chat/completions"),
        &body,
        &[("authorization", &format!("Bearer {KEY}"))],
    )
}

fn anthropic_call_as(gw: &Gateway, key: &str, body: Value) -> Response {
    post_json(
        &gw.url("/v1/messages"),
        &body,
        &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
    )
}

fn anthropic_call(gw: &Gateway, body: Value) -> Response {
    anthropic_call_as(gw, KEY, body)
}

/// The last request a mock received, with its body parsed.
fn last_request(mock: &Mock) -> Value {
    let mut last = mock.requests().pop().expect("the mock received a request");
    last["body"] =
        serde_json::from_str(last["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    last
}

/// The `data:` payloads of an SSE body, with their `event:` names.
fn events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (name, data)
        })
        .collect()
}

fn weather_tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn weather_tool_anthropic() -> Value {
    json!([{"name": "get_weather", "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

fn metric(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn an_openai_client_reaches_a_model_behind_anthropics_api() {
    let s = setup();
    let r = openai_call(
        &s.gw,
        json!({"model": "mock-claude", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]},
        ], "max_completion_tokens": 50, "temperature": 0.5, "stop": ["END"], "user": "u-1"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["prompt_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert_eq!(r.header("x-gateway-model"), Some("mock-claude"));
    assert!(
        r.header("x-ratelimit-remaining-requests").is_some(),
        "OpenAI's limit headers"
    );

    // What the Anthropic-speaking pool received.
    let sent = last_request(&s.anthropic);
    assert_eq!(sent["path"], "/v1/messages");
    assert_eq!(sent["headers"]["x-api-key"], "sk-anthropic-provider");
    assert!(sent["headers"]["anthropic-version"].is_string());
    assert!(
        sent["headers"].get("authorization").is_none(),
        "no client credential upstream"
    );
    let sent = &sent["body"];
    assert_eq!(
        sent["system"][0],
        json!({"type": "text", "text": "Be brief."})
    );
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["metadata"]["user_id"], "u-1");
    let image = &sent["messages"][0]["content"][1];
    assert_eq!(image["type"], "image");
    assert_eq!(
        image["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(s.openai.api_requests(), 0);
}

#[test]
fn an_anthropic_client_reaches_a_model_behind_openais_api() {
    let s = setup();
    let r = anthropic_call(
        &s.gw,
        json!({"model": "mock-gpt", "max_tokens": 40, "system": "Be brief.", "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Describe"},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            ]},
        ], "stop_sequences": ["END"], "metadata": {"user_id": "u-2"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["content"][0]["type"], "text");
    assert!(body["content"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["usage"]["input_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert_eq!(r.header("x-gateway-model"), Some("mock-gpt"));
    assert!(
        r.header("anthropic-ratelimit-requests-remaining").is_some(),
        "Anthropic's limit headers"
    );

    let sent = last_request(&s.openai);
    assert_eq!(sent["path"], "/v1/chat/completions");
    assert_eq!(
        sent["headers"]["authorization"],
        "Bearer sk-openai-provider"
    );
    assert!(sent["headers"].get("anthropic-version").is_none());
    assert!(sent["headers"].get("x-api-key").is_none());
    let sent = &sent["body"];
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1]["content"][1]["image_url"]["url"],
        "https://example.com/cat.png"
    );
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["user"], "u-2");
    assert_eq!(s.anthropic.api_requests(), 0);
}

#[test]
fn streams_are_translated_event_by_event_with_usage() {
    let s = setup();
    // OpenAI client, Anthropic stream.
    let r = openai_call(
        &s.gw,
        json!({"model": "mock-claude", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let chunks = events(&r.body);
    assert_eq!(chunks.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let parsed: Vec<Value> = chunks[..chunks.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).expect("a JSON chunk"))
        .collect();
    assert!(parsed
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = parsed
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.is_empty());
    assert!(parsed
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = parsed
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("the usage chunk asked for");
    assert!(usage["usage"]["completion_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert_eq!(last_request(&s.anthropic)["body"]["stream"], true);

    // Anthropic client, OpenAI stream.
    let r = anthropic_call(
        &s.gw,
        json!({"model": "mock-gpt", "max_tokens": 40, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<String> = events(&r.body).into_iter().filter_map(|(n, _)| n).collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    for expected in [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    let delta = events(&r.body)
        .into_iter()
        .find(|(n, _)| n.as_deref() == Some("message_delta"))
        .map(|(_, d)| serde_json::from_str::<Value>(&d).unwrap())
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));

    // Usage read from both translated streams reaches the token metrics.
    // (Counted as each request ends, after its last byte.)
    for provider in ["anthropic", "openai"] {
        let counted = |metrics: &str| {
            metrics.lines().any(|l| {
                l.starts_with("llm_tokens_total{model=")
                    && l.contains(&format!("provider=\"{provider}\""))
                    && l.contains("type=\"output\"")
            })
        };
        assert!(
            eventually(Duration::from_secs(10), || counted(&s.gw.metrics())),
            "no output tokens for {provider}:\n{}",
            s.gw.metrics()
        );
    }
}

/// A tool call and its result, both ways, as JSON and as a stream whose
/// argument deltas must join into valid JSON.
#[test]
fn tool_calls_round_trip_both_ways() {
    let s = setup();
    // OpenAI client, Anthropic model: the call.
    let ask = json!([{"role": "user", "content": "Weather in Paris?"}]);
    let r = openai_call(
        &s.gw,
        json!({"model": "mock-claude", "messages": ask, "tools": weather_tool_openai(), "tool_choice": "auto"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let message = r.json()["choices"][0]["message"].clone();
    assert_eq!(r.json()["choices"][0]["finish_reason"], "tool_calls");
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string());
    let sent = last_request(&s.anthropic)["body"].clone();
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
    // The same, streamed.
    let r = openai_call(
        &s.gw,
        json!({"model": "mock-claude", "stream": true, "messages": ask, "tools": weather_tool_openai()}),
    );
    let mut arguments = String::new();
    let mut name = None;
    for (_, data) in events(&r.body) {
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        if let Some(call) = chunk["choices"][0]["delta"]["tool_calls"][0].as_object() {
            if let Some(n) = call.get("function").and_then(|f| f["name"].as_str()) {
                name = Some(n.to_string());
            }
            if let Some(a) = call.get("function").and_then(|f| f["arguments"].as_str()) {
                arguments.push_str(a);
            }
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"));
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        args,
        "streamed deltas: {arguments}"
    );
    // The result goes back; the model's answer uses it.
    let r = openai_call(
        &s.gw,
        json!({"model": "mock-claude", "tools": weather_tool_openai(), "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("The tool said: sunny, 21 C"), "{text}");
    let sent = last_request(&s.anthropic)["body"].clone();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");

    // Anthropic client, OpenAI model: the call, streamed.
    let r = anthropic_call(
        &s.gw,
        json!({"model": "mock-gpt", "max_tokens": 100, "stream": true, "tools": weather_tool_anthropic(),
            "tool_choice": {"type": "tool", "name": "get_weather"}, "messages": [{"role": "user", "content": "Weather?"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut partial = String::new();
    let mut tool_use = None;
    for (_, data) in events(&r.body) {
        let Ok(event) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        if event["content_block"]["type"] == "tool_use" {
            tool_use = Some(event["content_block"].clone());
        }
        if event["delta"]["type"] == "input_json_delta" {
            partial.push_str(event["delta"]["partial_json"].as_str().unwrap());
        }
    }
    let tool_use = tool_use.expect("a tool_use block");
    assert_eq!(tool_use["name"], "get_weather");
    let input: Value = serde_json::from_str(&partial).unwrap();
    assert!(input["city"].is_string());
    let sent = last_request(&s.openai)["body"].clone();
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    // The result goes back as JSON.
    let r = anthropic_call(
        &s.gw,
        json!({"model": "mock-gpt", "max_tokens": 100, "tools": weather_tool_anthropic(), "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use["id"], "name": "get_weather", "input": input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "rainy"}]},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.json()["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("The tool said: rainy"),
        "{}",
        r.body
    );
    let sent = last_request(&s.openai)["body"].clone();
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(sent["messages"][2]["role"], "tool");
}

fn assert_anthropic_error(r: &Response, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let body = r.json();
    assert_eq!(body["type"], "error", "{}", r.body);
    assert_eq!(body["error"]["type"], kind, "{}", r.body);
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(
        r.header("request-id").is_some(),
        "Anthropic's request-id header"
    );
}

/// Every error the gateway writes on `/v1/messages` has Anthropic's shape.
#[test]
fn errors_on_the_messages_api_are_anthropic_shaped() {
    let s = setup();
    let hi = json!({"model": "mock-claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert_anthropic_error(
        &anthropic_call_as(&s.gw, "sk-wrong", hi.clone()),
        401,
        "authentication_error",
    );
    let r = post_json(&s.gw.url("/v1/messages"), &hi, &[]);
    assert_anthropic_error(&r, 401, "authentication_error");
    let r = anthropic_call_as(&s.gw, "sk-gpt-only", hi.clone());
    assert_anthropic_error(&r, 403, "permission_error");
    let r = anthropic_call(
        &s.gw,
        json!({"model": "no-such-model", "max_tokens": 1, "messages": []}),
    );
    assert_anthropic_error(&r, 404, "not_found_error");
    let r = anthropic_call(
        &s.gw,
        json!({"model": "mock-gpt", "max_tokens": 5, "top_k": 3, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_anthropic_error(&r, 400, "invalid_request_error");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("top_k"),
        "{}",
        r.body
    );
    // Only the head, declaring a body over the limit: the gateway refuses it
    // on the declared length and closes, and a client still writing the body
    // could find the connection gone before it reads the answer.
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\nContent-Length: {}\r\n\r\n",
        100 * 1024
    );
    // The gateway closes after refusing: raw_exchange reads to the end.
    let r = Response::from_raw(&raw_exchange(
        s.gw.proxy_port,
        head.as_bytes(),
        Duration::from_secs(10),
    ));
    assert_anthropic_error(&r, 413, "request_too_large");
    // A limit: Anthropic's headers on the 429.
    let tiny = json!({"model": "mock-claude-tiny", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(anthropic_call(&s.gw, tiny.clone()).status, 200);
    let r = anthropic_call(&s.gw, tiny);
    assert_anthropic_error(&r, 429, "rate_limit_error");
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    assert!(r.header("retry-after").is_some());
    // An upstream error keeps its status and takes the client's shape.
    s.openai.control("/mock/fail/400");
    let r = anthropic_call(
        &s.gw,
        json!({"model": "mock-gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_anthropic_error(&r, 400, "invalid_request_error");
    s.openai.control("/mock/fail/0");
    // ...and the other way: an Anthropic 529 reaches an OpenAI client in OpenAI's shape.
    s.anthropic.control("/mock/fail/529");
    let r = openai_call(
        &s.gw,
        json!({"model": "mock-claude", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 529, "{}", r.body);
    assert!(r.json()["error"]["message"].is_string(), "{}", r.body);
    assert!(r.json().get("type").is_none(), "{}", r.body);
}

/// An unsupported parameter is refused by name, unless the route drops it.
#[test]
fn unsupported_parameters_are_refused_or_dropped_as_the_route_says() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let gw = Gateway::start(&format!(
        "{}routes:
  - {{name: strict, paths: [/v1/chat/completions], models: [strict-claude], upstream: anthropic-pool}}
  - {{name: lenient, paths: [/v1/chat/completions], models: [lenient-claude], upstream: anthropic-pool, drop_unsupported_params: true}}
",
        provider_pools(&openai.url(), &anthropic.url())
    ));
    let body = |model: &str| json!({"model": model, "seed": 7, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), &body("strict-claude"), &[]);
    r.assert_error(400, "unsupported_parameter");
    assert_eq!(r.json()["error"]["param"], "seed");
    assert_eq!(anthropic.api_requests(), 0);
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &body("lenient-claude"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(last_request(&anthropic)["body"].get("seed").is_none());
}

/// A fallback answers when the primary pool fails, in every way the route
/// retries on, translated into the client's dialect.
#[test]
fn a_fallback_on_the_other_provider_answers_when_the_primary_fails() {
    for failure in ["500", "429", "refused"] {
        let openai = Mock::start("openai");
        let anthropic = Mock::start("anthropic");
        let openai_url = if failure == "refused" {
            format!("http://127.0.0.1:{}", free_port())
        } else {
            openai.control(&format!("/mock/fail/{failure}"));
            openai.url()
        };
        let gw = Gateway::start(&format!(
            "{AUTH_AND_LIMITS}{}{ROUTES}",
            provider_pools(&openai_url, &anthropic.url())
        ));
        let r = openai_call(
            &gw,
            json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(r.status, 200, "{failure}: {}", r.body);
        assert_eq!(
            r.header("x-gateway-model"),
            Some("mock-claude"),
            "{failure}"
        );
        assert_eq!(r.json()["object"], "chat.completion", "{failure}");
        assert_eq!(last_request(&anthropic)["body"]["model"], "mock-claude");
        // A stream falls back too, before its first byte.
        let r = openai_call(
            &gw,
            json!({"model": "mock-gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(r.status, 200, "{failure}: {}", r.body);
        assert!(
            r.body.ends_with("data: [DONE]\n\n"),
            "{failure}: {}",
            r.body
        );
        let metrics = gw.metrics();
        assert_eq!(
            metric(
                &metrics,
                "llm_fallbacks_total{from=\"mock-gpt\",route=\"gpt\",to=\"mock-claude\"}"
            ),
            2.0,
            "{failure}:\n{metrics}"
        );
        let line = gw
            .access_lines_at_least(2)
            .into_iter()
            .last()
            .expect("an access line");
        assert_eq!(line["model"], "mock-claude", "{line}");
        assert_eq!(line["requested_model"], "mock-gpt", "{line}");
        assert_eq!(line["fallbacks"], 1, "{line}");
        assert_eq!(line["attempts"], 2, "{line}");
        // Limits are charged for the model that answered: the per-model
        // rule shows mock-claude's count, and mock-gpt's was given back.
        assert_eq!(
            r.header("x-ratelimit-remaining-requests"),
            Some("98"),
            "{failure}"
        );
    }
}

#[test]
fn when_every_model_fails_the_client_gets_a_502_in_its_dialect() {
    let dead = |_| format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(&format!(
        "{AUTH_AND_LIMITS}{}{ROUTES}",
        provider_pools(&dead(0), &dead(1))
    ));
    let r = anthropic_call(
        &gw,
        json!({"model": "mock-gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_anthropic_error(&r, 502, "api_error");
    let r = openai_call(
        &gw,
        json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
    );
    r.assert_error(502, "upstream_error");
    let line = gw
        .access_lines_at_least(2)
        .into_iter()
        .last()
        .expect("an access line");
    assert_eq!(line["attempts"], 2, "{line}");
}

/// A fallback the caller may not use, or whose limits refuse, is skipped:
/// the client gets the primary's failure.
#[test]
fn a_fallback_is_taken_only_when_the_caller_may_use_it_and_its_limits_accept() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    openai.control("/mock/fail/503");
    let gw = Gateway::start(&format!(
        "{AUTH_AND_LIMITS}{}{}",
        provider_pools(&openai.url(), &anthropic.url()),
        ROUTES.replace("fallbacks: [mock-claude]", "fallbacks: [mock-claude-tiny]")
    ));
    let hi = json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &hi,
        &[("authorization", "Bearer sk-gpt-only")],
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        anthropic.api_requests(),
        0,
        "the caller may not use the fallback"
    );
    // The tiny route's limit takes one request a minute: the first fallback
    // is admitted, the second is refused by it and skipped.
    assert_eq!(openai_call(&gw, hi.clone()).status, 200);
    let r = openai_call(&gw, hi);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("x-gateway-model"), Some("mock-gpt"));
    assert_eq!(anthropic.api_requests(), 1);
    assert!(eventually(Duration::from_secs(5), || gw
        .log()
        .contains("fallback to `mock-claude-tiny` skipped")));
}

/// A pool's `max_output_tokens` clamps what a request asks for, native or
/// translated, and the reservation follows (Claude Code asks for 32k-64k).
#[test]
fn max_tokens_above_the_models_maximum_are_clamped() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let pools = provider_pools(&openai.url(), &anthropic.url()).replace(
        "  anthropic-pool:\n",
        "    max_output_tokens: {\"mock-*\": 4096, mock-gpt: 1000}\n  anthropic-pool:\n",
    );
    let gw = Gateway::start(&format!("{AUTH_AND_LIMITS}{pools}{ROUTES}"));
    let hi = json!([{"role": "user", "content": "hi"}]);
    // An Anthropic client on the OpenAI pool: translated.
    let resp = anthropic_call(
        &gw,
        json!({"model": "mock-gpt", "max_tokens": 32000, "messages": hi}),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(last_request(&openai)["body"]["max_tokens"], 1000);
    // An OpenAI client: passed through, with the number rewritten.
    let resp = openai_call(
        &gw,
        json!({"model": "mock-gpt", "max_completion_tokens": 64000, "messages": hi}),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let sent = last_request(&openai)["body"].clone();
    assert_eq!(sent["max_completion_tokens"], 1000, "{sent}");
    assert_eq!(sent["messages"], hi, "the rest is untouched");
    // Below the maximum, nothing changes.
    let resp = openai_call(
        &gw,
        json!({"model": "mock-gpt", "max_tokens": 50, "messages": hi}),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(last_request(&openai)["body"]["max_tokens"], 50);
}
