//! The shipped demo config, run as a new user runs it (on free ports): the
//! demo key works, answers carry the demo limit's headers, and /metrics
//! shows the limit and the token counts.

mod common;

use std::time::Duration;

use common::demo::start_demo;
use common::*;

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

/// The README's section after `heading`, up to the next `## ` heading.
fn readme_section(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let start = readme.find(heading).expect("the heading");
    let rest = &readme[start + heading.len()..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// The fenced blocks of `lang` in `text`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    text.split(&fence)
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(code, _)| code.to_string()))
        .collect()
}

/// The Quick start runs as written against the demo (on free ports, the
/// binary nextest built): every curl answers what its comment says (401
/// where it says so, else 200), and the Python SDK example prints both
/// models' answers.
#[test]
fn the_readme_quick_start_works_as_written() {
    let demo = start_demo();
    let section = readme_section("## Quick start");
    let on_our_ports = |code: &str| {
        code.replace("localhost:8080", &format!("localhost:{}", demo.proxy))
            .replace("localhost:9090", &format!("localhost:{}", demo.admin))
    };
    let shell = blocks(&section, "sh")
        .into_iter()
        .find(|b| b.contains("curl"))
        .expect("the curl block");
    // Each curl with its continuation lines, and the comment before it.
    let mut commands: Vec<(String, String)> = Vec::new();
    let mut comment = String::new();
    let mut lines = shell.lines().peekable();
    let mut key = String::new();
    while let Some(line) = lines.next() {
        if let Some(c) = line.strip_prefix('#') {
            comment = c.to_string();
        } else if line.starts_with("KEY=") {
            key = line.to_string();
        } else if line.starts_with("curl") {
            let mut command = line.to_string();
            while command.ends_with('\\') {
                command.pop();
                command.push_str(lines.next().expect("a continued line"));
            }
            commands.push((comment.clone(), command));
        }
    }
    assert!(commands.len() >= 10, "{commands:?}");
    for (comment, command) in &commands {
        let want = if comment.contains("401") { 401 } else { 200 };
        let script = format!(
            "{key}\n{} -s -o /dev/stderr -w '%{{http_code}}'",
            on_our_ports(command.split(" #").next().unwrap_or(command))
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("bash runs");
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        let body = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(status, want.to_string(), "{command}\n{body}");
        assert!(!body.is_empty(), "{command}: an empty answer");
    }
    let python = blocks(&section, "python")
        .into_iter()
        .next()
        .expect("the SDK example");
    let out = std::process::Command::new(common::python::sdk_python())
        .arg("-c")
        .arg(on_our_ports(&python))
        .output()
        .expect("python runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for model in ["mock-gpt", "mock-claude"] {
        assert_eq!(printed.matches(model).count(), 3, "{printed}");
    }
}

/// Claude Code's own model names (say its small model's) reach the
/// Anthropic-style mock as `mock-claude`, through the demo's glob alias.
#[test]
fn claude_model_names_reach_the_mock_through_a_glob_alias() {
    let demo = start_demo();
    let url = format!("http://127.0.0.1:{}/v1/messages", demo.proxy);
    for model in ["claude-haiku-4-5-20251001", "claude-sonnet-4-6"] {
        let body = serde_json::json!({"model": model, "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]});
        let resp = post_json(
            &url,
            &body,
            &[
                ("x-api-key", "sk-demo-key-1234"),
                ("anthropic-version", "2023-06-01"),
            ],
        );
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(
            resp.json()["model"],
            "mock-claude",
            "{model}: {}",
            resp.body
        );
    }
}
