//! TLS termination on `listen.proxy_tls`, over the real binary with
//! certificates made here: chat and SSE over HTTP/1.1 and HTTP/2 (ALPN) with
//! curl, the certificate chosen by SNI, TLS 1.1 refused, certificates
//! rotated the way Kubernetes mounts secrets (a symlinked directory swapped)
//! while a stream stays open, a corrupt rotation refused, and failed
//! handshakes counted and kept out of the error log.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pki::{LocalhostTls, TestCa};
use common::*;

const CHAT: &str = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: &str =
    r#"{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

struct TlsGateway {
    gw: Gateway,
    tls_port: u16,
    ca_file: String,
}

/// A gateway whose TLS listener serves `certificates` (YAML flow list).
fn start(mock: &Mock, ca_file: &Path, certificates: &str, tls_extra: &str) -> TlsGateway {
    let tls_port = free_port();
    let listen = format!(
        "  proxy_tls: [\"127.0.0.1:{tls_port}\"]\n  tls:\n    certificates: {certificates}\n    reload_interval: 200ms\n{tls_extra}"
    );
    start_listening(mock, &listen, tls_port, ca_file)
}

/// A gateway whose TLS listener serves one certificate for `localhost`.
fn start_localhost(mock: &Mock, dir: &Path, tls_extra: &str) -> TlsGateway {
    let tls = LocalhostTls::new(dir, tls_extra);
    start_listening(mock, &tls.listen, tls.port, &tls.ca_file)
}

