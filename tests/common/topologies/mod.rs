//! Redis Cluster and Sentinel deployments of the tests' own: real
//! redis-server processes on free ports, with failover timers of about a
//! second so a failover fits in a test. Killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod cluster;
mod sentinel;

#[allow(unused_imports)]
pub use cluster::RedisCluster;
#[allow(unused_imports)]
pub use sentinel::RedisSentinels;

/// `redis-cli` flags for a test process whose deployment speaks only TLS
/// (set once, by [`RedisCluster::start_tls`]).
pub(super) static CLI_TLS: OnceLock<Vec<String>> = OnceLock::new();

/// A node process: redis-server in cluster or sentinel mode, or plain.
pub(super) struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    pub fn spawn(port: u16, args: &[String], dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        let node = Self {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while cli(port, &["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    /// SIGKILL: no goodbye, as a crashed pod.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A limit counter's window total on the node at `port`.
pub fn counter_at(port: u16, key: &str) -> u64 {
    cli(port, &["HVALS", key])
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum()
}

/// The password every node of these deployments requires (sentinels
/// excepted): the gateway authenticates as Redis' default user.
pub const PASSWORD: &str = "limits-secret-7c2e";

/// `redis-cli -p PORT args...`: its output (empty when it cannot connect).
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(CLI_TLS.get().into_iter().flatten())
        .args(["-a", PASSWORD, "--no-auth-warning"])
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}
