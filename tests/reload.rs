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
            &serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
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

#[test]
fn a_reload_keeps_what_unchanged_backends_have_shown() {
    // An unhealthy backend stays out, an ejected one stays ejected, across
    // a reload that changes something else; a changed base URL starts over.
    let sick = Mock::start("sick");
    sick.control("/mock/health/503");
    let refused = format!("http://127.0.0.1:{}", free_port());
    let good = Mock::start("good");
    let pools = |extra_model: &str| {
        format!(
            "upstreams:\n{}{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt{extra_model}]\n    upstream: checked\n\
             \x20 - name: other\n    paths: [/v1/embeddings]\n    models: [mock-gpt]\n    upstream: ejecting\n",
            pool_yaml(
                "checked",
                &[sick.url()],
                "    health_check: {path: /health, interval: 100ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 2}\n",
            ),
            pool_yaml(
                "ejecting",
                &[refused.clone(), good.url()],
                "    strategy: round_robin\n    passive_health: {consecutive_failures: 1, cooldown: 10m}\n",
            ),
        )
    };
    let gw = Gateway::start(&pools(""));
    assert!(
        eventually(Duration::from_secs(10), || get(&gw.admin_url("/ready")).0
            == 503),
        "the health checks never took the sick backend out"
    );
    let embeddings = |gw: &Gateway| {
        post_json(
            &gw.url("/v1/embeddings"),
            &serde_json::json!({"model": "mock-gpt", "input": "x"}),
            &[],
        )
        .status
    };
    // One refused attempt ejects the refusing backend (the retry succeeds).
    for _ in 0..4 {
        assert_eq!(embeddings(&gw), 200);
    }
    let refused_label = format!(
        "upstream_requests_total{{backend=\"ejecting/{}\",status=\"connect_error\",upstream=\"ejecting\"}}",
        refused.trim_start_matches("http://")
    );
    assert_eq!(metric_value(&gw.metrics(), &refused_label), Some(1.0));

    gw.rewrite_config(&pools(", other-model"));
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || reloads(&gw, "ok") == 1.0));
    // Right after the reload: still not ready, still 503 for the sick pool,
    // and the ejected backend is never tried again.
    let (status, body) = get(&gw.admin_url("/ready"));
    assert_eq!(status, 503, "{body}");
    chat(&gw, "other-model").assert_error(503, "no_healthy_upstream");
    for _ in 0..6 {
        assert_eq!(embeddings(&gw), 200);
    }
    assert_eq!(metric_value(&gw.metrics(), &refused_label), Some(1.0));

    // The sick backend recovers under the new generation's checks.
    sick.control("/mock/health/200");
    assert!(eventually(Duration::from_secs(10), || chat(
        &gw,
        "other-model"
    )
    .status
        == 200));
}
