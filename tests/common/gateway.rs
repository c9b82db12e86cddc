//! The gateway binary, started on free ports with a config of the test's,
//! waited for, and killed on `Drop`; and the config pieces tests build
//! gateways from.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::http::get;
use super::mock::Mock;
use super::{eventually, free_port, START_WAIT};

/// The `server` lines the harness writes unless a test gives its own.
pub const DEFAULT_SERVER: &str = "  drain_timeout: 30s\n";

/// A gateway process started from a config body (upstreams and routes); the
/// harness adds the listeners and server paths.
pub struct Gateway {
    child: Option<Child>,
    pub proxy_port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    /// The server and listen sections the harness wrote.
    head: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub fn start(body: &str) -> Self {
        Self::start_with_env(body, &[])
    }

    pub fn start_with_env(body: &str, env: &[(&str, &str)]) -> Self {
        Self::launch(body, env, "", DEFAULT_SERVER)
    }

    /// With `listen_extra` (YAML lines indented two spaces) added to the
    /// `listen` section the harness writes.
    pub fn start_with_listen(listen_extra: &str, body: &str) -> Self {
        Self::launch(body, &[], listen_extra, DEFAULT_SERVER)
    }

    /// With `server` (YAML lines indented two spaces) in the `server`
    /// section, in place of the harness' `drain_timeout`.
    pub fn start_with_server(server: &str, body: &str) -> Self {
        Self::launch(body, &[], "", server)
    }

    fn launch(body: &str, env: &[(&str, &str)], listen_extra: &str, server: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy_port = free_port();
        let admin_port = free_port();
        let head = format!(
            "server:\n  threads: 2\n{server}  \
             upgrade_sock: {dir}/upgrade.sock\n  pid_file: {dir}/gateway.pid\n\
             listen:\n  proxy: [\"127.0.0.1:{proxy_port}\"]\n  admin: \"127.0.0.1:{admin_port}\"\n{listen_extra}",
            dir = dir.path().display()
        );
        let config = format!("{head}{body}");
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("gateway starts");
        let mut gateway = Self {
            child: Some(child),
            proxy_port,
            admin_port,
            log_path,
            config_path,
            head,
            _dir: dir,
        };
        gateway.wait_until_listening();
        gateway
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_WAIT;
        loop {
            let proxy_up = TcpStream::connect(("127.0.0.1", self.proxy_port)).is_ok();
            let admin_up = TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok();
            if proxy_up && admin_up {
                return;
            }
            // A gateway that refused its config has exited: say so now.
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "gateway did not start ({exited:?}); log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The access-log lines (JSON) written so far.
    pub fn access_lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The access-log lines once there are at least `count` (each is
    /// written after its answer is sent, so it may trail the client).
    pub fn access_lines_at_least(&self, count: usize) -> Vec<serde_json::Value> {
        eventually(Duration::from_secs(10), || {
            self.access_lines().len() >= count
        });
        self.access_lines()
    }

    pub fn metrics(&self) -> String {
        get(&self.admin_url("/metrics")).1
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Gateway {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// Sends a signal by name (HUP, TERM, QUIT) to the gateway process.
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Waits for the process to exit; `None` if it is still running at `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A log file next to the gateway's, for a process a test starts.
    pub fn log_path_for(&self, name: &str) -> PathBuf {
        self.log_path.with_file_name(name)
    }

    /// Takes the process over (the drain tests signal and wait on it
    /// themselves); the harness no longer kills it on drop.
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("running")
    }

    /// Replaces the config file (for reloads), keeping the harness' server
    /// and listen sections.
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(&self.config_path, format!("{}{body}", self.head)).expect("write config");
    }

    /// Starts a second process on the same config with `-u`: it takes the
    /// listening sockets over once the running one gets SIGQUIT.
    pub fn spawn_upgrade(&self, log: &Path) -> Child {
        let log = std::fs::File::create(log).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
            .arg("-u")
            .arg("-c")
            .arg(&self.config_path)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("upgrade process starts")
    }
}

/// A YAML pool of the given backends.
pub fn pool_yaml(name: &str, urls: &[String], extra: &str) -> String {
    let mut out = format!("  {name}:\n{extra}    backends:\n");
    for url in urls {
        out.push_str(&format!(
            "      - base_url: {url}\n        api_key: provider-secret-key\n"
        ));
    }
    out
}

/// Two YAML pools: `openai-pool` of a backend speaking OpenAI's API and
/// `anthropic-pool` of one speaking Anthropic's, under `upstreams:`.
pub fn provider_pools(openai_url: &str, anthropic_url: &str) -> String {
    format!(
        "upstreams:
  openai-pool:
    backends:
      - {{base_url: {openai_url}, provider: openai, api_key: sk-openai-provider}}
  anthropic-pool:
    backends:
      - {{base_url: {anthropic_url}, provider: anthropic, api_key: sk-anthropic-provider}}
"
    )
}

/// A gateway with one pool `main` of `mocks` and one route `chat` on
/// `/v1/chat/completions` (plus `extra_paths`) for `models`; `top` goes
/// before the pools (request limits, access log).
pub fn chat_gateway(mocks: &[&Mock], top: &str, models: &str, extra_paths: &str) -> Gateway {
    let urls: Vec<String> = mocks.iter().map(|m| m.url()).collect();
    Gateway::start(&format!(
        "{top}upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions{extra_paths}]\n    models: [{models}]\n    upstream: main\n",
        pool_yaml("main", &urls, "")
    ))
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}
