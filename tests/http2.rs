//! HTTP/2 from clients, frame by frame over a raw socket on the h2c
//! listener: a local answer ends its stream cleanly, and the known attacks
//! are bounded. Each attack is built by hand (the `h2` crate will not send malformed
//! sequences): rapid reset (CVE-2023-44487), a CONTINUATION flood, too many
//! concurrent streams, HPACK abuse (an oversized table update and a header
//! bomb), and a flow-control window that never opens. Each is bounded, and
//! well-behaved clients on other connections keep getting 200 meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const REFUSED_STREAM: u32 = 0x7;
const COMPRESSION_ERROR: u32 = 0x9;
const PROTOCOL_ERROR: u32 = 0x1;

const CHAT: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;

fn gateway(mock: &Mock) -> Gateway {
    gateway_with(mock, "")
}

fn gateway_with(mock: &Mock, top: &str) -> Gateway {
    Gateway::start_with_listen(
        "  h2c: true\n",
        &format!(
            "{top}request:\n  write_timeout: 1s\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
    )
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(first: u8, n: u32, value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A literal header field (`first` 0x00: not indexed, 0x40: added to the
/// dynamic table) with a new name, no Huffman coding.
fn literal(first: u8, name: &str, value: &str, out: &mut Vec<u8>) {
    let prefix = if first == 0x40 { 6 } else { 4 };
    hpack_int(first, prefix, 0, out);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

fn request_block(body_len: usize) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/v1/chat/completions"),
        (":authority", "localhost"),
        ("content-type", "application/json"),
    ] {
        literal(0, name, value, &mut block);
    }
    literal(0, "content-length", &body_len.to_string(), &mut block);
    block
}

/// A frame read from the gateway.
#[derive(Debug)]
struct Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }
}

struct Client {
    socket: TcpStream,
}

impl Client {
    /// Connects, sends the preface and `settings` (id, value pairs) and
    /// acknowledges the gateway's settings.
    fn connect(gw: &Gateway, settings: &[(u16, u32)]) -> Self {
        let socket = TcpStream::connect(("127.0.0.1", gw.proxy_port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut client = Self { socket };
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        client.send(&[PREFACE, &frame(SETTINGS, 0, 0, &payload)].concat());
        let seen = client.frames_until(Duration::from_secs(10), |f| f.kind == SETTINGS);
        assert!(
            seen.iter().any(|f| f.kind == SETTINGS),
            "no SETTINGS: {seen:?}"
        );
        client.send(&frame(SETTINGS, 0x1, 0, &[]));
        client
    }

    /// Writes; false once the gateway has closed the connection.
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.socket.write_all(bytes).is_ok()
    }

    fn read_frame(&mut self) -> Result<Option<Frame>, ()> {
        let mut head = [0u8; 9];
        match self.socket.read_exact(&mut head) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(_) => return Err(()),
        }
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; len];
        self.socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let read = self.socket.read_exact(&mut payload);
        self.socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        read.map_err(|_| ())?;
        Ok(Some(Frame {
            kind: head[3],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        }))
    }

    /// Frames until one matches `stop`, the connection ends, or `limit`.
    fn frames_until(&mut self, limit: Duration, stop: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        while Instant::now() < deadline {
            match self.read_frame() {
                Ok(Some(frame)) => {
                    let done = stop(&frame);
                    frames.push(frame);
                    if done {
                        break;
                    }
                }
                Ok(None) => {}
                Err(()) => break,
            }
        }
        frames
    }

    /// Whether the gateway ended the connection (GOAWAY or EOF) within
    /// `limit`; the GOAWAY's code, if one came.
    fn ended_within(&mut self, limit: Duration) -> (bool, Option<u32>) {
        let deadline = Instant::now() + limit;
        let mut code = None;
        while Instant::now() < deadline {
            match self.read_frame() {
                Ok(Some(frame)) if frame.kind == GOAWAY => code = frame.error_code(),
                Ok(_) => {}
                Err(()) => return (true, code),
            }
        }
        (code.is_some(), code)
    }
}

/// Well-behaved HTTP/2 clients on their own connections, during an attack.
fn well_behaved_requests(gw: &Gateway, count: usize) {
    for _ in 0..count {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--http2-prior-knowledge"])
            .args(["-H", "content-type: application/json", "-d", CHAT])
            .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
            .arg(gw.url("/v1/chat/completions"))
            .output()
            .expect("curl runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2", "{out:?}");
    }
}

