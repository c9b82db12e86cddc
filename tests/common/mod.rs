//! One harness for the integration tests, a module per thing it starts:
//! the gateway binary (`gateway.rs`), the mock upstream (`mock.rs`),
//! redis-server (`redis_server.rs`, and Cluster and Sentinel in
//! `topologies.rs`), TLS material (`pki.rs`), an OIDC issuer
//! (`issuer.rs`); the client side is `http.rs`. Everything it starts waits
//! until it answers and is killed on `Drop`, so a failing test leaves no
//! process behind.
#![allow(dead_code)]

pub mod agents;
pub mod demo;
pub mod flood;
pub mod gateway;
pub mod http;
pub mod issuer;
pub mod mock;
pub mod pki;
pub mod python;
pub mod redis_server;
pub mod topologies;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// Every test file takes what it needs of these; none takes all.
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use issuer::*;
#[allow(unused_imports)]
pub use mock::*;
#[allow(unused_imports)]
pub use redis_server::*;

/// Readiness waits are bounded so a broken start fails instead of hanging;
/// they assert nothing about speed.
pub const START_WAIT: Duration = Duration::from_secs(30);

/// A port no other test process was handed recently. The kernel may give
/// the same ephemeral port to two test processes that probe at once (each
/// closes its probe before its gateway binds); the second gateway would
/// then wait for the port while its test talks to the first one's. A claim
/// file per port, made exclusively and honoured for ten minutes, keeps
/// every port to one test process.
pub fn free_port() -> u16 {
    const CLAIMS: &str = "/tmp/ai-api-gateway-test-ports";
    const HONOURED: Duration = Duration::from_secs(600);
    let _ = std::fs::create_dir_all(CLAIMS);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let claim = Path::new(CLAIMS).join(port.to_string());
        let stale = std::fs::metadata(&claim)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().unwrap_or_default() > HONOURED);
        if stale {
            let _ = std::fs::remove_file(&claim);
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(_) => return port,
            // Claimed by another test process: probe again.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // No claims possible here: the kernel's word alone.
            Err(_) => return port,
        }
    }
}

/// Polls `check` until it holds, for at most `limit`; for state that changes
/// in the background (health checks). Returns whether it held.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
