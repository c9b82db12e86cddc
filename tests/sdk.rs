//! The official `openai` and `anthropic` Python SDKs as real clients: each
//! calls both models (one behind an OpenAI-style pool, one behind an
//! Anthropic-style pool) through its own API, as JSON, streamed and with a
//! tool round trip, and checks that each error class reaches its own
//! exception type with the gateway's message. One Python process per SDK,
//! both at once, against one gateway.
//!
//! The SDKs live in a venv that `.ci/run` creates (`.venv`, from
//! `tests/sdk/requirements.txt`); `AI_GATEWAY_PYTHON` names another
//! interpreter that has them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::*;

fn python() -> PathBuf {
    common::python::sdk_python()
}

fn config(openai_url: &str, anthropic_url: &str, dead_url: &str) -> String {
    format!(
        "request:
  max_body_bytes: 65536
auth:
  api_keys:
    - {{id: openai-sdk, key: sk-openai-sdk}}
    - {{id: anthropic-sdk, key: sk-anthropic-sdk}}
    - {{id: gpt-only, key: sk-gpt-only, models: [mock-gpt]}}
    - {{id: claude-only, key: sk-claude-only, models: [\"mock-claude*\"]}}
limits:
  mode: local
  rules:
    - {{name: one-per-minute, key: [api_key], counts: requests, limit: 1, window: minute}}
{pools}  dead-pool:
    backends:
      - {{base_url: {dead_url}}}
routes:
  - {{name: gpt, paths: [/v1/chat/completions], models: [mock-gpt], upstream: openai-pool}}
  - {{name: tiny, paths: [/v1/messages], models: [mock-claude-tiny], upstream: anthropic-pool, limits: [one-per-minute]}}
  - {{name: claude, paths: [/v1/messages], models: [\"mock-claude*\"], upstream: anthropic-pool}}
  - {{name: dead, paths: [/v1/chat/completions], models: [mock-dead], upstream: dead-pool}}
",
        pools = provider_pools(openai_url, anthropic_url)
    )
}

fn report(name: &str, output: &Output) -> String {
    format!(
        "{name} ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn both_official_sdks_reach_both_models_through_their_own_api() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = Gateway::start(&config(&openai.url(), &anthropic.url(), &dead));
    let base = gw.url("");
    let base = base.trim_end_matches('/');
    let python = python();
    // The 403 check uses a key that may use only the other SDK's first model.
    let run = |script: &str, key: &str, limited: &str| {
        Command::new(&python)
            .arg(repo_path(&format!("tests/sdk/{script}")))
            .args([base, key, limited])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()))
    };
    let openai_sdk = run("openai_client.py", "sk-openai-sdk", "sk-gpt-only");
    let anthropic_sdk = run("anthropic_client.py", "sk-anthropic-sdk", "sk-claude-only");
    let openai_out = openai_sdk.wait_with_output().expect("the openai SDK run");
    let anthropic_out = anthropic_sdk
        .wait_with_output()
        .expect("the anthropic SDK run");
    let both = format!(
        "{}\n{}",
        report("openai", &openai_out),
        report("anthropic", &anthropic_out)
    );
    assert!(
        openai_out.status.success() && anthropic_out.status.success(),
        "{both}\ngateway log:\n{}",
        gw.log()
    );
    for out in [&openai_out, &anthropic_out] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("all checks passed"), "{both}");
        // Both models, the error classes: the scripts' checks all ran.
        assert!(
            text.lines().filter(|l| l.starts_with("ok: ")).count() >= 30,
            "{both}"
        );
    }
    // Both pools were reached by both SDKs' requests (translated or not).
    let paths = |mock: &Mock| -> Vec<String> {
        mock.requests()
            .iter()
            .filter_map(|r| r["path"].as_str().map(str::to_string))
            .collect()
    };
    assert!(paths(&openai).iter().all(|p| p == "/v1/chat/completions"));
    assert!(paths(&anthropic).iter().all(|p| p == "/v1/messages"));
}

#[test]
fn the_openai_sdk_speaks_http2_over_tls() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let tls = common::pki::LocalhostTls::new(dir.path(), "");
    let gw =
        Gateway::start_with_listen(&tls.listen, &config(&openai.url(), &anthropic.url(), &dead));
    let output = Command::new(python())
        .arg(repo_path("tests/sdk/openai_http2.py"))
        .arg(format!("https://localhost:{}", tls.port))
        .arg(&tls.ca_file)
        .arg("sk-openai-sdk")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("the SDK runs");
    let report = report("openai over HTTP/2", &output);
    assert!(output.status.success(), "{report}");
    assert_eq!(report.matches("ok: ").count(), 5, "{report}");
    let lines = gw.access_lines_at_least(2);
    assert!(lines.iter().all(|l| l["status"] == 200), "{lines:?}");
}

/// Both SDKs on every cloud provider: Azure OpenAI, the Gemini API, and
/// Vertex AI's Gemini and Claude, one mock serving them all (and the
/// tokens Vertex needs).
#[test]
fn both_sdks_reach_models_on_every_cloud_provider() {
    let mock = Mock::start_with("clouds", &["--azure-key", "az", "--gemini-key", "gm"]);
    let host = mock.url().trim_start_matches("http://").to_string();
    let vertex = |publisher: &str| {
        format!(
            "      - base_url: {}\n        provider: vertex\n        options: {{project: p, location: global, publisher: {publisher}, credentials: {{metadata: {{host: \"{host}\"}}}}}}\n",
            mock.url()
        )
    };
    let gw = Gateway::start(&format!(
        "auth:\n  api_keys:\n    - {{id: sdk, key: sk-clouds}}\n\
         upstreams:\n  azure:\n    backends:\n      - {{base_url: {url}, provider: azure, api_key: az, options: {{api_version: 2024-10-21}}}}\n  gemini:\n    backends:\n      - {{base_url: {url}, provider: gemini, api_key: gm}}\n  vertex-gemini:\n    backends:\n{vg}  vertex-claude:\n    backends:\n{vc}\
         routes:\n  - {{name: azure, paths: [/v1/chat/completions], models: [gpt-4o], upstream: azure}}\n  - {{name: gemini, paths: [/v1/chat/completions], models: [gemini-3.8-flash], upstream: gemini}}\n  - {{name: vertex-gemini, paths: [/v1/chat/completions], models: [gemini-3.7-flash], upstream: vertex-gemini}}\n  - {{name: vertex-claude, paths: [/v1/messages], models: [\"claude-sonnet-4-5@20250929\"], upstream: vertex-claude}}\n",
        url = mock.url(),
        vg = vertex("google"),
        vc = vertex("anthropic"),
    ));
    assert!(
        eventually(std::time::Duration::from_secs(10), || get(
            &gw.admin_url("/ready")
        )
        .0 == 200),
        "{}",
        get(&gw.admin_url("/ready")).1
    );
    let base = gw.url("");
    let output = Command::new(python())
        .arg(repo_path("tests/sdk/clouds.py"))
        .args([
            base.trim_end_matches('/'),
            "sk-clouds",
            "gpt-4o",
            "gemini-3.8-flash",
            "gemini-3.7-flash",
            "claude-sonnet-4-5@20250929",
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("the SDKs run");
    let report = report("clouds", &output);
    assert!(
        output.status.success(),
        "{report}\ngateway log:\n{}",
        gw.log()
    );
    // The model list, then 4 models x 2 SDKs x (5 calls + 7 error classes).
    assert_eq!(report.matches("ok: ").count(), 97, "{report}");
    let paths: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r["path"].as_str().map(str::to_string))
        .collect();
    for expected in [
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        "/v1beta/models/gemini-3.8-flash:streamGenerateContent?alt=sse",
        "/v1/projects/p/locations/global/publishers/google/models/gemini-3.7-flash:generateContent",
        "/v1/projects/p/locations/global/publishers/anthropic/models/claude-sonnet-4-5%4020250929:streamRawPredict",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected} not in {paths:?}");
    }
}

/// Streams an upstream breaks after its 200, translated both ways: each
/// reaches the SDK as its own API error while it iterates (never a hang, a
/// transport error or an answer that looks complete), and unknown events or
/// data after the end leave the answer whole (`tests/sdk/hostile.py`).
#[test]
fn both_sdks_raise_their_own_error_on_a_stream_the_upstream_breaks() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let gw = Gateway::start(&format!(
        "auth:\n  api_keys:\n    - {{id: sdk, key: sk-hostile-sdk}}\n{pools}\
         routes:\n  - {{name: to-anthropic, paths: [/v1/chat/completions], models: [mock-claude], upstream: anthropic-pool}}\n  - {{name: to-openai, paths: [/v1/messages], models: [mock-gpt], upstream: openai-pool}}\n",
        pools = provider_pools(&openai.url(), &anthropic.url())
    ));
    let base = gw.url("");
    let output = Command::new(python())
        .arg(repo_path("tests/sdk/hostile.py"))
        .args([
            base.trim_end_matches('/'),
            "sk-hostile-sdk",
            "mock-claude",
            "mock-gpt",
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("the SDKs run");
    let report = report("hostile", &output);
    assert!(
        output.status.success(),
        "{report}\ngateway log:\n{}",
        gw.log()
    );
    // 2 SDKs x (5 breaks + 2 whole).
    assert_eq!(report.matches("ok: ").count(), 14, "{report}");
}
