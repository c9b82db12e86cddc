//! The mock upstream's own knobs, which the other tests and the benchmarks
//! rely on.

mod common;

use common::*;
use serde_json::json;

#[test]
fn response_size_and_chunk_count_shape_the_answer() {
    let mock = Mock::start("m");
    let resp = post_json(
        &format!("{}/v1/chat/completions", mock.url()),
        &json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-response-size", "1000"), ("x-mock-chunks", "4")],
    );
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        1000
    );
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert_eq!(resp.header("x-mock-backend"), Some("m"));

    let resp = post_json(
        &format!("{}/v1/chat/completions", mock.url()),
        &json!({"model": "x", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-chunks", "5"), ("x-mock-chunk-delay-ms", "1")],
    );
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let events: Vec<&str> = resp.body.split("\n\n").filter(|e| !e.is_empty()).collect();
    // 5 content chunks, the finish chunk, the usage chunk, [DONE].
    assert_eq!(events.len(), 8, "{}", resp.body);
    assert!(events[6].contains("\"usage\""));
    assert_eq!(events[7], "data: [DONE]");
}

#[test]
fn status_latency_and_control_endpoints() {
    let mock = Mock::start("m");
    let url = format!("{}/v1/chat/completions", mock.url());
    let hi = json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_json(&url, &hi, &[("x-mock-status", "429")]);
    assert_eq!(resp.status, 429);
    // OpenAI's own shape: its type and code, never a bare status number.
    assert_eq!(resp.json()["error"]["type"], "requests");
    assert_eq!(resp.json()["error"]["code"], "rate_limit_exceeded");

    mock.control("/mock/fail/503");
    assert_eq!(post_json(&url, &hi, &[]).status, 503);
    mock.control("/mock/fail/0");
    assert_eq!(post_json(&url, &hi, &[]).status, 200);

    mock.control("/mock/health/500");
    assert_eq!(get(&format!("{}/health", mock.url())).0, 500);

    let started = std::time::Instant::now();
    post_json(
        &url,
        &json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-latency-ms", "200")],
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(200),
        "latency knob ignored"
    );

    let recorded = mock.requests();
    assert_eq!(recorded.len(), 5, "control calls are not recorded");
    assert_eq!(recorded[0]["headers"]["x-mock-status"], "429");
}

#[test]
fn models_and_embeddings() {
    let mock = Mock::start("m");
    let (status, body) = get(&format!("{}/v1/models", mock.url()));
    assert_eq!(status, 200);
    assert!(body.contains("mock-gpt"));
    let resp = post_json(
        &format!("{}/v1/embeddings", mock.url()),
        &json!({"model": "e", "input": "one"}),
        &[],
    );
    assert_eq!(resp.json()["data"].as_array().unwrap().len(), 1);
}
