//! Gemini and Vertex AI behind the gateway, against the mock's strict
//! Google: the Gemini API with its key, Vertex with OAuth2 tokens fetched
//! for a service account (the assertion's signature checked) or from the
//! metadata server, Claude on Vertex, translation both ways, thought
//! signatures carried through tool-call ids, and Gemini throttled falling
//! back to Azure.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const GEMINI_KEY: &str = "gemini-key-1";
const ANTHROPIC: [(&str, &str); 1] = [("anthropic-version", "2023-06-01")];

fn gemini_gateway(mock: &Mock, extra_routes: &str) -> Gateway {
    Gateway::start(&format!(
        "upstreams:\n  gemini:\n    backends:\n      - {{base_url: {}, provider: gemini, api_key: {GEMINI_KEY}}}\n\
         routes:\n  - {{name: chat, paths: [/v1/chat/completions], models: [\"gemini-*\"], upstream: gemini}}\n{extra_routes}",
        mock.url()
    ))
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn sent(mock: &Mock) -> (String, Value, Value) {
    let last = mock.requests().pop().expect("a request reached the mock");
    let body = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    (
        last["path"].as_str().unwrap().to_string(),
        last["headers"].clone(),
        body,
    )
}

#[test]
fn openai_and_anthropic_clients_reach_gemini_translated() {
    let mock = Mock::start_with("gemini", &["--gemini-key", GEMINI_KEY]);
    let gw = gemini_gateway(&mock, "");
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-3.8-flash", "hi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["object"], "chat.completion");
    assert!(answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("word0"));
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let (path, headers, body) = sent(&mock);
    assert_eq!(path, "/v1beta/models/gemini-3.8-flash:generateContent");
    assert_eq!(headers["x-goog-api-key"], GEMINI_KEY);
    assert_eq!(
        body["contents"][0],
        json!({"role": "user", "parts": [{"text": "hi"}]})
    );
    assert!(body.get("model").is_none());

    let mut streamed = chat("gemini-3.8-flash", "hi");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = post_json(&gw.url("/v1/chat/completions"), &streamed, &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"content\":\"word1 \""), "{}", r.body);
    assert!(r.body.contains("\"finish_reason\":\"stop\""), "{}", r.body);
    assert!(r.body.contains("\"usage\":{"), "{}", r.body);
    assert!(r.body.ends_with("data: [DONE]\n\n"), "{}", r.body);
    assert_eq!(
        sent(&mock).0,
        "/v1beta/models/gemini-3.8-flash:streamGenerateContent?alt=sse"
    );

    let messages = json!({"model": "gemini-3.8-flash", "max_tokens": 50, "stream": true,
        "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/messages"), &messages, &ANTHROPIC);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("event: message_delta"), "{}", r.body);
    assert!(r
        .body
        .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    let (_, headers, body) = sent(&mock);
    assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert!(
        headers.get("anthropic-version").is_none(),
        "Anthropic's headers stay behind"
    );
}

#[test]
fn a_tool_round_trip_carries_the_thought_signature_back() {
    let mock = Mock::start_with("gemini", &["--gemini-key", GEMINI_KEY]);
    let gw = gemini_gateway(&mock, "");
    let tools = json!([{"type": "function", "function": {"name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let first = json!({"model": "gemini-3.8-flash", "tools": tools,
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), &first, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let message = r.json()["choices"][0]["message"].clone();
    assert_eq!(r.json()["choices"][0]["finish_reason"], "tool_calls");
    let call = &message["tool_calls"][0];
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("gmi_"), "{id}");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    let second = json!({"model": "gemini-3.8-flash", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        message,
        {"role": "tool", "tool_call_id": id, "content": "18 C"},
    ]});
    let r = post_json(&gw.url("/v1/chat/completions"), &second, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("The tool said: 18 C"));
    let (_, _, body) = sent(&mock);
    let model_turn = &body["contents"][1]["parts"][0];
    assert_eq!(model_turn["functionCall"]["id"], "fc-mock-1");
    assert_eq!(model_turn["thoughtSignature"], "bW9jay1zaWduYXR1cmU=");
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["id"],
        "fc-mock-1"
    );
    assert_eq!(
        body["contents"][2]["parts"][0]["functionResponse"]["name"],
        "weather"
    );

    // The same history without the signature: Gemini refuses it, and the
    // client hears why.
    let mut unsigned = second.clone();
    unsigned["messages"][1]["tool_calls"][0]["id"] = json!("call_plain");
    unsigned["messages"][2]["tool_call_id"] = json!("call_plain");
    let r = post_json(&gw.url("/v1/chat/completions"), &unsigned, &[]);
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("thought_signature"));
}

