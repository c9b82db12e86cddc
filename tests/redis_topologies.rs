//! Limits on Redis Cluster and behind Redis Sentinel, over real processes:
//! three gateway processes hold one request limit across replicas on a
//! 3-master, 3-replica cluster in hybrid and redis modes; a master killed
//! mid-flood fails over to its replica while no request waits past the
//! Redis timeout and the replicas fall back to their shares, the failover's
//! own window stays within the limit, then shared counting resumes and the
//! next window is exact again; and the same across a Sentinel failover.
//!
//! Every Redis node requires a password (sentinels excepted), which the
//! gateways take from `${REDIS_PASSWORD}`.
//!
//! Windows are minutes (a flood on two cores fits in one, where it would
//! spill over a one-second window) and counts are exact: every admitted
//! request is a 200 the test saw.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::flood::{agent, assert_admitted, chat_body, one_request, SteadyFlood, Tally};
use common::topologies::{RedisCluster, RedisSentinels, PASSWORD};
use common::*;

// Each phase of a test floods its own model, so its counter (the rule
// counts per model) starts at zero in any minute.

/// The Redis key of `model`'s counter in this minute.
fn counter_key(model: &str) -> String {
    format!("aigw:lim:per-model-rpm|m={model}:{}", minute_now())
}
const LIMIT: u64 = 300;

/// A gateway that authenticates to Redis with the deployments' password,
/// from its environment as operators pass it.
fn start_gateway(config: &str) -> Gateway {
    Gateway::start_with_env(config, &[("REDIS_PASSWORD", PASSWORD)])
}

/// Redis timeout of the tests that count exactly: a healthy cluster's. A
/// debug build syncing over TLS on a loaded 2-core machine has taken over
/// 200 ms for a round, and a replica whose sync times out falls back to its
/// share (by design, and counted), which is not what those tests measure.
const HEALTHY_TIMEOUT: &str = "2s";
/// Redis timeout of the failover tests: what bounds a request's wait.
const FAILOVER_TIMEOUT: &str = "200ms";

fn config(mode: &str, redis: &str, mock: &Mock, timeout: &str) -> String {
    format!(
        "limits:\n  mode: {mode}\n  redis: {{{redis}, password: \"${{REDIS_PASSWORD}}\", expected_replicas: 3, timeout: {timeout}, sync_interval: 200ms}}\n  rules:\n    - {{name: per-model-rpm, key: [model], counts: requests, limit: {LIMIT}, window: minute}}\n  global_rules: [per-model-rpm]\naccess_log: {{enabled: false}}\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [\"mock-*\"]\n    upstream: main\n",
        pool_yaml("main", &[mock.url()], ""),
    )
}