fn start_listening(mock: &Mock, listen: &str, tls_port: u16, ca_file: &Path) -> TlsGateway {
    let gw = Gateway::start_with_listen(
        listen,
        &format!(
            "upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
    );
    TlsGateway {
        gw,
        tls_port,
        ca_file: ca_file.display().to_string(),
    }
}

/// `curl` over TLS to `localhost` (resolved to 127.0.0.1): the body, the
/// status and the HTTP version curl used.
fn curl(t: &TlsGateway, extra: &[&str], body: &str) -> (String, u16, String) {
    let url = format!("https://localhost:{}/v1/chat/completions", t.tls_port);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", &t.ca_file])
        .args(extra)
        .args(["-H", "content-type: application/json", "-d", body])
        .args(["-w", "\n%{http_code} %{http_version}", &url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, version) = tail.split_once(' ').unwrap_or(("0", ""));
    (
        body.to_string(),
        code.parse().unwrap_or(0),
        version.to_string(),
    )
}

/// The subject of the certificate the TLS port serves to `sni`.
fn served_subject(port: u16, sni: Option<&str>, extra: &[&str]) -> String {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(extra);
    match sni {
        Some(name) => command.args(["-servername", name]),
        None => command.arg("-noservername"),
    };
    let out = command.stdin(Stdio::null()).output().expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or("")
        .to_string()
}

#[test]
fn chat_and_streams_over_tls_with_http1_and_http2() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let t = start_localhost(&mock, dir.path(), "");

    let (body, status, version) = curl(&t, &["--http1.1"], CHAT);
    assert_eq!((status, version.as_str()), (200, "1.1"), "{body}");
    assert!(body.contains("chat.completion"), "{body}");
    let (body, status, version) = curl(&t, &["--http2"], CHAT);
    assert_eq!((status, version.as_str()), (200, "2"), "{body}");
    assert!(body.contains("chat.completion"), "{body}");
    for protocol in ["--http1.1", "--http2"] {
        let (body, status, _) = curl(&t, &[protocol, "-N"], STREAM);
        assert_eq!(status, 200, "{protocol}: {body}");
        let events = body.lines().filter(|l| l.starts_with("data: ")).count();
        assert!(events >= 4, "{protocol}: {body}");
        assert!(body.contains("data: [DONE]"), "{protocol}: {body}");
    }
    // Upstream is told the client came over TLS; the access log counts it.
    let sent = &mock.requests()[0]["headers"];
    assert_eq!(sent["x-forwarded-proto"], "https", "{sent}");
    let lines = t.gw.access_lines_at_least(4);
    assert!(lines.iter().all(|l| l["status"] == 200), "{lines:?}");
    // The cleartext port still speaks HTTP/1.1.
    assert_eq!(chat(&t.gw, "mock-gpt").status, 200);
}

#[test]
fn sni_picks_the_certificate_by_its_names_and_the_first_is_the_default() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("edge CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (a_cert, a_key) = ca
        .server(&["localhost", "a.test"], "a")
        .write(dir.path(), "a");
    let (b_cert, b_key) = ca.server(&["*.b.test"], "b").write(dir.path(), "b");
    let t = start(
        &mock,
        &ca_file,
        &format!(
            "[{{cert_file: {}, key_file: {}}}, {{cert_file: {}, key_file: {}}}]",
            a_cert.display(),
            a_key.display(),
            b_cert.display(),
            b_key.display()
        ),
        "",
    );
    assert_eq!(served_subject(t.tls_port, Some("a.test"), &[]), "CN = a");
    assert_eq!(
        served_subject(t.tls_port, Some("api.b.test"), &[]),
        "CN = b"
    );
    // A wildcard covers one label only.
    assert_eq!(
        served_subject(t.tls_port, Some("x.api.b.test"), &[]),
        "CN = a"
    );
    assert_eq!(
        served_subject(t.tls_port, Some("other.test"), &[]),
        "CN = a"
    );
    assert_eq!(served_subject(t.tls_port, None, &[]), "CN = a");
}

#[test]
fn tls_1_1_is_refused_and_failed_handshakes_stay_out_of_the_error_log() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let t = start_localhost(&mock, dir.path(), "    handshake_timeout: 1s\n");
    // OpenSSL's client would refuse TLS 1.1 itself at its default security
    // level: level 0 lets it offer, so the refusal seen is the gateway's.
    let old = served_subject(
        t.tls_port,
        Some("localhost"),
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
    );
    assert_eq!(old, "", "TLS 1.1 handshake completed");
    for version in ["-tls1_2", "-tls1_3"] {
        let subject = served_subject(t.tls_port, Some("localhost"), &[version]);
        assert_eq!(subject, "CN = localhost", "{version}");
    }
    // A scanner: plain HTTP on the TLS port, then a connection that never
    // speaks.
    let answer = raw_exchange(
        t.tls_port,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(!answer.contains("HTTP/1.1"), "{answer}");
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", t.tls_port)).unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(10)),
        "a silent connection outlived the 1 s handshake timeout"
    );
    let metrics = t.gw.metrics();
    let invalid = metric_value(
        &metrics,
        r#"client_handshake_failures_total{reason="invalid",stage="tls"}"#,
    );
    assert!(invalid >= Some(2.0), "{metrics}");
    let timeouts = metric_value(
        &metrics,
        r#"client_handshake_failures_total{reason="timeout",stage="tls"}"#,
    );
    assert_eq!(timeouts, Some(1.0), "{metrics}");
    // The gauge drops when the handshake's task ends, which may trail the
    // close the client saw.
    assert!(
        eventually(Duration::from_secs(5), || metric_value(
            &t.gw.metrics(),
            "client_handshakes_in_progress"
        ) == Some(0.0)),
        "{}",
        t.gw.metrics()
    );
    let log = t.gw.log();
    assert!(!log.contains("ERROR"), "{log}");
}

/// A Kubernetes secret volume: `tls.crt` and `tls.key` are symlinks into
/// `..data`, itself a symlink to a timestamped directory that an update
/// replaces with one atomic rename.
struct SecretVolume {
    root: std::path::PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(root: &Path, cert: &str, key: &str) -> Self {
        let mut volume = Self {
            root: root.to_path_buf(),
            version: 0,
        };
        volume.update(cert, key);
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{file}"), root.join(file)).unwrap();
        }
        volume
    }

    fn update(&mut self, cert: &str, key: &str) {
        self.version += 1;
        let data = format!("..2026_11_27_{}", self.version);
        let dir = self.root.join(&data);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
    }
}

/// A streamed chat over TLS that the mock holds after its first event.
fn held_tls_stream(t: &TlsGateway, key: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let url = format!("https://localhost:{}/v1/chat/completions", t.tls_port);
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "--http2", "--cacert", &t.ca_file])
        .args(["-H", "content-type: application/json"])
        .args(["-H", &format!("x-mock-hold: {key}"), "-d", STREAM, &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl runs");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("word0") {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended: {seen}"
        );
        seen.push_str(&line);
    }
    (child, reader)
}

