//! Drain on SIGTERM and on a graceful upgrade (`-u` + SIGQUIT), with real
//! processes: streams outlive every timer of the config but the drain
//! timeout, the drain timeout cuts what is left, idle processes exit
//! promptly, keep-alive clients see no error through two upgrades, and the
//! unspent hybrid lease goes back to Redis. These tests hold streams for
//! seconds on purpose; they run in the `serial` nextest group.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Pingora's fixed hand-over after SIGQUIT (`CLOSE_TIMEOUT` in pingora-core).
const HANDOVER: Duration = Duration::from_secs(5);

/// Client timers of the test configs that must not end a stream in flight.
const SHORT_TIMERS: &str =
    "request:\n  header_timeout: 1s\n  idle_timeout: 1s\n  body_timeout: 1s\n";

fn body(mock: &Mock, top: &str) -> String {
    format!(
        "{top}upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        pool_yaml("main", &[mock.url()], "")
    )
}

fn upgrade_sock(gw: &Gateway) -> PathBuf {
    gw.config_path.with_file_name("upgrade.sock")
}

/// Starts `gw`'s successor with `-u` and waits until it listens for the
/// sockets (its upgrade socket exists), so the SIGQUIT that follows finds it.
fn start_successor(gw: &Gateway, log: &Path) -> Child {
    let sock = upgrade_sock(gw);
    let _ = std::fs::remove_file(&sock);
    let child = gw.spawn_upgrade(log);
    assert!(
        eventually(Duration::from_secs(15), || sock.exists()),
        "the new process never listened on {}",
        sock.display()
    );
    child
}

