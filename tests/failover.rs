//! Failover and load balancing over real mock processes: refused connections,
//! 5xx and 429 retries, passive ejection, active health checks, and the
//! 502 / 503 / 504 answers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

fn route(retry: &str) -> String {
    format!(
        "routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n{retry}"
    )
}

fn backends_hit(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let mut hits = HashMap::new();
    for _ in 0..n {
        let resp = chat(gw, "mock-gpt");
        assert_eq!(resp.status, 200, "{}", resp.body);
        *hits
            .entry(resp.header("x-mock-backend").unwrap().to_string())
            .or_default() += 1;
    }
    hits
}

fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[test]
fn refused_connection_fails_over_to_the_next_backend() {
    let good = Mock::start("good");
    let body = pool_yaml("main", &[closed_port_url(), good.url()], "") + &route("");
    let gw = Gateway::start(&format!("upstreams:\n{body}"));
    let hits = backends_hit(&gw, 6);
    assert_eq!(hits.get("good"), Some(&6));
    assert!(gw.metrics().contains("status=\"connect_error\""));
}

#[test]
fn server_errors_are_retried_on_another_backend_when_the_route_says_so() {
    let bad = Mock::start("bad");
    let good = Mock::start("good");
    bad.control("/mock/fail/503");
    let retry = "    retry:\n      attempts: 2\n      on: [connect_error, 5xx, 429]\n";
    let pool = pool_yaml(
        "main",
        &[bad.url(), good.url()],
        "    passive_health: {consecutive_failures: 100}\n",
    );
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route(retry)));
    let hits = backends_hit(&gw, 4);
    assert_eq!(hits.get("good"), Some(&4));
    assert!(bad.api_requests() >= 1, "the bad backend was tried");

    // 429 the same way.
    bad.control("/mock/fail/429");
    let hits = backends_hit(&gw, 4);
    assert_eq!(hits.get("good"), Some(&4));
    let metrics = gw.metrics();
    assert!(metrics.contains("status=\"503\""), "{metrics}");
    assert!(metrics.contains("status=\"429\""), "{metrics}");
}

#[test]
fn without_a_retry_rule_the_upstream_error_reaches_the_client() {
    let bad = Mock::start("bad");
    bad.control("/mock/fail/500");
    let pool = pool_yaml("main", &[bad.url()], "");
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    let resp = chat(&gw, "mock-gpt");
    assert_eq!(resp.status, 500);
    assert_eq!(resp.json()["error"]["type"], "server_error");
    assert!(resp.header("x-request-id").is_some());
}

#[test]
fn every_attempt_failing_is_502_after_both_backends_were_tried() {
    let urls = [closed_port_url(), closed_port_url()];
    let pool = pool_yaml("main", &urls, "");
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    chat(&gw, "mock-gpt").assert_error(502, "upstream_error");
    // One refused attempt at each backend, and the access line says two.
    assert!(eventually(Duration::from_secs(5), || gw
        .access_lines()
        .len()
        == 1));
    assert_eq!(gw.access_lines()[0]["attempts"], 2);
    let metrics = gw.metrics();
    for url in &urls {
        let backend = url.trim_start_matches("http://");
        let line = format!(
            "upstream_requests_total{{backend=\"main/{backend}\",status=\"connect_error\",upstream=\"main\"}}"
        );
        assert_eq!(
            metric_value(&metrics, &line),
            Some(1.0),
            "{line} in {metrics}"
        );
    }
}

#[test]
fn no_healthy_backend_is_503_and_not_ready() {
    let mock = Mock::start("a");
    mock.control("/mock/health/503");
    let pool = pool_yaml(
        "main",
        &[mock.url()],
        "    health_check: {path: /health, interval: 100ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 2}\n",
    );
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    assert!(
        eventually(Duration::from_secs(10), || get(&gw.admin_url("/ready")).0
            == 503),
        "readiness never dropped"
    );
    let (_, body) = get(&gw.admin_url("/ready"));
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        ready["reasons"][0].as_str().unwrap().contains("chat"),
        "{body}"
    );
    chat(&gw, "mock-gpt").assert_error(503, "no_healthy_upstream");

    // And back: the health check brings the backend in again.
    mock.control("/mock/health/200");
    assert!(
        eventually(Duration::from_secs(10), || get(&gw.url("/ready")).0 == 200),
        "readiness never came back"
    );
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
}

