//! Secrets never reach logs, metrics or error bodies: a full run at debug log
//! level with every kind of credential, then a grep for each secret.

mod common;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const CLIENT_KEY: &str = "sk-client-secret-4c1d";
const PROVIDER_KEY: &str = "sk-provider-secret-77aa";
const JWT_SECRET: &str = "jwt-hmac-secret-9f3e-long-enough";

#[test]
fn no_secret_in_debug_logs_metrics_or_error_bodies() {
    let mock = Mock::start("a");
    let config = format!(
        "auth:\n  api_keys:\n    - {{id: the-key, key: \"{CLIENT_KEY}\"}}\n  jwt:\n    keys:\n      - {{algorithms: [HS256], secret: \"${{JWT_SECRET}}\"}}\n\
         upstreams:\n  main:\n    backends:\n      - base_url: {}\n        api_key: \"${{PROVIDER_KEY}}\"\n        headers: {{x-extra: \"${{PROVIDER_KEY}}\"}}\n\
         routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        mock.url()
    );
    // Debug logging for everything, Pingora included.
    let gw = Gateway::start_with_env(
        &config,
        &[
            ("PROVIDER_KEY", PROVIDER_KEY),
            ("JWT_SECRET", JWT_SECRET),
            ("RUST_LOG", "debug"),
        ],
    );
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "exp": jsonwebtoken::get_current_timestamp() + 300}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let url = gw.url("/v1/chat/completions");
    let body = json!({"model": "mock-gpt", "messages": []});
    let mut error_bodies = String::new();
    for headers in [
        vec![("authorization", format!("Bearer {CLIENT_KEY}"))],
        vec![("x-api-key", CLIENT_KEY.to_string())],
        vec![("authorization", format!("Bearer {token}"))],
        vec![("authorization", format!("Bearer {CLIENT_KEY}x"))],
        vec![("authorization", format!("Bearer {token}x"))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = post_json(&url, &body, &headers);
        if resp.status != 200 {
            error_bodies.push_str(&resp.body);
        }
        let stream = post_json(
            &url,
            &json!({"model": "mock-gpt", "stream": true}),
            &headers,
        );
        error_bodies.push_str(&stream.body);
    }
    // The upstream did get the provider key: the test would be empty otherwise.
    assert!(mock
        .requests()
        .iter()
        .any(|r| r["headers"]["authorization"] == format!("Bearer {PROVIDER_KEY}")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = gw.log();
    assert!(log.lines().count() > 50, "debug logging was not on");
    // Pingora prints whole request headers at debug level: they are in the log,
    // with the credentials masked.
    assert!(log.contains("Sending header to upstream"), "{log}");
    let metrics = gw.metrics();
    for (name, secret) in [
        ("client key", CLIENT_KEY),
        ("provider key", PROVIDER_KEY),
        ("JWT secret", JWT_SECRET),
        ("JWT", token.as_str()),
    ] {
        for (place, text) in [
            ("log", &log),
            ("metrics", &metrics),
            ("error bodies", &error_bodies),
        ] {
            if let Some(at) = text.find(secret) {
                let start = at.saturating_sub(200);
                panic!(
                    "{name} found in {place}: ...{}...",
                    &text[start..(at + secret.len() + 50).min(text.len())]
                );
            }
        }
    }
}