#[test]
fn rotated_certificates_serve_new_connections_while_open_streams_complete() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("edge CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let secret = dir.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    let first = ca.server(&["localhost"], "first");
    let mut volume = SecretVolume::new(&secret, &first.cert, &first.key);
    let t = start(
        &mock,
        &ca_file,
        &format!(
            "[{{cert_file: {0}/tls.crt, key_file: {0}/tls.key}}]",
            secret.display()
        ),
        "",
    );
    assert_eq!(
        served_subject(t.tls_port, Some("localhost"), &[]),
        "CN = first"
    );
    let (mut child, mut reader) = held_tls_stream(&t, "rotation");

    let second = ca.server(&["localhost"], "second");
    volume.update(&second.cert, &second.key);
    assert!(
        eventually(Duration::from_secs(10), || {
            served_subject(t.tls_port, Some("localhost"), &[]) == "CN = second"
        }),
        "the rotated certificate is not served"
    );
    // A rotation that does not load (the key of another certificate) is
    // refused: the second certificate keeps serving.
    let third = ca.server(&["localhost"], "third");
    volume.update(&third.cert, &first.key);
    assert!(eventually(Duration::from_secs(10), || {
        let metrics = t.gw.metrics();
        metric_value(&metrics, r#"tls_certificate_reloads_total{result="error"}"#) == Some(1.0)
    }));
    assert_eq!(
        served_subject(t.tls_port, Some("localhost"), &[]),
        "CN = second"
    );
    let (_, status, _) = curl(&t, &[], CHAT);
    assert_eq!(status, 200);

    // The stream opened on the first certificate completes.
    mock.control("/mock/release/rotation");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "{rest}");
    assert!(child.wait().unwrap().success());
    let metrics = t.gw.metrics();
    assert_eq!(
        metric_value(&metrics, r#"tls_certificate_reloads_total{result="ok"}"#),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn an_http2_stream_over_tls_completes_through_a_drain() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let mut t = start_localhost(&mock, dir.path(), "");
    let (mut curl, mut reader) = held_tls_stream(&t, "drain");
    t.gw.signal("TERM");
    assert!(
        eventually(Duration::from_secs(5), || std::net::TcpStream::connect((
            "127.0.0.1",
            t.tls_port
        ))
        .is_err()),
        "the TLS port still accepts after SIGTERM"
    );
    // Past the settle delay: the stream is still served.
    std::thread::sleep(Duration::from_secs(3));
    mock.control("/mock/release/drain");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "{rest}");
    assert!(curl.wait().unwrap().success());
    let status = t.gw.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_connection_cap_counts_tls_connections_from_accept() {
    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let t = start_localhost(&mock, dir.path(), "  max_connections: 2\n");
    // Two connections that have not finished (not even started) a handshake
    // hold both places.
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", t.tls_port)).unwrap())
        .collect();
    assert!(eventually(Duration::from_secs(5), || {
        metric_value(&t.gw.metrics(), "client_handshakes_in_progress") == Some(2.0)
    }));
    let mut third = std::net::TcpStream::connect(("127.0.0.1", t.tls_port)).unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(5)));
    let (_, status, _) = curl(&t, &[], CHAT);
    assert_eq!(status, 0, "a connection over the cap was served");
    drop(held);
    assert!(eventually(Duration::from_secs(5), || curl(&t, &[], CHAT).1 == 200));
    let metrics = t.gw.metrics();
    assert!(metric_value(&metrics, "client_connections_refused_total") >= Some(2.0));
}

#[test]
fn an_http2_connection_that_never_sends_its_preface_is_closed_at_the_idle_timeout() {
    use std::io::Read;
    use std::sync::Arc;
    use tokio_rustls::rustls;

    let mock = Mock::start("m");
    let dir = tempfile::tempdir().unwrap();
    let tls = LocalhostTls::new(dir.path(), "");
    let gw = Gateway::start_with_listen(
        &tls.listen,
        &format!(
            "request:\n  idle_timeout: 1s\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
    );
    // A client that completes the TLS handshake with ALPN h2, then says
    // nothing: h2 itself would wait for its preface forever.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&tls.ca_file).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", tls.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(conn, socket);
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    // The server's SETTINGS may come first; then the connection ends.
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break started.elapsed() < Duration::from_secs(14),
            Ok(_) => {}
        }
    };
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    assert!(
        closed,
        "a silent HTTP/2 connection outlived the 1 s idle timeout"
    );
    let metrics = gw.metrics();
    assert_eq!(
        metric_value(&metrics, r#"client_timeouts_total{phase="idle"}"#),
        Some(1.0),
        "{metrics}"
    );
}
