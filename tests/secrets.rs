//! Secrets never reach logs, metrics or error bodies: a full run at debug log
//! level with every kind of credential, then a grep for each secret.

mod common;

use std::time::Duration;

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
    let body = json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
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
    std::thread::sleep(Duration::from_millis(300));
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

/// The forms a secret could be printed in: as is, percent-encoded, with
/// Rust's escapes, and in base64.
fn printed_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let percent: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        secret.to_string(),
        percent,
        secret.escape_debug().to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

#[test]
fn no_credential_in_trace_logs_through_the_hostile_set() {
    const UNKNOWN_KEY: &str = "sk-unknown-client-key-9d2e";
    const REDIS_PASSWORD: &str = "redis-pass-7c1b-secret";
    const HEADER_SECRET: &str = "hdr-secret-55ab-value";
    let mock = Mock::start("a");
    let redis = Redis::start();
    let config = format!(
        "auth:\n  api_keys:\n    - {{id: the-key, key: \"${{CLIENT_KEY}}\"}}\n  jwt:\n    keys:\n      - {{algorithms: [HS256], secret: \"${{JWT_SECRET}}\"}}\n\
         limits:\n  redis: {{url: \"redis://:${{REDIS_PASSWORD}}@127.0.0.1:{}\"}}\n  global_rules: [per-key]\n  rules:\n    - {{name: per-key, key: [api_key], counts: requests, limit: 1000, window: minute}}\n\
         upstreams:\n  main:\n    backends:\n      - base_url: {}\n        api_key: \"${{PROVIDER_KEY}}\"\n        headers: {{x-extra: \"${{HEADER_SECRET}}\"}}\n\
         routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        redis.port,
        mock.url()
    );
    let gw = Gateway::start_with_env(
        &config,
        &[
            ("CLIENT_KEY", CLIENT_KEY),
            ("PROVIDER_KEY", PROVIDER_KEY),
            ("JWT_SECRET", JWT_SECRET),
            ("REDIS_PASSWORD", REDIS_PASSWORD),
            ("HEADER_SECRET", HEADER_SECRET),
            ("RUST_LOG", "trace"),
        ],
    );
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "exp": jsonwebtoken::get_current_timestamp() + 300}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let body = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
    let n = body.len();
    let credentials = [
        format!("Authorization: Bearer {CLIENT_KEY}"),
        format!("Authorization: Bearer {UNKNOWN_KEY}"),
        format!("x-api-key: {CLIENT_KEY}"),
        format!("api-key: {UNKNOWN_KEY}"),
        format!("Authorization: Bearer {token}"),
        format!("Authorization: Basic {}", {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("u:{UNKNOWN_KEY}"))
        }),
    ];
    for credential in &credentials {
        // Valid requests, a stream, and the hostile set, each carrying it.
        let requests = [
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{credential}\r\nContent-Length: {n}\r\n\r\n{body}"),
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{credential}\r\nContent-Length: 78\r\n\r\n{{\"model\":\"mock-gpt\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"),
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{credential}\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{body}\r\n0\r\n\r\n"),
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{credential}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{body}\r\n0\r\n\r\n"),
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{credential}\r\nX-Folded: a\r\n  b\r\nContent-Length: {n}\r\n\r\n{body}"),
            // Header syntax Pingora itself refuses: it prints the raw buffer.
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{credential}\r\nBad Header: x\r\nContent-Length: {n}\r\n\r\n{body}"),
            format!("POST /v1/chat/completions HTTP/1.1\r\n{credential}\r\nHost: x\r\n\x01\r\n\r\n"),
            format!("POST /public/%2e%2e/v1/chat/completions?key={UNKNOWN_KEY} HTTP/1.1\r\nHost: x\r\n{credential}\r\nContent-Length: {n}\r\n\r\n{body}"),
            format!("GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{credential}\r\nContent-Length: 3\r\n\r\nnot"),
        ];
        for request in &requests {
            let request = request.replacen("Host: x\r\n", "Host: x\r\nConnection: close\r\n", 1);
            raw_exchange(gw.proxy_port, request.as_bytes(), Duration::from_secs(5));
        }
    }
    // The upstream did get the provider key: the test would be empty otherwise.
    assert!(mock
        .requests()
        .iter()
        .any(|r| r["headers"]["authorization"] == format!("Bearer {PROVIDER_KEY}")));
    std::thread::sleep(Duration::from_millis(500));
    let log = gw.log();
    assert!(log.contains(" TRACE "), "trace logging was not on");
    assert!(
        log.contains("InvalidHTTPHeader"),
        "no header Pingora refused was logged"
    );
    let metrics = gw.metrics();
    for (name, secret) in [
        ("configured client key", CLIENT_KEY),
        ("unknown client key", UNKNOWN_KEY),
        ("provider key", PROVIDER_KEY),
        ("JWT secret", JWT_SECRET),
        ("JWT", token.as_str()),
        ("Redis password", REDIS_PASSWORD),
        ("header secret", HEADER_SECRET),
    ] {
        for form in printed_forms(secret) {
            for (place, text) in [("log", &log), ("metrics", &metrics)] {
                if let Some(at) = text.find(&form) {
                    let start = at.saturating_sub(150);
                    panic!(
                        "{name} ({form}) found in the {place}: ...{}...",
                        &text[start..(at + form.len() + 50).min(text.len())]
                    );
                }
            }
        }
    }
}
