//! Every metric label value comes from config or a fixed list: whatever
//! clients send (models, paths, methods, header values) and whatever the
//! upstream answers (every status code from 200 to 999, model names), the
//! number of series stops growing, and each label value belongs to the set
//! the config and the gateway's fixed lists allow.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::*;

/// A small deterministic generator: the test must not depend on luck.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self) -> String {
        let n = 4 + self.next() % 12;
        (0..n)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn send(gw: &Gateway, method: &str, path: &str, headers: &str, body: &str) -> u16 {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(gw.proxy_port, request.as_bytes(), Duration::from_secs(10));
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The series of a metrics text: `name{labels}` per sample line.
fn series(text: &str) -> Vec<(String, HashMap<String, String>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let key = line.rsplit_once(' ').map_or(line, |(k, _)| k);
            let (name, labels) = key.split_once('{').unwrap_or((key, ""));
            let labels = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            (name.to_string(), labels)
        })
        .collect()
}

/// One batch of hostile traffic.
fn batch(gw: &Gateway, rng: &mut Rng, n: usize) {
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE", "FROB", "M-SEARCH",
    ];
    for _ in 0..n {
        let model = match rng.next() % 3 {
            0 => format!("mock-{}", rng.word()),
            1 => rng.word(),
            _ => "exact-model".to_string(),
        };
        let path = match rng.next() % 4 {
            0 => format!("/{}/{}", rng.word(), rng.word()),
            _ => "/v1/chat/completions".to_string(),
        };
        let status = 200 + rng.next() % 800;
        let headers = format!(
            "x-request-id: {}\r\nuser-agent: {}\r\nx-mock-status: {status}\r\nx-mock-chunks: {}\r\n",
            rng.word(),
            rng.word(),
            1 + rng.next() % 3
        );
        let stream = rng.next().is_multiple_of(2);
        let body = format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let method = if path.starts_with("/v1/chat") && !rng.next().is_multiple_of(4) {
            "POST"
        } else {
            rng.pick(&methods)
        };
        send(gw, method, &path, &headers, &body);
    }
}

#[test]
fn label_values_come_from_config_whatever_clients_and_upstreams_send() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&format!(
        "limits:\n  rules:\n    - {{name: per-ip, key: [client_ip], counts: requests, limit: 1000000, window: minute}}\n\
         upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [\"mock-*\", exact-model]\n    upstream: main\n    limits: [per-ip]\n",
        pool_yaml("main", &[mock.url()], "")
    ));
    // Every status an upstream can send, with every kind of method, each
    // through the gateway once (on keep-alive connections, for speed); then
    // what the gateway answers itself.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let url = gw.url("/v1/chat/completions");
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FROB"] {
        for status in 200..1000 {
            let _ = agent
                .request(method, &url)
                .set("x-mock-status", &status.to_string())
                .send_string(r#"{"model":"mock-x","messages":[{"role":"user","content":"hi"}]}"#);
        }
        for (path, model) in [
            ("/v1/chat/completions", "mock-x"),
            ("/v1/chat/completions", "exact-model"),
            ("/v1/chat/completions", "unknown-model"),
            ("/nowhere", "mock-x"),
        ] {
            send(
                &gw,
                method,
                path,
                "",
                &format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#),
            );
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    batch(&gw, &mut rng, 400);
    let settle = |gw: &Gateway| {
        // Requests are counted in their logging phase, after the answer.
        std::thread::sleep(Duration::from_millis(300));
        series(&gw.metrics())
    };
    let first = settle(&gw);
    batch(&gw, &mut rng, 400);
    let second = settle(&gw);
    let names = |s: &[(String, HashMap<String, String>)]| {
        s.iter()
            .map(|(n, l)| format!("{n}{:?}", l.iter().collect::<BTreeSet<_>>()))
            .collect::<BTreeSet<_>>()
    };
    let new_series: Vec<String> = names(&second).difference(&names(&first)).cloned().collect();
    assert!(
        new_series.is_empty(),
        "400 more hostile requests added series: {new_series:?}"
    );
    eprintln!("{} series after 1,600 hostile requests", second.len());

    let backend = format!("main/{}", mock.addr);
    let statuses: BTreeSet<String> = [
        "0", "200", "201", "204", "301", "302", "304", "400", "401", "403", "404", "405", "408",
        "409", "411", "413", "415", "422", "429", "431", "499", "500", "501", "502", "503", "504",
        "1xx", "2xx", "3xx", "4xx", "5xx", "other",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let reasons = [
        "missing",
        "malformed",
        "expired",
        "not_yet_valid",
        "bad_signature",
        "bad_issuer",
        "bad_audience",
        "unknown_key",
        "too_large",
        "forbidden_model",
        "insufficient_scope",
        // otel_spans_dropped_total
        "queue_full",
        "export_failed",
        "export_stopped",
        // client_handshake_failures_total
        "timeout",
        "invalid",
    ];
    let allowed = |label: &str, value: &str| -> bool {
        match label {
            "route" => {
                ["chat", "unmatched", "health", "ready", "models", "metrics"].contains(&value)
            }
            "method" => [
                "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "OTHER",
            ]
            .contains(&value),
            "status" => {
                statuses.contains(value) || ["connect_error", "timeout", "error"].contains(&value)
            }
            "model" => ["mock-*", "exact-model", "other"].contains(&value),
            // The fixed list of provider kinds.
            "provider" => [
                "openai",
                "anthropic",
                "azure",
                "gemini",
                "vertex",
                "bedrock",
            ]
            .contains(&value),
            "type" => ["input", "output"].contains(&value),
            "upstream" => value == "main",
            "backend" => value == backend,
            "rule" => value == "per-ip",
            "kind" => value == "requests",
            "reason" => reasons.contains(&value),
            "result" => ["ok", "error"].contains(&value),
            "phase" => ["idle", "header"].contains(&value),
            "stage" => ["tls", "proxy_protocol"].contains(&value),
            "state" => ["shared", "fallback", "emptied"].contains(&value),
            // The fixed list of `llm::AnswerFault`s.
            "fault" => [
                "cut",
                "timeout",
                "invalid_answer",
                "event_too_large",
                "answer_too_large",
                "upstream_error",
                "invalid_usage",
                "no_usage",
                "trailing_data",
            ]
            .contains(&value),
            "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
            _ => false,
        }
    };
    for (name, labels) in &second {
        for (label, value) in labels {
            assert!(
                allowed(label, value),
                "{name}: {label}=\"{value}\" is not from config"
            );
        }
    }
    // The hostile models did reach the token counter, under config's names.
    assert!(
        second.iter().any(|(n, l)| n == "llm_tokens_total"
            && l.get("model").map(String::as_str) == Some("mock-*")),
        "no token counts under the route's pattern"
    );
}
