//! Five minutes of `benches/soak.py` against the test build: the mix of
//! plain, streamed and translated chats, refusals by auth and by a limit,
//! clients that leave mid-stream, a reload every minute and a flapping
//! backend. Only what must not grow is judged here (RSS, open fds); latency
//! is the hour-long bench's business (`benches/soak.sh`, results in
//! `benches/README.md`).

mod common;

use std::process::Command;

use common::*;

#[test]
fn five_minutes_of_the_mix_grow_neither_memory_nor_open_files() {
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new("python3")
        .arg(repo_path("benches/soak.py"))
        .args([
            "--gateway",
            env!("CARGO_BIN_EXE_ai-api-gateway"),
            "--mock",
            env!("CARGO_BIN_EXE_mock-upstream"),
            "--duration",
            "300",
            "--rate",
            "100",
            "--reload-every",
            "60",
            "--sample-every",
            "5",
            // The first reloads grow the allocator's caches: judged from
            // the middle on.
            "--warmup",
            "150",
            "--no-latency",
            "--out",
        ])
        .arg(out.path())
        .status()
        .expect("python3 runs the soak");
    let verdict = std::fs::read_to_string(out.path().join("soak.json")).unwrap_or_default();
    let log = std::fs::read_to_string(out.path().join("gateway.log")).unwrap_or_default();
    assert!(
        status.success(),
        "the soak failed: {verdict}\ngateway log (last 4 kB):\n{}",
        &log[log.len().saturating_sub(4096)..]
    );
    let verdict: serde_json::Value = serde_json::from_str(&verdict).expect("soak.json");
    assert!(
        verdict["requests"].as_u64().unwrap_or(0) > 10_000,
        "{verdict}"
    );
    assert_eq!(verdict["reloads"], 4, "{verdict}");
}
