//! Budgets in dollars over the real binary: `cost_usd` rules reserve the
//! worst case of each request at the configured prices, settle on the usage
//! the upstream reported, refuse with 429 `budget_exceeded` until the
//! window's end, hold across replicas on one redis-server, and show their
//! spend on the admin port's `GET /v1/spend` behind `admin.token`.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// Whole micro-dollars per token, so that costs are exact integers:
/// 2 micro-USD per input token, 10 per output token.
const PRICING: &str =
    "pricing:\n  - {model: mock-gpt, input_per_million: 2, output_per_million: 10}\n";

fn config(mock: &Mock, limits: &str) -> String {
    format!(
        "{PRICING}admin: {{token: \"${{AIGW_ADMIN_TOKEN}}\"}}\n\
         auth:\n  api_keys:\n    - {{id: ml-key, key: sk-ml-0001, team: ml}}\n    - {{id: web-key, key: sk-web-0001, team: web}}\n\
         {limits}upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions, /v1/messages]\n    models: [mock-gpt]\n    upstream: main\n    auth: [api_key]\n",
        pool_yaml("main", &[mock.url()], "")
    )
}

fn start(config: &str) -> Gateway {
    Gateway::start_with_env(config, &[("AIGW_ADMIN_TOKEN", ADMIN_TOKEN)])
}

/// What an answer cost in micro-USD, from the usage the mock reported.
fn cost_of(answer: &Response) -> u64 {
    let usage = &answer.json()["usage"];
    let input = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let output = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert!(input > 0 && output > 0, "{usage}");
    2 * input + 10 * output
}

fn ask(gw: &Gateway, key: &str, max_tokens: u64) -> Response {
    post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"model": "mock-gpt", "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "what does it cost?"}]}),
        &[("authorization", &format!("Bearer {key}"))],
    )
}

fn spend(gw: &Gateway, query: &str) -> Response {
    send(
        "GET",
        &gw.admin_url(&format!("/v1/spend{query}")),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    )
}

/// An admin answer's error (the admin port sets no request id).
fn assert_admin_error(answer: &Response, status: u16, code: &str) {
    assert_eq!(answer.status, status, "body: {}", answer.body);
    assert_eq!(
        answer.json()["error"]["code"],
        code,
        "body: {}",
        answer.body
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
}

fn secs_to_utc_midnight() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    86_400 - now % 86_400
}

