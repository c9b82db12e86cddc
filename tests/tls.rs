//! Upstream TLS against a local TLS mock with a certificate generated here:
//! verified with the configured CA, refused without it or with the wrong name.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Pki {
    _dir: tempfile::TempDir,
    ca: String,
    cert: String,
    key: String,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gateway test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    Pki {
        ca: write("ca.pem", ca_cert.pem()),
        cert: write("leaf.pem", leaf.pem()),
        key: write("leaf.key", leaf_key.serialize_pem()),
        _dir: dir,
    }
}

fn gateway(mock: &Mock, tls: &str) -> Gateway {
    let body = format!(
        "upstreams:\n  secure:\n    backends:\n      - base_url: https://localhost:{}\n        api_key: tls-key\n{tls}\
         routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: secure\n",
        mock.addr.port()
    );
    Gateway::start(&body)
}

#[test]
fn verified_tls_with_the_configured_ca() {
    let pki = pki();
    let mock = Mock::start_with("tls", &["--tls-cert", &pki.cert, "--tls-key", &pki.key]);
    let gw = gateway(&mock, &format!("    tls:\n      ca_file: {}\n", pki.ca));
    let resp = chat(&gw, "mock-gpt");
    assert_eq!(resp.status, 200, "{}", resp.body);
    // Requests are recorded by the mock only once TLS succeeded.
    let seen = &mock_requests_over_tls(&mock, &pki)[0];
    assert_eq!(
        seen["headers"]["host"],
        format!("localhost:{}", mock.addr.port())
    );
    assert_eq!(seen["headers"]["authorization"], "Bearer tls-key");
}

#[test]
fn unknown_issuer_is_refused() {
    let pki = pki();
    let mock = Mock::start_with("tls", &["--tls-cert", &pki.cert, "--tls-key", &pki.key]);
    let gw = gateway(&mock, "");
    chat(&gw, "mock-gpt").assert_error(502, "upstream_error");
    assert!(mock_requests_over_tls(&mock, &pki).is_empty());
}

#[test]
fn wrong_server_name_is_refused() {
    let pki = pki();
    let mock = Mock::start_with("tls", &["--tls-cert", &pki.cert, "--tls-key", &pki.key]);
    let gw = gateway(
        &mock,
        &format!(
            "    tls:\n      ca_file: {}\n      sni: other.example\n",
            pki.ca
        ),
    );
    chat(&gw, "mock-gpt").assert_error(502, "upstream_error");
    assert!(mock_requests_over_tls(&mock, &pki).is_empty());
}

/// The mock's record, read over TLS with the test CA (curl-free).
fn mock_requests_over_tls(mock: &Mock, pki: &Pki) -> Vec<serde_json::Value> {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = std::net::TcpStream::connect(mock.addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /mock/requests HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("[]");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}
