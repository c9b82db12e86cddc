//! Cost per answer, over the real binary: `pricing` prices a model's usage,
//! JSON and streamed alike, into the access log's `cost_usd` and
//! `llm_cost_usd_total`; a model with no price gets `null` and is counted in
//! `llm_unpriced_requests_total`, never priced as 0.

mod common;

use common::*;
use serde_json::json;

const PRICING: &str =
    "pricing:\n  - {model: mock-gpt, input_per_million: 2.5, output_per_million: 10}\n";

fn expected_usd(line: &serde_json::Value) -> f64 {
    let input = line["input_tokens"].as_f64().expect("input tokens");
    let output = line["output_tokens"].as_f64().expect("output tokens");
    assert!(input > 0.0 && output > 0.0, "{line}");
    (input * 2.5 + output * 10.0) / 1e6
}

#[test]
fn answers_are_priced_from_their_usage_and_unpriced_models_are_counted() {
    let mock = Mock::start("m");
    let gw = chat_gateway(&[&mock], PRICING, "mock-gpt, mock-*", "");
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    let streamed = post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "mock-gpt", "stream": true,
                "messages": [{"role": "user", "content": "tell me more"}]}),
        &[],
    );
    assert_eq!(streamed.status, 200);
    assert!(streamed.body.contains("[DONE]"), "{}", streamed.body);
    assert_eq!(chat(&gw, "mock-unpriced").status, 200);

    let lines = gw.access_lines_at_least(3);
    let priced: Vec<_> = lines.iter().filter(|l| l["model"] == "mock-gpt").collect();
    assert_eq!(priced.len(), 2, "{lines:?}");
    let mut total = 0.0;
    for line in &priced {
        let cost = line["cost_usd"].as_f64().expect("a cost");
        let expected = expected_usd(line);
        assert!(
            (cost - expected).abs() < 1e-9,
            "{cost} != {expected}: {line}"
        );
        total += cost;
    }
    assert!(
        priced.iter().any(|l| l["stream"] == true),
        "a streamed answer is priced"
    );
    let unpriced = lines
        .iter()
        .find(|l| l["model"] == "mock-unpriced")
        .expect("the unpriced line");
    assert!(unpriced["input_tokens"].as_u64().is_some(), "{unpriced}");
    assert!(
        unpriced["cost_usd"].is_null(),
        "never a silent 0: {unpriced}"
    );

    let metrics = gw.metrics();
    let counted = metric_value(
        &metrics,
        r#"llm_cost_usd_total{model="mock-gpt",route="chat"}"#,
    )
    .expect("llm_cost_usd_total for mock-gpt");
    assert!((counted - total).abs() < 1e-9, "{counted} != {total}");
    assert_eq!(
        metric_value(
            &metrics,
            r#"llm_unpriced_requests_total{model="mock-*",route="chat"}"#
        ),
        Some(1.0),
        "labels come from config: the route's pattern, not the client's model\n{metrics}"
    );
    assert!(
        !metrics.contains("mock-unpriced"),
        "no client string as a label"
    );
}

#[test]
fn translated_answers_are_priced_from_the_usage_the_client_sees() {
    // An Anthropic client on `/v1/messages` reaching a model whose pool
    // speaks OpenAI's API: the request and answer are translated.
    let mock = Mock::start("m");
    let gw = Gateway::start(&format!(
        "{PRICING}{}routes:\n  - name: messages\n    paths: [/v1/messages]\n    models: [mock-gpt]\n    upstream: openai-pool\n",
        provider_pools(&mock.url(), "http://127.0.0.1:1")
    ));
    let json_answer = post_json(
        &gw.url("/v1/messages"),
        &json!({"model": "mock-gpt", "max_tokens": 50,
                "messages": [{"role": "user", "content": "how much?"}]}),
        &[],
    );
    assert_eq!(json_answer.status, 200, "{}", json_answer.body);
    let usage = json_answer.json()["usage"].clone();
    let streamed = post_json(
        &gw.url("/v1/messages"),
        &json!({"model": "mock-gpt", "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "and streamed?"}]}),
        &[],
    );
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    assert!(streamed.body.contains("message_stop"), "{}", streamed.body);

    let lines = gw.access_lines_at_least(2);
    for line in &lines {
        let cost = line["cost_usd"].as_f64().expect("a cost");
        let expected = expected_usd(line);
        assert!(
            (cost - expected).abs() < 1e-9,
            "{cost} != {expected}: {line}"
        );
    }
    // The log's tokens are the ones the client was told.
    let json_line = lines
        .iter()
        .find(|l| l["stream"] == false)
        .expect("json line");
    assert_eq!(json_line["input_tokens"], usage["input_tokens"], "{usage}");
    assert_eq!(
        json_line["output_tokens"], usage["output_tokens"],
        "{usage}"
    );
}

#[test]
fn cached_input_tokens_are_priced_apart_in_both_dialects() {
    // An OpenAI-style and an Anthropic-style pool on one mock; each model
    // answers on both APIs (translated when the client's is not the pool's).
    let mock = Mock::start("m");
    let gw = Gateway::start(&format!(
        "pricing:\n  - {{model: \"mock-*\", input_per_million: 4, output_per_million: 10, cached_input_per_million: 1}}\n\
         {}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: openai-pool\n\
         \x20 - name: messages\n    paths: [/v1/messages]\n    models: [mock-claude]\n    upstream: anthropic-pool\n\
         \x20 - name: translated\n    paths: [/v1/messages]\n    models: [mock-gpt]\n    upstream: openai-pool\n",
        provider_pools(&mock.url(), &mock.url())
    ));
    let cached = [("x-mock-cached-tokens", "3")];
    let asks = [
        (
            "/v1/chat/completions",
            json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "a longer prompt with some words in it"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "mock-claude", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "a longer prompt with some words in it"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "mock-gpt", "max_tokens": 50, "messages": [{"role": "user", "content": "a longer prompt with some words in it"}]}),
        ),
    ];
    for (path, body) in &asks {
        let answer = post_json(&gw.url(path), body, &cached);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    let lines = gw.access_lines_at_least(3);
    for line in &lines {
        let input = line["input_tokens"].as_f64().expect("input");
        let cached = line["cached_input_tokens"].as_f64().expect("cached");
        let output = line["output_tokens"].as_f64().expect("output");
        assert_eq!(cached, 3.0, "{line}");
        assert!(input > cached, "{line}");
        // (input - cached) x 4 + cached x 1 + output x 10, per million.
        let expected = ((input - cached) * 4.0 + cached * 1.0 + output * 10.0) / 1e6;
        let cost = line["cost_usd"].as_f64().expect("cost");
        assert!(
            (cost - expected).abs() < 1e-12,
            "{cost} != {expected}: {line}"
        );
    }
}
