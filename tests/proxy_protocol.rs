//! The PROXY protocol (`listen.proxy_protocol`), over the real binary: a
//! trusted load balancer's v1 or v2 header names the client for limits, the
//! access log and upstream; an untrusted peer's header is read and ignored;
//! a connection without a header or with a malformed one is closed before
//! HTTP; and the header comes before TLS on a TLS listener.

mod common;

use std::time::Duration;

use common::pki::LocalhostTls;
use common::*;

const CHAT: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;

fn routes(mock: &Mock) -> String {
    format!(
        "upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        pool_yaml("main", &[mock.url()], "")
    )
}

fn chat_request() -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{CHAT}",
        CHAT.len()
    )
    .into_bytes()
}

/// A v2 PROXY header for a TCP/IPv4 connection from `source`.
fn v2_header(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x11, 0, 12]);
    out.extend_from_slice(&source);
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&443u16.to_be_bytes());
    out
}

/// The access log's `client` of a connection from this machine (ip:port).
fn is_local(client: &serde_json::Value) -> bool {
    client.as_str().is_some_and(|c| c.starts_with("127.0.0.1:"))
}

fn exchange(gw: &Gateway, header: &[u8]) -> Response {
    let bytes = [header, &chat_request()].concat();
    Response::from_raw(&raw_exchange(
        gw.proxy_port,
        &bytes,
        Duration::from_secs(10),
    ))
}

#[test]
fn a_trusted_load_balancers_header_names_the_client() {
    // Unbuffered client reads (the default) and a read buffer: the header
    // is read through a buffer of its own either way, and what followed it
    // in the same packet (here the whole request) is put back.
    for read_buffer in ["", "  read_buffer_bytes: 16384\n"] {
        names_the_client(read_buffer);
    }
}

fn names_the_client(extra_listen: &str) {
    let mock = Mock::start("m");
    let gw = Gateway::start_with_listen(
        &format!("  proxy_protocol: true\n  trusted_proxies: [127.0.0.0/8]\n{extra_listen}"),
        &routes(&mock),
    );
    let v2 = exchange(&gw, &v2_header([198, 51, 100, 7], 50123));
    assert_eq!(v2.status, 200, "{}", v2.body);
    let v1 = exchange(&gw, b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 8080\r\n");
    assert_eq!(v1.status, 200, "{}", v1.body);
    let v1_unknown = exchange(&gw, b"PROXY UNKNOWN\r\n");
    assert_eq!(v1_unknown.status, 200, "{}", v1_unknown.body);

    let lines = gw.access_lines_at_least(3);
    assert_eq!(lines[0]["client"], "198.51.100.7:50123", "{}", lines[0]);
    assert_eq!(lines[1]["client"], "203.0.113.9:40000", "{}", lines[1]);
    // UNKNOWN: the load balancer itself stands as the client.
    assert!(is_local(&lines[2]["client"]), "{}", lines[2]);
    let sent = mock.requests();
    assert_eq!(sent[0]["headers"]["x-forwarded-for"], "198.51.100.7");
    assert_eq!(sent[1]["headers"]["x-forwarded-for"], "203.0.113.9");
}

#[test]
fn an_untrusted_peers_header_is_ignored() {
    let mock = Mock::start("m");
    let gw = Gateway::start_with_listen(
        "  proxy_protocol: true\n  trusted_proxies: [10.0.0.0/8]\n",
        &routes(&mock),
    );
    let answer = exchange(&gw, &v2_header([198, 51, 100, 7], 50123));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let lines = gw.access_lines_at_least(1);
    assert!(is_local(&lines[0]["client"]), "{}", lines[0]);
    assert_eq!(
        mock.requests()[0]["headers"]["x-forwarded-for"],
        "127.0.0.1"
    );
}

#[test]
fn a_missing_or_malformed_header_closes_the_connection() {
    let mock = Mock::start("m");
    let gw = Gateway::start_with_listen(
        "  proxy_protocol: true\n  trusted_proxies: [127.0.0.0/8]\n",
        &routes(&mock),
    );
    let cases: [&[u8]; 4] = [
        b"",                                              // no header: HTTP first
        b"PROXY TCP4 198.51.100.7 127.0.0.1 99999 1\r\n", // a port out of range
        b"PROXY TCP4 nonsense\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04", // addresses cut short
    ];
    for header in cases {
        let answer = exchange(&gw, header);
        assert_eq!(
            answer.status,
            0,
            "{:?} got an answer",
            String::from_utf8_lossy(header)
        );
    }
    // A header that never ends is cut at the header deadline.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
    std::io::Write::write_all(&mut slow, b"PROXY TCP4 ").unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(30)));
    assert_eq!(mock.api_requests(), 0);
    let metrics = gw.metrics();
    let invalid = metric_value(
        &metrics,
        r#"client_handshake_failures_total{reason="invalid",stage="proxy_protocol"}"#,
    );
    assert_eq!(invalid, Some(4.0), "{metrics}");
    let timeouts = metric_value(
        &metrics,
        r#"client_handshake_failures_total{reason="timeout",stage="proxy_protocol"}"#,
    );
    assert_eq!(timeouts, Some(1.0), "{metrics}");
    assert!(!gw.log().contains("ERROR"), "{}", gw.log());
}

#[test]
fn the_header_comes_before_tls() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let tls = LocalhostTls::new(dir.path(), "");
    let gw = Gateway::start_with_listen(
        &format!(
            "  proxy_protocol: true\n  trusted_proxies: [127.0.0.0/8]\n{}",
            tls.listen
        ),
        &routes(&mock),
    );
    // curl's --haproxy-protocol sends a v1 header, then the TLS handshake.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--haproxy-protocol", "--cacert"])
        .arg(&tls.ca_file)
        .args(["-H", "content-type: application/json", "-d", CHAT])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "https://localhost:{}/v1/chat/completions",
            tls.port
        ))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    // curl names its own end of the connection: the client is local.
    let lines = gw.access_lines_at_least(1);
    assert!(is_local(&lines[0]["client"]), "{}", lines[0]);
}
