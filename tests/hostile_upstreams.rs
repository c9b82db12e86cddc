//! Upstreams that misbehave after their 200, behind translation both ways
//! (an OpenAI client on a model behind Anthropic's API, an Anthropic client
//! on one behind OpenAI's), streamed and whole: every answer ends well in
//! the client's dialect (an error event and a clean close for a stream, an
//! error JSON otherwise), the access log and `upstream_answer_faults_total`
//! say what happened, and the limits hold nothing back (a concurrency slot
//! of one serves every next request; a token limit is charged the
//! reservation when usage cannot be believed). The mock's `x-mock-fault`
//! knob makes each misbehaviour.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const KEY: &str = "sk-hostile-test";

/// An OpenAI-speaking mock behind `mock-gpt` and an Anthropic-speaking one
/// behind `mock-claude`, each reachable from both APIs; one concurrent
/// request per key; small answer bounds; short timeouts on the `slow-*`
/// models' pools.
fn setup() -> (Mock, Mock, Gateway) {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let (o, a) = (openai.url(), anthropic.url());
    let gw = Gateway::start(&format!(
        "auth:
  api_keys:
    - {{id: tester, key: {KEY}}}
limits:
  mode: local
  rules:
    - {{name: one-at-a-time, key: [api_key], counts: concurrent, limit: 1}}
    - {{name: tokens, key: [api_key], counts: total_tokens, limit: 100000000, window: day}}
  global_rules: [one-at-a-time, tokens]
answers: {{max_event_bytes: 65536, max_translated_bytes: 262144}}
access_log: {{enabled: true}}
upstreams:
  openai-pool:
    backends: [{{base_url: {o}, provider: openai, api_key: sk-openai-provider}}]
  anthropic-pool:
    backends: [{{base_url: {a}, provider: anthropic, api_key: sk-anthropic-provider}}]
  slow-openai:
    backends: [{{base_url: {o}, provider: openai, api_key: sk-openai-provider}}]
    timeouts: {{read: 1s, total: 3s}}
  slow-anthropic:
    backends: [{{base_url: {a}, provider: anthropic, api_key: sk-anthropic-provider}}]
    timeouts: {{read: 1s, total: 3s}}
routes:
  - {{name: to-anthropic, paths: [/v1/chat/completions], models: [mock-claude], upstream: anthropic-pool}}
  - {{name: to-openai, paths: [/v1/messages], models: [mock-gpt], upstream: openai-pool}}
  - {{name: slow-to-anthropic, paths: [/v1/chat/completions], models: [slow-claude], upstream: slow-anthropic}}
  - {{name: slow-to-openai, paths: [/v1/messages], models: [slow-gpt], upstream: slow-openai}}
  - {{name: same-openai, paths: [/v1/chat/completions], models: [direct-gpt], upstream: openai-pool}}
"
    ));
    (openai, anthropic, gw)
}

/// Which way a request goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    /// An OpenAI client, a model behind Anthropic's API.
    OpenAiToAnthropic,
    /// An Anthropic client, a model behind OpenAI's API.
    AnthropicToOpenAi,
    /// An OpenAI client, a model behind OpenAI's API (passed through).
    OpenAiToOpenAi,
}

const BOTH_WAYS: [Way; 2] = [Way::OpenAiToAnthropic, Way::AnthropicToOpenAi];

impl Way {
    fn path(self) -> &'static str {
        match self {
            Way::AnthropicToOpenAi => "/v1/messages",
            _ => "/v1/chat/completions",
        }
    }

    fn model(self, slow: bool) -> &'static str {
        match (self, slow) {
            (Way::OpenAiToAnthropic, false) => "mock-claude",
            (Way::OpenAiToAnthropic, true) => "slow-claude",
            (Way::AnthropicToOpenAi, false) => "mock-gpt",
            (Way::AnthropicToOpenAi, true) => "slow-gpt",
            (Way::OpenAiToOpenAi, _) => "direct-gpt",
        }
    }

    fn route(self, slow: bool) -> &'static str {
        match (self, slow) {
            (Way::OpenAiToAnthropic, false) => "to-anthropic",
            (Way::OpenAiToAnthropic, true) => "slow-to-anthropic",
            (Way::AnthropicToOpenAi, false) => "to-openai",
            (Way::AnthropicToOpenAi, true) => "slow-to-openai",
            (Way::OpenAiToOpenAi, _) => "same-openai",
        }
    }

    fn anthropic_client(self) -> bool {
        self == Way::AnthropicToOpenAi
    }
}

/// What the client read: the status, and the body, `None` when the
/// connection ended without the body's end (no last chunk).
struct Answer {
    status: u16,
    body: Option<String>,
    took: Duration,
    request_id: String,
}