#[test]
fn rapid_reset_costs_the_offender_its_connection() {
    let mock = Mock::start("m");
    let gw = gateway(&mock);
    let mut attacker = Client::connect(&gw, &[]);
    let block = request_block(CHAT.len());
    let mut cut = false;
    let mut sent = 0;
    'attack: for batch in 0..100 {
        let mut bytes = Vec::new();
        for i in 0..100 {
            let stream = 2 * (batch * 100 + i) + 1;
            bytes.extend(frame(HEADERS, END_HEADERS, stream, &block));
            bytes.extend(frame(RST_STREAM, 0, stream, &0x8u32.to_be_bytes())); // CANCEL
        }
        if !attacker.send(&bytes) {
            cut = true;
            break 'attack;
        }
        sent += 100;
    }
    let (ended, code) = attacker.ended_within(Duration::from_secs(10));
    eprintln!("rapid reset: {sent} streams sent, cut while writing: {cut}, GOAWAY {code:?}");
    assert!(
        cut || ended,
        "10,000 opened-and-reset streams did not end the connection"
    );
    if let Some(code) = code {
        assert_eq!(code, ENHANCE_YOUR_CALM, "GOAWAY code");
    }
    assert!(
        sent < 10_000 || code == Some(ENHANCE_YOUR_CALM),
        "sent {sent}"
    );
    well_behaved_requests(&gw, 5);
    // Streams reset before their body came never reached the upstream.
    assert_eq!(mock.api_requests(), 5);
}

#[test]
fn a_continuation_flood_costs_the_offender_its_connection() {
    let mock = Mock::start("m");
    let gw = gateway(&mock);
    let mut attacker = Client::connect(&gw, &[]);
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end
    // the block: 16 KiB of header fields each, up to 64 MiB.
    assert!(attacker.send(&frame(HEADERS, 0, 1, &request_block(CHAT.len()))));
    let mut filler = Vec::new();
    for i in 0..400 {
        literal(0, &format!("x-flood-{i}"), &"a".repeat(30), &mut filler);
    }
    filler.truncate(16_000);
    let mut frames_sent = 0;
    let started = Instant::now();
    while frames_sent < 4096 && started.elapsed() < Duration::from_secs(60) {
        if !attacker.send(&frame(CONTINUATION, 0, 1, &filler)) {
            break;
        }
        frames_sent += 1;
    }
    let (ended, code) = attacker.ended_within(Duration::from_secs(10));
    eprintln!("CONTINUATION flood: {frames_sent} frames taken, GOAWAY {code:?}");
    assert!(
        frames_sent < 4096 || ended,
        "64 MiB of CONTINUATION frames were all taken and the connection lives"
    );
    // It was cut long before: the block's limit is request.max_header_bytes
    // (32 KiB), and the socket buffers hold at most a few MiB.
    assert!(frames_sent < 1024, "{frames_sent} frames taken");
    well_behaved_requests(&gw, 3);
    assert_eq!(mock.api_requests(), 3);
}

#[test]
fn streams_past_the_concurrency_limit_are_refused() {
    let mock = Mock::start("m");
    let gw = gateway(&mock);
    let mut client = Client::connect(&gw, &[]);
    // 140 requests whose bodies never come: each stays open.
    let block = request_block(CHAT.len());
    let mut bytes = Vec::new();
    for i in 0..140u32 {
        bytes.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    assert!(client.send(&bytes));
    let frames = client.frames_until(Duration::from_secs(5), |_| false);
    let refused: Vec<u32> = frames
        .iter()
        .filter(|f| f.kind == RST_STREAM && f.error_code() == Some(REFUSED_STREAM))
        .map(|f| f.stream)
        .collect();
    // 128 are allowed; the 12 past them (streams 257..279) are refused.
    assert_eq!(refused.len(), 12, "{frames:?}");
    assert!(refused.iter().all(|s| *s > 255), "{refused:?}");
    // The connection itself lives: a stream within the limit still works
    // once one is freed. Finish stream 1 with its body.
    assert!(client.send(&frame(DATA, END_STREAM, 1, CHAT.as_bytes())));
    let answer = client.frames_until(Duration::from_secs(10), |f| {
        f.stream == 1 && f.kind == DATA && !f.payload.is_empty()
    });
    assert!(
        answer.iter().any(|f| f.stream == 1 && f.kind == DATA),
        "{answer:?}"
    );
    well_behaved_requests(&gw, 2);
}

#[test]
fn hpack_abuse_is_bounded() {
    let mock = Mock::start("m");
    let gw = gateway(&mock);

    // A dynamic table size update above the 4 KiB the gateway allows.
    let mut client = Client::connect(&gw, &[]);
    let mut block = Vec::new();
    hpack_int(0x20, 5, 1 << 20, &mut block);
    block.extend(request_block(CHAT.len()));
    client.send(&frame(HEADERS, END_HEADERS, 1, &block));
    let (ended, code) = client.ended_within(Duration::from_secs(10));
    assert!(ended, "an oversized table update was taken");
    // h2 answers a decoding error with PROTOCOL_ERROR where RFC 7541 says
    // COMPRESSION_ERROR: either way the connection ends.
    assert!(
        code == Some(COMPRESSION_ERROR) || code == Some(PROTOCOL_ERROR),
        "GOAWAY {code:?}"
    );

    // A header bomb: one 4 KB field put in the dynamic table, then
    // referenced by one byte each, 200 times: 800 KB of headers from 1 KB.
    let mut client = Client::connect(&gw, &[]);
    let mut block = request_block(CHAT.len());
    literal(0x40, "x-bomb", &"b".repeat(4000), &mut block);
    block.extend(std::iter::repeat_n(0x80 | 62, 200));
    client.send(&frame(HEADERS, END_HEADERS, 1, &block));
    client.send(&frame(DATA, END_STREAM, 1, CHAT.as_bytes()));
    let frames = client.frames_until(Duration::from_secs(10), |f| {
        f.stream == 1 && (f.kind == RST_STREAM || f.kind == HEADERS) || f.kind == GOAWAY
    });
    let answered_ok = frames.iter().any(|f| {
        f.stream == 1 && f.kind == HEADERS && f.payload.first() == Some(&0x88) // :status 200
    });
    assert!(!answered_ok, "the bomb was served: {frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f.kind == RST_STREAM || f.kind == GOAWAY || f.kind == HEADERS),
        "no refusal: {frames:?}"
    );
    assert_eq!(mock.api_requests(), 0);
    well_behaved_requests(&gw, 2);
}

#[test]
fn a_window_that_never_opens_is_ended_by_the_write_timeout() {
    let mock = Mock::start("m");
    let gw = gateway(&mock);
    // SETTINGS_INITIAL_WINDOW_SIZE 0: the gateway may send no body byte.
    let mut client = Client::connect(&gw, &[(0x4, 0)]);
    client.send(&frame(HEADERS, END_HEADERS, 1, &request_block(CHAT.len())));
    client.send(&frame(DATA, END_STREAM, 1, CHAT.as_bytes()));
    let started = Instant::now();
    let frames = client.frames_until(Duration::from_secs(20), |f| {
        f.stream == 1 && f.kind == RST_STREAM || f.kind == GOAWAY
    });
    let ended = frames
        .iter()
        .any(|f| f.stream == 1 && f.kind == RST_STREAM || f.kind == GOAWAY);
    assert!(ended, "the stalled stream was never ended: {frames:?}");
    // request.write_timeout is 1 s; the bound only catches a missing timer.
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!frames
        .iter()
        .any(|f| f.kind == DATA && !f.payload.is_empty()));
    well_behaved_requests(&gw, 2);
}

