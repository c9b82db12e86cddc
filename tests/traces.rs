//! OpenTelemetry traces over the real binary and a real OTLP/HTTP collector
//! of the test's own (protobuf decoded with the OpenTelemetry protos): one
//! server span per request continuing the client's `traceparent`, a client
//! span per upstream attempt whose context the upstream receives, GenAI
//! attributes, no credentials, and a collector that is down or silent never
//! holding a request.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP collector: keeps every export request it is sent, raw.
/// `silent` accepts connections and never answers.
struct Collector {
    port: u16,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Collector {
    fn start(silent: bool) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || {
                    if silent {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                    serve(stream, &kept);
                });
            }
        });
        Self { port, bodies }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    fn raw(&self) -> Vec<u8> {
        self.bodies.lock().unwrap().concat()
    }

    /// Every span received, with the resource attributes it came with.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let bodies = self.bodies.lock().unwrap().clone();
        let mut out = Vec::new();
        for body in bodies {
            let request =
                ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
            for resource_spans in request.resource_spans {
                let resource = resource_spans
                    .resource
                    .map(|r| r.attributes)
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        out.push((resource.clone(), span));
                    }
                }
            }
        }
        out
    }

    fn spans_of_trace(&self, trace: &str, count: usize) -> Vec<(Vec<KeyValue>, Span)> {
        let mut found = Vec::new();
        let arrived = eventually(Duration::from_secs(10), || {
            found = self
                .spans()
                .into_iter()
                .filter(|(_, s)| hex(&s.trace_id) == trace)
                .collect();
            found.len() >= count
        });
        assert!(
            arrived,
            "{} spans of {trace}, expected {count}",
            found.len()
        );
        found
    }
}

/// HTTP/1.1 requests on one connection: read each body, answer 200.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Vec<u8>>>) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        kept.lock().unwrap().push(body);
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key) {
        Some(AnyValue::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn strings(attributes: &[KeyValue], key: &str) -> Vec<String> {
    match attribute(attributes, key) {
        Some(AnyValue::ArrayValue(array)) => array
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(AnyValue::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key) {
        Some(AnyValue::IntValue(n)) => Some(*n),
        _ => None,
    }
}

const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;

fn gateway(collector_endpoint: &str, backends: &[&Mock], tracing_extra: &str) -> Gateway {
    gateway_with_env(
        collector_endpoint,
        backends,
        tracing_extra,
        &[("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")],
    )
}

fn gateway_with_env(
    collector_endpoint: &str,
    backends: &[&Mock],
    tracing_extra: &str,
    env: &[(&str, &str)],
) -> Gateway {
    let urls: Vec<String> = backends.iter().map(|m| m.url()).collect();
    Gateway::start_with_env(
        &format!(
            "tracing:\n  enabled: true\n  endpoint: {collector_endpoint}\n  service_name: gateway-under-test\n  export_interval: 100ms\n{tracing_extra}\
             auth:\n  api_keys:\n    - {{id: ml-caller, key: sk-trace-secret-0001, team: ml}}\n\
             upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n    auth: [api_key]\n    retry: {{attempts: 2, on: [connect_error, 5xx]}}\n",
            pool_yaml(
                "main",
                &urls,
                "    passive_health: {consecutive_failures: 100}\n"
            )
        ),
        env,
    )
}

fn ask(gw: &Gateway, traceparent: Option<&str>) -> Response {
    let mut headers = vec![("authorization", "Bearer sk-trace-secret-0001")];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "mock-gpt", "max_tokens": 20,
                "messages": [{"role": "user", "content": "a secret prompt text"}]}),
        &headers,
    )
}