/// 3x the limit through the three gateways at once, inside one minute;
/// the number admitted.
fn flood_window(gateways: &[Gateway], model: &str) -> usize {
    fresh_minute(40);
    let minute = minute_now();
    let tally = Arc::new(Tally::default());
    let per_thread = (LIMIT as usize * 3) / (gateways.len() * 6);
    let handles: Vec<_> = gateways
        .iter()
        .flat_map(|gw| {
            let url = gw.url("/v1/chat/completions");
            let tally = tally.clone();
            let body = chat_body(model);
            (0..6).map(move |_| {
                let (url, tally, body) = (url.clone(), tally.clone(), body.clone());
                std::thread::spawn(move || {
                    let agent = agent();
                    for _ in 0..per_thread {
                        one_request(&agent, &url, &body, &tally);
                    }
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        minute_now(),
        minute,
        "the flood spilled into the next minute"
    );
    let other = tally.other.lock().unwrap();
    assert!(other.is_empty(), "answers other than 200/429: {other:?}");
    tally.ok.load(Ordering::Relaxed)
}

fn assert_exact(what: &str, admitted: usize) {
    eprintln!(
        "{what}: {admitted} admitted of {} sent, limit {LIMIT}",
        LIMIT * 3
    );
    assert_admitted(what, admitted, LIMIT, 0.9);
}

#[test]
fn a_cluster_holds_one_limit_across_three_replicas_in_hybrid_and_redis_modes() {
    let cluster = RedisCluster::start();
    let mock = Mock::start("m");
    for mode in ["hybrid", "redis"] {
        let redis = format!("cluster_nodes: {}", cluster.nodes_yaml());
        let gateways: Vec<Gateway> = (0..3)
            .map(|_| start_gateway(&config(mode, &redis, &mock, HEALTHY_TIMEOUT)))
            .collect();
        let model = format!("mock-{mode}");
        let admitted = flood_window(&gateways, &model);
        assert_exact(&format!("cluster, {mode}"), admitted);
        // The window's counter lives on the master of its slot.
        let key = counter_key(&model);
        let used = cluster.counter(&key);
        assert!(used >= admitted as u64, "{key} = {used}");
    }
}

#[test]
fn a_tls_cluster_holds_one_limit_across_three_replicas() {
    let (cluster, ca_file) = RedisCluster::start_tls();
    let mock = Mock::start("m");
    let redis = format!(
        "cluster_nodes: {}, tls: {{ca_file: \"{}\"}}",
        cluster.nodes_yaml(),
        ca_file.display()
    );
    assert!(redis.contains("rediss://"), "{redis}");
    let gateways: Vec<Gateway> = (0..3)
        .map(|_| start_gateway(&config("hybrid", &redis, &mock, HEALTHY_TIMEOUT)))
        .collect();
    let admitted = flood_window(&gateways, "mock-tls");
    assert_exact("TLS cluster, hybrid", admitted);
    assert!(cluster.counter(&counter_key("mock-tls")) >= admitted as u64);
    let metrics = gateways[0].metrics();
    assert_eq!(
        metric_value(
            &metrics,
            r#"rate_limit_redis_transitions_total{state="fallback"}"#
        ),
        Some(0.0),
        "{metrics}"
    );
}

/// A budget on the cluster: its settled spend and its replicas'
/// reservations are keys in different slots, each written and read in a
/// pipeline of its own; `/v1/spend` finds them and they add up.
#[test]
fn a_budget_on_the_cluster_settles_to_what_was_spent() {
    let cluster = RedisCluster::start();
    let mock = Mock::start("m");
    let token = "cluster-admin-token-0123456789";
    let config = format!(
        "pricing:\n  - {{model: \"mock-*\", input_per_million: 2, output_per_million: 10}}\nadmin: {{token: \"${{AIGW_ADMIN_TOKEN}}\"}}\n\
         limits:\n  mode: hybrid\n  redis: {{cluster_nodes: {}, password: \"${{REDIS_PASSWORD}}\", sync_interval: 200ms}}\n  rules:\n    - {{name: budget, key: [global], counts: cost_usd, limit: 10.0, window: day}}\n  global_rules: [budget]\n\
         upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [\"mock-*\"]\n    upstream: main\n",
        cluster.nodes_yaml(),
        pool_yaml("main", &[mock.url()], ""),
    );
    let gw = Gateway::start_with_env(
        &config,
        &[("REDIS_PASSWORD", PASSWORD), ("AIGW_ADMIN_TOKEN", token)],
    );
    let mut spent = 0;
    for _ in 0..10 {
        let answer = chat(&gw, "mock-gpt");
        assert_eq!(answer.status, 200, "{}", answer.body);
        let usage = &answer.json()["usage"];
        spent += 2 * usage["prompt_tokens"].as_u64().unwrap()
            + 10 * usage["completion_tokens"].as_u64().unwrap();
    }
    let report = || {
        send(
            "GET",
            &gw.admin_url("/v1/spend?rule=budget"),
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .json()
    };
    let line = || report()["data"][0].clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let line = line();
            line["spent_micro_usd"] == spent && line["reserved_micro_usd"] == 0
        }),
        "spent {spent}, /v1/spend says {}; log:\n{}",
        line(),
        gw.log()
    );
    assert_eq!(report()["source"], "redis");
    assert_eq!(
        metric_value(&gw.metrics(), "rate_limit_redis_errors_total"),
        Some(0.0)
    );
}

fn metric_sum(gateways: &[Gateway], name: &str) -> f64 {
    gateways
        .iter()
        .map(|gw| metric_value(&gw.metrics(), name).unwrap_or(0.0))
        .sum()
}

/// During a failover: no 5xx and nothing held past the Redis timeout (the
/// bound is far above 200 ms: it catches a wait on the topology itself);
/// the replicas fell back to their shares; afterwards they share again.
fn assert_failover(what: &str, gateways: &[Gateway], tally: &Tally) {
    let other = tally.other.lock().unwrap();
    assert!(
        other.is_empty(),
        "{what}: answers other than 200/429: {other:?}"
    );
    let slowest = tally.slowest_ms.load(Ordering::Relaxed);
    eprintln!(
        "{what}: {} admitted, {} refused during the failover; slowest answer {slowest} ms",
        tally.ok.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed)
    );
    assert!(slowest < 3000, "{what}: a request waited {slowest} ms");
    // The failover's own window: shares that cover what each replica took,
    // and parts restated after, keep it within the limit too.
    let admitted = tally.ok.load(Ordering::Relaxed);
    assert!(
        admitted as f64 <= LIMIT as f64 * 1.01,
        "{what}: the failover's window admitted {admitted}, limit {LIMIT}"
    );
    let fallback = metric_sum(
        gateways,
        r#"rate_limit_redis_transitions_total{state="fallback"}"#,
    );
    assert!(fallback >= 1.0, "{what}: no replica fell back to its share");
    assert!(
        eventually(Duration::from_secs(20), || {
            let shared = metric_sum(
                gateways,
                r#"rate_limit_redis_transitions_total{state="shared"}"#,
            );
            let fallback = metric_sum(
                gateways,
                r#"rate_limit_redis_transitions_total{state="fallback"}"#,
            );
            shared >= fallback
        }),
        "{what}: shared counting did not resume; a replica's log:\n{}",
        gateways[0].log()
    );
    assert!(gateways.iter().all(|gw| gw
        .log()
        .contains("Redis is back: limits are shared across replicas again")));
}

#[test]
fn a_cluster_master_killed_mid_flood_fails_over_and_sharing_resumes() {
    let mut cluster = RedisCluster::start();
    let mock = Mock::start("m");
    let redis = format!("cluster_nodes: {}", cluster.nodes_yaml());
    let gateways: Vec<Gateway> = (0..3)
        .map(|_| start_gateway(&config("hybrid", &redis, &mock, FAILOVER_TIMEOUT)))
        .collect();
    fresh_minute(20);
    let flood = SteadyFlood::start(&gateways, "mock-during", Duration::from_millis(20));
    std::thread::sleep(Duration::from_secs(1));
    // The master of this window's counter.
    let victim = cluster.master_of(&counter_key("mock-during"));
    cluster.kill(victim);
    cluster.wait_ok(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let tally = flood.stop();
    assert!(!cluster.master_ports().contains(&victim));
    assert_failover("cluster failover", &gateways, &tally);
    assert_exact(
        "cluster, the window after the failover",
        flood_window(&gateways, "mock-after"),
    );
}

#[test]
fn the_gateway_follows_the_master_across_a_sentinel_failover() {
    let mut sentinels = RedisSentinels::start();
    let mock = Mock::start("m");
    let redis = format!(
        "sentinel: {{master_name: {}, nodes: {}}}",
        sentinels.master_name,
        sentinels.nodes_yaml()
    );
    let gateways: Vec<Gateway> = (0..3)
        .map(|_| start_gateway(&config("hybrid", &redis, &mock, FAILOVER_TIMEOUT)))
        .collect();
    fresh_minute(25);
    let flood = SteadyFlood::start(&gateways, "mock-during", Duration::from_millis(20));
    std::thread::sleep(Duration::from_secs(1));
    let old = sentinels.master_port();
    sentinels.kill_master();
    assert!(
        eventually(Duration::from_secs(30), || sentinels.current_master()
            == Some(sentinels.replica_port())),
        "the sentinels did not promote the replica"
    );
    std::thread::sleep(Duration::from_secs(3));
    let tally = flood.stop();
    assert_ne!(sentinels.current_master(), Some(old));
    assert_failover("sentinel failover", &gateways, &tally);
    assert_exact(
        "sentinel, the window after the failover",
        flood_window(&gateways, "mock-after"),
    );
    // The counters are on the new master.
    let key = counter_key("mock-after");
    let used = common::topologies::counter_at(sentinels.replica_port(), &key);
    assert!(used > 0, "no counter on the promoted master");
}