#[test]
fn a_local_answer_before_the_body_ends_its_stream_cleanly() {
    let mock = Mock::start("m");
    let gw = gateway_with(&mock, "auth:\n  api_keys: [{id: k, key: sk-k}]\n");
    let mut client = Client::connect(&gw, &[]);
    // No credentials: the gateway answers 401 before it reads the body.
    assert!(client.send(&frame(HEADERS, END_HEADERS, 1, &request_block(CHAT.len()))));
    let answer = client.frames_until(Duration::from_secs(10), |f| {
        f.stream == 1 && f.kind == DATA && !f.payload.is_empty()
    });
    assert!(
        answer.iter().any(|f| f.stream == 1 && f.kind == HEADERS),
        "{answer:?}"
    );
    // The body follows the answer: the stream then ends on both sides,
    // with no reset (curl and httpx report a reset as a failed request).
    assert!(client.send(&frame(DATA, END_STREAM, 1, CHAT.as_bytes())));
    let after = client.frames_until(Duration::from_millis(1500), |_| false);
    let resets: Vec<&Frame> = answer
        .iter()
        .chain(&after)
        .filter(|f| f.kind == RST_STREAM || f.kind == GOAWAY)
        .collect();
    assert!(resets.is_empty(), "{resets:?}");
    // The connection serves its next stream.
    let mut block = request_block(CHAT.len());
    literal(0, "authorization", "Bearer sk-k", &mut block);
    assert!(client.send(&frame(HEADERS, END_HEADERS, 3, &block)));
    assert!(client.send(&frame(DATA, END_STREAM, 3, CHAT.as_bytes())));
    let next = client.frames_until(Duration::from_secs(10), |f| {
        f.stream == 3 && f.kind == DATA && !f.payload.is_empty()
    });
    assert!(
        next.iter()
            .any(|f| f.stream == 3 && f.kind == HEADERS && f.payload.first() == Some(&0x88)),
        "{next:?}"
    );
}

#[test]
fn an_http1_request_shorter_than_the_h2c_preface_is_answered_at_once() {
    let mock = Mock::start("m");
    let gw = gateway(&mock);
    // Requests shorter than the 24-byte h2c preface, as load balancers'
    // health checks are. The idle timeout is 60 s: an answer within the 3 s
    // read window was not waited for.
    let health = raw_exchange(
        gw.proxy_port,
        b"GET /health HTTP/1.0\r\n\r\n",
        Duration::from_secs(3),
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health:?}");
    let short = raw_exchange(
        gw.proxy_port,
        b"GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(3),
    );
    assert!(
        short.starts_with("HTTP/1."),
        "no answer to a short request: {short:?}"
    );
    well_behaved_requests(&gw, 1);
}