#[test]
fn a_team_budget_refuses_in_dollars_and_its_spend_is_exact() {
    let mock = Mock::start("m");
    // $0.002 a day per team: 2000 micro-USD. A request reserves its prompt
    // estimate x 2 + 100 x 10 = about 1020, and costs about 60.
    let gw = start(&config(
        &mock,
        "limits:\n  rules:\n    - {name: team-daily, key: [team], counts: cost_usd, limit: 0.002, window: day}\n  global_rules: [team-daily]\n",
    ));
    let mut spent = 0;
    let mut admitted = 0;
    let refusal = loop {
        let answer = ask(&gw, "sk-ml-0001", 100);
        if answer.status != 200 {
            break answer;
        }
        spent += cost_of(&answer);
        admitted += 1;
        assert!(admitted < 100, "the budget never ran out");
        // A request settles once its answer has gone out: wait for it, or
        // the next one would meet its reservation still held.
        assert!(eventually(Duration::from_secs(5), || {
            spend(&gw, "?key=ml").json()["data"][0]["reserved_micro_usd"] == 0
        }));
    };
    refusal.assert_error(429, "budget_exceeded");
    let message = refusal.json()["error"]["message"].to_string();
    assert!(
        message.contains("team-daily") && message.contains("$0.002 per day"),
        "{message}"
    );
    let retry: u64 = refusal
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    let midnight = secs_to_utc_midnight();
    assert!(
        retry.abs_diff(midnight) <= 5,
        "retry-after {retry}, midnight in {midnight}"
    );
    // What was admitted stays under the budget, and no more than one
    // reservation short of it: the next request could not have fitted.
    assert!(spent <= 2000, "{spent}");
    assert!(spent + 1100 > 2000, "refused with {spent} of 2000 spent");
    // An Anthropic client of the same team is refused in its own dialect.
    let anthropic = post_json(
        &gw.url("/v1/messages"),
        &json!({"model": "mock-gpt", "max_tokens": 100,
                "messages": [{"role": "user", "content": "and in the other API?"}]}),
        &[
            ("x-api-key", "sk-ml-0001"),
            ("anthropic-version", "2023-06-01"),
        ],
    );
    assert_eq!(anthropic.status, 429, "{}", anthropic.body);
    let body = anthropic.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Budget `team-daily` reached"),
        "{body}"
    );
    assert!(anthropic.header("retry-after").is_some());
    // Another team's budget is its own.
    assert_eq!(ask(&gw, "sk-web-0001", 100).status, 200);

    let answer = spend(&gw, "?rule=team-daily&key=ml");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["source"], "local");
    let lines = body["data"].as_array().expect("data");
    assert_eq!(lines.len(), 1, "{body}");
    let ml = &lines[0];
    assert_eq!(ml["rule"], "team-daily");
    assert_eq!(ml["key"], json!({"team": "ml"}));
    assert_eq!(ml["window"], "day");
    assert_eq!(ml["spent_micro_usd"], spent, "{ml}");
    assert_eq!(ml["reserved_micro_usd"], 0, "{ml}");
    assert_eq!(ml["limit_usd"], 0.002);
    assert!((ml["spent_usd"].as_f64().unwrap() - spent as f64 / 1e6).abs() < 1e-12);
    assert!(
        ml["window_start"].as_str().unwrap().ends_with("T00:00:00Z"),
        "{ml}"
    );
    // Every counter of the window.
    let all = spend(&gw, "").json();
    let teams: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["key"]["team"])
        .collect();
    assert_eq!(teams, vec!["ml", "web"], "{all}");
    assert_admin_error(&spend(&gw, "?rule=no-such-rule"), 404, "unknown_rule");
    assert_admin_error(&spend(&gw, "?team=ml"), 400, "unknown_parameter");
}

