//! The client's address behind a load balancer, over the real binary: only a
//! peer in `listen.trusted_proxies` may name the client in
//! `X-Forwarded-For` (the rightmost hop that is not itself trusted), and that
//! address is what `client_ip` limits count and the access log shows. An
//! untrusted peer's header is ignored everywhere. Upstream, the gateway adds
//! the peer to `X-Forwarded-For` and sets `X-Forwarded-Proto`.

mod common;

use common::*;
use serde_json::json;

fn gateway(mock: &Mock, trusted: &str) -> Gateway {
    Gateway::start_with_listen(
        trusted,
        &format!(
            "limits:\n  rules:\n    - {{name: per-client, key: [client_ip], counts: requests, limit: 2, window: minute}}\n  global_rules: [per-client]\n\
             upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
    )
}

fn ask(gw: &Gateway, forwarded_for: &str) -> Response {
    let mut headers = vec![("x-forwarded-proto", "https")];
    if !forwarded_for.is_empty() {
        headers.push(("x-forwarded-for", forwarded_for));
    }
    post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &headers,
    )
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_is_counted_and_logged() {
    let mock = Mock::start("m");
    // The test connects from 127.0.0.1: the load balancer. 10.0.0.0/8 is an
    // inner proxy tier.
    let gw = gateway(&mock, "  trusted_proxies: [127.0.0.0/8, 10.0.0.0/8]\n");
    // The client claims 1.2.3.4 to the first proxy, which appends the
    // client's real address; the inner proxy appends the first one.
    let chain = "1.2.3.4, 203.0.113.7, 10.1.1.1";
    assert_eq!(ask(&gw, chain).status, 200);
    assert_eq!(ask(&gw, chain).status, 200);
    let refused = ask(&gw, chain);
    refused.assert_error(429, "rate_limit_exceeded");
    // Another client behind the same proxies has its own count.
    assert_eq!(ask(&gw, "198.51.100.9, 10.1.1.1").status, 200);

    let lines = gw.access_lines_at_least(4);
    assert_eq!(lines[0]["client"], "203.0.113.7", "{}", lines[0]);
    assert_eq!(lines[3]["client"], "198.51.100.9", "{}", lines[3]);
    // Upstream: the chain plus the peer; the trusted proxy's proto stands.
    let sent = &mock.requests()[0]["headers"];
    assert_eq!(
        sent["x-forwarded-for"],
        format!("{chain}, 127.0.0.1"),
        "{sent}"
    );
    assert_eq!(sent["x-forwarded-proto"], "https", "{sent}");
}

#[test]
fn an_untrusted_peers_forwarded_for_is_ignored() {
    let mock = Mock::start("m");
    // Only some other network is trusted: this peer is not.
    let gw = gateway(&mock, "  trusted_proxies: [10.0.0.0/8]\n");
    // Each request claims another address: all count as 127.0.0.1.
    assert_eq!(ask(&gw, "203.0.113.1").status, 200);
    assert_eq!(ask(&gw, "203.0.113.2").status, 200);
    ask(&gw, "203.0.113.3").assert_error(429, "rate_limit_exceeded");

    let lines = gw.access_lines_at_least(3);
    assert!(
        lines[0]["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1"),
        "{}",
        lines[0]
    );
    // The spoofed chain does not reach the upstream, nor the spoofed proto.
    let sent = &mock.requests()[0]["headers"];
    assert_eq!(sent["x-forwarded-for"], "127.0.0.1", "{sent}");
    assert_eq!(sent["x-forwarded-proto"], "http", "{sent}");
}
