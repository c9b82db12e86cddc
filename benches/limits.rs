//! What a limit decision costs: local (pingora-limits), hybrid (a local
//! spend from a Redis lease) and redis (a Lua script per decision), against
//! a redis-server this bench starts on a free port.
//!   cargo bench --bench limits

use std::sync::Arc;
use std::time::Duration;

use ai_api_gateway::config::{
    LimitCounts, LimitKeyPart, LimitMode, LimitRule, LimitSettings, LimitWindow, RedisFailure,
    RedisSettings, Secret,
};
use ai_api_gateway::limits::{Charge, Limiter, RequestFacts};
use criterion::{criterion_group, criterion_main, Criterion};

// The integration tests' harness: its Redis guard starts redis-server on a
// free port and kills it on drop.
#[path = "../tests/common/mod.rs"]
mod common;

fn limiter(mode: LimitMode, port: u16) -> Arc<Limiter> {
    let settings = LimitSettings {
        mode: Some(mode),
        redis: (mode != LimitMode::Local).then(|| RedisSettings {
            url: Secret::new(format!("redis://127.0.0.1:{port}")),
            timeout: Duration::from_millis(200),
            sync_interval: Duration::from_millis(500),
            lease_fraction: 0.02,
            expected_replicas: 2,
            on_error: RedisFailure::Open,
        }),
        rules: vec![LimitRule {
            name: "per-key".into(),
            key: vec![LimitKeyPart::ApiKey],
            counts: LimitCounts::Requests,
            limit: u64::MAX / 4,
            window: LimitWindow::Hour,
        }],
        global_rules: vec!["per-key".into()],
        default_max_tokens: 256,
    };
    Arc::new(Limiter::from_config(Some(&settings)).expect("limiter"))
}

fn decisions(c: &mut Criterion) {
    let redis = common::Redis::start();
    let port = redis.port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let facts = RequestFacts {
        api_key: Some("key-1"),
        route: "chat",
        ..Default::default()
    };
    for (name, mode) in [
        ("limit_decision_local", LimitMode::Local),
        ("limit_decision_hybrid", LimitMode::Hybrid),
        ("limit_decision_redis", LimitMode::Redis),
    ] {
        let limiter = limiter(mode, port);
        let rules = limiter.rules_for(std::iter::empty());
        assert!(rt
            .block_on(limiter.admit(&rules, &facts, Charge::default()))
            .is_ok());
        c.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(limiter.admit(&rules, &facts, Charge::default()))
                    .is_ok()
            })
        });
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