#[test]
fn admin_endpoints_need_the_token_and_probes_do_not() {
    let mock = Mock::start("m");
    let limits = "limits:\n  rules:\n    - {name: team-daily, key: [team], counts: cost_usd, limit: 5, window: month}\n  global_rules: [team-daily]\n";
    let gw = start(&config(&mock, limits));
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong-token-0123456789")],
        vec![("authorization", "Basic dGVzdDp0ZXN0")],
        vec![("x-api-key", ADMIN_TOKEN)],
    ] {
        let answer = send("GET", &gw.admin_url("/v1/spend"), &headers, None);
        assert_admin_error(&answer, 401, "invalid_admin_token");
        assert!(!answer.body.contains(ADMIN_TOKEN));
        // Unknown paths too: nothing shows what is there.
        let unknown = send("GET", &gw.admin_url("/v1/keys"), &headers, None);
        assert_admin_error(&unknown, 401, "invalid_admin_token");
    }
    assert_eq!(spend(&gw, "").status, 200);
    assert_admin_error(&spend(&gw, "/x"), 404, "unknown_url");
    for probe in ["/health", "/ready", "/metrics"] {
        assert_eq!(get(&gw.admin_url(probe)).0, 200, "{probe}");
    }
    // A month window starts on the 1st.
    assert_eq!(ask(&gw, "sk-ml-0001", 10).status, 200);
    let line = spend(&gw, "").json()["data"][0].clone();
    assert_eq!(line["window"], "month");
    assert!(
        line["window_start"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00Z"),
        "{line}"
    );
    assert!(
        line["window_end"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00Z"),
        "{line}"
    );
    assert!(
        !gw.log().contains(ADMIN_TOKEN),
        "the token never reaches the log"
    );

    // Without `admin.token` the admin endpoints are off.
    let open = Gateway::start(
        &config(&mock, limits).replace("admin: {token: \"${AIGW_ADMIN_TOKEN}\"}\n", ""),
    );
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let answer = send(
        "GET",
        &open.admin_url("/v1/spend"),
        &[("authorization", &bearer)],
        None,
    );
    assert_admin_error(&answer, 401, "invalid_admin_token");
    assert_eq!(get(&open.admin_url("/health")).0, 200);
}

/// Floods a month budget from 3 gateways on one redis-server; returns the
/// spend admitted (from the usage the mock reported) and the answers.
fn flood_budget(gateways: &[Gateway], max_tokens: u64) -> (u64, usize) {
    let threads_per_gateway = 6;
    let handles: Vec<_> = gateways
        .iter()
        .flat_map(|gw| {
            (0..threads_per_gateway).map(move |_| {
                let url = gw.url("/v1/chat/completions");
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(10))
                        .build();
                    let body = json!({"model": "mock-gpt", "max_tokens": max_tokens,
                        "messages": [{"role": "user", "content": "what does it cost?"}]})
                    .to_string();
                    let (mut spent, mut admitted, mut refused) = (0, 0, 0);
                    // Until this thread has seen 20 refusals in a row.
                    while refused < 20 {
                        match agent
                            .post(&url)
                            .set("authorization", "Bearer sk-ml-0001")
                            .send_string(&body)
                        {
                            Ok(r) => {
                                let answer = Response {
                                    status: r.status(),
                                    headers: Vec::new(),
                                    body: r.into_string().expect("body"),
                                };
                                spent += cost_of(&answer);
                                admitted += 1;
                                refused = 0;
                            }
                            Err(ureq::Error::Status(429, r)) => {
                                let body = r.into_string().unwrap_or_default();
                                assert!(body.contains("budget_exceeded"), "{body}");
                                refused += 1;
                            }
                            Err(e) => panic!("unexpected: {e}"),
                        }
                    }
                    (spent, admitted)
                })
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("flood thread"))
        .fold((0, 0), |(s, a), (s1, a1)| (s + s1, a + a1))
}

fn budget_across_replicas(mode: &str, window: &str) {
    let redis = Redis::start();
    let mock = Mock::start("m");
    // $0.05 a day or month for team ml: 50,000 micro-USD; a request
    // reserves about 1020 (100 output tokens at 10) and costs about 80.
    let limits = format!(
        "limits:\n  mode: {mode}\n  redis: {{url: \"{}\", expected_replicas: 3, timeout: 500ms, sync_interval: 200ms}}\n  rules:\n    - {{name: team-budget, key: [team], counts: cost_usd, limit: 0.05, window: {window}}}\n  global_rules: [team-budget]\n",
        redis.url()
    );
    let config =
        config(&mock, &limits).replace("admin: {", "access_log: {enabled: false}\nadmin: {");
    let gateways: Vec<Gateway> = (0..3).map(|_| start(&config)).collect();
    let (spent, admitted) = flood_budget(&gateways, 100);
    let reservation = 1100;
    eprintln!("{mode}, {window}: {admitted} answers admitted, {spent} of 50000 micro-USD spent");
    assert!(
        spent <= 50_000 + 3 * reservation,
        "{mode}: {spent} spent over a budget of 50000"
    );
    assert!(
        spent >= 50_000 * 8 / 10,
        "{mode}: only {spent} of 50000 spent before every replica refused"
    );
    // Settlement: once the replicas synced (every 200 ms), the cluster's
    // spend is exactly the usage the mock reported, nothing is reserved, and
    // every replica answers the same.
    let settled = eventually(Duration::from_secs(10), || {
        gateways.iter().all(|gw| {
            let line = spend(gw, "?rule=team-budget&key=ml").json()["data"][0].clone();
            line["spent_micro_usd"] == spent && line["reserved_micro_usd"] == 0
        })
    });
    let line = spend(&gateways[0], "?rule=team-budget&key=ml").json();
    assert!(
        settled,
        "{mode}: spend shown {line}, usage reported {spent}"
    );
    assert_eq!(line["source"], "redis");
    // The limit counter itself holds exactly what was used once idle leases
    // are back.
    let window = redis.keys("aigw:lim:team-budget|t=ml:*");
    assert_eq!(window.len(), 1, "{window:?}");
    assert!(
        eventually(Duration::from_secs(10), || redis.counter(&window[0])
            == spent),
        "{mode}: the limit counter holds {}, usage {spent}",
        redis.counter(&window[0])
    );
}

/// Hybrid and redis mode one after the other (3 gateways each would compete
/// for the two cores otherwise), a day budget in one and a month budget in
/// the other.
#[test]
fn day_and_month_budgets_hold_across_three_replicas() {
    budget_across_replicas("hybrid", "day");
    budget_across_replicas("redis", "month");
}

/// What a run of requests of `key` on `gw` spent until `stop` says enough
/// or 20 in a row were refused: (micro-USD at the test's prices, tokens).
fn spend_until(gw: &Gateway, key: &str, stop: impl Fn(u64, u64) -> bool) -> (u64, u64) {
    let (mut usd, mut tokens, mut refused) = (0, 0, 0);
    while refused < 20 && !stop(usd, tokens) {
        let answer = ask(gw, key, 100);
        match answer.status {
            200 => {
                usd += cost_of(&answer);
                let usage = &answer.json()["usage"];
                tokens += usage["total_tokens"].as_u64().expect("total_tokens");
                refused = 0;
            }
            429 => refused += 1,
            other => panic!("{other}: {}", answer.body),
        }
    }
    (usd, tokens)
}

/// A month's budget and an hour's token limit, half spent through one
/// replica; Redis SIGKILLed and restarted empty, between two syncs so no
/// call sees it fail. The replicas find the loss (Redis' marker changed)
/// and restate what they took, so what the other replica may spend after
/// is what was left, not a fresh month.
#[test]
fn a_redis_restarted_empty_resets_neither_a_budget_nor_a_token_limit() {
    let mut redis = Redis::start();
    let mock = Mock::start("m");
    let config = format!(
        "{PRICING}admin: {{token: \"${{AIGW_ADMIN_TOKEN}}\"}}\naccess_log: {{enabled: false}}\n\
         auth:\n  api_keys:\n    - {{id: ml-key, key: sk-ml-0001, team: ml, limits: [team-budget]}}\n    - {{id: web-key, key: sk-web-0001, team: web, limits: [team-tokens]}}\n\
         limits:\n  mode: hybrid\n  redis: {{url: \"{}\", expected_replicas: 2, timeout: 500ms, sync_interval: 200ms}}\n  rules:\n    - {{name: team-budget, key: [team], counts: cost_usd, limit: 0.05, window: month}}\n    - {{name: team-tokens, key: [team], counts: total_tokens, limit: 3000, window: hour}}\n\
         upstreams:\n{}routes:\n  - name: chat\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n    auth: [api_key]\n",
        redis.url(),
        pool_yaml("main", &[mock.url()], "")
    );
    let first = start(&config);
    let second = start(&config);
    let (usd_before, _) = spend_until(&first, "sk-ml-0001", |usd, _| usd >= 25_000);
    let (_, tokens_before) = spend_until(&first, "sk-web-0001", |_, tokens| tokens >= 1_500);
    redis.down(); // SIGKILL
    redis.up(); // empty: it keeps nothing on disk
    std::thread::sleep(Duration::from_secs(2));
    let (usd_after, _) = spend_until(&second, "sk-ml-0001", |_, _| false);
    let (_, tokens_after) = spend_until(&second, "sk-web-0001", |_, _| false);
    eprintln!(
        "budget 50000 micro-USD: {usd_before} before the restart, {usd_after} after; \
         tokens 3000: {tokens_before} before, {tokens_after} after"
    );
    // One reservation of slack (100 output tokens at 10 micro-USD, its
    // prompt at 2): the request that found the budget short.
    assert!(
        usd_before + usd_after <= 50_000 + 1_100,
        "{usd_before} + {usd_after} spent of a 50000 budget: the month started again"
    );
    assert!(usd_before + usd_after >= 40_000, "the budget starved");
    assert!(
        tokens_before + tokens_after <= 3_000 + 130,
        "{tokens_before} + {tokens_after} tokens of 3000: the hour started again"
    );
    // The budget is spent: the first replica refuses too.
    assert_eq!(ask(&first, "sk-ml-0001", 100).status, 429);
    let logs = format!("{}{}", first.log(), second.log());
    assert!(logs.contains("Redis lost the limits' counts"), "{logs}");
    assert!(
        logs.contains("Redis writes no append-only file"),
        "budgets warn of a Redis that persists nothing"
    );
}
