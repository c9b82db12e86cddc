//! Limits over real sockets and a real redis-server: request and token rules,
//! the 429 answer and headers, usage from JSON and streams, and limits that
//! hold across three gateway processes. Redis failures are in
//! `failing_dependencies.rs`.

mod common;

use std::time::{Duration, Instant};

use common::flood::{assert_admitted, SteadyFlood};
use common::*;
use serde_json::json;

fn chat_body(max_tokens: u64) -> serde_json::Value {
    json!({"model": "mock-gpt", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hello there"}]})
}

fn gateway_with_limits(mock: &Mock, limits: &str) -> Gateway {
    let pool = pool_yaml("main", &[mock.url()], "");
    Gateway::start(&format!(
        "{limits}upstreams:\n{pool}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n    limits: [per-ip]\n"
    ))
}

#[test]
fn request_limit_answers_429_with_openai_headers() {
    let mock = Mock::start("a");
    let gw = gateway_with_limits(
        &mock,
        "limits:\n  rules:\n    - {name: per-ip, key: [client_ip], counts: requests, limit: 3, window: minute}\n",
    );
    let url = gw.url("/v1/chat/completions");
    for expected_remaining in ["2", "1", "0"] {
        let resp = post_json(&url, &chat_body(5), &[]);
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.header("x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(
            resp.header("x-ratelimit-remaining-requests"),
            Some(expected_remaining)
        );
        assert!(resp
            .header("x-ratelimit-reset-requests")
            .unwrap()
            .ends_with('s'));
    }
    let resp = post_json(&url, &chat_body(5), &[]);
    resp.assert_error(429, "rate_limit_exceeded");
    assert!(resp.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("per-ip"));
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(resp.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(mock.api_requests(), 3);
    let metrics = gw.metrics();
    assert_eq!(
        metric_value(
            &metrics,
            r#"rate_limit_hits_total{kind="requests",rule="per-ip"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn a_huge_max_tokens_cannot_wrap_a_token_limit() {
    // Found by the limit_arithmetic fuzz target: a max_tokens above i64::MAX
    // once wrapped negative, was admitted and left the counter in credit.
    let mock = Mock::start("a");
    let gw = gateway_with_limits(
        &mock,
        "limits:\n  rules:\n    - {name: per-ip, key: [client_ip], counts: total_tokens, limit: 150, window: minute}\n",
    );
    let url = gw.url("/v1/chat/completions");
    for huge in [u64::MAX, 16_789_419_410_837_208_832, 1 << 63] {
        let resp = post_json(&url, &chat_body(huge), &[]);
        resp.assert_error(429, "rate_limit_exceeded");
    }
    let statuses: Vec<u16> = (0..6)
        .map(|_| post_json(&url, &chat_body(100), &[]).status)
        .collect();
    assert!(
        statuses.contains(&429),
        "the limit stopped holding: {statuses:?}"
    );
    assert_eq!(
        mock.api_requests(),
        statuses.iter().filter(|&&s| s == 200).count()
    );
}

#[test]
fn token_reservations_settle_to_the_real_usage() {
    let mock = Mock::start("a");
    // Each request reserves about 25 prompt tokens + 50 for max_tokens, and
    // really uses about 20 + 3 (the mock's answer): only settlement lets a
    // fourth one in.
    let gw = gateway_with_limits(
        &mock,
        "limits:\n  rules:\n    - {name: per-ip, key: [client_ip], counts: total_tokens, limit: 150, window: minute}\n",
    );
    let url = gw.url("/v1/chat/completions");
    let mut statuses = Vec::new();
    for i in 0..6 {
        let resp = post_json(&url, &chat_body(50), &[]);
        statuses.push(resp.status);
        if resp.status == 200 {
            assert!(resp.header("x-ratelimit-remaining-tokens").is_some());
        }
        // Settlement happens in the logging phase, just after the answer and
        // before the access line.
        assert!(eventually(Duration::from_secs(5), || gw
            .access_lines()
            .len()
            > i));
    }
    let admitted = statuses.iter().filter(|&&s| s == 200).count();
    assert!(
        admitted >= 4,
        "settlement did not give budget back: {statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "the token limit never bit: {statuses:?}"
    );
    let metrics = gw.metrics();
    let input = metric_value(
        &metrics,
        r#"llm_tokens_total{model="mock-gpt",provider="openai",route="chat",type="input"}"#,
    );
    let output = metric_value(
        &metrics,
        r#"llm_tokens_total{model="mock-gpt",provider="openai",route="chat",type="output"}"#,
    );
    assert!(
        input.unwrap_or(0.0) > 0.0 && output == Some(3.0 * admitted as f64),
        "{metrics}"
    );
}

#[test]
fn streams_are_counted_and_the_added_usage_chunk_is_hidden() {
    let mock = Mock::start("a");
    let gw = gateway_with_limits(
        &mock,
        "limits:\n  rules:\n    - {name: per-ip, key: [client_ip], counts: output_tokens, limit: 100000, window: minute}\n",
    );
    let url = gw.url("/v1/chat/completions");
    // The client did not ask for usage: the gateway asks, counts, and hides it.
    let resp = post_json(
        &url,
        &json!({"model": "mock-gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-chunks", "4")],
    );
    assert_eq!(resp.status, 200);
    assert!(!resp.body.contains("\"usage\""), "{}", resp.body);
    assert!(resp.body.trim_end().ends_with("data: [DONE]"));
    let sent: serde_json::Value =
        serde_json::from_str(mock.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // A client that asked gets the usage chunk.
    let resp = post_json(
        &url,
        &json!({"model": "mock-gpt", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-mock-chunks", "6")],
    );
    assert!(resp.body.contains("\"usage\""), "{}", resp.body);
    assert!(eventually(Duration::from_secs(5), || {
        let m = gw.metrics();
        metric_value(
            &m,
            r#"llm_tokens_total{model="mock-gpt",provider="openai",route="chat",type="output"}"#,
        ) == Some(10.0)
    }));
    let metrics = gw.metrics();
    assert!(
        metrics.contains("llm_time_to_first_token_seconds_count{route=\"chat\"} 2"),
        "{metrics}"
    );
}

fn cluster_config(mode: &str, redis: &Redis, mock: &Mock, limit: u64) -> String {
    format!(
        "limits:\n  mode: {mode}\n  redis: {{url: \"{}\", expected_replicas: 3, timeout: 200ms}}\n  rules:\n    - {{name: global-rps, key: [global], counts: requests, limit: {limit}, window: second}}\n  global_rules: [global-rps]\naccess_log: {{enabled: false}}\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        redis.url(),
        pool_yaml("main", &[mock.url()], ""),
    )
}

/// Floods 3 gateways with 3x the limit right after a window starts, for
/// `windows` windows; returns the admitted count per window.
fn flood(gateways: &[Gateway], redis: &Redis, limit: u64, windows: usize) -> Vec<usize> {
    let per_gateway = (limit as usize * 3) / gateways.len();
    let threads_per_gateway = 8;
    let mut admitted = Vec::new();
    for _ in 0..windows {
        // Start 30 ms into a fresh window of Redis' clock.
        let now = redis.time_ms();
        std::thread::sleep(Duration::from_millis(1000 - now % 1000 + 30));
        let window = redis.time_ms() / 1000;
        let started = Instant::now();
        let handles: Vec<_> = gateways
            .iter()
            .flat_map(|gw| {
                (0..threads_per_gateway).map(move |t| {
                    let url = gw.url("/v1/chat/completions");
                    let n = per_gateway / threads_per_gateway
                        + usize::from(t < per_gateway % threads_per_gateway);
                    std::thread::spawn(move || {
                        let agent = ureq::AgentBuilder::new()
                            .timeout(Duration::from_secs(10))
                            .build();
                        let body =
                            r#"{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}"#;
                        (0..n)
                            .filter(|_| match agent.post(&url).send_string(body) {
                                Ok(r) => r.status() == 200,
                                Err(ureq::Error::Status(429, _)) => false,
                                Err(e) => panic!("unexpected: {e}"),
                            })
                            .count()
                    })
                })
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let took = started.elapsed();
        assert_eq!(
            redis.time_ms() / 1000,
            window,
            "the burst spilled into the next window ({took:?}); the count would be meaningless"
        );
        admitted.push(ok);
    }
    admitted
}

fn cluster_run(mode: &str, limit: u64) -> Vec<usize> {
    let redis = Redis::start();
    let mock = Mock::start("a");
    let gateways: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(&cluster_config(mode, &redis, &mock, limit)))
        .collect();
    let admitted = flood(&gateways, &redis, limit, 4);
    eprintln!(
        "{mode}: limit {limit} per second across 3 gateways, admitted per window: {admitted:?}"
    );
    admitted
}

/// One test for the three modes, run one after the other: three gateway
/// processes per mode flooding together would otherwise compete with the
/// other modes' floods for the same two cores.
#[test]
fn limits_across_three_replicas_by_mode() {
    let limit = 60;
    let hybrid = cluster_run("hybrid", limit);
    for (i, &n) in hybrid.iter().enumerate() {
        assert_admitted(&format!("hybrid window {i}"), n, limit, 0.8);
    }
    let redis = cluster_run("redis", limit);
    for (i, &n) in redis.iter().enumerate() {
        assert_admitted(&format!("redis window {i}"), n, limit, 0.95);
    }
    // The baseline the other two fix: each replica spends the whole limit.
    let redis_server = Redis::start();
    let mock = Mock::start("a");
    let config =
        cluster_config("local", &redis_server, &mock, limit).replace("  redis: {", "  # redis: {");
    let gateways: Vec<Gateway> = (0..3).map(|_| Gateway::start(&config)).collect();
    let local = flood(&gateways, &redis_server, limit, 2);
    eprintln!("local: limit {limit} per second across 3 gateways, admitted per window: {local:?}");
    // Well over the limit on average (each replica spends its own 60; the
    // replicas' local windows are not aligned, so a window may catch less).
    let total: usize = local.iter().sum();
    assert!(total > limit as usize * local.len() * 3 / 2, "{local:?}");
}

/// The issue measured on one node: Redis SIGKILLed mid-flood and restarted
/// empty let the window admit each replica's share and then the whole limit
/// again. Now each replica's share covers all it took of the window, and on
/// recovery every replica restates its part: Redis' count again equals what
/// the cluster admitted, and the window stays within the limit.
#[test]
fn redis_restarted_empty_mid_window_neither_loses_nor_double_spends_the_window() {
    let limit = 300;
    let mut redis = Redis::start();
    let mock = Mock::start("a");
    let config = format!(
        "limits:\n  mode: hybrid\n  redis: {{url: \"{}\", expected_replicas: 3, timeout: 200ms, sync_interval: 200ms}}\n  rules:\n    - {{name: per-minute, key: [global], counts: requests, limit: {limit}, window: minute}}\n  global_rules: [per-minute]\naccess_log: {{enabled: false}}\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        redis.url(),
        pool_yaml("main", &[mock.url()], ""),
    );
    let gateways: Vec<Gateway> = (0..3).map(|_| Gateway::start(&config)).collect();
    fresh_minute(40);
    let minute = minute_now();
    let flood = SteadyFlood::start(&gateways, "mock-gpt", Duration::from_millis(40));
    std::thread::sleep(Duration::from_millis(1500));
    let before = flood.tally.ok();
    redis.down();
    std::thread::sleep(Duration::from_secs(2));
    let during = flood.tally.ok() - before;
    redis.up(); // empty: it keeps nothing on disk
    std::thread::sleep(Duration::from_secs(6));
    // Killed and back at once, before some replicas see a call fail: the
    // marker, or a counter gone under a replica's claim, tells them.
    redis.down();
    redis.up();
    std::thread::sleep(Duration::from_secs(4));
    let tally = flood.stop();
    assert_eq!(
        minute_now(),
        minute,
        "the test spilled into the next minute"
    );
    let total = tally.ok();
    eprintln!(
        "limit {limit}: {before} admitted before Redis died, {during} while it was down, {total} in the window after two empty restarts"
    );
    assert_eq!(
        tally.other(),
        Vec::<String>::new(),
        "answers other than 200/429"
    );
    let slowest = tally.slowest_ms.load(std::sync::atomic::Ordering::Relaxed);
    assert!(slowest < 10_000, "a request took {slowest} ms");
    assert_admitted("the window", total, limit, 0.9);
    // Once idle leases are handed back, Redis counts what was admitted.
    let key = format!("aigw:lim:per-minute|g=*:{minute}");
    let settled = eventually(Duration::from_secs(10), || {
        let counted = redis.counter(&key);
        (counted as f64 - total as f64).abs() <= limit as f64 * 0.01
    });
    assert!(
        settled,
        "Redis counts {} for {total} admitted",
        redis.counter(&key)
    );
}

/// Attempts `n` held streams round robin over the gateways, one after the
/// other; the admitted ones, with the gateway that admitted each.
fn hold_streams(
    gateways: &[Gateway],
    n: usize,
    tag: &str,
) -> Vec<(usize, String, std::io::BufReader<std::net::TcpStream>)> {
    let mut held = Vec::new();
    for i in 0..n {
        let g = i % gateways.len();
        let key = format!("{tag}-{i}");
        match try_held_stream(gateways[g].proxy_port, &key, "") {
            (200, Some(reader)) => held.push((g, key, reader)),
            (429, None) => {}
            (status, _) => panic!("attempt {i}: status {status}"),
        }
    }
    held
}

/// `counts: concurrent` across three replicas in hybrid mode: exactly the
/// limit is admitted however the streams spread, slots freed on one replica
/// serve another after a sync, and a replica killed while holding slots
/// loses them to the others within the slots' TTL.
#[test]
fn concurrency_holds_across_three_replicas_and_a_dead_replicas_slots_come_back() {
    let limit = 6;
    let redis = Redis::start();
    let mock = Mock::start("a");
    let config = format!(
        "limits:\n  mode: hybrid\n  redis: {{url: \"{}\", expected_replicas: 3, timeout: 200ms, sync_interval: 200ms}}\n  rules:\n    - {{name: per-model-streams, key: [model], counts: concurrent, limit: {limit}}}\n  global_rules: [per-model-streams]\naccess_log: {{enabled: false}}\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        redis.url(),
        pool_yaml("main", &[mock.url()], ""),
    );
    let mut gateways: Vec<Gateway> = (0..3).map(|_| Gateway::start(&config)).collect();

    // 3x the limit, spread over the replicas: exactly the limit is admitted.
    let held = hold_streams(&gateways, 3 * limit, "first");
    assert_eq!(held.len(), limit, "admitted {} of {limit}", held.len());
    // Released, the slots are free again (handed back at the next sync).
    for (_, key, _) in &held {
        mock.control(&format!("/mock/release/{key}"));
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(800));
    let held = hold_streams(&gateways, 3 * limit, "second");
    assert_eq!(held.len(), limit, "after release: admitted {}", held.len());

    // Kill (SIGKILL) the replica holding slots: they come back to the
    // others within the TTL (2 s: three 200 ms syncs, at least 2 s).
    let victim = held[0].0;
    let dead_slots = held.iter().filter(|(g, _, _)| *g == victim).count();
    assert!(dead_slots > 0);
    signal(gateways[victim].pid(), "KILL");
    let _ = gateways[victim].wait_exit(Duration::from_secs(10));
    let killed_at = Instant::now();
    let survivors: Vec<Gateway> = gateways
        .drain(..)
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, gw)| gw)
        .collect();
    let mut regained = Vec::new();
    let mut attempt = 0;
    while regained.len() < dead_slots && killed_at.elapsed() < Duration::from_secs(20) {
        regained.extend(hold_streams(&survivors, 1, &format!("after-{attempt}")));
        attempt += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = killed_at.elapsed();
    eprintln!(
        "concurrency {limit}: {dead_slots} slots of a killed replica back in {took:?} (TTL 2 s)"
    );
    assert_eq!(
        regained.len(),
        dead_slots,
        "the dead replica's slots never came back"
    );
    // And never more than the limit: the survivors hold all there is.
    assert!(hold_streams(&survivors, 4, "over").is_empty());
    for (_, key, _) in held.iter().chain(&regained) {
        mock.control(&format!("/mock/release/{key}"));
    }
}

/// Every counter Redis keeps expires after its window: in redis mode a
/// window with one admission creates its key in the script that charges it.
#[test]
fn redis_mode_counters_expire_after_their_window() {
    let redis = Redis::start();
    let mock = Mock::start("a");
    let gw = Gateway::start(&format!(
        "limits:\n  mode: redis\n  redis: {{url: \"{}\"}}\n  rules:\n    - {{name: per-minute, key: [global], counts: requests, limit: 10, window: minute}}\n  global_rules: [per-minute]\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        redis.url(),
        pool_yaml("main", &[mock.url()], ""),
    ));
    assert_eq!(chat(&gw, "mock-gpt").status, 200);
    let keys = redis.keys("aigw:lim:per-minute*");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(redis.counter(&keys[0]), 1);
    let ttl = redis.ttl(&keys[0]);
    assert!((1..=181).contains(&ttl), "{} expires in {ttl} s", keys[0]);
}

/// Three replicas in hybrid mode with a per-second request limit, a steady
/// flood of about three times it, and Redis SIGKILLed `kill_at_ms` into a
/// second and restarted empty `down` later: the admitted count of every
/// whole second, from before the kill to well after the restart.
fn seconds_through_a_redis_restart(
    limit: u64,
    kill_at_ms: u64,
    down: Duration,
) -> Vec<(u64, usize)> {
    let mut redis = Redis::start();
    let mock = Mock::start("a");
    let config = cluster_config("hybrid", &redis, &mock, limit)
        .replace("timeout: 200ms}", "timeout: 200ms, sync_interval: 200ms}");
    let gateways: Vec<Gateway> = (0..3).map(|_| Gateway::start(&config)).collect();
    let flood = SteadyFlood::start(&gateways, "mock-gpt", Duration::from_millis(12));
    std::thread::sleep(Duration::from_secs(3));
    let now = redis.time_ms();
    std::thread::sleep(Duration::from_millis(
        (1000 + kill_at_ms - now % 1000) % 1000,
    ));
    redis.down(); // SIGKILL
    let killed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::thread::sleep(down);
    redis.up(); // empty: it keeps nothing on disk
    std::thread::sleep(Duration::from_secs(6));
    let tally = flood.stop();
    assert_eq!(
        tally.other(),
        Vec::<String>::new(),
        "answers other than 200/429"
    );
    let seconds = tally.per_second();
    // The first and last seconds are partial.
    let whole = &seconds[1..seconds.len() - 1];
    eprintln!(
        "limit {limit}/s, Redis killed {kill_at_ms} ms into second {killed} for {down:?}: {whole:?}"
    );
    whole.to_vec()
}

/// The issue's scenario: a window shorter than the time replicas take to
/// trust Redis again. No second may admit more than the limit, before the
/// kill, while Redis is down, and after it came back empty: killed early
/// and late in a second, and back at once (before a sync could see it).
#[test]
fn a_redis_killed_and_restarted_empty_doubles_no_second() {
    let limit = 100;
    for (kill_at_ms, down) in [
        (100, Duration::from_secs(3)),
        (600, Duration::from_millis(2500)),
        (900, Duration::ZERO),
    ] {
        for (second, admitted) in seconds_through_a_redis_restart(limit, kill_at_ms, down) {
            // A request admitted in the last milliseconds of a second may
            // answer in the next: a few of slack, never a doubling.
            assert!(
                admitted as u64 <= limit + limit / 50 + 2,
                "second {second}: {admitted} admitted, limit {limit} (Redis killed {kill_at_ms} ms into a second)"
            );
        }
    }
}

/// Redis restarted empty while no call of a replica failed: nothing tells
/// that replica but the data itself. The replica that took part of the
/// window restates it when it finds Redis' marker changed, so an idle
/// replica that comes in afterwards leases only what is left.
#[test]
fn an_empty_restart_no_call_saw_is_found_and_restated() {
    let limit: u64 = 100;
    let mut redis = Redis::start();
    let mock = Mock::start("a");
    let config = format!(
        "limits:\n  mode: hybrid\n  redis: {{url: \"{}\", expected_replicas: 2, timeout: 200ms, sync_interval: 200ms}}\n  rules:\n    - {{name: per-minute, key: [global], counts: requests, limit: {limit}, window: minute}}\n  global_rules: [per-minute]\naccess_log: {{enabled: false}}\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        redis.url(),
        pool_yaml("main", &[mock.url()], ""),
    );
    let busy = Gateway::start(&config);
    let idle = Gateway::start(&config);
    fresh_minute(20);
    let minute = minute_now();
    let agent = common::flood::agent();
    let body = common::flood::chat_body("mock-gpt");
    let ask = |gw: &Gateway| match agent
        .post(&gw.url("/v1/chat/completions"))
        .send_string(&body)
    {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    };
    let taken = (0..60).filter(|_| ask(&busy) == 200).count() as u64;
    assert_eq!(taken, 60);
    // Between two syncs, with nothing in flight.
    redis.down();
    redis.up();
    std::thread::sleep(Duration::from_secs(2));
    let mut late = 0;
    for _ in 0..2 * limit {
        if ask(&idle) == 200 {
            late += 1;
        }
    }
    assert_eq!(
        minute_now(),
        minute,
        "the test spilled into the next minute"
    );
    eprintln!("limit {limit}: {taken} taken before the restart, {late} after it");
    assert!(
        taken + late <= limit + 1,
        "{taken} before the restart and {late} after it: the window was spent twice"
    );
    assert!(
        busy.log().contains("Redis lost the limits' counts")
            || idle.log().contains("Redis lost the limits' counts"),
        "the loss is logged"
    );
}
