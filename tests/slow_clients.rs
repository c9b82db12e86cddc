//! Slow clients over raw TCP: headers trickled a byte at a time, idle
//! keep-alive connections, and a slowloris of a few hundred connections.
//! Each is closed by its configured timeout while normal requests are served.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

fn gateway(mock: &Mock, timeouts: &str) -> Gateway {
    chat_gateway(&[mock], &format!("request:\n{timeouts}"), "mock-gpt", "")
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

fn timeouts_of(gw: &Gateway, phase: &str) -> f64 {
    metric_value(
        &gw.metrics(),
        &format!("client_timeouts_total{{phase=\"{phase}\"}}"),
    )
    .unwrap_or(0.0)
}

#[test]
fn headers_trickled_past_the_header_timeout_are_cut_off() {
    let mock = Mock::start("a");
    let gw = gateway(&mock, "  header_timeout: 1s\n");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nContent-Length: 64\r\n\r\n{{\"model\":\"mock-gpt\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}",
        "p".repeat(40)
    );
    let mut stream = TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
    // A byte every 100 ms: each read is quick, so Pingora's per-read timeout
    // never fires; the whole request would take about ten seconds.
    let mut sent = 0;
    for byte in request.as_bytes() {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
        if timeouts_of(&gw, "header") >= 1.0 {
            break;
        }
    }
    assert!(sent < request.len(), "the whole trickled request was taken");
    assert!(closed_within(&mut stream, Duration::from_secs(10)));
    assert_eq!(timeouts_of(&gw, "header"), 1.0);
    assert_eq!(mock.api_requests(), 0, "{:?}", mock.requests());

    // Headers sent in a few pieces inside the deadline are served.
    let mut stream = TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
    for piece in request.as_bytes().chunks(request.len() / 3 + 1) {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = read_response(&mut stream).expect("a response");
    assert_eq!(status, 200, "{body}");
    assert_eq!(mock.api_requests(), 1);
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let mock = Mock::start("a");
    let gw = gateway(&mock, "  idle_timeout: 1s\n");
    let mut stream = TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
    // Requests inside the idle timeout reuse the connection.
    for _ in 0..3 {
        stream.write_all(HEALTH).unwrap();
        let (status, _) = read_response(&mut stream).expect("a response");
        assert_eq!(status, 200);
    }
    // Then it sits idle and the gateway closes it.
    assert!(closed_within(&mut stream, Duration::from_secs(30)));
    assert_eq!(timeouts_of(&gw, "idle"), 1.0);
    // A connection that never sends a byte is idle too.
    let mut silent = TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(30)));
    assert_eq!(timeouts_of(&gw, "idle"), 2.0);
    assert_eq!(timeouts_of(&gw, "header"), 0.0);
}

#[test]
fn a_slowloris_of_300_connections_does_not_stop_normal_requests() {
    const SLOW: usize = 300;
    let mock = Mock::start("a");
    let gw = gateway(&mock, "  header_timeout: 2s\n");
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Every slow connection gets one more header byte every 200 ms, from
    // clones of the sockets, until the test is done.
    let writers: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
    let done = Arc::new(AtomicBool::new(false));
    let trickle = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut writers = writers;
            while !done.load(Ordering::Acquire) {
                for w in &mut writers {
                    let _ = w.write_all(b"X");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // Normal clients are served meanwhile.
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(chat(&gw, "mock-gpt").status);
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    // And every slow connection is cut off, without reaching the upstream.
    let mut still_open = 0;
    for stream in &mut slow {
        if !closed_within(stream, Duration::from_secs(20)) {
            still_open += 1;
        }
    }
    done.store(true, Ordering::Release);
    trickle.join().unwrap();
    assert_eq!(still_open, 0, "slow connections left open");
    assert_eq!(timeouts_of(&gw, "header"), SLOW as f64);
    assert_eq!(mock.api_requests(), 50);
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
}