#[test]
fn a_request_is_a_server_span_continuing_the_clients_trace() {
    let collector = Collector::start(false);
    let mock = Mock::start("m");
    let gw = gateway(&collector.endpoint(), &[&mock], "");
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let answer = ask(&gw, Some(&traceparent));
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The upstream continues the trace, as a child of the attempt's span.
    let sent = mock.requests();
    let upstream_tp = sent[0]["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent upstream: {}", sent[0]))
        .to_string();
    let parts: Vec<&str> = upstream_tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_tp}");
    assert_eq!(parts[1], CLIENT_TRACE, "{upstream_tp}");
    assert_ne!(
        parts[2], CLIENT_SPAN,
        "the upstream's parent is the attempt"
    );
    assert_eq!(parts[3], "01");

    let spans = collector.spans_of_trace(CLIENT_TRACE, 2);
    let (resource, server) = spans
        .iter()
        .find(|(_, s)| s.kind == SPAN_KIND_SERVER)
        .expect("a server span");
    let (_, attempt) = spans
        .iter()
        .find(|(_, s)| s.kind == SPAN_KIND_CLIENT)
        .expect("an attempt span");
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(hex(&attempt.span_id), parts[2]);
    assert_eq!(server.name, "chat mock-gpt");
    let a = &server.attributes;
    assert_eq!(string(a, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(
        string(a, "gen_ai.request.model").as_deref(),
        Some("mock-gpt")
    );
    assert_eq!(
        string(a, "gen_ai.response.model").as_deref(),
        Some("mock-gpt")
    );
    assert_eq!(string(a, "gen_ai.provider.name").as_deref(), Some("openai"));
    assert_eq!(int(a, "gen_ai.request.max_tokens"), Some(20));
    let usage = &answer.json()["usage"];
    assert_eq!(
        int(a, "gen_ai.usage.input_tokens"),
        usage["prompt_tokens"].as_i64()
    );
    assert_eq!(
        int(a, "gen_ai.usage.output_tokens"),
        usage["completion_tokens"].as_i64()
    );
    assert_eq!(int(a, "http.response.status_code"), Some(200));
    assert_eq!(
        string(a, "gen_ai.response.id").as_deref(),
        Some("chatcmpl-mock")
    );
    assert_eq!(strings(a, "gen_ai.response.finish_reasons"), vec!["stop"]);
    assert_eq!(string(a, "http.route").as_deref(), Some("chat"));
    assert_eq!(string(a, "user.id").as_deref(), Some("ml-caller"));
    assert_eq!(string(a, "ai_gateway.team").as_deref(), Some("ml"));
    assert!(string(a, "error.type").is_none());
    assert_eq!(
        string(&attempt.attributes, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        string(resource, "service.name").as_deref(),
        Some("gateway-under-test")
    );
    assert_eq!(
        string(resource, "deployment.environment").as_deref(),
        Some("test"),
        "OTEL_RESOURCE_ATTRIBUTES applies"
    );
    // Neither credential nor prompt text leaves in a span.
    let raw = String::from_utf8_lossy(&collector.raw()).to_string();
    for secret in [
        "sk-trace-secret-0001",
        "provider-secret-key",
        "a secret prompt text",
    ] {
        assert!(!raw.contains(secret), "{secret} exported");
    }
    // The access log names the trace.
    let line = gw.access_lines_at_least(1)[0].clone();
    assert_eq!(line["trace_id"], CLIENT_TRACE, "{line}");
}

#[test]
fn retries_are_attempt_spans_and_requests_without_traceparent_start_a_trace() {
    let collector = Collector::start(false);
    let bad = Mock::start("bad");
    let good = Mock::start("good");
    bad.control("/mock/fail/503");
    let gw = gateway(&collector.endpoint(), &[&bad, &good], "");
    // Round robin: some request meets the failing backend first.
    let mut trace = None;
    for sent in 1..=4 {
        let answer = ask(&gw, None);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let last = gw.access_lines_at_least(sent)[sent - 1].clone();
        if last["attempts"] == 2 {
            trace = last["trace_id"].as_str().map(str::to_string);
            break;
        }
    }
    let trace = trace.expect("a request retried on the other backend");
    assert_eq!(trace.len(), 32);
    let spans = collector.spans_of_trace(&trace, 3);
    let server = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == SPAN_KIND_SERVER)
        .expect("server span");
    assert!(
        server.parent_span_id.is_empty(),
        "a new trace has no parent"
    );
    let mut attempts: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == SPAN_KIND_CLIENT)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|s| s.parent_span_id == server.span_id));
    assert_eq!(
        int(&attempts[0].attributes, "http.response.status_code"),
        Some(503)
    );
    assert_eq!(
        string(&attempts[0].attributes, "error.type").as_deref(),
        Some("503")
    );
    assert_eq!(
        int(&attempts[1].attributes, "http.response.status_code"),
        Some(200)
    );
    assert!(string(&attempts[1].attributes, "error.type").is_none());
}

