//! The limit arithmetic, driven through the public API with any numbers a
//! client (`max_tokens`) or an upstream (`usage`) can send: a request is
//! admitted exactly when every rule still has room for it, settling moves a
//! rule's count by the difference, and a budget lease never spends what it
//! does not hold.
#![no_main]

use std::sync::OnceLock;

use ai_api_gateway::config::LimitCounts;
use ai_api_gateway::limits::lease::LeaseTable;
use ai_api_gateway::limits::{Admission, Charge, Counter, Limiter, RequestFacts, MAX_CHARGE};
use ai_api_gateway::settings::load_str;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Token limits, then a budget in whole USD.
    limits: [u64; 4],
    ops: Vec<Op>,
    lease_ops: Vec<LeaseOp>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Admit {
        input: u64,
        output: u64,
        cost: u64,
    },
    Settle {
        which: u8,
        input: u64,
        output: u64,
        cost: u64,
    },
    SettleUnknown {
        which: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum LeaseOp {
    Grant(u32),
    Spend(u64),
    Roll(u8),
    Collect,
}

const COUNTS: [LimitCounts; 4] = [
    LimitCounts::InputTokens,
    LimitCounts::OutputTokens,
    LimitCounts::TotalTokens,
    LimitCounts::CostUsd,
];

/// A budget of whole USD is counted in micro-USD.
const MICRO: u64 = 1_000_000;

/// What a charge costs a rule, as the gateway defines it: each part and the
/// sum are capped, so no client number can wrap the arithmetic.
fn cost(charge: Charge, counts: LimitCounts) -> u64 {
    let input = charge.input_tokens.min(MAX_CHARGE);
    let output = charge.output_tokens.min(MAX_CHARGE);
    match counts {
        LimitCounts::InputTokens => input,
        LimitCounts::OutputTokens => output,
        LimitCounts::CostUsd => charge.cost_micro_usd.min(MAX_CHARGE),
        _ => (input + output).min(MAX_CHARGE),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn limiter(limits: [u64; 4]) -> Limiter {
    let text = format!(
        "upstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\n\
         routes:\n  - name: r\n    paths: [/v1/chat/completions]\n    upstream: u\n\
         pricing:\n  - {{model: m, input_per_million: 1, output_per_million: 1}}\n\
         limits:\n  global_rules: [in, out, total, budget]\n  rules:\n\
         \x20   - {{name: in, key: [global], counts: input_tokens, limit: {}, window: day}}\n\
         \x20   - {{name: out, key: [global], counts: output_tokens, limit: {}, window: day}}\n\
         \x20   - {{name: total, key: [global], counts: total_tokens, limit: {}, window: day}}\n\
         \x20   - {{name: budget, key: [global], counts: cost_usd, limit: {}, window: month}}\n",
        limits[0],
        limits[1],
        limits[2],
        limits[3] / MICRO
    );
    let config = load_str(&text, "fuzz.yaml", |_| None).expect("the fuzz config loads");
    Limiter::new(&config.limits).expect("the fuzz limiter builds")
}

fn check_limiter(input: &Input) {
    // Limits of zero are refused by the loader; keep them in range. The
    // budget is whole USD, held in micro-USD.
    let mut limits = input.limits.map(|l| l.clamp(1, MAX_CHARGE));
    limits[3] = limits[3].clamp(1, MAX_CHARGE / MICRO) * MICRO;
    let limiter = limiter(limits);
    let rules = limiter.rules_for(std::iter::empty());
    let facts = RequestFacts {
        route: "r",
        ..Default::default()
    };
    let mut used = [0u64; 4];
    let mut open: Vec<(Admission, Charge)> = Vec::new();
    runtime().block_on(async {
        for op in input.ops.iter().take(64) {
            match *op {
                Op::Admit { input, output, cost: usd } => {
                    let charge = Charge {
                        input_tokens: input,
                        output_tokens: output,
                        cost_micro_usd: usd,
                    };
                    let fits = (0..4).all(|i| used[i] + cost(charge, COUNTS[i]) <= limits[i]);
                    match limiter.admit(&rules, &facts, charge).await {
                        Ok(admission) => {
                            assert!(fits, "admitted over a limit: {used:?} + {charge:?} > {limits:?}");
                            for i in 0..4 {
                                used[i] += cost(charge, COUNTS[i]);
                            }
                            open.push((admission, charge));
                        }
                        Err(rejection) => {
                            assert!(!fits, "refused within the limits: {used:?} + {charge:?} <= {limits:?} ({})", rejection.rule);
                        }
                    }
                }
                Op::Settle { which, input, output, cost: usd } if !open.is_empty() => {
                    let (admission, reserved) = open.swap_remove(usize::from(which) % open.len());
                    let actual = Charge {
                        input_tokens: input,
                        output_tokens: output,
                        cost_micro_usd: usd,
                    };
                    limiter.settle(admission, Some(actual)).await;
                    for i in 0..4 {
                        used[i] = (used[i] + cost(actual, COUNTS[i])).saturating_sub(cost(reserved, COUNTS[i]));
                    }
                }
                Op::SettleUnknown { which } if !open.is_empty() => {
                    let (admission, _) = open.swap_remove(usize::from(which) % open.len());
                    limiter.settle(admission, None).await;
                }
                _ => {}
            }
        }
    });
}

fn check_lease(input: &Input) {
    let table = LeaseTable::default();
    let mut window = 0u64;
    let lease = table.get(&Counter::new(0, "fuzz"), window);
    let mut held: i64 = 0;
    for op in input.lease_ops.iter().take(64) {
        match *op {
            LeaseOp::Grant(n) => {
                lease.grant(u64::from(n), 0, false);
                held += i64::from(n);
            }
            LeaseOp::Spend(n) => {
                let n = n.min(MAX_CHARGE);
                let spent = lease.try_spend(n, 1);
                assert_eq!(spent, held >= n as i64, "spend {n} with {held} held");
                if spent {
                    held -= n as i64;
                }
            }
            LeaseOp::Roll(step) => {
                window += u64::from(step);
                lease.roll(window);
                if step != 0 {
                    held = 0;
                }
            }
            LeaseOp::Collect => {
                let handed_back: i64 = table
                    .collect_idle(u64::MAX, |_, _| true)
                    .iter()
                    .map(|(_, _, n)| *n)
                    .sum();
                assert_eq!(handed_back, held.max(0), "handed back what was not held");
                held = held.min(0);
            }
        }
        assert_eq!(lease.remaining(), held);
    }
}

fuzz_target!(|input: Input| {
    check_limiter(&input);
    check_lease(&input);
});
