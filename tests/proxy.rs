//! Proxying end to end: routing by path and model, alias rewrite, provider
//! keys, client credentials, bodies of every size, Anthropic and embeddings.

mod common;

use common::*;
use serde_json::json;

fn config(mock: &Mock) -> String {
    format!(
        "upstreams:\n{pool}\
         routes:\n\
         \x20 - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt, \"team-*\"]\n    \
         model_aliases: {{team-fast: mock-gpt-small}}\n    upstream: main\n\
         \x20 - name: messages\n    paths: [/v1/messages]\n    models: [\"claude-*\"]\n    upstream: anthropic\n\
         \x20 - name: embeddings\n    paths: [/v1/embeddings]\n    models: [\"*\"]\n    upstream: main\n",
        pool = pool_yaml("main", &[mock.url()], "")
            + &format!(
                "  anthropic:\n    backends:\n      - base_url: {}\n        provider: anthropic\n        api_key: anthropic-secret\n",
                mock.url()
            ),
    )
}

#[test]
fn chat_completion_is_proxied_with_provider_key_and_without_client_credentials() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    let resp = post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[
            ("authorization", "Bearer client-secret"),
            ("x-api-key", "client-secret-2"),
            ("x-request-id", "req-123"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-request-id"), Some("req-123"));
    let body = resp.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "mock-gpt");

    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0]["headers"];
    assert_eq!(headers["authorization"], "Bearer provider-secret-key");
    assert!(
        headers.get("x-api-key").is_none(),
        "client key leaked upstream"
    );
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["host"], mock.addr.to_string());
    assert_eq!(seen[0]["path"], "/v1/chat/completions");
}

#[test]
fn alias_is_rewritten_in_the_body_and_other_fields_kept() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    let resp = post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"messages": [{"role": "user", "content": "h\"i ü"}], "model": "team-fast", "temperature": 0.5}),
        &[],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let sent: serde_json::Value =
        serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "mock-gpt-small");
    assert_eq!(sent["temperature"], 0.5);
    assert_eq!(sent["messages"][0]["content"], "h\"i ü");
    // A glob without an alias passes the model through unchanged.
    let resp = chat(&gw, "team-other");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["model"], "team-other");
}

#[test]
fn bodies_larger_than_pingoras_retry_buffer_arrive_whole() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    for size in [64 * 1024 - 20, 64 * 1024 + 1, 200_000, 1_500_000] {
        let content = "y".repeat(size);
        let resp = post_json(
            &gw.url("/v1/chat/completions"),
            &json!({"messages": [{"role": "user", "content": content}], "model": "team-fast"}),
            &[],
        );
        assert_eq!(resp.status, 200, "size {size}: {}", resp.body);
        let last = mock.requests().pop().unwrap();
        let sent: serde_json::Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
        assert_eq!(sent["messages"][0]["content"].as_str().unwrap().len(), size);
        assert_eq!(sent["model"], "mock-gpt-small");
    }
}

#[test]
fn chunked_bodies_work_and_large_ones_need_a_length() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    let small = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
    let out = post_chunked(gw.proxy_port, "/v1/chat/completions", small);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    let big = format!(
        r#"{{"model":"mock-gpt","messages":[{{"content":"{}"}}]}}"#,
        "z".repeat(100_000)
    );
    let out = post_chunked(gw.proxy_port, "/v1/chat/completions", &big);
    assert!(out.starts_with("HTTP/1.1 411"), "{out}");
    assert!(out.contains("length_required"), "{out}");
}

#[test]
fn anthropic_messages_get_the_anthropic_key_and_version() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    let resp = post_json(
        &gw.url("/v1/messages"),
        &json!({"model": "claude-3-5-sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-api-key", "client-secret")],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["type"], "message");
    let headers = &mock.requests()[0]["headers"];
    assert_eq!(headers["x-api-key"], "anthropic-secret");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert!(headers.get("authorization").is_none());
}

#[test]
fn embeddings_route_accepts_any_model() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    let resp = post_json(
        &gw.url("/v1/embeddings"),
        &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        &[],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["data"].as_array().unwrap().len(), 2);
}

#[test]
fn models_are_listed_from_config() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    let resp = send("GET", &gw.url("/v1/models"), &[], None);
    assert_eq!(resp.status, 200);
    let ids: Vec<String> = resp.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["mock-gpt", "team-fast"]);
    assert_eq!(mock.api_requests(), 0, "models are answered by the gateway");
}

#[test]
fn base_url_path_prefix_is_kept_and_model_less_routes_stream_the_body() {
    let mock = Mock::start("a");
    let body = format!(
        "upstreams:\n  prefixed:\n    backends:\n      - base_url: {}/proxy/\n\
         routes:\n  - name: files\n    paths: [/v1/files]\n    upstream: prefixed\n",
        mock.url()
    );
    let gw = Gateway::start(&body);
    let resp = send(
        "POST",
        &gw.url("/v1/files?purpose=x"),
        &[],
        Some(b"not json at all"),
    );
    // The mock answers 404 for unknown paths: what matters is what it received.
    assert_eq!(resp.status, 404);
    let seen = mock.requests();
    assert_eq!(seen[0]["path"], "/proxy/v1/files?purpose=x");
    assert_eq!(seen[0]["body"], "not json at all");
}

#[test]
fn upstream_connections_are_reused() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&config(&mock));
    for _ in 0..10 {
        assert_eq!(chat(&gw, "mock-gpt").status, 200);
    }
    // Every request reached the mock; keep-alive shows as few upstream client
    // ports across them. (A connection goes back to the pool just after the
    // client has its answer, so on a loaded machine the next request may now
    // and then open a new one: most of them must not.)
    let requests = mock.requests();
    assert_eq!(requests.len(), 10);
    let ports: std::collections::HashSet<String> = requests
        .iter()
        .map(|r| r["peer"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(ports.len() <= 5, "connections were not reused: {ports:?}");
}
