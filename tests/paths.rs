//! The path the router judges is the path the upstream receives: a matrix
//! of dot segments in every encoding, double encoding, overlong UTF-8,
//! backslashes, repeated slashes and absolute-form targets, against every
//! kind of route (model-less without credentials, by model with them,
//! model-less behind a base URL prefix), sent raw over a socket.

mod common;

use std::time::Duration;

use common::*;

const KEY: &str = "sk-path-matrix-key";

fn gateway(mock: &Mock) -> Gateway {
    Gateway::start(&format!(
        "auth:\n  api_keys:\n    - {{id: k, key: {KEY}}}\n\
         upstreams:\n{}{}\
         routes:\n  - name: public\n    paths: [/public]\n    upstream: main\n    auth: [none]\n\
         \x20 - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n\
         \x20 - name: files\n    paths: [/v1/files]\n    upstream: prefixed\n",
        pool_yaml("main", &[mock.url()], ""),
        pool_yaml("prefixed", &[format!("{}/proxy", mock.url())], ""),
    ))
}

/// One raw request; returns the status.
fn send_raw(gw: &Gateway, target: &str, request_id: &str, with_key: bool) -> u16 {
    let body = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
    let auth = if with_key {
        format!("Authorization: Bearer {KEY}\r\n")
    } else {
        String::new()
    };
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: gw\r\nx-request-id: {request_id}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(gw.proxy_port, request.as_bytes(), Duration::from_secs(10));
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{target}: no HTTP answer: {answer:?}"))
}

/// What a target should become: the path the router judges, or a refusal.
fn expected(target: &str) -> Option<String> {
    // The normalization, spelled out for the forms this matrix generates.
    let origin = target.strip_prefix("http://gw").unwrap_or(target);
    let refused = [
        "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%25", "%c0", "%e0", "\\", "%00",
    ];
    if refused.iter().any(|r| origin.contains(r)) {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in origin.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

#[test]
fn the_path_judged_is_the_path_forwarded() {
    let mock = Mock::start("a");
    let gw = gateway(&mock);
    let traversals = [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "%252e%252e",
        "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae",
        "..%2f",
        "..%2F",
        "..%5c",
        "..\\",
        "%2f..",
        "",
    ];
    let mut cases = Vec::new();
    for prefix in ["/public", "/v1/files", "/v1/chat/completions"] {
        for traversal in traversals {
            for tail in ["/v1/chat/completions", "/x"] {
                cases.push(format!("{prefix}/{traversal}{tail}"));
                cases.push(format!("{prefix}//{traversal}/{tail}"));
            }
        }
        cases.push(format!("http://gw{prefix}/../v1/chat/completions"));
        cases.push(format!("{prefix}/.."));
    }
    let mut checked = 0;
    for (i, target) in cases.iter().enumerate() {
        for with_key in [false, true] {
            let id = format!("case-{i}-{with_key}");
            let status = send_raw(&gw, target, &id, with_key);
            let seen: Vec<String> = mock
                .requests()
                .iter()
                .filter(|r| r["headers"]["x-request-id"] == id.as_str())
                .map(|r| r["path"].as_str().unwrap_or_default().to_string())
                .collect();
            let Some(path) = expected(target) else {
                assert_eq!(status, 400, "{target} must be refused");
                assert!(seen.is_empty(), "{target} reached the upstream: {seen:?}");
                continue;
            };
            // Which route the normalized path reaches, and what it needs.
            let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
            let (route_prefix, needs_key, upstream_prefix) = if under("/public") {
                ("/public", false, "")
            } else if under("/v1/files") {
                ("/v1/files", true, "/proxy")
            } else if under("/v1/chat/completions") {
                ("/v1/chat/completions", true, "")
            } else {
                assert_eq!(status, 404, "{target} -> {path}: no route serves it");
                assert!(seen.is_empty(), "{target}: {seen:?}");
                continue;
            };
            if needs_key && !with_key {
                assert_eq!(status, 401, "{target} -> {path} needs a key");
                assert!(
                    seen.is_empty(),
                    "{target} reached the upstream unauthenticated: {seen:?}"
                );
                continue;
            }
            assert!(path.starts_with(route_prefix));
            assert_eq!(
                seen,
                vec![format!("{upstream_prefix}{path}")],
                "{target}: the upstream must see the judged path"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "too few forwarded cases: {checked}");
    // The access log records the judged path, never the raw one (a refused
    // target is logged as it came, with its 400).
    assert!(eventually(Duration::from_secs(5), || gw
        .access_lines()
        .len()
        >= cases.len() * 2));
    for line in gw.access_lines().iter().filter(|l| l["status"] != 400) {
        let path = line["path"].as_str().unwrap_or_default();
        assert!(
            !path.split('/').any(|s| s == ".." || s == ".") && !path.contains("//"),
            "{line}"
        );
    }
}

#[test]
fn the_public_route_cannot_reach_the_authenticated_one() {
    // The example from the issue: before normalization this reached the
    // upstream without credentials.
    let mock = Mock::start("a");
    let gw = gateway(&mock);
    for target in [
        "/public/../v1/chat/completions",
        "/public//../v1/chat/completions",
        "/public/%2e%2e/v1/chat/completions",
        "/public/..%2fv1/chat/completions",
    ] {
        let status = send_raw(&gw, target, "x", false);
        assert!(matches!(status, 400 | 401), "{target}: {status}");
    }
    assert_eq!(mock.api_requests(), 0);
}
