//! A test OIDC issuer: discovery, a JWKS, and the tokens it signs.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use super::repo_path;

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
        // A claimed port (see `free_port`), never the kernel's pick.
        let listener = TcpListener::bind(("127.0.0.1", super::free_port())).expect("bind issuer");
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
