//! Connection floods: thousands of concurrent client connections are served
//! (or, over `listen.max_connections`, closed at accept), the gateway's
//! memory comes back down once they are gone, after a second flood as after
//! the first. The RSS before, during and after is printed:
//! `cargo test --test connection_floods -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const CHAT: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn open_connections(gw: &Gateway) -> f64 {
    metric_value(&gw.metrics(), "client_connections").unwrap_or(-1.0)
}

/// Opens `n` connections at once, sends a chat request on each and reads
/// every answer; returns the open connections and the statuses (0: closed).
fn flood(gw: &Gateway, n: usize) -> (Vec<TcpStream>, BTreeMap<u16, usize>) {
    let mut clients: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", gw.proxy_port)).expect("connect"))
        .collect();
    for client in &mut clients {
        client.write_all(CHAT).expect("send");
    }
    let mut statuses = BTreeMap::new();
    for client in &mut clients {
        client
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let status = read_response(client).map_or(0, |(status, _)| status);
        *statuses.entry(status).or_insert(0usize) += 1;
    }
    (clients, statuses)
}

/// The soft limit on open files of this process (the gateway inherits it).
/// Raises this process's soft limit of open files to the hard one (the
/// gateway it starts inherits it), so the test needs no `ulimit -n`; the
/// soft limit then.
fn open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    let limits = std::fs::read_to_string("/proc/self/limits").expect("proc limits");
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("Max open files")
}

/// One flood of `n` chat connections, all served, then closed. Returns the
/// gateway's RSS (KiB) while they were open and once they were gone.
fn flood_and_close(gw: &Gateway, n: usize, settle_below: u64) -> (u64, u64) {
    let (clients, statuses) = flood(gw, n);
    assert_eq!(
        statuses.get(&200),
        Some(&n),
        "statuses (0: closed): {statuses:?}"
    );
    assert_eq!(open_connections(gw), n as f64);
    let during = rss_kib(gw.pid());
    drop(clients);
    assert!(
        eventually(Duration::from_secs(30), || open_connections(gw) == 0.0),
        "connections still counted open: {}",
        open_connections(gw)
    );
    // Freed pages go back to the OS as the workers collect their heaps and
    // go on allocating: a little traffic, then a look.
    let mut after = rss_kib(gw.pid());
    eventually(Duration::from_secs(10), || {
        chat(gw, "mock-gpt");
        after = rss_kib(gw.pid());
        after <= settle_below
    });
    (during, after)
}

#[test]
fn three_thousand_connections_are_served_and_memory_returns() {
    const CONNECTIONS: usize = 3000;
    assert!(
        open_file_limit() > CONNECTIONS + 500,
        "this test needs more than {} open files: raise the hard limit (`ulimit -Hn`)",
        CONNECTIONS + 500
    );
    let mock = Mock::start("a");
    let gw = chat_gateway(&[&mock], "", "mock-gpt", "");
    // Warm up with a smaller flood: the upstream keep-alive pool fills to its
    // cap and stays full, so it belongs in the baseline.
    let (warm, statuses) = flood(&gw, 400);
    assert_eq!(statuses.get(&200), Some(&400), "{statuses:?}");
    drop(warm);
    assert!(eventually(Duration::from_secs(30), || open_connections(
        &gw
    ) == 0.0));
    let before = rss_kib(gw.pid());

    // Two floods: most of the memory comes back after each (the allocator
    // may keep some pages for reuse), and nothing piles up across them.
    let (during, after) = flood_and_close(&gw, CONNECTIONS, before);
    let rise = during.saturating_sub(before);
    let (during_again, after_again) = flood_and_close(&gw, CONNECTIONS, before);
    println!(
        "gateway RSS with {CONNECTIONS} connections: before {before} KiB, during {during} KiB, \
         after {after} KiB; second flood: during {during_again} KiB, after {after_again} KiB"
    );
    // Both floods come back within the same bound: a leak of even 20 KiB
    // per connection would add 60 MB per flood and break it the second time.
    for (flood, left) in [("first", after), ("second", after_again)] {
        assert!(
            left <= before + rise * 2 / 5,
            "memory did not come back after the {flood} flood: before {before} KiB, \
             during {during} KiB, after {left} KiB"
        );
    }
    // And the gateway still serves.
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
}

#[test]
fn connections_over_max_connections_are_closed_at_accept() {
    let mock = Mock::start("a");
    let gw = Gateway::start_with_listen(
        "  max_connections: 50\n",
        &format!(
            "upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
            pool_yaml("main", &[mock.url()], "")
        ),
    );
    // Fifty connections that hold their slot, one request each.
    let mut held: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", gw.proxy_port)).expect("connect"))
        .collect();
    for stream in &mut held {
        stream.write_all(CHAT).unwrap();
        assert_eq!(read_response(stream).map(|r| r.0), Some(200));
    }
    // Twenty more are closed without an answer.
    for _ in 0..20 {
        let mut extra = TcpStream::connect(("127.0.0.1", gw.proxy_port)).expect("connect");
        let _ = extra.write_all(CHAT);
        assert_eq!(read_response(&mut extra), None);
    }
    // At least those twenty (a harness probe from start-up may be refused
    // too, if its turn comes while the fifty are held).
    let refused = metric_value(&gw.metrics(), "client_connections_refused_total");
    assert!(refused.unwrap_or(0.0) >= 20.0, "{refused:?}");
    assert_eq!(mock.api_requests(), 50);
    // Freed slots are taken again.
    drop(held);
    assert!(eventually(Duration::from_secs(30), || open_connections(
        &gw
    ) == 0.0));
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
}

/// A connection's buffers are mostly untouched capacity; with transparent
/// huge pages one touched byte makes a whole 2 MiB page resident, which
/// doubled the memory per open stream (benches/streams.sh). The gateway
/// turns them off for itself, whatever the host's THP mode.
#[test]
fn the_gateway_runs_without_transparent_huge_pages() {
    let mock = Mock::start("a");
    let gw = chat_gateway(&[&mock], "", "mock-gpt", "");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).expect("proc status");
    match status.lines().find_map(|l| l.strip_prefix("THP_enabled:")) {
        Some(value) => assert_eq!(value.trim(), "0", "THP is on for the gateway"),
        // Kernels before 6.1 do not report it; the prctl still applies.
        None => eprintln!("this kernel does not report THP_enabled"),
    }
}
