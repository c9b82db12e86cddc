//! Bad input: each fault gets its status and an OpenAI-style JSON error with
//! a request id, and nothing reaches the upstream.

mod common;

use common::*;

fn start() -> (Mock, Gateway) {
    let mock = Mock::start("a");
    let gw = chat_gateway(
        &[&mock],
        "request:\n  max_body_bytes: 1000\n",
        "mock-gpt",
        "",
    );
    (mock, gw)
}

fn post_raw(gw: &Gateway, body: &[u8]) -> Response {
    send(
        "POST",
        &gw.url("/v1/chat/completions"),
        &[("content-type", "application/json")],
        Some(body),
    )
}

#[test]
fn malformed_json_is_400() {
    let (mock, gw) = start();
    post_raw(&gw, b"{\"model\": ").assert_error(400, "invalid_json");
    post_raw(&gw, b"[1,2,3]").assert_error(400, "invalid_json");
    post_raw(&gw, b"").assert_error(400, "invalid_json");
    post_raw(&gw, b"{\"model\":\"mock-gpt\",\"x\":\"\xff\xfe\"}").assert_error(400, "invalid_json");
    assert_eq!(mock.api_requests(), 0);
}

#[test]
fn missing_or_non_string_model_is_400() {
    let (mock, gw) = start();
    post_raw(&gw, br#"{"messages":[{"role":"user","content":"hi"}]}"#)
        .assert_error(400, "missing_model");
    post_raw(&gw, br#"{"model":null}"#).assert_error(400, "missing_model");
    post_raw(&gw, br#"{"model":7}"#).assert_error(400, "invalid_model");
    post_raw(&gw, br#"{"model":["mock-gpt"]}"#).assert_error(400, "invalid_model");
    assert_eq!(mock.api_requests(), 0);
}

#[test]
fn a_one_mib_model_name_is_400() {
    let mock = Mock::start("a");
    // The default body limit (4 MiB) lets the body in; the model check refuses it.
    let gw = chat_gateway(&[&mock], "", "mock-gpt", "");
    let huge_model = format!(r#"{{"model":"{}"}}"#, "m".repeat(1024 * 1024));
    post_raw(&gw, huge_model.as_bytes()).assert_error(400, "invalid_model");
    assert_eq!(mock.api_requests(), 0);
}

#[test]
fn unknown_model_is_404() {
    let (mock, gw) = start();
    let resp = post_raw(&gw, br#"{"model":"gpt-5"}"#);
    resp.assert_error(404, "model_not_found");
    assert!(resp.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-5"));
    assert_eq!(mock.api_requests(), 0);
}

#[test]
fn body_over_the_limit_is_413_by_length_and_by_reading() {
    let (mock, gw) = start();
    let big = format!(r#"{{"model":"mock-gpt","pad":"{}"}}"#, "x".repeat(2000));
    post_raw(&gw, big.as_bytes()).assert_error(413, "request_too_large");
    // Chunked: no length to check first, so the limit applies while reading.
    let out = post_chunked(gw.proxy_port, "/v1/chat/completions", &big);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("request_too_large"), "{out}");
    assert_eq!(mock.api_requests(), 0);
}

#[test]
fn unknown_path_is_404() {
    let (mock, gw) = start();
    send("GET", &gw.url("/v2/nothing"), &[], None).assert_error(404, "unknown_url");
    // A known path with a bad body is a 400, not a 404.
    post_raw(&gw, b"{}").assert_error(400, "missing_model");
    send("POST", &gw.url("/v1/chat"), &[], Some(b"{}")).assert_error(404, "unknown_url");
    assert_eq!(mock.api_requests(), 0);
}

#[test]
fn garbage_on_the_socket_does_not_hurt_the_worker() {
    let (_mock, gw) = start();
    let out = raw_exchange(
        gw.proxy_port,
        b"\x00\x01\x02 NOT HTTP\r\n\r\n",
        std::time::Duration::from_secs(5),
    );
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    // The gateway still serves.
    let resp = post_raw(
        &gw,
        br#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[test]
fn requests_pingora_refuses_get_the_gateway_error_shape() {
    let (mock, gw) = start();
    for (raw, status, code) in [
        (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Header: x\r\nContent-Length: 2\r\n\r\n{}",
            400,
            "malformed_request",
        ),
        (
            "GET /v1/models HTTP/1.1\r\nHost: x\r\n\x01\x02\r\n\r\n",
            400,
            "malformed_request",
        ),
        ("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, "method_not_allowed"),
    ] {
        let answer = raw_exchange(gw.proxy_port, raw.as_bytes(), std::time::Duration::from_secs(5));
        let r = Response::from_raw(&answer);
        assert_eq!(r.status, status, "{raw:?}: {answer}");
        assert!(
            r.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{answer}"
        );
        assert!(r.header("x-request-id").is_some(), "{answer}");
        assert_eq!(r.header("connection"), Some("close"), "{answer}");
        assert!(
            !r.header("server").is_some_and(|v| v.starts_with("pingora")),
            "{answer}"
        );
        let json: serde_json::Value = serde_json::from_str(&r.body).expect(&answer);
        assert_eq!(json["error"]["code"], code, "{answer}");
    }
    assert_eq!(mock.api_requests(), 0);
    assert_eq!(
        metric_value(&gw.metrics(), "malformed_requests_total"),
        Some(3.0)
    );
}

#[test]
fn a_client_leaving_mid_stream_is_counted_and_logged_quietly() {
    let (mock, gw) = start();
    for i in 0..5 {
        let reader = open_held_stream(gw.proxy_port, &format!("leave-{i}"), "");
        drop(reader);
    }
    for i in 0..5 {
        mock.control(&format!("/mock/release/leave-{i}"));
    }
    assert!(
        eventually(std::time::Duration::from_secs(10), || metric_value(
            &gw.metrics(),
            "client_disconnects_total"
        ) == Some(5.0)),
        "{}",
        gw.metrics()
    );
    // One upstream attempt each: a client leaving is never retried.
    assert_eq!(mock.api_requests(), 5, "{:?}", mock.requests());
    let log = gw.log();
    assert!(
        !log.lines()
            .any(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && l.contains("Downstream")),
        "{log}"
    );
}