/// The pid in the gateway's `server.pid_file`, if the file exists.
fn pid_in_file(gw: &Gateway) -> Option<u32> {
    let text = std::fs::read_to_string(gw.config_path.with_file_name("gateway.pid")).ok()?;
    Some(text.trim().parse().expect("a pid"))
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

/// Everything left on a held stream, until the gateway ends it.
fn rest_of(mut stream: BufReader<TcpStream>) -> String {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    String::from_utf8_lossy(&rest).into_owned()
}

fn assert_complete(rest: &str) {
    // 12 content events: word0 came before the hold, word1..word11 after it.
    for i in 1..12 {
        assert!(
            rest.contains(&format!("word{i}")),
            "event {i} missing: {rest}"
        );
    }
    assert!(rest.contains("data: [DONE]"), "no [DONE]: {rest}");
}

const TWELVE_EVENTS: &str = "x-mock-chunks: 12\r\n";

#[test]
fn a_stream_held_past_the_handover_and_every_client_timer_survives_an_upgrade() {
    let mock = Mock::start("a");
    let mut gw = Gateway::start_with_server("  drain_timeout: 60s\n", &body(&mock, SHORT_TIMERS));
    let held = open_held_stream(gw.proxy_port, "upgrade", TWELVE_EVENTS);
    let mut new = start_successor(&gw, &gw.log_path_for("upgrade.log"));
    let mut old = gw.take_child();
    let quit_at = Instant::now();
    signal(old.id(), "QUIT");

    // The hand-over, the settle delay and the 1 s client timers all pass,
    // with readiness at 200 throughout: during an upgrade the new process
    // answers on the same admin socket.
    let release_at = quit_at + HANDOVER + Duration::from_secs(4);
    while Instant::now() < release_at {
        let (status, body) = get(&gw.admin_url("/ready"));
        assert_eq!(status, 200, "/ready during an upgrade: {body}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        is_running(&mut old),
        "the old process left a stream in flight"
    );
    assert_eq!(
        pid_in_file(&gw),
        Some(new.id()),
        "the pid file names the new process"
    );
    mock.control("/mock/release/upgrade");
    assert_complete(&rest_of(held));
    let status = wait_child(&mut old, Duration::from_secs(15)).expect("the old process exits");
    assert!(status.success(), "{status:?}");
    let old_log = gw.log();
    assert!(old_log.contains("SIGQUIT: draining"), "{old_log}");
    assert!(old_log.contains("drained in"), "{old_log}");
    // The new process serves on.
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    let _ = new.kill();
    let _ = new.wait();
}

#[test]
fn a_stream_held_past_every_client_timer_survives_sigterm() {
    let mock = Mock::start("a");
    let mut gw = Gateway::start_with_server("  drain_timeout: 60s\n", &body(&mock, SHORT_TIMERS));
    let held = open_held_stream(gw.proxy_port, "term", TWELVE_EVENTS);
    let term_at = Instant::now();
    gw.signal("TERM");

    // Out of load balancing at once, alive, and accepting nothing new.
    assert!(eventually(Duration::from_secs(5), || get(
        &gw.admin_url("/ready")
    )
    .0 == 503));
    let (_, ready) = get(&gw.admin_url("/ready"));
    assert!(ready.contains("draining"), "{ready}");
    assert_eq!(get(&gw.admin_url("/health")).0, 200);
    let metrics = gw.metrics();
    assert_eq!(metric_value(&metrics, "draining"), Some(1.0), "{metrics}");
    assert_eq!(
        metric_value(&metrics, "inflight_requests"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        eventually(Duration::from_secs(5), || TcpStream::connect((
            "127.0.0.1",
            gw.proxy_port
        ))
        .is_err()),
        "the proxy port still accepts after SIGTERM"
    );

    // The settle delay and the 1 s client timers pass several times over.
    std::thread::sleep(
        (term_at + Duration::from_secs(5)).saturating_duration_since(Instant::now()),
    );
    let mut process = gw.take_child();
    assert!(
        is_running(&mut process),
        "the process left a stream in flight"
    );
    mock.control("/mock/release/term");
    assert_complete(&rest_of(held));
    let status = wait_child(&mut process, Duration::from_secs(15)).expect("the process exits");
    assert!(status.success(), "{status:?}");
    let log = gw.log();
    assert!(
        log.contains("SIGTERM: draining; 1 requests in flight"),
        "{log}"
    );
}

#[test]
fn a_stream_longer_than_the_drain_timeout_is_cut_at_it() {
    let mock = Mock::start("a");
    let mut gw = Gateway::start_with_server("  drain_timeout: 3s\n", &body(&mock, ""));
    let held = open_held_stream(gw.proxy_port, "cut", TWELVE_EVENTS);
    let mut process = gw.take_child();
    let term_at = Instant::now();
    signal(process.id(), "TERM");
    let status = wait_child(&mut process, Duration::from_secs(30)).expect("the process exits");
    let took = term_at.elapsed();
    eprintln!("drain_timeout 3s: the process exited {took:?} after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(2900),
        "exited before the drain timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "exited long after the drain timeout: {took:?}"
    );
    let rest = rest_of(held);
    assert!(!rest.contains("[DONE]"), "the stream was not cut: {rest}");
    let log = gw.log();
    assert!(log.contains("with 1 requests in flight"), "{log}");
}

/// Every timer of these configs is 60 s: an exit within seconds proves none
/// of them is awaited.
const SLOW_TIMERS: &str =
    "request:\n  header_timeout: 60s\n  idle_timeout: 60s\n  body_timeout: 60s\n";

/// A keep-alive connection that has had one answer and now sits idle.
fn idle_keep_alive(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (status, _) = read_response(&mut stream).expect("an answer");
    assert_eq!(status, 200);
    stream
}

#[test]
fn an_idle_process_exits_promptly_after_sigterm() {
    let mock = Mock::start("a");
    let mut gw = Gateway::start_with_server("  drain_timeout: 60s\n", &body(&mock, SLOW_TIMERS));
    let mut idle = idle_keep_alive(gw.proxy_port);
    let mut process = gw.take_child();
    assert_eq!(pid_in_file(&gw), Some(process.id()));
    let term_at = Instant::now();
    signal(process.id(), "TERM");
    assert!(
        closed_within(&mut idle, Duration::from_secs(15)),
        "the idle connection stayed open"
    );
    let status = wait_child(&mut process, Duration::from_secs(15)).expect("the process exits");
    eprintln!("idle process: exited {:?} after SIGTERM", term_at.elapsed());
    assert!(status.success(), "{status:?}");
    assert_eq!(pid_in_file(&gw), None, "the pid file outlived the process");
}

#[test]
fn an_idle_process_exits_promptly_after_the_upgrade_handover() {
    let mock = Mock::start("a");
    let mut gw = Gateway::start_with_server("  drain_timeout: 60s\n", &body(&mock, SLOW_TIMERS));
    let mut idle = idle_keep_alive(gw.proxy_port);
    let mut new = start_successor(&gw, &gw.log_path_for("upgrade.log"));
    let mut old = gw.take_child();
    let quit_at = Instant::now();
    signal(old.id(), "QUIT");
    assert!(closed_within(&mut idle, HANDOVER + Duration::from_secs(15)));
    let status =
        wait_child(&mut old, HANDOVER + Duration::from_secs(15)).expect("the old process exits");
    eprintln!(
        "idle process: exited {:?} after SIGQUIT (the hand-over is {HANDOVER:?})",
        quit_at.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    let _ = new.kill();
    let _ = new.wait();
}

/// What a keep-alive client saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    closes: AtomicUsize,
    errors: AtomicUsize,
}

/// Sends chat requests back to back on one keep-alive connection, never
/// retrying; a `Connection: close` answer makes it open a new connection.
/// Anything but a complete 200 (refused, reset, short read) is an error.
fn hammer(port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let body = r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut connection: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::SeqCst) {
        if connection.is_none() {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    connection = Some(BufReader::new(stream));
                }
                Err(e) => {
                    eprintln!("connect: {e}");
                    tally.errors.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            }
        }
        let Some(reader) = connection.as_mut() else {
            continue;
        };
        let answer = reader
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))
            .and_then(|()| read_keep_alive_response(reader));
        match answer {
            Ok((200, close)) => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
                if close {
                    tally.closes.fetch_add(1, Ordering::SeqCst);
                    connection = None;
                }
            }
            Ok((status, _)) => {
                eprintln!("status {status}");
                tally.errors.fetch_add(1, Ordering::SeqCst);
                connection = None;
            }
            Err(e) => {
                eprintln!("{e}");
                tally.errors.fetch_add(1, Ordering::SeqCst);
                connection = None;
            }
        }
    }
}