#[test]
fn images_go_inline_and_urls_are_refused() {
    let mock = Mock::start_with("gemini", &["--gemini-key", GEMINI_KEY]);
    let gw = gemini_gateway(&mock, "");
    let image = |url: &str| {
        json!({"model": "gemini-3.8-flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]})
    };
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &image("data:image/png;base64,iVBORw0KGgo="),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, _, body) = sent(&mock);
    assert_eq!(
        body["contents"][0]["parts"][1]["inlineData"],
        json!({"mimeType": "image/png", "data": "iVBORw0KGgo="})
    );
    let requests = mock.api_requests();
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &image("https://example.com/cat.png"),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "unsupported_parameter");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("never fetches URLs"));
    assert_eq!(
        mock.api_requests(),
        requests,
        "the gateway fetched nothing and sent nothing"
    );
}

#[test]
fn gemini_errors_and_blocks_reach_each_client_in_its_terms() {
    let mock = Mock::start_with("gemini", &["--gemini-key", GEMINI_KEY]);
    let gw = gemini_gateway(&mock, "");
    let throttled = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-3.8-flash", "hi"),
        &[("x-mock-status", "429")],
    );
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.json()["error"]["type"], "rate_limit_error");
    let r = post_json(
        &gw.url("/v1/messages"),
        &json!({"model": "gemini-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        &[ANTHROPIC[0], ("x-mock-status", "503")],
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    // A blocked prompt is a 200 with no answer: a refusal to the client.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-x", "BLOCK_ME"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "content_filter");
    let r = post_json(
        &gw.url("/v1/messages"),
        &json!({"model": "gemini-x", "max_tokens": 5, "messages": [{"role": "user", "content": "BLOCK_ME"}]}),
        &ANTHROPIC,
    );
    assert_eq!(r.json()["stop_reason"], "refusal");
}

#[test]
fn a_throttled_gemini_falls_back_to_azure() {
    let gemini = Mock::start_with("gemini", &["--gemini-key", GEMINI_KEY]);
    let azure = Mock::start_with("azure", &["--azure-key", "az"]);
    gemini.control("/mock/fail/429");
    let gw = Gateway::start(&format!(
        "upstreams:\n  gemini:\n    backends:\n      - {{base_url: {}, provider: gemini, api_key: {GEMINI_KEY}}}\n  azure:\n    backends:\n      - {{base_url: {}, provider: azure, api_key: az, options: {{api_version: 2024-10-21}}}}\n\
         routes:\n  - {{name: gemini, paths: [/v1/chat/completions], models: [\"gemini-*\"], upstream: gemini, retry: {{on: [429]}}, fallbacks: [gpt-4o]}}\n  - {{name: azure, paths: [/v1/chat/completions], models: [\"gpt-*\"], upstream: azure}}\n",
        gemini.url(),
        azure.url()
    ));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-x", "hi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-gateway-model"), Some("gpt-4o"));
    assert!(azure.requests().last().unwrap()["path"]
        .as_str()
        .unwrap()
        .starts_with("/openai/deployments/gpt-4o/"));
}

/// A service account of the test's own: its key file for the gateway, its
/// public key for the mock's token endpoint.
struct Account {
    key_file: String,
    public_key: String,
    _dir: tempfile::TempDir,
}

fn account(token_uri: &str) -> Account {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key.pem");
    let public = dir.path().join("pub.pem");
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(status.status.success(), "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let key_file = dir.path().join("sa.json");
    let file = json!({"type": "service_account", "project_id": "proj",
        "private_key_id": "key-1", "private_key": std::fs::read_to_string(&private).unwrap(),
        "client_email": "gw@proj.iam.gserviceaccount.com", "token_uri": token_uri});
    std::fs::write(&key_file, file.to_string()).unwrap();
    Account {
        key_file: key_file.to_str().unwrap().to_string(),
        public_key: public.to_str().unwrap().to_string(),
        _dir: dir,
    }
}

/// A mock that checks the account's assertions, with tokens of `ttl`.
fn google_mock(ttl: u64) -> (Mock, Account) {
    let port = free_port();
    let account = account(&format!("http://127.0.0.1:{port}/token"));
    let mock = Mock::start_on(
        &format!("127.0.0.1:{port}"),
        "vertex",
        &[
            "--google-client-email",
            "gw@proj.iam.gserviceaccount.com",
            "--google-key-id",
            "key-1",
            "--google-public-key",
            &account.public_key,
            "--token-ttl-secs",
            &ttl.to_string(),
        ],
    );
    (mock, account)
}

fn vertex_pool(mock: &Mock, publisher: &str, credentials: &str) -> String {
    format!(
        "      - base_url: {}\n        provider: vertex\n        options: {{project: proj, location: us-central1, publisher: {publisher}, credentials: {credentials}}}\n",
        mock.url()
    )
}

fn tokens(mock: &Mock) -> Value {
    serde_json::from_str(&get(&format!("{}/mock/tokens", mock.url())).1).unwrap()
}

fn ready(gw: &Gateway) -> bool {
    eventually(Duration::from_secs(10), || {
        get(&gw.admin_url("/ready")).0 == 200
    })
}

#[test]
fn vertex_signs_a_service_account_assertion_and_reuses_its_token() {
    let (mock, account) = google_mock(3600);
    let gw = Gateway::start(&format!(
        "upstreams:\n  vertex:\n    backends:\n{}  claude:\n    backends:\n{}\
         routes:\n  - {{name: gemini, paths: [/v1/chat/completions], models: [\"gemini-*\"], upstream: vertex}}\n  - {{name: claude, paths: [/v1/messages], models: [\"claude-*\"], upstream: claude}}\n",
        vertex_pool(&mock, "google", &format!("{{service_account_file: {}}}", account.key_file)),
        vertex_pool(&mock, "anthropic", &format!("{{service_account_file: {}}}", account.key_file)),
    ));
    assert!(ready(&gw), "{}", get(&gw.admin_url("/ready")).1);
    for _ in 0..3 {
        let r = post_json(
            &gw.url("/v1/chat/completions"),
            &chat("gemini-3.8-flash", "hi"),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (path, headers, _) = sent(&mock);
    assert_eq!(
        path,
        "/v1/projects/proj/locations/us-central1/publishers/google/models/gemini-3.8-flash:generateContent"
    );
    assert!(headers["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer mock-google-token-"));
    assert_eq!(
        tokens(&mock)["google"],
        1,
        "one token, shared by both pools"
    );

    // Claude on Vertex: Anthropic's body, no model in it, Vertex's version.
    let messages = json!({"model": "claude-sonnet-4-5@20250929", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/messages"), &messages, &ANTHROPIC);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["type"], "message");
    let (path, _, body) = sent(&mock);
    assert_eq!(
        path,
        "/v1/projects/proj/locations/us-central1/publishers/anthropic/models/claude-sonnet-4-5%4020250929:rawPredict"
    );
    assert!(body.get("model").is_none());
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    let mut streamed = messages.clone();
    streamed["stream"] = json!(true);
    let r = post_json(&gw.url("/v1/messages"), &streamed, &ANTHROPIC);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(sent(&mock).0.ends_with(":streamRawPredict"));
    assert!(
        !gw.log().contains("mock-google-token"),
        "tokens never reach the log"
    );
    assert!(!gw.log().contains("PRIVATE KEY"));
}

#[test]
fn short_lived_tokens_are_refreshed_and_an_issuer_outage_ends_when_the_last_token_does() {
    let (mock, account) = google_mock(4);
    let gw = Gateway::start(&format!(
        "upstreams:\n  vertex:\n    backends:\n{}routes:\n  - {{name: gemini, paths: [/v1/chat/completions], models: [\"gemini-*\"], upstream: vertex}}\n",
        vertex_pool(&mock, "google", &format!("{{service_account_file: {}}}", account.key_file)),
    ));
    assert!(ready(&gw));
    // A token lives 4 s and is refreshed at half its life: requests over
    // 6 s never find it expired.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let r = post_json(
            &gw.url("/v1/chat/completions"),
            &chat("gemini-x", "hi"),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        tokens(&mock)["google"].as_u64().unwrap() >= 2,
        "{}",
        tokens(&mock)
    );
    // The issuer goes down: the token in hand serves until it expires...
    mock.control("/mock/token-endpoint/down");
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-x", "hi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // ...then requests fail with 503 and the reason, and /ready says so.
    assert!(eventually(Duration::from_secs(10), || {
        post_json(
            &gw.url("/v1/chat/completions"),
            &chat("gemini-x", "hi"),
            &[],
        )
        .status
            == 503
    }));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-x", "hi"),
        &[],
    );
    assert_eq!(
        r.json()["error"]["code"],
        "upstream_credentials_unavailable"
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{}",
        r.body
    );
    assert_eq!(get(&gw.admin_url("/ready")).0, 503);
    // Back up: served again.
    mock.control("/mock/token-endpoint/up");
    assert!(eventually(Duration::from_secs(10), || {
        post_json(
            &gw.url("/v1/chat/completions"),
            &chat("gemini-x", "hi"),
            &[],
        )
        .status
            == 200
    }));
}

#[test]
fn the_metadata_server_gives_gke_pods_their_tokens() {
    let mock = Mock::start_with("vertex", &[]);
    let host = mock.url().trim_start_matches("http://").to_string();
    let gw = Gateway::start_with_env(
        &format!(
            "upstreams:\n  vertex:\n    backends:\n{}routes:\n  - {{name: gemini, paths: [/v1/chat/completions], models: [\"gemini-*\"], upstream: vertex}}\n",
            vertex_pool(&mock, "google", "{metadata: {}}"),
        ),
        &[("GCE_METADATA_HOST", &host)],
    );
    assert!(ready(&gw));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-x", "hi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(tokens(&mock)["metadata"], 1);
}

#[test]
fn bad_vertex_credentials_fail_at_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("sa.json");
    std::fs::write(&bad, "{\"client_email\": \"x\"}").unwrap();
    let config = dir.path().join("gw.yaml");
    std::fs::write(
        &config,
        format!(
            "upstreams:\n  v:\n    backends:\n      - base_url: http://127.0.0.1:1\n        provider: vertex\n        options: {{project: p, location: l, credentials: {{service_account_file: {}}}}}\nroutes:\n  - {{name: r, paths: [/v1/chat/completions], upstream: v}}\n",
            bad.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("upstreams.v.backends[0].options.credentials.service_account_file"),
        "{text}"
    );
    assert!(Path::new(&bad).exists());
}

#[test]
fn only_chat_requests_are_translated_to_gemini() {
    let mock = Mock::start_with("gemini", &["--gemini-key", GEMINI_KEY]);
    let gw = Gateway::start(&format!(
        "upstreams:\n  gemini:\n    backends:\n      - {{base_url: {}, provider: gemini, api_key: {GEMINI_KEY}}}\n\
         routes:\n  - {{name: chat, paths: [/v1/chat/completions, /v1/embeddings, /v1/messages], models: [\"gemini-*\"], upstream: gemini}}\n",
        mock.url()
    ));
    let embeddings = post_json(
        &gw.url("/v1/embeddings"),
        &json!({"model": "gemini-x", "input": "hi"}),
        &[],
    );
    embeddings.assert_error(404, "unsupported_endpoint");
    assert!(
        embeddings
            .body
            .contains("only chat requests are translated"),
        "{}",
        embeddings.body
    );
    // Anthropic's token count, which Gemini has no endpoint for: the
    // gateway's own estimate (a quarter of the body's bytes), said to be one.
    let question = json!({"model": "gemini-x", "messages": [{"role": "user", "content": "hi"}]});
    let count = post_json(&gw.url("/v1/messages/count_tokens"), &question, &ANTHROPIC);
    assert_eq!(count.status, 200, "{}", count.body);
    assert_eq!(count.header("x-gateway-estimate"), Some("true"));
    let bytes = question.to_string().len() as u64;
    assert_eq!(
        count.json()["input_tokens"],
        bytes.div_ceil(4),
        "{}",
        count.body
    );
    assert!(
        mock.requests().is_empty(),
        "nothing went upstream: {:?}",
        mock.requests()
    );
}

/// A given access token (`credentials.token`, from the environment) is
/// sent as it is: no token endpoint is asked.
#[test]
fn a_given_vertex_token_is_sent_as_the_bearer() {
    let mock = Mock::start_with("vertex", &[]);
    let (status, answer) = request(
        "GET",
        &format!(
            "{}/computeMetadata/v1/instance/service-accounts/default/token",
            mock.url()
        ),
        &[("metadata-flavor", "Google")],
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let token = answer["access_token"].as_str().unwrap().to_string();
    let gw = Gateway::start_with_env(
        &format!(
            "upstreams:\n  vertex:\n    backends:\n{}routes:\n  - {{name: gemini, paths: [/v1/chat/completions], models: [\"gemini-*\"], upstream: vertex}}\n",
            vertex_pool(&mock, "google", "{token: \"${VERTEX_TOKEN}\"}"),
        ),
        &[("VERTEX_TOKEN", &token)],
    );
    assert!(ready(&gw));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat("gemini-x", "hi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent["headers"]["authorization"], format!("Bearer {token}"));
    assert_eq!(tokens(&mock)["metadata"], 1, "only the test's own fetch");
    assert_eq!(tokens(&mock)["google"], 0);
    assert!(
        !gw.log().contains(&token),
        "the token never reaches the log"
    );
}
