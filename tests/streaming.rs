//! Server-sent events pass event by event. Proven without timing: the mock
//! sends one event and then holds the stream until the test releases it, so
//! the test can only read that first event if the gateway did not buffer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn start() -> (Mock, Gateway) {
    let mock = Mock::start("a");
    let gw = chat_gateway(&[&mock], "", "mock-gpt, \"claude-*\"", ", /v1/messages");
    (mock, gw)
}

/// Opens a streaming request and returns a reader positioned after the headers.
fn open_stream(
    gw: &Gateway,
    path: &str,
    body: &str,
    extra_headers: &str,
) -> (BufReader<TcpStream>, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    (reader, head)
}

/// Reads chunked-encoding data until `needle` has been seen.
fn read_until(reader: &mut BufReader<TcpStream>, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "stream ended before {needle:?}; got {seen}");
        seen.push_str(&line);
    }
    seen
}

#[test]
fn first_event_arrives_before_the_upstream_sends_the_rest() {
    let (mock, gw) = start();
    let body = r#"{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (mut reader, head) = open_stream(&gw, "/v1/chat/completions", body, "x-mock-hold: s1\r\n");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(
        !head.contains("content-encoding"),
        "streams are never compressed: {head}"
    );
    assert!(head.contains("x-request-id"), "{head}");

    // The mock is holding everything after word0: reading it proves it was not buffered.
    let first = read_until(&mut reader, "word0");
    assert!(!first.contains("word1"));

    mock.control("/mock/release/s1");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("word1") && rest.contains("word2"), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
}

#[test]
fn anthropic_event_types_pass_through() {
    let (mock, gw) = start();
    let body = r#"{"model":"claude-3-haiku","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let (mut reader, head) = open_stream(&gw, "/v1/messages", body, "x-mock-hold: s2\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let first = read_until(&mut reader, "message_start");
    assert!(!first.contains("content_block_delta"));
    mock.control("/mock/release/s2");
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    for event in [
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
    ] {
        assert!(
            rest.contains(&format!("event: {event}")),
            "missing {event}: {rest}"
        );
    }
}

#[test]
fn upstream_dropping_mid_stream_ends_the_client_stream() {
    let (_mock, gw) = start();
    let body = r#"{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (mut reader, head) = open_stream(
        &gw,
        "/v1/chat/completions",
        body,
        "x-mock-drop-after: 2\r\nx-mock-chunks: 10\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut rest = String::new();
    // The read ends (no hang): the gateway ends the stream with an error
    // event and its final chunk, never with `[DONE]`.
    let _ = reader.read_to_string(&mut rest);
    assert!(rest.contains("word1"), "{rest}");
    assert!(
        !rest.contains("[DONE]"),
        "a truncated stream must not look complete: {rest}"
    );
    assert!(rest.contains("data: {\"error\":"), "{rest}");
    assert!(rest.ends_with("0\r\n\r\n"), "{rest}");
}
