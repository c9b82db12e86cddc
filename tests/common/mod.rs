//! One harness for the integration tests: it starts the real gateway binary
//! and the repo's mock upstream on free ports, waits until they answer, and
//! kills them on `Drop`, so a failing test leaves no process behind.
#![allow(dead_code)]

pub mod flood;
pub mod pki;
pub mod topologies;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Readiness waits are bounded so a broken start fails instead of hanging;
/// they assert nothing about speed.
const START_WAIT: Duration = Duration::from_secs(30);

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
        Self::start_on("127.0.0.1:0", name, extra)
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
        let gateway = Self {
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

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + START_WAIT;
        loop {
            let proxy_up = TcpStream::connect(("127.0.0.1", self.proxy_port)).is_ok();
            let admin_up = TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok();
            if proxy_up && admin_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not start; log:\n{}",
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

/// A minimal HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// An answer read off a raw socket (`raw_exchange`): status line,
    /// headers (names lowercased) and body; status 0 when there was none.
    pub fn from_raw(answer: &str) -> Self {
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Self {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an OpenAI-style error with this status and code, and a request id.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "body: {}", self.body);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(body["error"]["type"].as_str().is_some());
        assert!(self.header("x-request-id").is_some(), "no x-request-id");
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> (u16, String) {
    let r = send(method, url, headers, body);
    (r.status, r.body)
}

pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    let mut body = String::new();
    resp.into_reader()
        .read_to_string(&mut body)
        .expect("response body");
    Response {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> (u16, String) {
    request("GET", url, &[], None)
}

pub fn post_json(url: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    send("POST", url, &all, Some(body.to_string().as_bytes()))
}

pub fn chat(gateway: &Gateway, model: &str) -> Response {
    post_json(
        &gateway.url("/v1/chat/completions"),
        &serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
}

/// Sends raw bytes on a fresh connection and returns everything read until
/// the server closes or `wait` passes without data.
pub fn raw_exchange(port: u16, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response framed by Content-Length; `None` when the
/// connection ended first.
pub fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_string();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while data.len() < header_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    Some((
        status,
        String::from_utf8_lossy(&data[header_end..header_end + length]).into_owned(),
    ))
}

/// True once the peer closed the connection (EOF or reset), reading and
/// dropping whatever comes first; false if it stays open for `limit`.
pub fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
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

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
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

/// POSTs `body` with chunked framing on a raw connection; returns the raw answer.
pub fn post_chunked(port: u16, path: &str, body: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    raw_exchange(port, request.as_bytes(), Duration::from_secs(10))
}

/// A test OIDC issuer: serves discovery and a JWKS that the test can swap,
/// counts JWKS fetches, and can be taken down (answers 503).
pub struct TestIssuer {
    pub addr: SocketAddr,
    pub jwks: std::sync::Arc<std::sync::Mutex<String>>,
    pub up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub jwks_fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Milliseconds the issuer waits before answering.
    pub delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl TestIssuer {
    pub fn start(jwks: &str) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind issuer");
        let addr = listener.local_addr().expect("issuer addr");
        let issuer = Self {
            addr,
            jwks: Arc::new(Mutex::new(jwks.to_string())),
            up: Arc::new(AtomicBool::new(true)),
            jwks_fetches: Arc::new(AtomicUsize::new(0)),
            delay_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let (keys, up, fetches) = (
            issuer.jwks.clone(),
            issuer.up.clone(),
            issuer.jwks_fetches.clone(),
        );
        let delay = issuer.delay_ms.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (keys, up, fetches) = (keys.clone(), up.clone(), fetches.clone());
                let delay = delay.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .to_string();
                    std::thread::sleep(Duration::from_millis(delay.load(Ordering::SeqCst)));
                    let (status, body) = if !up.load(Ordering::SeqCst) {
                        ("503 Service Unavailable", "{}".to_string())
                    } else if path == "/.well-known/openid-configuration" {
                        let me = format!("http://{addr}");
                        (
                            "200 OK",
                            format!(r#"{{"issuer":"{me}","jwks_uri":"{me}/jwks"}}"#),
                        )
                    } else if path == "/jwks" {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", keys.lock().expect("jwks").clone())
                    } else {
                        ("404 Not Found", "{}".to_string())
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        issuer
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_jwks(&self, jwks: &str) {
        *self.jwks.lock().expect("jwks") = jwks.to_string();
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A JWKS document of the test keys in tests/keys (by file stem), plus raw JWK objects.
pub fn jwks_of(names: &[&str], extra: &[serde_json::Value]) -> String {
    let mut keys: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(repo_path(&format!("tests/keys/{n}.jwk.json")))
                .expect("jwk fixture");
            serde_json::from_str(&text).expect("jwk json")
        })
        .collect();
    keys.extend_from_slice(extra);
    serde_json::json!({ "keys": keys }).to_string()
}

/// Counter value of `auth_failures_total{reason}` from a metrics text.
pub fn auth_failures(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("auth_failures_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

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

/// The value of a metric line with exactly these labels (or none), if present.
pub fn metric_value(metrics: &str, name_and_labels: &str) -> Option<f64> {
    let prefix = format!("{name_and_labels} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
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

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Opens a streaming chat request held by the mock (`x-mock-hold: key`), with
/// more request header lines (`name: value\r\n`), and returns the reader
/// after the first event arrived.
pub fn open_held_stream(port: u16, key: &str, headers: &str) -> BufReader<TcpStream> {
    match try_held_stream(port, key, headers) {
        (200, Some(reader)) => reader,
        (status, _) => panic!("the held stream got status {status}"),
    }
}

/// As [`open_held_stream`], for a request that may be refused: its status,
/// and the reader after the first event when it was admitted (200).
pub fn try_held_stream(port: u16, key: &str, headers: &str) -> (u16, Option<BufReader<TcpStream>>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = r#"{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-mock-hold: {key}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        return (status, None);
    }
    let mut seen = status_line;
    while !seen.contains("word0") {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read");
        assert!(n > 0, "stream ended early: {seen}");
        seen.push_str(&line);
    }
    (status, Some(reader))
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