/// One response: (status, whether it said `Connection: close`).
fn read_keep_alive_response(reader: &mut BufReader<TcpStream>) -> Result<(u16, bool), String> {
    let mut line = String::new();
    let mut status = 0;
    let mut length = None;
    let mut close = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err("connection closed before a full answer".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let text = line.trim_end();
        if status == 0 {
            status = text
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or(format!("bad status line {text:?}"))?;
            continue;
        }
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
    }
    let length = length.ok_or("no Content-Length")?;
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("short body: {e}"))?;
    Ok((status, close))
}

#[test]
fn keep_alive_clients_see_no_error_through_two_upgrades() {
    let mock = Mock::start("a");
    let mut first = Gateway::start(&body(&mock, ""));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, tally, port) = (stop.clone(), tally.clone(), first.proxy_port);
            std::thread::spawn(move || hammer(port, stop, tally))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // First upgrade: the harness' process hands over to `second`.
    let mut second = start_successor(&first, &first.log_path_for("second.log"));
    let mut old = first.take_child();
    signal(old.id(), "QUIT");
    let status =
        wait_child(&mut old, HANDOVER + Duration::from_secs(30)).expect("the first process exits");
    assert!(status.success(), "{status:?}");
    // Second upgrade: `second` hands over to `third`.
    let mut third = start_successor(&first, &first.log_path_for("third.log"));
    signal(second.id(), "QUIT");
    let status = wait_child(&mut second, HANDOVER + Duration::from_secs(30))
        .expect("the second process exits");
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(500));

    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("client thread");
    }
    let (ok, closes, errors) = (
        tally.ok.load(Ordering::SeqCst),
        tally.closes.load(Ordering::SeqCst),
        tally.errors.load(Ordering::SeqCst),
    );
    eprintln!(
        "through two upgrades: {ok} answers, {closes} with Connection: close, {errors} errors"
    );
    if errors > 0 {
        for name in ["gateway.log", "second.log", "third.log"] {
            let text = std::fs::read_to_string(first.log_path_for(name)).unwrap_or_default();
            for line in text.lines().filter(|l| !l.starts_with('{')) {
                eprintln!("{name}: {line}");
            }
        }
    }
    assert_eq!(errors, 0, "client-visible errors");
    assert!(ok > 1000, "too little load to prove anything: {ok}");
    assert!(
        closes >= 8,
        "the draining processes did not close keep-alive connections: {closes}"
    );
    let _ = third.kill();
    let _ = third.wait();
}

#[test]
fn the_unspent_hybrid_lease_goes_back_to_redis_on_exit() {
    let redis = Redis::start();
    let mock = Mock::start("a");
    let limits = format!(
        "limits:\n  mode: hybrid\n  redis: {{url: \"{}\", lease_fraction: 0.1, sync_interval: 60s}}\n  \
         rules:\n    - {{name: per-hour, key: [global], counts: requests, limit: 1000, window: hour}}\n  \
         global_rules: [per-hour]\n",
        redis.url()
    );
    let mut gw = Gateway::start(&body(&mock, &limits));
    for _ in 0..3 {
        assert_eq!(chat(&gw, "mock-gpt").status, 200);
    }
    let counted = || -> u64 {
        let keys = redis.keys("aigw:lim:per-hour*");
        assert_eq!(keys.len(), 1, "{keys:?}");
        redis.counter(&keys[0])
    };
    assert_eq!(counted(), 100, "one lease of 10% is held");
    let mut process = gw.take_child();
    signal(process.id(), "TERM");
    let status = wait_child(&mut process, Duration::from_secs(15)).expect("the process exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(counted(), 3, "the unspent 97 went back; log:\n{}", gw.log());
}

#[test]
fn a_second_instance_without_upgrade_exits_with_a_clear_message() {
    let mock = Mock::start("a");
    let gw = Gateway::start(&body(&mock, ""));
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .arg("-c")
        .arg(&gw.config_path)
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("second instance exited after {took:?}");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(
        stderr.contains(&format!(
            "listen.proxy[0]: 127.0.0.1:{} is still in use",
            gw.proxy_port
        )),
        "{stderr}"
    );
    assert!(stderr.contains("-u"), "{stderr}");
    // The running instance is untouched.
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
}
