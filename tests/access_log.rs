//! The access log's writer, over the real binary: lines go to the file the
//! config names, a writer that cannot keep up never holds a request (its
//! lines are dropped and counted), and a drain writes every queued line
//! before the process exits.

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn gateway_logging_to(mock: &Mock, path: &std::path::Path, buffer_bytes: usize) -> Gateway {
    Gateway::start(&format!(
        "access_log:\n  path: {}\n  buffer_bytes: {buffer_bytes}\nupstreams:\n{}routes:\n  - {{name: chat, paths: [/v1/chat/completions], models: [mock-gpt], upstream: main}}\n",
        path.display(),
        pool_yaml("main", &[mock.url()], "")
    ))
}

fn lines_in(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn lines_go_to_the_configured_file_and_a_drain_writes_them_all() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let mut gw = gateway_logging_to(&mock, &path, 1 << 20);
    for _ in 0..50 {
        assert_eq!(chat(&gw, "mock-gpt").status, 200);
    }
    // The last ones may still be queued: SIGTERM, and the exit writes them.
    gw.signal("TERM");
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .expect("the drain ends");
    assert!(status.success(), "{status:?}");
    let lines = lines_in(&path);
    assert_eq!(lines.len(), 50, "every line written before the exit");
    assert!(lines
        .iter()
        .all(|l| l["route"] == "chat" && l["status"] == 200));
    assert!(
        !gw.log().contains("\"route\":\"chat\""),
        "the lines went to the file, not to stdout"
    );
}

/// The writer blocks on a pipe nobody reads: requests are still answered
/// at once, and the lines that found the queue full are counted.
#[test]
fn a_writer_that_falls_behind_drops_and_counts_lines_instead_of_holding_requests() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("stalled.log");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    // A reader that never reads: the gateway can open the pipe, and its
    // writes stop once the pipe's buffer (64 KiB) is full; then 4 KiB of
    // lines wait, and the rest are dropped.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nonblock())
        .open(&fifo)
        .expect("open the pipe for reading");
    let gw = gateway_logging_to(&mock, &fifo, 4096);
    let started = Instant::now();
    for _ in 0..1500 {
        assert_eq!(chat(&gw, "mock-gpt").status, 200);
    }
    // A bound far above the time 1,500 requests take, far below the time
    // they would take if each waited for a stalled write.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "requests waited for the log: {:?}",
        started.elapsed()
    );
    let dropped = || metric_value(&gw.metrics(), "access_log_dropped_total").unwrap_or(0.0);
    assert!(
        eventually(Duration::from_secs(10), || dropped() > 1000.0),
        "dropped lines counted: {}",
        dropped()
    );
}

/// O_NONBLOCK, so opening the read end does not wait for a writer.
fn libc_o_nonblock() -> i32 {
    0o4000
}
