//! The config's JSON Schema (`conf/gateway.schema.json`): it is what
//! `ai-api-gateway schema` prints now, every shipped config validates
//! against it, and files the loader refuses are refused by it too (an
//! unknown field, a keyword that is none of its words, a duration that is
//! not one, a required section missing).

mod common;

use std::process::Command;

use common::repo_path;
use serde_json::Value;

fn shipped() -> Value {
    let text = std::fs::read_to_string(repo_path("conf/gateway.schema.json")).expect("shipped");
    serde_json::from_str(&text).expect("the shipped schema is JSON")
}

fn yaml(text: &str) -> Value {
    let value: serde_yaml::Value = serde_yaml::from_str(text).expect("YAML");
    serde_json::to_value(value).expect("as JSON")
}

fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("a valid JSON Schema");
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

#[test]
fn the_shipped_schema_is_current() {
    let out = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .arg("schema")
        .output()
        .expect("the gateway runs");
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        printed == shipped(),
        "conf/gateway.schema.json is stale: run `cargo run -- schema > conf/gateway.schema.json`"
    );
}

#[test]
fn every_shipped_config_validates() {
    let schema = shipped();
    for entry in std::fs::read_dir(repo_path("conf")).expect("conf/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(
                text.starts_with("# yaml-language-server: $schema=gateway.schema.json"),
                "{} does not name its schema for editors",
                path.display()
            );
            let found = errors(&schema, &yaml(&text));
            assert!(found.is_empty(), "{}: {found:#?}", path.display());
        }
    }
}

#[test]
fn what_the_loader_refuses_the_schema_refuses() {
    let schema = shipped();
    let good = "upstreams:\n  a:\n    backends:\n      - {base_url: \"http://127.0.0.1:1\"}\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n";
    assert_eq!(errors(&schema, &yaml(good)), Vec::<String>::new());
    for (bad, at) in [
        (good.replace("routes:", "rootes:"), ""),
        (good.replace("{base_url:", "{strategy: fastest, base_url:"), "/upstreams/a/backends/0"),
        (good.replace("backends:", "strategy: fastest\n    backends:"), "/upstreams/a/strategy"),
        (good.replace("base_url: \"http://127.0.0.1:1\"", "base_url: \"http://127.0.0.1:1\", provider: bedrok"), "/upstreams/a/backends/0/provider"),
        (format!("{good}request: {{body_timeout: soon}}\n"), "/request/body_timeout"),
        (format!("{good}limits:\n  rules:\n    - {{name: x, key: [api_key], counts: requests, limit: 1, window: week}}\n"), "/limits/rules/0/window"),
        (format!("{good}access_log: {{format: xml}}\n"), "/access_log/format"),
        (format!("{good}auth:\n  jwt:\n    keys:\n      - {{algorithms: [HS999], secret: x}}\n"), "/auth/jwt/keys/0/algorithms/0"),
        ("routes: []\n".to_string(), ""),
    ] {
        let found = errors(&schema, &yaml(&bad));
        // At the field, or at the optional section holding it (a section
        // that may be absent is one of two schemas, and refused whole).
        let refused_at = |e: &String| {
            let path = e.split(':').next().unwrap_or_default();
            at.starts_with(path) && (path.is_empty() == at.is_empty())
        };
        assert!(
            found.iter().any(refused_at),
            "not refused at `{at}`: {found:?}\n{bad}"
        );
        // And the loader agrees.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, &bad).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
            .args(["check", "-c"])
            .arg(&file)
            .output()
            .expect("check runs");
        assert!(!out.status.success(), "the loader took it:\n{bad}");
    }
}
