//! Config reload by SIGHUP and by file watch, with good and bad files, and
//! key rotation without a restart. Drain and upgrades are in `drain.rs`.

mod common;

use std::time::Duration;

use common::*;

fn body(mock: &Mock, models: &str, extra_top: &str) -> String {
    format!(
        "{extra_top}upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [{models}]\n    upstream: main\n",
        pool_yaml("main", &[mock.url()], "")
    )
}

fn reloads(gw: &Gateway, result: &str) -> f64 {
    metric_value(
        &gw.metrics(),
        &format!("config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

#[test]
fn sighup_applies_a_valid_file_and_keeps_the_old_one_on_errors() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&body(&mock, "mock-gpt", ""));
    assert_eq!(chat(&gw, "new-model").status, 404);

    gw.rewrite_config(&body(&mock, "mock-gpt, new-model", ""));
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || chat(
        &gw,
        "new-model"
    )
    .status
        == 200));
    assert_eq!(reloads(&gw, "ok"), 1.0);

    // A broken file changes nothing.
    gw.rewrite_config("upstreams: {}\nroutes: []\n");
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || reloads(
        &gw, "error"
    ) == 1.0));
    assert_eq!(chat(&gw, "new-model").status, 200);
    assert!(
        gw.log().contains("config reload (SIGHUP) refused"),
        "{}",
        gw.log()
    );
    assert!(gw.log().contains("upstreams: needs at least one pool"));
}

#[test]
fn keys_rotate_without_a_restart() {
    let mock = Mock::start("a");
    let auth = |key: &str| {
        format!(
            "auth:\n  api_keys:\n    - {{id: k, sha256: \"{}\"}}\n",
            ai_api_gateway::auth::hash_key(key)
        )
    };
    let gw = Gateway::start(&body(&mock, "mock-gpt", &auth("sk-old")));
    let call = |key: &str| {
        post_json(
            &gw.url("/v1/chat/completions"),
            &serde_json::json!({"model": "mock-gpt"}),
            &[("x-api-key", key)],
        )
        .status
    };
    assert_eq!(call("sk-old"), 200);
    gw.rewrite_config(&body(&mock, "mock-gpt", &auth("sk-new")));
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || call("sk-new") == 200));
    assert_eq!(call("sk-old"), 401);
}

#[test]
fn a_watched_file_reloads_by_itself() {
    let mock = Mock::start("a");
    let watch = "reload: {watch: true, interval: 100ms}\n";
    let gw = Gateway::start(&body(&mock, "mock-gpt", watch));
    let started_with = std::fs::metadata(&gw.config_path)
        .and_then(|m| m.modified())
        .expect("mtime");
    gw.rewrite_config(&body(&mock, "mock-gpt, other", watch));
    // A file rewritten within the same mtime tick looks unchanged: date the
    // new one clearly after the first.
    std::fs::File::options()
        .write(true)
        .open(&gw.config_path)
        .and_then(|f| f.set_modified(started_with + Duration::from_secs(2)))
        .expect("set mtime");
    assert!(eventually(Duration::from_secs(10), || chat(&gw, "other")
        .status
        == 200));
    assert!(gw.log().contains("(file change)"));
}
