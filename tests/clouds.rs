//! Usage, cost, token limits and budgets through every cloud provider
//! (Azure OpenAI, the Gemini API, Vertex AI's Gemini and Claude), from both
//! client APIs, as JSON and streamed: what the client is told it used is
//! what the access log records, prices and charges, prompt-cache reads
//! included.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "clouds-admin-token-0123456789";
/// Whole micro-dollars per token, so that every cost is an exact integer:
/// 1 per cached input token, 2 per other input token, 10 per output token.
const PRICING: &str = "pricing:\n  - {model: \"*\", input_per_million: 2, cached_input_per_million: 1, output_per_million: 10}\n";
/// The mock reports this many prompt tokens as read from the cache.
const CACHED: u64 = 5;

const MODELS: [(&str, &str); 4] = [
    ("gpt-4o", "azure"),
    ("gemini-3.8-flash", "gemini"),
    ("gemini-3.7-flash", "vertex"),
    ("claude-sonnet-4-5@20250929", "vertex"),
];

fn start(mock: &Mock) -> Gateway {
    let host = mock.url().trim_start_matches("http://").to_string();
    let vertex = |publisher: &str| {
        format!(
            "      - base_url: {}\n        provider: vertex\n        options: {{project: p, location: global, publisher: {publisher}, credentials: {{metadata: {{host: \"{host}\"}}}}}}\n",
            mock.url()
        )
    };
    // Team `main` stays within every rule; `budget` spends its dollars on
    // Gemini, `tokens` its tokens on Azure.
    let gw = Gateway::start_with_env(
        &format!(
            "{PRICING}admin: {{token: \"${{AIGW_ADMIN_TOKEN}}\"}}\n\
             auth:\n  api_keys:\n    - {{id: main, key: sk-main, team: main}}\n    - {{id: budget, key: sk-budget, team: budget}}\n    - {{id: tokens, key: sk-tokens, team: tokens}}\n\
             limits:\n  rules:\n    - {{name: gemini-dollars, key: [team], counts: cost_usd, limit: 0.01, window: day}}\n    - {{name: azure-tokens, key: [team], counts: total_tokens, limit: 2000, window: minute}}\n\
             upstreams:\n  azure:\n    backends:\n      - {{base_url: {url}, provider: azure, api_key: az, options: {{api_version: 2024-10-21}}}}\n  gemini:\n    backends:\n      - {{base_url: {url}, provider: gemini, api_key: gm}}\n  vertex-gemini:\n    backends:\n{vg}  vertex-claude:\n    backends:\n{vc}\
             routes:\n  - {{name: azure, paths: [/v1/chat/completions, /v1/messages], models: [gpt-4o], upstream: azure, limits: [azure-tokens]}}\n  - {{name: gemini, paths: [/v1/chat/completions, /v1/messages], models: [gemini-3.8-flash], upstream: gemini, limits: [gemini-dollars]}}\n  - {{name: vertex-gemini, paths: [/v1/chat/completions, /v1/messages], models: [gemini-3.7-flash], upstream: vertex-gemini}}\n  - {{name: vertex-claude, paths: [/v1/chat/completions, /v1/messages], models: [\"claude-sonnet-4-5@20250929\"], upstream: vertex-claude}}\n",
            url = mock.url(),
            vg = vertex("google"),
            vc = vertex("anthropic"),
        ),
        &[("AIGW_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    assert!(
        eventually(Duration::from_secs(10), || get(&gw.admin_url("/ready")).0
            == 200),
        "{}",
        get(&gw.admin_url("/ready")).1
    );
    gw
}

/// What a client was told it used: (input tokens, of them cached, output).
#[derive(Debug, PartialEq, Clone, Copy)]
struct Told {
    input: u64,
    cached: u64,
    output: u64,
}

impl Told {
    fn micro_usd(self) -> u64 {
        self.cached + 2 * (self.input - self.cached) + 10 * self.output
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn told_openai(usage: &Value) -> Told {
    Told {
        input: n(&usage["prompt_tokens"]),
        cached: n(&usage["prompt_tokens_details"]["cached_tokens"]),
        output: n(&usage["completion_tokens"]),
    }
}

fn told_anthropic(usage: &Value) -> Told {
    let cached = n(&usage["cache_read_input_tokens"]);
    Told {
        input: n(&usage["input_tokens"]) + cached + n(&usage["cache_creation_input_tokens"]),
        cached,
        output: n(&usage["output_tokens"]),
    }
}

/// The `data:` JSON values of a stream.
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// One request of `key` for `model` in the client API `anthropic` or not,
/// streamed or not; its answer and the usage it told the client.
fn ask(gw: &Gateway, key: &str, model: &str, anthropic: bool, stream: bool) -> (Response, Told) {
    let messages = json!([{"role": "user", "content": "How much does this cost?"}]);
    let cached = CACHED.to_string();
    let answer = if anthropic {
        post_json(
            &gw.url("/v1/messages"),
            &json!({"model": model, "max_tokens": 100, "stream": stream, "messages": messages}),
            &[
                ("x-api-key", key),
                ("anthropic-version", "2023-06-01"),
                ("x-mock-cached-tokens", &cached),
            ],
        )
    } else {
        let mut body = json!({"model": model, "max_tokens": 100, "messages": messages});
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        post_json(
            &gw.url("/v1/chat/completions"),
            &body,
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-mock-cached-tokens", &cached),
            ],
        )
    };
    if answer.status != 200 {
        return (
            answer,
            Told {
                input: 0,
                cached: 0,
                output: 0,
            },
        );
    }
    let told = match (anthropic, stream) {
        (false, false) => told_openai(&answer.json()["usage"]),
        (true, false) => told_anthropic(&answer.json()["usage"]),
        (false, true) => {
            let chunks = events(&answer.body);
            assert!(answer.body.ends_with("data: [DONE]\n\n"), "{}", answer.body);
            let last = chunks.iter().rev().find(|c| c["usage"].is_object());
            told_openai(&last.expect("a usage chunk")["usage"])
        }
        (true, true) => {
            let all = events(&answer.body);
            assert!(
                answer.body.contains("event: message_stop"),
                "{}",
                answer.body
            );
            let start = all
                .iter()
                .find(|e| e["type"] == "message_start")
                .expect("message_start");
            let delta = all
                .iter()
                .find(|e| e["type"] == "message_delta")
                .expect("message_delta");
            // The final usage is message_delta's; what it leaves out,
            // message_start said.
            let mut usage = start["message"]["usage"].clone();
            for (k, v) in delta["usage"].as_object().into_iter().flatten() {
                usage[k] = v.clone();
            }
            told_anthropic(&usage)
        }
    };
    (answer, told)
}

fn spent(gw: &Gateway, rule: &str, team: &str) -> Value {
    let answer = send(
        "GET",
        &gw.admin_url(&format!("/v1/spend?rule={rule}&key={team}")),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["data"][0].clone()
}

#[test]
fn every_provider_reports_usage_that_is_priced_limited_and_budgeted() {
    let mock = Mock::start_with("clouds", &["--azure-key", "az", "--gemini-key", "gm"]);
    let gw = start(&mock);

    // Each model, from both client APIs, as JSON and streamed.
    let mut told = Vec::new();
    for (model, provider) in MODELS {
        for anthropic in [false, true] {
            for stream in [false, true] {
                let (answer, usage) = ask(&gw, "sk-main", model, anthropic, stream);
                assert_eq!(
                    answer.status, 200,
                    "{model} {anthropic} {stream}: {}",
                    answer.body
                );
                assert!(
                    usage.input > CACHED && usage.output > 0,
                    "{model}: {usage:?}"
                );
                assert_eq!(usage.cached, CACHED, "{model} {anthropic} {stream}");
                told.push((model, provider, stream, usage));
            }
        }
    }
    let lines = gw.access_lines_at_least(told.len());
    assert_eq!(lines.len(), told.len(), "{lines:?}");
    let mut tokens_by_provider = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    for ((model, provider, stream, usage), line) in told.iter().zip(&lines) {
        assert_eq!(line["model"], *model, "{line}");
        assert_eq!(line["stream"], *stream, "{line}");
        let logged = Told {
            input: n(&line["input_tokens"]),
            cached: n(&line["cached_input_tokens"]),
            output: n(&line["output_tokens"]),
        };
        assert_eq!(
            logged, *usage,
            "the log counts what the client was told: {line}"
        );
        let cost = line["cost_usd"].as_f64().expect("priced");
        let expected = usage.micro_usd() as f64 / 1e6;
        assert!(
            (cost - expected).abs() < 1e-12,
            "{cost} != {expected}: {line}"
        );
        let sum = tokens_by_provider.entry(provider).or_default();
        sum.0 += usage.input;
        sum.1 += usage.output;
    }
    let metrics = gw.metrics();
    for (provider, (input, output)) in &tokens_by_provider {
        let counted = |kind: &str| -> f64 {
            metrics
                .lines()
                .filter(|l| {
                    l.starts_with("llm_tokens_total{")
                        && l.contains(&format!("provider=\"{provider}\""))
                        && l.contains(&format!("type=\"{kind}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        assert_eq!(counted("input"), *input as f64, "{provider}\n{metrics}");
        assert_eq!(counted("output"), *output as f64, "{provider}\n{metrics}");
    }
    // What team main spent on Gemini is what its answers cost, exactly.
    let main_gemini: u64 = told
        .iter()
        .filter(|(_, provider, ..)| *provider == "gemini")
        .map(|(.., usage)| usage.micro_usd())
        .sum();
    let main = spent(&gw, "gemini-dollars", "main");
    assert_eq!(main["spent_micro_usd"], main_gemini, "{main}");

    // A dollar budget spent on translated Gemini streams refuses once
    // the next request's worst case no longer fits.
    let mut budget_spent = 0;
    let refusal = loop {
        let (answer, usage) = ask(&gw, "sk-budget", "gemini-3.8-flash", true, true);
        if answer.status != 200 {
            break answer;
        }
        budget_spent += usage.micro_usd();
        assert!(budget_spent <= 10_000, "over the budget: {budget_spent}");
        assert!(eventually(Duration::from_secs(5), || {
            spent(&gw, "gemini-dollars", "budget")["reserved_micro_usd"] == 0
        }));
    };
    assert_eq!(refusal.status, 429, "{}", refusal.body);
    assert_eq!(
        refusal.json()["error"]["type"],
        "rate_limit_error",
        "{}",
        refusal.body
    );
    assert!(refusal.body.contains("gemini-dollars"), "{}", refusal.body);
    let budget = spent(&gw, "gemini-dollars", "budget");
    assert_eq!(budget["spent_micro_usd"], budget_spent, "{budget}");
    // 100 output tokens at 10 micro-USD is the worst case's bulk.
    assert!(
        budget_spent + 1_500 > 10_000,
        "refused with {budget_spent} spent"
    );

    // A token limit on Azure, reached through translated answers.
    let mut admitted_tokens = 0;
    let refusal = loop {
        let (answer, usage) = ask(&gw, "sk-tokens", "gpt-4o", true, false);
        if answer.status != 200 {
            break answer;
        }
        admitted_tokens += usage.input + usage.output;
        assert!(admitted_tokens <= 2000, "over the limit: {admitted_tokens}");
    };
    assert_eq!(refusal.status, 429, "{}", refusal.body);
    assert!(refusal.body.contains("azure-tokens"), "{}", refusal.body);
    assert!(refusal.header("retry-after").is_some());
    assert!(admitted_tokens > 1000, "refused early: {admitted_tokens}");
}
