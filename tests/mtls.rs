//! Client certificates (mTLS) over the real binary: `listen.tls.client_ca_file`
//! verifies them at the handshake, `auth.client_certs` maps a verified
//! certificate's alternative name or common name to an identity with its own
//! models and limits. No certificate or one from another CA is refused when
//! they are required; with `client_auth: optional`, other credentials still
//! work.

mod common;

use std::path::Path;
use std::process::Command;

use common::pki::TestCa;
use common::*;

const CHAT: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;

struct Setup {
    gw: Gateway,
    tls_port: u16,
    dir: tempfile::TempDir,
    ca: TestCa,
    ca_file: String,
}

fn start(mock: &Mock, client_auth: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("edge CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (cert, key) = ca
        .server(&["localhost"], "localhost")
        .write(dir.path(), "server");
    let clients_ca = TestCa::new("clients CA");
    let clients_ca_file = clients_ca.write(dir.path(), "clients-ca.pem");
    let tls_port = free_port();
    let gw = Gateway::start_with_listen(
        &format!(
            "  proxy_tls: [\"127.0.0.1:{tls_port}\"]\n  tls:\n    certificates: [{{cert_file: {}, key_file: {}}}]\n    client_ca_file: {}\n    client_auth: {client_auth}\n",
            cert.display(),
            key.display(),
            clients_ca_file.display()
        ),
        &format!(
            "auth:\n  api_keys:\n    - {{id: key-caller, key: sk-key-caller}}\n  client_certs:\n    - {{id: billing, san: \"spiffe://corp.example/billing\", team: finance, limits: [per-caller]}}\n    - {{id: batch, subject: batch-worker, limits: [per-caller]}}\n    - {{id: retired, subject: retired-worker, enabled: false}}\n\
             limits:\n  mode: local\n  rules:\n    - {{name: per-caller, key: [subject], counts: requests, limit: 2, window: minute}}\n\
             upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
    );
    Setup {
        gw,
        tls_port,
        dir,
        ca: clients_ca,
        ca_file: ca_file.display().to_string(),
    }
}

/// A chat over TLS with curl, presenting `client` (cert, key) if given;
/// the status, `0` when the handshake failed.
fn chat_as(s: &Setup, client: Option<(&Path, &Path)>, headers: &[&str]) -> u16 {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "30", "--cacert", &s.ca_file]);
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command
        .args(["-H", "content-type: application/json", "-d", CHAT])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "https://localhost:{}/v1/chat/completions",
            s.tls_port
        ))
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    if status == 0 {
        eprintln!("curl: {}", String::from_utf8_lossy(&out.stderr));
    }
    status
}

#[test]
fn a_verified_certificate_is_an_identity_with_its_own_limit() {
    let mock = Mock::start("m");
    let s = start(&mock, "required");
    let billing =
        s.ca.client("billing-7f9c", Some("spiffe://corp.example/billing"))
            .write(s.dir.path(), "billing");
    let batch =
        s.ca.client("batch-worker", None)
            .write(s.dir.path(), "batch");
    let billing = (billing.0.as_path(), billing.1.as_path());
    let batch = (batch.0.as_path(), batch.1.as_path());

    // Two requests each per identity; the third of one is refused, the
    // other's count is its own.
    assert_eq!(chat_as(&s, Some(billing), &[]), 200);
    assert_eq!(chat_as(&s, Some(billing), &[]), 200);
    assert_eq!(chat_as(&s, Some(billing), &[]), 429);
    assert_eq!(chat_as(&s, Some(batch), &[]), 200);
    assert_eq!(chat_as(&s, Some(batch), &[]), 200);

    let lines = s.gw.access_lines_at_least(5);
    assert_eq!(lines[0]["caller"], "billing", "{}", lines[0]);
    assert_eq!(lines[0]["team"], "finance", "{}", lines[0]);
    assert_eq!(lines[3]["caller"], "batch", "{}", lines[3]);
    assert_eq!(mock.api_requests(), 4);
}

#[test]
fn required_certificates_refuse_none_and_strangers() {
    let mock = Mock::start("m");
    let s = start(&mock, "required");
    // No certificate: the handshake fails, even with a valid key.
    assert_eq!(
        chat_as(&s, None, &["authorization: Bearer sk-key-caller"]),
        0
    );
    // A certificate from a CA the gateway does not trust.
    let other_ca = TestCa::new("other CA");
    let stranger = other_ca
        .client("batch-worker", None)
        .write(s.dir.path(), "stranger");
    assert_eq!(
        chat_as(&s, Some((&stranger.0, &stranger.1)), &[]),
        0,
        "a certificate of another CA was taken"
    );
    // Verified, but named nowhere in auth.client_certs, or disabled: 401.
    let unknown =
        s.ca.client("someone-else", None)
            .write(s.dir.path(), "unknown");
    assert_eq!(chat_as(&s, Some((&unknown.0, &unknown.1)), &[]), 401);
    let retired =
        s.ca.client("retired-worker", None)
            .write(s.dir.path(), "retired");
    assert_eq!(chat_as(&s, Some((&retired.0, &retired.1)), &[]), 401);
    assert_eq!(mock.api_requests(), 0);
    let metrics = s.gw.metrics();
    let refused = metric_value(
        &metrics,
        r#"client_handshake_failures_total{reason="invalid",stage="tls"}"#,
    );
    assert_eq!(refused, Some(2.0), "{metrics}");
}

#[test]
fn optional_certificates_leave_other_credentials_working() {
    let mock = Mock::start("m");
    let s = start(&mock, "optional");
    assert_eq!(
        chat_as(&s, None, &["authorization: Bearer sk-key-caller"]),
        200
    );
    assert_eq!(chat_as(&s, None, &[]), 401);
    let batch =
        s.ca.client("batch-worker", None)
            .write(s.dir.path(), "batch");
    assert_eq!(chat_as(&s, Some((&batch.0, &batch.1)), &[]), 200);
    // An unknown certificate with a valid key: the key counts.
    let unknown =
        s.ca.client("someone-else", None)
            .write(s.dir.path(), "unknown");
    assert_eq!(
        chat_as(
            &s,
            Some((&unknown.0, &unknown.1)),
            &["authorization: Bearer sk-key-caller"]
        ),
        200
    );
    let lines = s.gw.access_lines_at_least(4);
    let callers: Vec<&serde_json::Value> = lines.iter().map(|l| &l["caller"]).collect();
    assert_eq!(
        callers,
        [
            &serde_json::json!("key-caller"),
            &serde_json::Value::Null,
            &serde_json::json!("batch"),
            &serde_json::json!("key-caller")
        ]
    );
}
