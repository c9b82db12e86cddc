//! The admin service and the proxy's local endpoints, and the access log.

mod common;

use common::*;

fn start() -> (Mock, Gateway) {
    let mock = Mock::start("a");
    let gw = chat_gateway(&[&mock], "", "mock-gpt", "");
    (mock, gw)
}

fn assert_health(body: &str) {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["status", "timestamp", "uptime", "version"]);
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime"].is_u64());
    // RFC 3339 UTC, whole seconds: 2026-11-26T14:43:33Z
    let ts = v["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), 20, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
}

#[test]
fn health_on_both_ports() {
    let (_mock, gw) = start();
    for url in [gw.admin_url("/health"), gw.url("/health")] {
        let resp = send("GET", &url, &[], None);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_health(&resp.body);
    }
}

#[test]
fn ready_when_every_route_has_a_backend() {
    let (_mock, gw) = start();
    for url in [gw.admin_url("/ready"), gw.url("/ready")] {
        let (status, body) = get(&url);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, r#"{"status":"ready","reasons":[]}"#);
    }
}

#[test]
fn metrics_in_prometheus_format() {
    let (_mock, gw) = start();
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    assert_eq!(chat(&gw, "unknown").status, 404);
    // Requests are counted in the logging phase, just after the answer.
    let counted = r#"http_requests_total{method="POST",route="unmatched",status="404"} 1"#;
    assert!(eventually(std::time::Duration::from_secs(5), || gw
        .metrics()
        .contains(counted)));
    let resp = send("GET", &gw.admin_url("/metrics"), &[], None);
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.body;
    assert!(
        text.contains(r#"http_requests_total{method="POST",route="chat",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{method="POST",route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{route=\"chat\""),
        "{text}"
    );
    assert!(
        text.contains("upstream_requests_total{backend=\"main/"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE auth_failures_total counter"),
        "{text}"
    );
    assert!(
        text.contains(r#"auth_failures_total{reason="expired"} 0"#),
        "{text}"
    );
    // The admin port is not the proxy, and without `admin.token` every path
    // beyond the probes and metrics is closed (tests/budgets.rs has the
    // token's side).
    let resp = send("GET", &gw.admin_url("/v1/models"), &[], None);
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"]["code"], "invalid_admin_token");
}

#[test]
fn access_log_has_one_line_per_request_and_no_credentials() {
    let (_mock, gw) = start();
    let resp = post_json(
        &gw.url("/v1/chat/completions"),
        &serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[
            ("authorization", "Bearer client-secret-abc"),
            ("x-request-id", "log-test-1"),
        ],
    );
    assert_eq!(resp.status, 200);
    // The line is written in the logging phase, just after the response.
    let find = || {
        gw.access_lines()
            .into_iter()
            .find(|l| l["request_id"] == "log-test-1")
    };
    assert!(eventually(std::time::Duration::from_secs(5), || find().is_some()));
    let line = find().expect("an access line for the request");
    for field in [
        "time",
        "request_id",
        "client",
        "method",
        "path",
        "route",
        "model",
        "upstream",
        "status",
        "latency_ms",
        "ttfb_ms",
        "bytes_in",
        "bytes_out",
        "attempts",
    ] {
        assert!(line.get(field).is_some(), "field {field} missing: {line}");
    }
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "chat");
    assert_eq!(line["model"], "mock-gpt");
    // Milliseconds with three decimals at most, not float noise.
    for field in ["latency_ms", "ttfb_ms"] {
        let text = line[field].to_string();
        let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "{field} = {text}");
    }
    let log = gw.log();
    assert!(
        !log.contains("client-secret-abc"),
        "client credential in the log"
    );
    assert!(
        !log.contains("provider-secret-key"),
        "provider key in the log"
    );
}

#[test]
fn access_log_can_be_text_or_off() {
    let mock = Mock::start("a");
    let routes = "routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n";
    let pool = pool_yaml("main", &[mock.url()], "");
    let gw = Gateway::start(&format!(
        "access_log: {{format: text}}\nupstreams:\n{pool}{routes}"
    ));
    chat(&gw, "mock-gpt");
    assert!(eventually(std::time::Duration::from_secs(5), || gw
        .log()
        .contains("route=chat model=mock-gpt")));
    let gw = Gateway::start(&format!(
        "access_log: {{enabled: false}}\nupstreams:\n{pool}{routes}"
    ));
    chat(&gw, "mock-gpt");
    assert!(!gw.log().contains("route=chat") && gw.access_lines().is_empty());
}

#[test]
fn metrics_on_the_proxy_port_unless_turned_off() {
    let (_mock, gw) = start();
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    let resp = send("GET", &gw.url("/metrics"), &[], None);
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(resp.body.contains("http_requests_total{"), "{}", resp.body);

    let mock = Mock::start("b");
    let off = Gateway::start_with_listen(
        "  metrics_on_proxy: false\n",
        &format!(
            "upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
    );
    send("GET", &off.url("/metrics"), &[], None).assert_error(404, "unknown_url");
    assert_eq!(get(&off.admin_url("/metrics")).0, 200);
}