/// One chat with `x-mock-fault: fault` (and `extra` headers), read off a raw
/// socket to its end, so that a clean close and a cut one differ.
fn ask(gw: &Gateway, way: Way, stream: bool, slow: bool, fault: &str, extra: &str) -> Answer {
    let request = chat_request(
        way,
        stream,
        slow,
        fault,
        &format!("{extra}connection: close\r\n"),
    );
    let started = Instant::now();
    let mut socket = TcpStream::connect(("127.0.0.1", gw.proxy_port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    socket.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = socket.read_to_end(&mut raw);
    let took = started.elapsed();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let head = head.to_ascii_lowercase();
    let chunked = head.contains("transfer-encoding: chunked");
    let request_id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_default()
        .trim()
        .to_string();
    let body = if chunked {
        dechunk(rest)
    } else {
        Some(rest.to_string())
    };
    Answer {
        status,
        body,
        took,
        request_id,
    }
}

/// The bytes of one chat request with `x-mock-fault: fault` and `extra`
/// header lines.
fn chat_request(way: Way, stream: bool, slow: bool, fault: &str, extra: &str) -> String {
    let mut body = json!({
        "model": way.model(slow),
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hello"}],
    });
    if way == Way::OpenAiToOpenAi {
        // Passed through as it comes, the usage chunk included.
        body["stream_options"] = json!({"include_usage": true});
    }
    let body = body.to_string();
    let auth = if way.anthropic_client() {
        format!("x-api-key: {KEY}\r\nanthropic-version: 2023-06-01")
    } else {
        format!("authorization: Bearer {KEY}")
    };
    format!(
        "POST {} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n{auth}\r\nx-mock-fault: {fault}\r\n{extra}content-length: {}\r\n\r\n{body}",
        way.path(),
        body.len()
    )
}

/// A chunked body's content, or `None` when its last chunk never came.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// The client's stream ended with one error event in its dialect, and with
/// nothing that marks an answer complete. (A fault found before Pingora sent
/// the headers is a 502 with an error JSON instead.)
fn assert_stream_ends_in_error(way: Way, answer: &Answer, case: &str) {
    if answer.status == 502 {
        return assert_error_json(way, answer, case);
    }
    assert_eq!(answer.status, 200, "{case}");
    let body = answer
        .body
        .as_deref()
        .unwrap_or_else(|| panic!("{case}: the stream was cut, not ended"));
    let events: Vec<&str> = body
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect();
    let last = events.last().copied().unwrap_or_default();
    let data = last
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{case}: no data in the last event: {body}"));
    let error: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{case}: {e}: {data}"));
    if way.anthropic_client() {
        assert!(last.starts_with("event: error"), "{case}: {body}");
        assert_eq!(error["type"], "error", "{case}: {data}");
        assert!(error["error"]["message"].is_string(), "{case}: {data}");
        assert!(!body.contains("message_stop"), "{case}: {body}");
    } else {
        assert!(error["error"]["message"].is_string(), "{case}: {data}");
        assert!(error["error"]["type"].is_string(), "{case}: {data}");
        assert!(!body.contains("[DONE]"), "{case}: {body}");
    }
    // Every event before it is one the client can read.
    for event in &events {
        for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
            assert!(
                data == "[DONE]" || serde_json::from_str::<Value>(data).is_ok(),
                "{case}: an event the client cannot read: {data}"
            );
        }
    }
}

/// A whole answer that is an error JSON in the client's dialect.
fn assert_error_json(way: Way, answer: &Answer, case: &str) {
    let body = answer
        .body
        .as_deref()
        .unwrap_or_else(|| panic!("{case}: the answer was cut, not ended"));
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{case}: {e}: {body}"));
    if way.anthropic_client() {
        assert_eq!(value["type"], "error", "{case}: {body}");
    }
    assert!(value["error"]["message"].is_string(), "{case}: {body}");
    assert!(value["error"]["type"].is_string(), "{case}: {body}");
}

/// The access-log line of a request (written after its answer ended).
fn access_line(gw: &Gateway, request_id: &str) -> Value {
    let mut found = Value::Null;
    eventually(Duration::from_secs(10), || {
        found = gw
            .access_lines()
            .into_iter()
            .find(|l| l["request_id"] == request_id)
            .unwrap_or(Value::Null);
        !found.is_null()
    });
    assert!(!found.is_null(), "no access-log line for {request_id}");
    found
}

fn fault_logged(gw: &Gateway, answer: &Answer) -> Option<String> {
    access_line(gw, &answer.request_id)["answer_fault"]
        .as_str()
        .map(str::to_string)
}

fn faults_counted(gw: &Gateway, route: &str, fault: &str) -> f64 {
    metric_value(
        &gw.metrics(),
        &format!("upstream_answer_faults_total{{fault=\"{fault}\",route=\"{route}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Asks with `fault` and checks the fault was logged and counted; the
/// concurrency slot of one is free again (the next request would get a 429
/// if it were not).
fn faulted(
    gw: &Gateway,
    way: Way,
    stream: bool,
    slow: bool,
    (fault, extra): (&str, &str),
    logged: &str,
) -> Answer {
    let counted = faults_counted(gw, way.route(slow), logged);
    let answer = ask(gw, way, stream, slow, fault, extra);
    let case = format!("{fault} {way:?} stream={stream}");
    eprintln!("{case}: {} in {:?}", answer.status, answer.took);
    assert_eq!(
        fault_logged(gw, &answer).as_deref(),
        Some(logged),
        "{case}: the access log's answer_fault"
    );
    assert!(
        eventually(Duration::from_secs(5), || faults_counted(
            gw,
            way.route(slow),
            logged
        ) == counted + 1.0),
        "{case}: not counted\n{}",
        gw.metrics()
    );
    answer
}

/// The misbehaviours that break an answer, and the fault each is logged as.
const BREAKS: [((&str, &str), &str); 5] = [
    (("cut-mid-event", ""), "cut"),
    (("cut-mid-char", ""), "cut"),
    (("not-json", ""), "invalid_answer"),
    (("wrong-shape", ""), "invalid_answer"),
    (("error-event", ""), "upstream_error"),
];

#[test]
fn streams_that_break_end_with_an_error_event_in_the_clients_dialect() {
    let (_o, _a, gw) = setup();
    // One event of 200 kB, over the 64 KiB bound.
    let too_large = (
        (
            "none",
            "x-mock-chunks: 1\r\nx-mock-response-size: 200000\r\n",
        ),
        "event_too_large",
    );
    let cases = BREAKS.into_iter().chain([too_large]);
    for way in BOTH_WAYS {
        for (fault, logged) in cases.clone() {
            let answer = faulted(&gw, way, true, false, fault, logged);
            assert_stream_ends_in_error(way, &answer, &format!("{fault:?} {way:?}"));
        }
    }
    // Passed through, the client's stream ends the same way.
    for fault in ["cut-mid-event", "cut-mid-char"] {
        let answer = faulted(&gw, Way::OpenAiToOpenAi, true, false, (fault, ""), "cut");
        assert_stream_ends_in_error(Way::OpenAiToOpenAi, &answer, fault);
    }
}

/// Pingora closes a client's connection after any failure in proxying, so
/// a client must learn it before it sends its next request there: closing
/// it under that request is a reset no client retries on its own (a POST is
/// not idempotent). An error answer says `Connection: close`; an answer
/// whose status was already out is closed right behind its last bytes.
#[test]
fn a_broken_answer_tells_the_client_its_connection_ends() {
    let (_o, _a, gw) = setup();
    for way in BOTH_WAYS {
        for stream in [true, false] {
            for ((fault, extra), _) in BREAKS {
                let case = format!("{fault} {way:?} stream={stream}");
                let mut socket = TcpStream::connect(("127.0.0.1", gw.proxy_port)).expect("connect");
                socket
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let broken = chat_request(way, stream, false, fault, extra);
                socket.write_all(broken.as_bytes()).expect("write");
                let (status, head, body) = read_response_with_head(&mut socket)
                    .unwrap_or_else(|| panic!("{case}: the answer did not end well"));
                let answered = Instant::now();
                let closing = head.to_ascii_lowercase().contains("connection: close");
                if status != 200 {
                    assert!(
                        closing,
                        "{case}: {status} without `connection: close`: {head}{body}"
                    );
                }
                if closed_within(&mut socket, Duration::from_secs(1)) {
                    eprintln!(
                        "{case}: {status}, closed {:?} after the answer",
                        answered.elapsed()
                    );
                    continue;
                }
                // Kept open: the next request is answered on it.
                let next = chat_request(way, stream, false, "none", "");
                socket.write_all(next.as_bytes()).expect("write");
                let (status, body) = read_response(&mut socket)
                    .unwrap_or_else(|| panic!("{case}: closed under the next request"));
                assert_eq!(status, 200, "{case}: {body}");
            }
        }
    }
}

#[test]
fn whole_answers_that_break_are_error_json_in_the_clients_dialect() {
    let (_o, _a, gw) = setup();
    // 1 MB of answer, over the 256 KiB held to translate.
    let too_large = (
        ("none", "x-mock-response-size: 1000000\r\n"),
        "answer_too_large",
    );
    let cases = BREAKS.into_iter().chain([too_large]);
    for way in BOTH_WAYS {
        for (fault, logged) in cases.clone() {
            let answer = faulted(&gw, way, false, false, fault, logged);
            assert_eq!(answer.status, 200, "{fault:?} {way:?}");
            assert_error_json(way, &answer, &format!("{fault:?} {way:?}"));
        }
    }
}

#[test]
fn silent_and_endless_upstreams_are_ended_at_their_timeouts() {
    let (_o, _a, gw) = setup();
    for way in BOTH_WAYS {
        for stream in [true, false] {
            for fault in ["silent", "endless"] {
                let answer = faulted(&gw, way, stream, true, (fault, ""), "timeout");
                let case = format!("{fault} {way:?} stream={stream}");
                // `timeouts.read: 1s` ends the silent one, `total: 3s` the
                // endless one: well under the client's 30 s.
                assert!(
                    answer.took < Duration::from_secs(15),
                    "{case}: {:?}",
                    answer.took
                );
                if stream {
                    assert_stream_ends_in_error(way, &answer, &case);
                } else {
                    assert_error_json(way, &answer, &case);
                }
            }
        }
    }
}

/// Misbehaviours that leave the answer whole: unknown events and members
/// are skipped, data after the end is dropped, and the client gets the
/// complete answer.
#[test]
fn unknown_events_and_trailing_data_leave_the_answer_whole() {
    let (_o, _a, gw) = setup();
    for way in BOTH_WAYS {
        for stream in [true, false] {
            let case = format!("{way:?} stream={stream}");
            let answer = ask(&gw, way, stream, false, "unknown-events", "");
            assert_eq!(answer.status, 200, "{case}");
            assert_eq!(fault_logged(&gw, &answer), None, "{case}");
            let body = answer.body.expect("ended");
            assert_complete(way, stream, &body, &case);

            let answer = faulted(
                &gw,
                way,
                stream,
                false,
                ("trailing-data", ""),
                "trailing_data",
            );
            let body = answer.body.expect("ended");
            assert!(!body.contains("after the end"), "{case}: {body}");
            if stream {
                assert_complete(way, stream, &body, &case);
            }
        }
    }
}

fn assert_complete(way: Way, stream: bool, body: &str, case: &str) {
    match (way.anthropic_client(), stream) {
        (true, true) => assert!(body.contains("event: message_stop"), "{case}: {body}"),
        (false, true) => assert!(body.trim_end().ends_with("data: [DONE]"), "{case}: {body}"),
        (true, false) => {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["type"], "message", "{case}: {body}");
            assert!(v["content"][0]["text"].is_string(), "{case}: {body}");
        }
        (false, false) => {
            let v: Value = serde_json::from_str(body).unwrap();
            assert!(
                v["choices"][0]["message"]["content"].is_string(),
                "{case}: {body}"
            );
        }
    }
}

/// Usage that is missing, negative or absurd is never charged as the
/// upstream said: the request's reservation (its prompt and `max_tokens`)
/// stands, and the access log reports no tokens.
#[test]
fn usage_that_cannot_be_believed_charges_the_reservation() {
    let (_o, _a, gw) = setup();
    let remaining = |gw: &Gateway| -> u64 {
        let answer = post_json(
            &gw.url("/v1/chat/completions"),
            &json!({"model": "mock-claude", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
            &[("authorization", &format!("Bearer {KEY}"))],
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        // Its slot of one is free once it is logged (limits settle first).
        access_line(gw, answer.header("x-request-id").unwrap_or_default());
        answer
            .header("x-ratelimit-remaining-tokens")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no token standing: {:?}", answer.headers))
    };
    for way in BOTH_WAYS {
        for stream in [true, false] {
            for (fault, logged) in [
                ("usage-missing", "no_usage"),
                ("usage-negative", "invalid_usage"),
                ("usage-huge", "invalid_usage"),
            ] {
                let case = format!("{fault} {way:?} stream={stream}");
                let before = remaining(&gw);
                let answer = faulted(&gw, way, stream, false, (fault, ""), logged);
                assert_eq!(answer.status, 200, "{case}");
                let line = access_line(&gw, &answer.request_id);
                assert!(
                    line.get("output_tokens").is_none_or(Value::is_null),
                    "{case}: {line}"
                );
                let after = remaining(&gw);
                let charged = before - after;
                // The reservation: the prompt's estimate and max_tokens 64,
                // plus the probe's own few tokens; never 0, never 10^15.
                assert!(
                    (64..5000).contains(&charged),
                    "{case}: {charged} tokens charged"
                );
            }
        }
    }
}
