//! The Python that runs the official SDKs (and, later, other real
//! clients): a venv of `tests/sdk/requirements.txt`, made once under
//! cargo's target directory by the first test that needs it (a file lock
//! keeps parallel tests from making it twice), and made again when the
//! requirements change. `AI_GATEWAY_PYTHON` names another interpreter.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo_path;

/// The interpreter with the SDKs of `tests/sdk/requirements.txt`.
pub fn sdk_python() -> PathBuf {
    if let Some(path) = std::env::var_os("AI_GATEWAY_PYTHON") {
        return PathBuf::from(path);
    }
    let requirements = repo_path("tests/sdk/requirements.txt");
    let pinned = std::fs::read(&requirements).expect("tests/sdk/requirements.txt");
    let venv =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sdk-venv-{:016x}", fnv1a(&pinned)));
    let python = venv.join("bin/python");
    let ready = venv.join("ready");
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("target tmp dir");
    let lock = File::create(venv.with_extension("lock")).expect("venv lock file");
    lock.lock().expect("venv lock");
    if ready.exists() {
        return python;
    }
    eprintln!("making the SDK venv at {} (once)", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv (on Debian: apt-get install python3-venv)",
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install -r tests/sdk/requirements.txt (needs the package registry)",
    );
    File::create(&ready).expect("venv ready marker");
    python
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A stable hash of the pinned requirements (FNV-1a, 64 bits).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
