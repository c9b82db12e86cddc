//! Azure OpenAI behind the gateway, against the mock's strict Azure: both
//! URL forms, the key in `api-key`, Entra ID tokens through AKS workload
//! identity, content-filter annotations passed on to OpenAI clients and
//! turned into refusals for Anthropic ones.

mod common;

use common::*;
use serde_json::json;

const KEY: &str = "azure-key-123";

fn azure_gateway(mock: &Mock, options: &str, credential: &str) -> Gateway {
    Gateway::start(&format!(
        "upstreams:\n  azure:\n    backends:\n      - base_url: {}\n        provider: azure\n{credential}        options: {options}\n\
         routes:\n  - {{name: chat, paths: [/v1/chat/completions, /v1/embeddings], models: [\"gpt-*\", \"text-*\"], upstream: azure}}\n",
        mock.url()
    ))
}

fn with_key(mock: &Mock, options: &str) -> Gateway {
    azure_gateway(mock, options, &format!("        api_key: {KEY}\n"))
}

fn chat_body(model: &str, text: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn messages_body(model: &str, text: &str) -> serde_json::Value {
    json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}]})
}

#[test]
fn the_deployments_form_puts_the_deployment_and_version_in_the_url() {
    let mock = Mock::start_with("azure", &["--azure-key", KEY]);
    let gw = with_key(
        &mock,
        "{api_version: 2024-10-21, deployments: {gpt-4o: prod-4o}}",
    );
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat_body("gpt-4o", "hi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    // Azure's annotations reach OpenAI clients as Azure sent them.
    assert_eq!(answer["prompt_filter_results"][0]["prompt_index"], 0);
    assert!(answer["choices"][0]["content_filter_results"]["hate"].is_object());
    let recorded = mock.requests();
    let last = recorded.last().unwrap();
    assert_eq!(
        last["path"],
        "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(last["headers"]["api-key"], KEY);
    assert!(last["headers"].get("authorization").is_none());

    // A model not in the map is its own deployment; embeddings too.
    let r = post_json(
        &gw.url("/v1/embeddings"),
        &json!({"model": "text-embed", "input": "x"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        mock.requests().last().unwrap()["path"],
        "/openai/deployments/text-embed/embeddings?api-version=2024-10-21"
    );
}

#[test]
fn the_v1_form_names_the_deployment_in_the_body() {
    let mock = Mock::start_with("azure", &["--azure-key", KEY]);
    let gw = with_key(&mock, "{deployments: {gpt-4o: prod-4o}}");
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat_body("gpt-4o", "hi"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let last = mock.requests().pop().unwrap();
    assert_eq!(last["path"], "/openai/v1/chat/completions");
    let sent: serde_json::Value = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "prod-4o");
}

#[test]
fn anthropic_clients_reach_azure_translated_and_streams_skip_the_annotations() {
    let mock = Mock::start_with("azure", &["--azure-key", KEY]);
    let gw = with_key(&mock, "{api_version: 2024-10-21}");
    let headers = [("anthropic-version", "2023-06-01")];
    let r = post_json(
        &gw.url("/v1/messages"),
        &messages_body("gpt-4o", "hi"),
        &headers,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["type"], "message");
    let mut body = messages_body("gpt-4o", "hi");
    body["stream"] = json!(true);
    let r = post_json(&gw.url("/v1/messages"), &body, &headers);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"id\":\"chatcmpl-mock\""), "{}", r.body);
    assert!(
        r.body
            .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{}",
        r.body
    );
    assert_eq!(
        mock.requests().last().unwrap()["path"],
        "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    );
}

#[test]
fn content_filters_reach_each_client_in_its_own_terms() {
    let mock = Mock::start_with("azure", &["--azure-key", KEY]);
    let gw = with_key(&mock, "{api_version: 2024-10-21}");
    // A prompt the filter refuses: OpenAI clients get Azure's error as it is.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat_body("gpt-4o", "CONTENT_FILTER_PROMPT"),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "content_filter");
    let headers = [("anthropic-version", "2023-06-01")];
    let r = post_json(
        &gw.url("/v1/messages"),
        &messages_body("gpt-4o", "CONTENT_FILTER_PROMPT"),
        &headers,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // An answer the filter cut: a refusal for Anthropic clients.
    let r = post_json(
        &gw.url("/v1/messages"),
        &messages_body("gpt-4o", "CONTENT_FILTER_OUTPUT"),
        &headers,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stop_reason"], "refusal");
}

#[test]
fn a_wrong_key_is_azures_401_in_the_clients_dialect() {
    let mock = Mock::start_with("azure", &["--azure-key", KEY]);
    let gw = azure_gateway(
        &mock,
        "{api_version: 2024-10-21}",
        "        api_key: wrong\n",
    );
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        &chat_body("gpt-4o", "hi"),
        &[],
    );
    assert_eq!(r.status, 401);
    let r = post_json(
        &gw.url("/v1/messages"),
        &messages_body("gpt-4o", "hi"),
        &[("anthropic-version", "2023-06-01")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
}

#[test]
fn workload_identity_tokens_are_fetched_once_and_reused() {
    let mock = Mock::start_with("azure", &[]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    // A projected service-account token: a JWT the token endpoint takes as
    // the client assertion.
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2ln").unwrap();
    let gw = Gateway::start_with_env(
        &format!(
            "upstreams:\n  azure:\n    backends:\n      - base_url: {url}\n        provider: azure\n        options:\n          api_version: 2024-10-21\n          entra:\n            workload_identity: {{token_endpoint: \"{url}/tenant-1/oauth2/v2.0/token\"}}\n\
             routes:\n  - {{name: chat, paths: [/v1/chat/completions], models: [\"gpt-*\"], upstream: azure}}\n",
            url = mock.url()
        ),
        &[
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );
    assert!(
        eventually(std::time::Duration::from_secs(10), || get(
            &gw.admin_url("/ready")
        )
        .0 == 200),
        "ready once the token is in: {}",
        get(&gw.admin_url("/ready")).1
    );
    for _ in 0..3 {
        let r = post_json(
            &gw.url("/v1/chat/completions"),
            &chat_body("gpt-4o", "hi"),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (_, counts) = get(&format!("{}/mock/tokens", mock.url()));
    let counts: serde_json::Value = serde_json::from_str(&counts).unwrap();
    assert_eq!(counts["entra"], 1, "one token for every request");
    let last = mock.requests().pop().unwrap();
    assert!(last["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer mock-entra-token-"));
    assert!(
        !gw.log().contains("mock-entra-token"),
        "tokens never reach the log"
    );
}

/// A given Entra ID token (`entra.token`, from the environment) is sent as
/// it is, in place of a key; one the tenant did not issue is Azure's 401,
/// in the client's dialect.
#[test]
fn a_given_entra_token_is_sent_as_the_bearer() {
    let mock = Mock::start_with("azure", &[]);
    let token = ureq::post(&format!("{}/tenant-1/oauth2/v2.0/token", mock.url()))
        .send_form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2ln",
            ),
            ("client_id", "client-1"),
            ("scope", "https://cognitiveservices.azure.com/.default"),
        ])
        .expect("the tenant issues a token")
        .into_json::<serde_json::Value>()
        .expect("JSON")["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    for (given, status) in [(token.as_str(), 200), ("not-issued-by-the-tenant", 401)] {
        let gw = Gateway::start_with_env(
            &format!(
                "upstreams:\n  azure:\n    backends:\n      - base_url: {url}\n        provider: azure\n        options:\n          api_version: 2024-10-21\n          entra: {{token: \"${{AZURE_TOKEN}}\"}}\n\
                 routes:\n  - {{name: chat, paths: [/v1/chat/completions, /v1/messages], models: [\"gpt-*\"], upstream: azure}}\n",
                url = mock.url()
            ),
            &[("AZURE_TOKEN", given)],
        );
        let r = post_json(
            &gw.url("/v1/chat/completions"),
            &chat_body("gpt-4o", "hi"),
            &[],
        );
        assert_eq!(r.status, status, "{}", r.body);
        let sent = mock.requests().pop().unwrap();
        assert_eq!(sent["headers"]["authorization"], format!("Bearer {given}"));
        assert!(sent["headers"].get("api-key").is_none());
        if status == 401 {
            let r = post_json(
                &gw.url("/v1/messages"),
                &messages_body("gpt-4o", "hi"),
                &[("anthropic-version", "2023-06-01")],
            );
            assert_eq!(r.status, 401, "{}", r.body);
            assert_eq!(r.json()["error"]["type"], "authentication_error");
        }
        assert!(!gw.log().contains(given), "the token never reaches the log");
    }
}
