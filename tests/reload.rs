//! The process lifecycle: config reload by SIGHUP and by file watch (good
//! and bad files), graceful shutdown with a stream in flight, and a graceful
//! upgrade under load with zero failed requests.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime second
    gw.rewrite_config(&body(&mock, "mock-gpt, other", watch));
    assert!(eventually(Duration::from_secs(10), || chat(&gw, "other")
        .status
        == 200));
    assert!(gw.log().contains("(file change)"));
}

#[test]
fn sigterm_lets_a_stream_in_flight_finish_then_exits_zero() {
    let mock = Mock::start("a");
    let mut gw = Gateway::start(&body(&mock, "mock-gpt", ""));
    let mut stream = open_held_stream(gw.proxy_port, "term");
    gw.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    mock.control("/mock/release/term");
    let mut rest = String::new();
    stream
        .read_to_string(&mut rest)
        .expect("the stream completes");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn graceful_upgrade_drops_no_request() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&body(&mock, "mock-gpt", ""));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let url = gw.url("/v1/chat/completions");
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(10))
                        .build();
                    match agent.post(&url).send_string(r#"{"model":"mock-gpt"}"#) {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    let mut held = open_held_stream(gw.proxy_port, "upgrade");

    let mut new = gw.spawn_upgrade();
    std::thread::sleep(Duration::from_millis(500));
    let old_pid = gw.pid();
    signal(old_pid, "QUIT");
    // The new process answers on the same port.
    let upgrade_log = || std::fs::read_to_string(gw.upgrade_log_path()).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(15), || upgrade_log()
            .contains("Bootstrap done")),
        "{}",
        upgrade_log()
    );
    std::thread::sleep(Duration::from_millis(500));
    mock.control("/mock/release/upgrade");
    let mut rest = String::new();
    held.read_to_string(&mut rest)
        .expect("the held stream completes");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("during the upgrade: {ok} requests succeeded, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 0);
    // The new process serves on.
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    let _ = new.kill();
    let _ = new.wait();
}
