//! Failing dependencies: Redis stopped, restarted and frozen (SIGSTOP), and
//! the OIDC issuer down or slow. The gateway keeps serving per its
//! fail-open / fail-closed settings and no request waits longer than the
//! configured dependency timeouts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

/// Hybrid or redis limits on one global request rule, Redis timeout 200 ms.
fn limits_config(mode: &str, redis: &Redis, mock: &Mock, limit: u64) -> String {
    format!(
        "limits:\n  mode: {mode}\n  redis: {{url: \"{}\", expected_replicas: 3, timeout: 200ms}}\n  rules:\n    - {{name: global-rpm, key: [global], counts: requests, limit: {limit}, window: minute}}\n  global_rules: [global-rpm]\naccess_log: {{enabled: false}}\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        redis.url(),
        pool_yaml("main", &[mock.url()], ""),
    )
}

#[test]
fn redis_down_fails_open_on_a_share_and_recovers() {
    let mut redis = Redis::start();
    let mock = Mock::start("a");
    let config = limits_config("hybrid", &redis, &mock, 600);
    let gw = Gateway::start(&config);
    let url = gw.url("/v1/chat/completions");
    let body = json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post_json(&url, &body, &[]).status, 200);
    assert!(
        !redis.keys("aigw:lim:*").is_empty(),
        "hybrid mode leases from Redis"
    );

    redis.down();
    // Fail open: still served, on this replica's share (600 / 3).
    let served = (0..20)
        .filter(|_| post_json(&url, &body, &[]).status == 200)
        .count();
    assert_eq!(served, 20);
    let metrics = gw.metrics();
    assert!(
        metric_value(&metrics, "rate_limit_redis_errors_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert!(
        gw.log().matches("Redis unavailable for limits").count() == 1,
        "logged once"
    );

    redis.up();
    // Syncing resumes by itself: the sync age drops back under a second.
    assert!(eventually(Duration::from_secs(10), || {
        let m = gw.metrics();
        metric_value(&m, "rate_limit_last_sync_age_seconds").is_some_and(|age| age < 1.0)
    }));
    assert!(eventually(Duration::from_secs(10), || {
        post_json(&url, &body, &[]).status == 200 && !redis.keys("aigw:lim:*").is_empty()
    }));
    assert!(gw.log().contains("Redis is back"));
}

#[test]
fn redis_down_can_fail_closed() {
    let mut redis = Redis::start();
    let mock = Mock::start("a");
    let config = limits_config("redis", &redis, &mock, 600)
        .replace("timeout: 200ms", "timeout: 200ms, on_error: closed503");
    let gw = Gateway::start(&config);
    let url = gw.url("/v1/chat/completions");
    assert_eq!(
        post_json(
            &url,
            &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
            &[]
        )
        .status,
        200
    );
    redis.down();
    let resp = post_json(
        &url,
        &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    resp.assert_error(503, "rate_limit_unavailable");
    assert_eq!(mock.api_requests(), 1);
}

#[test]
fn a_frozen_redis_never_holds_requests_past_its_timeout() {
    let redis = Redis::start();
    let mock = Mock::start("a");
    let config = limits_config("redis", &redis, &mock, 600);
    let gw = Gateway::start(&config);
    let url = gw.url("/v1/chat/completions");
    let body = json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(post_json(&url, &body, &[]).status, 200);

    redis.pause(true);
    for _ in 0..10 {
        let started = Instant::now();
        let resp = post_json(&url, &body, &[]);
        // Fail open: served. The bound is 25x the configured 200 ms Redis
        // timeout: it catches a request left waiting on Redis, not slowness.
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a request waited on a frozen Redis"
        );
    }
    assert!(metric_value(&gw.metrics(), "rate_limit_redis_errors_total").unwrap_or(0.0) >= 1.0);
    redis.pause(false);
    assert!(eventually(Duration::from_secs(10), || {
        let m = gw.metrics();
        metric_value(&m, "rate_limit_last_sync_age_seconds").is_some_and(|age| age < 1.0)
    }));
}

/// A gateway that takes RS256 tokens from a test OIDC issuer serving `rsa1`.
struct OidcSetup {
    issuer: TestIssuer,
    gw: Gateway,
    _mock: Mock,
}

fn oidc_setup() -> OidcSetup {
    let mock = Mock::start("a");
    let issuer = TestIssuer::start(&jwks_of(&["rsa1"], &[]));
    let gw = Gateway::start(&format!(
        "auth:\n  jwt:\n    issuer: test-issuer\n    audience: [gateway]\n    oidc:\n      issuer_url: {}\n      allow_http_loopback: true\n      refetch_cooldown: 300ms\n      refresh_interval: 10m\nupstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n",
        issuer.url(),
        pool_yaml("main", &[mock.url()], ""),
    ));
    OidcSetup {
        issuer,
        gw,
        _mock: mock,
    }
}

/// A token for test-issuer signed with the test key `name` (rsa1, rsa2).
fn token_signed_by(name: &str) -> String {
    let pem = std::fs::read(repo_path(&format!("tests/keys/{name}.key"))).expect("key file");
    let key = EncodingKey::from_rsa_pem(&pem).expect("pem");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(name.to_string());
    let exp = jsonwebtoken::get_current_timestamp() + 300;
    let claims = json!({"sub": "user-1", "iss": "test-issuer", "aud": "gateway", "exp": exp});
    encode(&header, &claims, &key).expect("sign")
}

fn call_with(gw: &Gateway, token: &str) -> Response {
    post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        &[("authorization", &format!("Bearer {token}"))],
    )
}

#[test]
fn cached_keys_keep_working_while_the_issuer_is_down() {
    let s = oidc_setup();
    let token = token_signed_by("rsa1");
    assert!(eventually(Duration::from_secs(10), || {
        call_with(&s.gw, &token).status == 200
    }));
    s.issuer.set_up(false);
    std::thread::sleep(Duration::from_millis(400));
    // An unknown kid makes the gateway try the dead issuer; the cache survives.
    let unknown = token_signed_by("rsa2");
    call_with(&s.gw, &unknown).assert_error(401, "invalid_credentials");
    assert_eq!(call_with(&s.gw, &token).status, 200);
}

#[test]
fn a_slow_issuer_delays_only_unknown_keys_and_only_up_to_the_fetch_timeout() {
    let s = oidc_setup();
    let token = token_signed_by("rsa1");
    assert!(eventually(Duration::from_secs(10), || {
        call_with(&s.gw, &token).status == 200
    }));
    // The issuer now takes 30 s to answer; the gateway's fetch timeout is 5 s.
    s.issuer
        .delay_ms
        .store(30_000, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400)); // past the refetch cooldown
    let unknown = token_signed_by("rsa2");
    let started = Instant::now();
    call_with(&s.gw, &unknown).assert_error(401, "invalid_credentials");
    // Bounded by the fetch timeout (5 s), far below the issuer's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited on the slow issuer: {:?}",
        started.elapsed()
    );
    // Cached keys never wait on the issuer.
    assert_eq!(call_with(&s.gw, &token).status, 200);
}
