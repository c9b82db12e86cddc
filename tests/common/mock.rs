//! The repo's mock upstream, as a process of its own.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::http::{get, request};

/// A mock upstream process.
pub struct Mock {
    child: Child,
    pub addr: SocketAddr,
    pub name: String,
}

impl Mock {
    pub fn start(name: &str) -> Self {
        Self::start_with(name, &[])
    }

    pub fn start_with(name: &str, extra: &[&str]) -> Self {
        // A claimed port, not the kernel's pick: a port the kernel hands
        // out here may be one another test process was just handed by
        // `free_port` for its gateway, which would then answer that
        // test's requests from this mock.
        Self::start_on(&format!("127.0.0.1:{}", super::free_port()), name, extra)
    }

    pub fn start_on(listen: &str, name: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
            .args([
                "--listen",
                listen,
                "--name",
                name,
                "--record",
                "--threads",
                "1",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mock-upstream starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("mock prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected mock output: {line:?}"))
            .parse()
            .expect("a socket address");
        Self {
            child,
            addr,
            name: name.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests this mock received, oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let (status, body) = get(&format!("{}/mock/requests", self.url()));
        assert_eq!(status, 200);
        serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("recorded requests")
    }

    pub fn api_requests(&self) -> usize {
        self.requests().len()
    }

    pub fn control(&self, path: &str) {
        let (status, _) = request("PUT", &format!("{}{path}", self.url()), &[], None);
        assert_eq!(status, 200, "mock control {path}");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.kill();
    }
}
