//! redis-server processes of the tests' own, on free ports, killed on
//! `Drop`; and waiting for a fresh window of the clock.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::gateway::signal;
use super::{free_port, START_WAIT};

/// A redis-server on `port` of 127.0.0.1 that keeps nothing on disk.
pub fn redis_server_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec()
}

/// A redis-server of the test's own on a free port; stop and start it again
/// on the same port to test faults. Killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        redis.up();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(redis_server_args(self.port))
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        while self.ping().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: a Redis that accepts
    /// connections and never answers.
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().map(|c| c.id()).expect("redis running");
        signal(pid, if paused { "STOP" } else { "CONT" });
    }

    fn ping(&self) -> redis::RedisResult<String> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection()?;
        redis::cmd("PING").query(&mut conn)
    }

    /// Redis' clock in milliseconds.
    pub fn time_ms(&self) -> u64 {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).expect("TIME");
        secs * 1000 + micros / 1000
    }

    /// The string value of `key` (empty when it does not exist).
    pub fn get(&self, key: &str) -> String {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        let value: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).expect("GET");
        value.unwrap_or_default()
    }

    /// Seconds until `key` expires (-1: never, -2: no such key).
    pub fn ttl(&self, key: &str) -> i64 {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        redis::cmd("TTL").arg(key).query(&mut conn).expect("TTL")
    }

    /// A limit counter's window total: the sum of every replica's part.
    pub fn counter(&self, key: &str) -> u64 {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        let parts: Vec<u64> = redis::cmd("HVALS")
            .arg(key)
            .query(&mut conn)
            .expect("HVALS");
        parts.iter().sum()
    }

    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut conn)
            .expect("KEYS")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// The current minute since the epoch (one machine: Redis' clock is this
/// clock, and limit windows are numbered this way).
pub fn minute_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 60
}

/// Waits, if needed, so that at least `need` seconds of the current minute
/// are left.
pub fn fresh_minute(need: u64) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        % 60;
    if 60 - secs < need {
        std::thread::sleep(Duration::from_secs(60 - secs + 1));
    }
}
