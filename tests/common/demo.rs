//! The shipped demo config, run as a new user runs it, on free ports.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, repo_path};

/// The demo gateway, killed on drop.
pub struct Demo {
    child: Child,
    pub proxy: u16,
    pub admin: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `conf/demo.yaml` as shipped, on free ports.
pub fn start_demo() -> Demo {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, admin, mock) = (free_port(), free_port(), free_port());
    let text = std::fs::read_to_string(repo_path("conf/demo.yaml"))
        .expect("conf/demo.yaml")
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{proxy}"))
        .replace("0.0.0.0:9090", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{mock}"))
        .replace(
            "server:\n",
            &format!(
                "server:\n  pid_file: {0}/demo.pid\n  upgrade_sock: {0}/demo.sock\n",
                dir.path().display()
            ),
        );
    let config = dir.path().join("demo.yaml");
    std::fs::write(&config, text).expect("write the demo config");
    let child = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gateway starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", proxy)).is_err() {
        assert!(Instant::now() < deadline, "the demo did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Demo {
        child,
        proxy,
        admin,
        _dir: dir,
    }
}
