//! The agent CLIs (Claude Code, from the npm registry, each with its own
//! binary) at the versions `tests/agents/package-lock.json` pins: installed
//! once under cargo's target directory by the first test that needs one (a
//! file lock keeps parallel tests from installing twice), and again when
//! the lock file changes. `npm` must be on the machine (`.ci/run` installs
//! it when missing).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo_path;

/// The `claude` binary of the pinned Claude Code.
pub fn claude_code() -> PathBuf {
    installed().join("node_modules/.bin/claude")
}

/// The directory the pinned CLIs are installed in.
fn installed() -> PathBuf {
    let lock_file = std::fs::read(repo_path("tests/agents/package-lock.json"))
        .expect("tests/agents/package-lock.json");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("agents-{:016x}", super::python::fnv1a(&lock_file)));
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("target tmp dir");
    let lock = File::create(dir.with_extension("lock")).expect("install lock file");
    lock.lock().expect("install lock");
    let ready = dir.join("ready");
    if ready.exists() {
        return dir;
    }
    eprintln!("installing the agent CLIs at {} (once)", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("install dir");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(repo_path(&format!("tests/agents/{file}")), dir.join(file))
            .expect("copy the pinned package files");
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("npm ci: cannot run (is npm installed?): {e}"));
    assert!(
        output.status.success(),
        "npm ci in {} failed (needs the npm registry):\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    File::create(&ready).expect("install ready marker");
    dir
}
