//! The client side: HTTP requests to a gateway (ureq), raw bytes on a
//! socket, held streams, and reading metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::gateway::Gateway;

/// A minimal HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// An answer read off a raw socket (`raw_exchange`): status line,
    /// headers (names lowercased) and body; status 0 when there was none.
    pub fn from_raw(answer: &str) -> Self {
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Self {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an OpenAI-style error with this status and code, and a request id.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "body: {}", self.body);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(body["error"]["type"].as_str().is_some());
        assert!(self.header("x-request-id").is_some(), "no x-request-id");
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String) {
    let r = send(method, url, headers, body);
    (r.status, r.body)
}

pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    let mut body = String::new();
    resp.into_reader()
        .read_to_string(&mut body)
        .expect("response body");
    Response {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> (u16, String) {
    request("GET", url, &[], None)
}

pub fn post_json(url: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send("POST", url, &all, Some(body.to_string().as_bytes()))
}

pub fn chat(gateway: &Gateway, model: &str) -> Response {
    post_json(
        &gateway.url("/v1/chat/completions"),
        &serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
}

/// Sends raw bytes on a fresh connection and returns everything read until
/// the server closes or `wait` passes without data.
pub fn raw_exchange(port: u16, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response framed by Content-Length or chunked (the
/// body is returned without its chunk framing), leaving the connection at
/// the next response; `None` when the connection ended first.
pub fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    read_response_with_head(stream).map(|(status, _, body)| (status, body))
}

/// [`read_response`], with the response's head (status line and headers).
pub fn read_response_with_head(stream: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut data = Vec::new();
    let header_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, &mut data)?;
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_string();
    let status = head.get(9..12)?.parse().ok()?;
    let header = |wanted: &str| {
        head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    let mut body = data.split_off(header_end);
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut content = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = body.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                read_more(stream, &mut body)?;
            };
            let size_line = String::from_utf8_lossy(&body[..line_end]).into_owned();
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            // The chunk, its CRLF; the last chunk is followed by one CRLF.
            while body.len() < line_end + 2 + size + 2 {
                read_more(stream, &mut body)?;
            }
            content.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
            body.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return Some((status, head, String::from_utf8_lossy(&content).into_owned()));
            }
        }
    }
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        read_more(stream, &mut body)?;
    }
    Some((
        status,
        head,
        String::from_utf8_lossy(&body[..length]).into_owned(),
    ))
}

/// Appends what the next read brings; `None` at the end of the stream.
fn read_more(stream: &mut TcpStream, data: &mut Vec<u8>) -> Option<()> {
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            data.extend_from_slice(&buf[..n]);
            Some(())
        }
    }
}

/// True once the peer closed the connection (EOF or reset), reading and
/// dropping whatever comes first; false if it stays open for `limit`.
pub fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// POSTs `body` with chunked framing on a raw connection; returns the raw answer.
pub fn post_chunked(port: u16, path: &str, body: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    raw_exchange(port, request.as_bytes(), Duration::from_secs(10))
}

/// Opens a streaming chat request held by the mock (`x-mock-hold: key`), with
/// more request header lines (`name: value\r\n`), and returns the reader
/// after the first event arrived.
pub fn open_held_stream(port: u16, key: &str, headers: &str) -> BufReader<TcpStream> {
    match try_held_stream(port, key, headers) {
        (200, Some(reader)) => reader,
        (status, _) => panic!("the held stream got status {status}"),
    }
}

/// As [`open_held_stream`], for a request that may be refused: its status,
/// and the reader after the first event when it was admitted (200).
pub fn try_held_stream(port: u16, key: &str, headers: &str) -> (u16, Option<BufReader<TcpStream>>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = r#"{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-hold: {key}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        return (status, None);
    }
    let mut seen = status_line;
    while !seen.contains("word0") {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read");
        assert!(n > 0, "stream ended early: {seen}");
        seen.push_str(&line);
    }
    (status, Some(reader))
}

/// The value of a metric line with exactly these labels (or none), if present.
pub fn metric_value(metrics: &str, name_and_labels: &str) -> Option<f64> {
    let prefix = format!("{name_and_labels} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Counter value of `auth_failures_total{reason}` from a metrics text.
pub fn auth_failures(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("auth_failures_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
