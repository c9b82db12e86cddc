//! Claude Code itself (`@anthropic-ai/claude-code`, pinned in
//! `tests/agents/package-lock.json`) through the shipped demo config, as a
//! new user points it at the gateway (`ANTHROPIC_BASE_URL`,
//! `ANTHROPIC_AUTH_TOKEN`, `--model`): on `mock-claude` (an Anthropic pool,
//! passed through to a mock that knows today's Messages API and its betas)
//! and on `mock-gpt` (an OpenAI pool, translated). Claude Code streams and
//! asks for adaptive thinking on every request, so each turn here is a
//! streamed one with thinking on; on the Anthropic pool the mock answers
//! with a signed thinking block, which Claude Code sends back on the next
//! turn, where the mock refuses any signature it did not give.
//!
//! Claude Code gets a `HOME` of its own under `target/` and sends nothing
//! but the API calls (`CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::agents::claude_code;
use common::demo::{start_demo, Demo};
use common::*;

const DEMO_KEY: &str = "sk-demo-key-1234";

/// `claude -p prompt --model model` in `dir`, with the extra arguments;
/// its exit success and stdout. Bounded far above a turn against the mock
/// (a few seconds), so only a hang fails it.
fn claude(demo: &Demo, dir: &Path, model: &str, prompt: &str, extra: &[&str]) -> (bool, String) {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("a home for Claude Code");
    let mut child = Command::new(claude_code())
        .args(["-p", prompt, "--model", model])
        .args(extra)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env(
            "ANTHROPIC_BASE_URL",
            format!("http://127.0.0.1:{}", demo.proxy),
        )
        .env("ANTHROPIC_AUTH_TOKEN", DEMO_KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Claude Code starts");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Claude Code on {model} did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("Claude Code's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("claude on {model}: {}\n{stdout}\n{stderr}", output.status);
    (output.status.success(), stdout)
}

fn admin_metrics(demo: &Demo) -> String {
    get(&format!("http://127.0.0.1:{}/metrics", demo.admin)).1
}

/// `claude -p` answers on both demo models; on the translated one, what
/// steers only Anthropic's servers (context editing, prompt-cache
/// breakpoints, the betas, tools loaded on demand) is dropped and counted
/// by name, and nothing is refused.
#[test]
fn claude_code_answers_on_every_demo_model() {
    let demo = start_demo();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    for model in ["mock-claude", "mock-gpt"] {
        let (ok, answer) = claude(&demo, dir.path(), model, "say hi", &[]);
        assert!(ok, "{model}: {answer}");
        assert!(answer.contains("word0 word1 word2"), "{model}: {answer}");
    }
    let metrics = admin_metrics(&demo);
    for param in ["context_management", "cache_control", "anthropic-beta"] {
        let series = format!(r#"translation_dropped_params_total{{param="{param}",route="chat"}}"#);
        assert!(
            metric_value(&metrics, &series).is_some_and(|n| n >= 1.0),
            "{series} not counted:\n{metrics}"
        );
    }
}

/// A tool round trip on each demo model: the mock answers the first turn
/// with a call of Claude Code's own `Read` tool for a file the test wrote,
/// Claude Code reads it and sends the result, and the second answer quotes
/// it.
#[test]
fn claude_code_reads_a_file_through_a_tool_round_trip() {
    let demo = start_demo();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    for model in ["mock-claude", "mock-gpt"] {
        let secret = format!("the secret of {model} is tangerine-{}", std::process::id());
        let file = dir.path().join(format!("{model}.txt"));
        std::fs::write(&file, &secret).expect("write the file");
        let prompt = format!(
            "Read the file.\nmock-call: Read {{\"file_path\": \"{}\"}}",
            file.display()
        );
        let (ok, answer) = claude(
            &demo,
            dir.path(),
            model,
            &prompt,
            &["--allowedTools", "Read"],
        );
        assert!(ok, "{model}: {answer}");
        assert!(answer.contains("The tool said:"), "{model}: {answer}");
        assert!(answer.contains(&secret), "{model}: {answer}");
    }
}