#[test]
fn a_collector_that_is_down_or_silent_never_holds_a_request() {
    let mock = Mock::start("m");
    // Down: nothing listens on its port.
    let down = format!("http://127.0.0.1:{}/v1/traces", free_port());
    // Silent: takes the connection, never answers; a queue of 16 fills.
    let silent = Collector::start(true);
    for (endpoint, extra, reason) in [
        (down, "", "export_failed"),
        (
            silent.endpoint(),
            "  queue_size: 16\n  export_timeout: 30s\n",
            "queue_full",
        ),
    ] {
        let gw = gateway(&endpoint, &[&mock], extra);
        for _ in 0..60 {
            let started = Instant::now();
            let answer = ask(&gw, None);
            assert_eq!(answer.status, 200, "{}", answer.body);
            // Far above a request's time here; an awaited export would take
            // the 5 s export timeout (30 s for the silent collector).
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
        let metric = format!("otel_spans_dropped_total{{reason=\"{reason}\"}}");
        assert!(
            eventually(Duration::from_secs(15), || {
                metric_value(&gw.metrics(), &metric).is_some_and(|n| n > 0.0)
            }),
            "{metric} never counted\n{}",
            gw.metrics()
        );
        let log = gw.log();
        assert!(
            !log.lines()
                .any(|l| l.contains("ERROR") && (l.contains("trace") || l.contains("otel"))),
            "a collector's trouble is not an error of the gateway's\n{log}"
        );
    }
}

#[test]
fn the_standard_environment_applies_and_config_fields_override_it() {
    let collector = Collector::start(false);
    let mock = Mock::start("m");
    let env = [
        ("OTEL_TRACES_SAMPLER", "always_off"),
        ("OTEL_SERVICE_NAME", "from-the-environment"),
    ];
    // Sampled out by the environment: nothing exported, but the upstream
    // still continues the client's trace (not sampled).
    let off = gateway_with_env(&collector.endpoint(), &[&mock], "", &env);
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    assert_eq!(ask(&off, Some(&traceparent)).status, 200);
    let upstream_tp = mock.requests()[0]["headers"]["traceparent"]
        .as_str()
        .expect("traceparent upstream")
        .to_string();
    assert!(
        upstream_tp.starts_with(&format!("00-{CLIENT_TRACE}-")),
        "{upstream_tp}"
    );
    assert!(upstream_tp.ends_with("-00"), "not sampled: {upstream_tp}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(collector.spans().is_empty(), "always_off exports nothing");

    // `sample_ratio` in config wins over OTEL_TRACES_SAMPLER; the service
    // name comes from OTEL_SERVICE_NAME when config names none.
    let on = Gateway::start_with_env(
        &format!(
            "tracing:\n  enabled: true\n  endpoint: {}\n  sample_ratio: 1.0\n  export_interval: 100ms\n\
             upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            collector.endpoint(),
            pool_yaml("main", &[mock.url()], "")
        ),
        &env,
    );
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let answer = post_json(
        &on.url("/v1/chat/completions"),
        &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[(
            "traceparent",
            &format!("00-{other_trace}-b7ad6b7169203331-01"),
        )],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let spans = collector.spans_of_trace(other_trace, 2);
    assert_eq!(
        string(&spans[0].0, "service.name").as_deref(),
        Some("from-the-environment")
    );
}
