//! What a limit decision costs: local (pingora-limits), hybrid (a local
//! spend from a Redis lease) and redis (a Lua script per decision), against
//! a redis-server this bench starts on a free port.
//!   cargo bench --bench limits

use std::sync::Arc;

use ai_api_gateway::config::LimitMode;
use ai_api_gateway::limits::{Charge, Limiter, RequestFacts};
use ai_api_gateway::settings::load_str;
use criterion::{criterion_group, criterion_main, Criterion};

// The integration tests' harness: its Redis guard starts redis-server on a
// free port and kills it on drop.
#[path = "../tests/common/mod.rs"]
mod common;

fn limiter(mode: LimitMode, port: u16) -> Arc<Limiter> {
    let redis = match mode {
        LimitMode::Local => String::new(),
        _ => format!("  redis: {{url: \"redis://127.0.0.1:{port}\", timeout: 200ms}}\n"),
    };
    let text = format!(
        "limits:\n  mode: {}\n{redis}  global_rules: [per-key]\n  rules:\n\
         \x20   - {{name: per-key, key: [api_key], counts: requests, limit: 281474976710656, window: hour}}\n\
         upstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\n\
         routes:\n  - {{name: r, paths: [/v1], upstream: u}}\n",
        mode.as_str()
    );
    let config = load_str(&text, "bench.yaml", |_| None).expect("the bench config loads");
    Arc::new(Limiter::new(&config.limits).expect("the bench limiter builds"))
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
