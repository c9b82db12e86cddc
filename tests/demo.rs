//! The shipped demo config, run as a new user runs it (on free ports): the
//! demo key works, answers carry the demo limit's headers, and /metrics
//! shows the limit and the token counts.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The demo gateway, killed on drop.
struct Demo {
    child: Child,
    proxy: u16,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, admin, mock) = (free_port(), free_port(), free_port());
    let text = std::fs::read_to_string(repo_path("conf/demo.yaml"))
        .expect("conf/demo.yaml")
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{proxy}"))
        .replace("0.0.0.0:9090", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{mock}"))
        .replace(
            "server:\n",
            &format!(
                "server:\n  pid_file: {0}/demo.pid\n  upgrade_sock: {0}/demo.sock\n",
                dir.path().display()
            ),
        );
    let config = dir.path().join("demo.yaml");
    std::fs::write(&config, text).expect("write the demo config");
    let child = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", proxy)).is_err() {
        assert!(Instant::now() < deadline, "the demo did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Demo {
        child,
        proxy,
        admin,
        _dir: dir,
    }
}

#[test]
fn the_demo_shows_limits_and_tokens() {
    let demo = start_demo();
    let url = format!("http://127.0.0.1:{}/v1/chat/completions", demo.proxy);
    let body =
        serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_json(&url, &body, &[("authorization", "Bearer sk-demo-key-1234")]);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("x-ratelimit-limit-requests"), Some("600"));
    assert_eq!(resp.header("x-ratelimit-remaining-requests"), Some("599"));
    let metrics = get(&format!("http://127.0.0.1:{}/metrics", demo.admin)).1;
    assert!(
        metrics.contains(r#"rate_limit_hits_total{kind="requests",rule="demo-per-key-rpm"} 0"#),
        "{metrics}"
    );
    assert!(
        eventually(Duration::from_secs(5), || get(&format!(
            "http://127.0.0.1:{}/metrics",
            demo.proxy
        ))
        .1
        .contains("llm_tokens_total{model=\"mock-gpt\"")),
        "no token counts on the proxy port's /metrics"
    );
    // The demo prices its models: one request shows what it cost.
    let cost = |metrics: &str| {
        metric_value(
            metrics,
            r#"llm_cost_usd_total{model="mock-gpt",route="chat"}"#,
        )
    };
    let admin_metrics = || get(&format!("http://127.0.0.1:{}/metrics", demo.admin)).1;
    assert!(
        eventually(Duration::from_secs(5), || cost(&admin_metrics())
            .is_some_and(|usd| usd > 0.0)),
        "no cost after one request\n{}",
        admin_metrics()
    );
    // And the demo team's budget shows what it spent.
    let spend = send(
        "GET",
        &format!("http://127.0.0.1:{}/v1/spend", demo.admin),
        &[("authorization", "Bearer demo-admin-token-change-me")],
        None,
    );
    assert_eq!(spend.status, 200, "{}", spend.body);
    let line = &spend.json()["data"][0];
    assert_eq!(line["rule"], "demo-team-monthly", "{}", spend.body);
    assert_eq!(line["key"]["team"], "demo", "{}", spend.body);
    assert!(
        line["spent_usd"].as_f64().is_some_and(|usd| usd > 0.0),
        "{}",
        spend.body
    );
}

/// The README's promise: both demo models answer through both APIs, the
/// OpenAI-style pool's model translated for Anthropic clients and the
/// reverse.
#[test]
fn the_demo_serves_both_models_through_both_apis() {
    let demo = start_demo();
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", demo.proxy);
    for model in ["mock-gpt", "mock-claude"] {
        let hi = serde_json::json!({"model": model, "max_tokens": 32,
            "messages": [{"role": "user", "content": "hi"}]});
        let chat = post_json(
            &url("/v1/chat/completions"),
            &hi,
            &[("authorization", "Bearer sk-demo-key-1234")],
        );
        assert_eq!(chat.status, 200, "{model}: {}", chat.body);
        assert_eq!(chat.json()["object"], "chat.completion", "{model}");
        assert_eq!(chat.header("x-gateway-model"), Some(model));
        let message = post_json(
            &url("/v1/messages"),
            &hi,
            &[
                ("x-api-key", "sk-demo-key-1234"),
                ("anthropic-version", "2023-06-01"),
            ],
        );
        assert_eq!(message.status, 200, "{model}: {}", message.body);
        assert_eq!(message.json()["type"], "message", "{model}");
        assert_eq!(message.json()["content"][0]["type"], "text", "{model}");
    }
}
