//! Limits on a Redis that asks for credentials and speaks TLS, over the real
//! binary and real redis-server processes: an ACL user with a password from
//! `${ENV}`, and `rediss://` verified against a CA generated here. Counting
//! in `redis` mode with `on_error: closed503` shows the connection works: a
//! Redis the gateway could not reach would answer 503, not 200 then 429.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

const PASSWORD: &str = "redis-acl-secret-0042";

fn limited(redis_section: &str, mock: &Mock, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_with_env(
        &format!(
            "limits:\n  mode: redis\n  redis: {redis_section}\n  rules:\n    - {{name: two, key: [global], counts: requests, limit: 2, window: minute}}\n  global_rules: [two]\n\
             upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
        env,
    )
}

fn two_then_refused(gw: &Gateway) {
    let url = gw.url("/v1/chat/completions");
    let body =
        serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let answer = post_json(&url, &body, &[]);
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, gw.log());
    }
    post_json(&url, &body, &[]).assert_error(429, "rate_limit_exceeded");
}

#[test]
fn an_acl_user_with_a_password_from_the_environment() {
    let redis = Redis::start();
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client.get_connection().expect("connection");
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "gateway",
                "on",
                &format!(">{PASSWORD}"),
                "~aigw:*",
                "+@all",
            ][..],
        )
        .query(&mut conn)
        .expect("ACL SETUSER");
    // Nobody gets in without a password any more.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"][..])
        .query(&mut conn)
        .expect("default off");
    let mock = Mock::start("m");
    let section = format!(
        "{{url: \"redis://127.0.0.1:{}\", username: gateway, password: \"${{REDIS_PASSWORD}}\", on_error: closed503, timeout: 500ms}}",
        redis.port
    );
    let gw = limited(&section, &mock, &[("REDIS_PASSWORD", PASSWORD)]);
    two_then_refused(&gw);
    assert!(!gw.log().contains(PASSWORD), "the password reached the log");

    // A wrong password: Redis refuses, and closed503 says so.
    let wrong = limited(&section, &mock, &[("REDIS_PASSWORD", "not-the-password")]);
    let answer = post_json(
        &wrong.url("/v1/chat/completions"),
        &serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    answer.assert_error(503, "rate_limit_unavailable");
    assert!(!wrong.log().contains("not-the-password"));
}

/// A redis-server listening only on TLS, with a certificate for localhost
/// signed by a CA of the test's own; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    ca: String,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "redis test CA");
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("leaf");
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        let ca = write("ca.pem", ca_cert.pem());
        let cert = write("redis.pem", leaf.pem());
        let key = write("redis.key", leaf_key.serialize_pem());
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
            ])
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            ca,
            _dir: dir,
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rediss_verified_against_the_configured_ca() {
    let redis = TlsRedis::start();
    let mock = Mock::start("m");
    let section = format!(
        "{{url: \"rediss://localhost:{}\", tls: {{ca_file: \"{}\"}}, on_error: closed503, timeout: 500ms}}",
        redis.port, redis.ca
    );
    two_then_refused(&limited(&section, &mock, &[]));

    // Without the CA the server's certificate is not trusted: no counting.
    let untrusted = format!(
        "{{url: \"rediss://localhost:{}\", on_error: closed503, timeout: 500ms}}",
        redis.port
    );
    let gw = limited(&untrusted, &mock, &[]);
    let answer = post_json(
        &gw.url("/v1/chat/completions"),
        &serde_json::json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    answer.assert_error(503, "rate_limit_unavailable");
}