#[test]
fn active_health_checks_take_a_backend_out_and_back() {
    let a = Mock::start("a");
    let b = Mock::start("b");
    let pool = pool_yaml(
        "main",
        &[a.url(), b.url()],
        "    health_check: {path: /health, interval: 100ms, timeout: 1s, unhealthy_threshold: 1, healthy_threshold: 1}\n",
    );
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    a.control("/mock/health/500");
    assert!(eventually(Duration::from_secs(10), || {
        !backends_hit(&gw, 4).contains_key("a")
    }));
    a.control("/mock/health/200");
    assert!(eventually(Duration::from_secs(10), || {
        backends_hit(&gw, 4).contains_key("a")
    }));
}

#[test]
fn passive_ejection_after_consecutive_failures() {
    let bad = Mock::start("bad");
    let good = Mock::start("good");
    bad.control("/mock/fail/502");
    let pool = pool_yaml(
        "main",
        &[bad.url(), good.url()],
        "    passive_health: {consecutive_failures: 2, cooldown: 60s}\n",
    );
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    // Round robin sends every other request to the bad one until it is ejected.
    for _ in 0..4 {
        chat(&gw, "mock-gpt");
    }
    let before = bad.api_requests();
    assert_eq!(before, 2, "ejected after exactly two failures");
    let hits = backends_hit(&gw, 6);
    assert_eq!(hits.get("good"), Some(&6));
    assert_eq!(
        bad.api_requests(),
        before,
        "an ejected backend gets nothing"
    );
}

#[test]
fn upstream_timeout_is_504() {
    let slow = Mock::start("slow");
    let pool = pool_yaml("main", &[slow.url()], "    timeouts: {read: 300ms}\n");
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    let resp = post_json(
        &gw.url("/v1/chat/completions"),
        &serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-latency-ms", "3000")],
    );
    resp.assert_error(504, "upstream_timeout");
    assert!(gw.metrics().contains("status=\"timeout\""));
}

#[test]
fn round_robin_spreads_evenly() {
    let a = Mock::start("a");
    let b = Mock::start("b");
    let pool = pool_yaml("main", &[a.url(), b.url()], "");
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    let hits = backends_hit(&gw, 10);
    assert_eq!((hits["a"], hits["b"]), (5, 5));
}

#[test]
fn weighted_follows_the_weights() {
    let a = Mock::start("a");
    let b = Mock::start("b");
    let body = format!(
        "upstreams:\n  main:\n    strategy: weighted\n    backends:\n      - base_url: {}\n        weight: 3\n      - base_url: {}\n        weight: 1\n{}",
        a.url(),
        b.url(),
        route("")
    );
    let gw = Gateway::start(&body);
    let hits = backends_hit(&gw, 12);
    assert_eq!((hits["a"], hits["b"]), (9, 3));
}

#[test]
fn least_requests_avoids_the_busy_backend() {
    use std::io::{BufRead, BufReader, Write};
    let a = Mock::start("a");
    let b = Mock::start("b");
    let body = format!(
        "upstreams:\n  main:\n    strategy: least_requests\n    backends:\n      - base_url: {}\n      - base_url: {}\n{}",
        a.url(),
        b.url(),
        route("")
    );
    let gw = Gateway::start(&body);
    // Hold one stream open on whichever backend takes it.
    let mut held = std::net::TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
    let req_body =
        r#"{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        held,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-hold: busy\r\nContent-Length: {}\r\n\r\n{req_body}",
        req_body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(held.try_clone().unwrap());
    let mut busy = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(name) = line.strip_prefix("x-mock-backend: ") {
            busy = name.trim().to_string();
        }
        if line == "\r\n" {
            break;
        }
    }
    let hits = backends_hit(&gw, 6);
    assert!(
        !hits.contains_key(&busy),
        "busy backend {busy} got requests: {hits:?}"
    );
    a.control("/mock/release/busy");
    b.control("/mock/release/busy");
}

#[test]
fn a_pool_whose_every_backend_is_ejected_still_routes() {
    let mock = Mock::start("only");
    mock.control("/mock/fail/502");
    let pool = pool_yaml(
        "main",
        &[mock.url()],
        "    passive_health: {consecutive_failures: 1, cooldown: 60s}\n",
    );
    let gw = Gateway::start(&format!("upstreams:\n{pool}{}", route("")));
    for _ in 0..3 {
        assert_eq!(chat(&gw, "mock-gpt").status, 502);
    }
    assert_eq!(
        mock.api_requests(),
        3,
        "an ejected lone backend keeps getting tried"
    );
    // Recovery is immediate instead of waiting out the cooldown.
    mock.control("/mock/fail/0");
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    assert_eq!(get(&gw.admin_url("/ready")).0, 200);
}
