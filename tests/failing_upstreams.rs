//! Upstreams that misbehave below HTTP: refused connections, garbage, a huge
//! error body, a reset in the middle of an answer, a slow drip, a hang before
//! the headers and in the middle of a stream. Each gives the client a clear
//! outcome, never a hang past the configured timeouts, and is counted.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::*;

#[derive(Clone, Copy)]
enum Misbehaviour {
    Garbage,
    HugeError,
    ResetMidBody,
    SlowDrip,
    HangBeforeHeaders,
    HangMidStream,
}

/// A raw TCP upstream that answers every connection the same bad way.
fn bad_upstream(how: Misbehaviour) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                read_request(&mut stream);
                let _ = match how {
                    Misbehaviour::Garbage => stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02garbage\r\n\r\n"),
                    Misbehaviour::HugeError => {
                        let body = vec![b'e'; 10 * 1024 * 1024];
                        let head = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n", body.len());
                        stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body))
                    }
                    Misbehaviour::ResetMidBody => stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":"),
                    Misbehaviour::SlowDrip => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
                        loop {
                            if stream.write_all(b"9\r\ndata: x\n\n\r\n").is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Ok(())
                    }
                    Misbehaviour::HangBeforeHeaders => {
                        std::thread::sleep(Duration::from_secs(60));
                        Ok(())
                    }
                    Misbehaviour::HangMidStream => {
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: x\n\n\r\n");
                        std::thread::sleep(Duration::from_secs(60));
                        Ok(())
                    }
                };
                // Close our side, then drain, so the kernel sends FIN, not RST
                // (an RST could destroy bytes still in flight to the gateway).
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.read_to_end(&mut Vec::new());
            });
        }
    });
    addr
}

/// Reads one request: headers, then `Content-Length` bytes of body.
fn read_request(stream: &mut std::net::TcpStream) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                return;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

fn gateway_for(addr: SocketAddr, timeouts: &str) -> Gateway {
    let pool = pool_yaml("bad", &[format!("http://{addr}")], timeouts);
    Gateway::start(&format!(
        "upstreams:\n{pool}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: bad\n"
    ))
}

/// Attempts at the `bad` pool counted under `status`, over its backends.
fn upstream_count(gw: &Gateway, status: &str) -> f64 {
    let metrics = gw.metrics();
    metrics
        .lines()
        .filter(|l| l.starts_with("upstream_requests_total{"))
        .filter(|l| l.contains("upstream=\"bad\"") && l.contains(&format!("status=\"{status}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends a chat request on a raw connection and returns everything the client
/// got until the gateway ended the connection (the 20 s is only the test's
/// own safety net against a hang).
fn raw_chat(gw: &Gateway, stream: bool) -> String {
    let body = format!(r#"{{"model":"mock-gpt","stream":{stream}}}"#);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_exchange(gw.proxy_port, request.as_bytes(), Duration::from_secs(20))
}

/// A stream that started (200, one event) and was then cut: it ends with an
/// error event and its last chunk, never with `[DONE]`, and the attempt
/// counts as the 200 it was.
fn assert_cut_stream(gw: &Gateway, out: &str) {
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("data: x"), "{out}");
    assert!(
        !out.contains("[DONE]"),
        "a cut stream must not look complete: {out}"
    );
    assert!(
        out.contains("data: {\"error\":"),
        "a cut stream ends with an error event: {out}"
    );
    assert!(out.ends_with("0\r\n\r\n"), "and a clean close: {out}");
    assert!(
        eventually(Duration::from_secs(5), || upstream_count(gw, "200") == 1.0),
        "{}",
        gw.metrics()
    );
}

#[test]
fn garbage_instead_of_http_is_502() {
    let gw = gateway_for(bad_upstream(Misbehaviour::Garbage), "");
    chat(&gw, "mock-gpt").assert_error(502, "upstream_error");
    assert!(upstream_count(&gw, "error") >= 1.0, "{}", gw.metrics());
}

#[test]
fn a_huge_error_body_streams_through_without_buffering() {
    let gw = gateway_for(bad_upstream(Misbehaviour::HugeError), "");
    let resp = chat(&gw, "mock-gpt");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.body.len(), 10 * 1024 * 1024);
    assert!(upstream_count(&gw, "503") >= 1.0, "{}", gw.metrics());
}

#[test]
fn a_reset_mid_body_ends_the_client_connection() {
    let gw = gateway_for(bad_upstream(Misbehaviour::ResetMidBody), "");
    let out = raw_chat(&gw, false);
    // The answer started (200) and was cut: the client sees fewer bytes than
    // announced and a closed connection, not a hang.
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.len() < 1000, "{out}");
    assert!(
        eventually(Duration::from_secs(5), || upstream_count(&gw, "200") == 1.0),
        "{}",
        gw.metrics()
    );
}

#[test]
fn a_slow_drip_is_cut_at_the_total_timeout() {
    let gw = gateway_for(
        bad_upstream(Misbehaviour::SlowDrip),
        "    timeouts: {read: 5s, total: 1s}\n",
    );
    // The upstream would drip forever; the gateway cuts it at `total`.
    assert_cut_stream(&gw, &raw_chat(&gw, true));
}

#[test]
fn a_refused_connection_is_502_and_counted() {
    // Bind and drop: nothing listens on the port any more.
    let addr = TcpListener::bind(("127.0.0.1", free_port()))
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway_for(addr, "");
    chat(&gw, "mock-gpt").assert_error(502, "upstream_error");
    assert_eq!(
        upstream_count(&gw, "connect_error"),
        1.0,
        "{}",
        gw.metrics()
    );
}

#[test]
fn a_hang_before_the_headers_is_504_at_the_read_timeout() {
    let gw = gateway_for(
        bad_upstream(Misbehaviour::HangBeforeHeaders),
        "    timeouts: {read: 1s}\n",
    );
    chat(&gw, "mock-gpt").assert_error(504, "upstream_timeout");
    assert_eq!(upstream_count(&gw, "timeout"), 1.0, "{}", gw.metrics());
}

#[test]
fn a_hang_mid_stream_ends_the_client_stream_at_the_read_timeout() {
    let gw = gateway_for(
        bad_upstream(Misbehaviour::HangMidStream),
        "    timeouts: {read: 1s}\n",
    );
    // The upstream holds the stream open for a minute; the gateway ends the
    // client's stream after `read`.
    assert_cut_stream(&gw, &raw_chat(&gw, true));
}
