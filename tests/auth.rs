//! Authentication over real sockets: API keys in all three headers, JWTs with
//! configured keys of every family, an OIDC issuer with key rotation, and the
//! attack set, each answered 401 with its reason counted. An issuer that is
//! down or slow is in `failing_dependencies.rs`.

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ALICE_KEY: &str = "sk-alice-0123456789";
const JWT_SECRET: &str = "hmac-test-secret-that-is-long-enough";

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn key_path(name: &str) -> String {
    repo_path(&format!("tests/keys/{name}"))
        .display()
        .to_string()
}

struct Setup {
    mock: Mock,
    issuer: TestIssuer,
    gw: Gateway,
}

fn setup() -> Setup {
    let mock = Mock::start("a");
    let issuer = TestIssuer::start(&jwks_of(
        &["rsa1"],
        &[json!({"kty": "oct", "kid": "oct1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"})],
    ));
    let body = format!(
        r#"auth:
  api_keys:
    - {{id: alice-key, sha256: "{alice}", team: red, models: ["mock-*"]}}
    - {{id: env-key, key: "${{TEST_GW_KEY}}"}}
    - {{id: off-key, key: sk-disabled, enabled: false}}
  jwt:
    issuer: test-issuer
    audience: [gateway]
    keys:
      - {{kid: hs, algorithms: [HS256], secret: "${{TEST_JWT_SECRET}}"}}
      - {{kid: static-rsa, algorithms: [RS256], public_key_file: {rsa1}}}
      - {{kid: ps, algorithms: [PS256], public_key_file: {rsa2}}}
      - {{kid: ec-static, algorithms: [ES256], public_key_file: {ec1}}}
      - {{kid: ed-static, algorithms: [EdDSA], public_key_file: {ed1}}}
    oidc:
      issuer_url: {issuer}
      allow_http_loopback: true
      refetch_cooldown: 300ms
      refresh_interval: 10m
upstreams:
{pool}routes:
  - name: chat
    paths: [/v1/chat/completions]
    models: [mock-gpt, claude-x]
    upstream: main
  - name: open
    paths: [/v1/embeddings]
    models: ["*"]
    upstream: main
    auth: [none]
"#,
        alice = ai_api_gateway::auth::hash_key(ALICE_KEY),
        rsa1 = key_path("rsa1.pub"),
        rsa2 = key_path("rsa2.pub"),
        ec1 = key_path("ec1.pub"),
        ed1 = key_path("ed1.pub"),
        issuer = issuer.url(),
        pool = pool_yaml("main", &[mock.url()], ""),
    );
    let gw = Gateway::start_with_env(
        &body,
        &[
            ("TEST_GW_KEY", "sk-from-env"),
            ("TEST_JWT_SECRET", JWT_SECRET),
        ],
    );
    Setup { mock, issuer, gw }
}

fn claims() -> Value {
    json!({"sub": "user-1", "iss": "test-issuer", "aud": "gateway", "exp": now() + 300, "team": "blue"})
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    encode(&header, claims, key).expect("sign")
}

fn pem_key(alg: Algorithm, name: &str) -> EncodingKey {
    let pem = std::fs::read(key_path(name)).expect("key file");
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("pem")
}

fn call(gw: &Gateway, headers: &[(&str, &str)], model: &str) -> Response {
    post_json(
        &gw.url("/v1/chat/completions"),
        &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        headers,
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn api_keys_in_all_three_headers() {
    let s = setup();
    for header in ["authorization", "x-api-key", "api-key"] {
        let value = if header == "authorization" {
            bearer(ALICE_KEY)
        } else {
            ALICE_KEY.to_string()
        };
        let resp = call(&s.gw, &[(header, &value)], "mock-gpt");
        assert_eq!(resp.status, 200, "{header}: {}", resp.body);
    }
    let resp = call(
        &s.gw,
        &[("authorization", &bearer("sk-from-env"))],
        "claude-x",
    );
    assert_eq!(
        resp.status, 200,
        "a key from the environment, with no model limits"
    );
    // The client's key never reaches the provider.
    for seen in s.mock.requests() {
        let headers = seen["headers"].to_string();
        assert!(
            !headers.contains(ALICE_KEY) && !headers.contains("sk-from-env"),
            "{headers}"
        );
    }
}

#[test]
fn bad_keys_are_401_with_a_challenge() {
    let s = setup();
    let resp = call(&s.gw, &[], "mock-gpt");
    resp.assert_error(401, "missing_credentials");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer realm=\"ai-api-gateway\"")
    );
    for key in ["sk-wrong", "sk-disabled"] {
        let resp = call(&s.gw, &[("x-api-key", key)], "mock-gpt");
        resp.assert_error(401, "invalid_credentials");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Bearer realm=\"ai-api-gateway\", error=\"invalid_token\"")
        );
    }
    call(
        &s.gw,
        &[("authorization", "Basic YWxhZGRpbjpvcGVu")],
        "mock-gpt",
    )
    .assert_error(401, "invalid_credentials");
    let metrics = s.gw.metrics();
    assert_eq!(auth_failures(&metrics, "missing"), 1);
    assert_eq!(auth_failures(&metrics, "unknown_key"), 2);
    assert_eq!(auth_failures(&metrics, "malformed"), 1);
    assert_eq!(s.mock.api_requests(), 0);
}

#[test]
fn a_model_outside_the_callers_list_is_403() {
    let s = setup();
    let resp = call(&s.gw, &[("x-api-key", ALICE_KEY)], "claude-x");
    resp.assert_error(403, "model_not_allowed");
    assert_eq!(auth_failures(&s.gw.metrics(), "forbidden_model"), 1);
    // Token claims limit models the same way.
    let mut c = claims();
    c["models"] = json!(["claude-*"]);
    let token = sign(
        Algorithm::HS256,
        "hs",
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        &c,
    );
    call(&s.gw, &[("authorization", &bearer(&token))], "mock-gpt")
        .assert_error(403, "model_not_allowed");
    assert_eq!(
        call(&s.gw, &[("authorization", &bearer(&token))], "claude-x").status,
        200
    );
}

#[test]
fn routes_without_auth_need_no_credentials() {
    let s = setup();
    let resp = post_json(
        &s.gw.url("/v1/embeddings"),
        &json!({"model": "e", "input": "x"}),
        &[],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[test]
fn tokens_of_every_configured_key_family_verify() {
    let s = setup();
    let tokens = [
        sign(
            Algorithm::HS256,
            "hs",
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
            &claims(),
        ),
        sign(
            Algorithm::RS256,
            "static-rsa",
            &pem_key(Algorithm::RS256, "rsa1.key"),
            &claims(),
        ),
        sign(
            Algorithm::PS256,
            "ps",
            &pem_key(Algorithm::PS256, "rsa2.key"),
            &claims(),
        ),
        sign(
            Algorithm::ES256,
            "ec-static",
            &pem_key(Algorithm::ES256, "ec1.key"),
            &claims(),
        ),
        sign(
            Algorithm::EdDSA,
            "ed-static",
            &pem_key(Algorithm::EdDSA, "ed1.key"),
            &claims(),
        ),
        // From the issuer's JWKS.
        sign(
            Algorithm::RS256,
            "rsa1",
            &pem_key(Algorithm::RS256, "rsa1.key"),
            &claims(),
        ),
    ];
    for (i, token) in tokens.iter().enumerate() {
        let resp = call(&s.gw, &[("authorization", &bearer(token))], "mock-gpt");
        assert_eq!(resp.status, 200, "token {i}: {}", resp.body);
    }
    // The subject is the caller in the access log; the token is nowhere in it.
    assert!(eventually(Duration::from_secs(5), || {
        s.gw.access_lines()
            .iter()
            .any(|l| l["caller"] == "user-1" && l["team"] == "blue")
    }));
    assert!(eventually(Duration::from_secs(5), || s
        .gw
        .access_lines()
        .len()
        >= tokens.len()));
    let log = s.gw.log();
    for token in &tokens {
        assert!(!log.contains(token.as_str()), "a token reached the log");
    }
    assert!(!log.contains(JWT_SECRET));
}

#[test]
fn the_attack_set_is_refused_with_its_reason() {
    let s = setup();
    let hs = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let with = |key: &str, value: Value| {
        let mut c = claims();
        c[key] = value;
        sign(Algorithm::HS256, "hs", &hs, &c)
    };
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let alg_none = {
        use base64_encode as b64;
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT","kid":"hs"}"#),
            b64(&claims().to_string())
        )
    };
    let rsa_pub_as_secret = sign(
        Algorithm::HS256,
        "static-rsa",
        &EncodingKey::from_secret(&std::fs::read(key_path("rsa1.pub")).unwrap()),
        &claims(),
    );
    let tampered = {
        let good = sign(Algorithm::HS256, "hs", &hs, &claims());
        let parts: Vec<&str> = good.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("admin");
        format!(
            "{}.{}.{}",
            parts[0],
            base64_encode(&evil.to_string()),
            parts[2]
        )
    };
    let oct_signed = sign(
        Algorithm::HS256,
        "oct1",
        &EncodingKey::from_secret(b"secret-secret-secret"),
        &claims(),
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (alg_none, "malformed", "alg none"),
        (
            rsa_pub_as_secret,
            "bad_signature",
            "HS256 with the RSA public key",
        ),
        (with("exp", json!(now() - 600)), "expired", "expired"),
        (
            with("nbf", json!(now() + 600)),
            "not_yet_valid",
            "nbf in the future",
        ),
        (with("iss", json!("evil-issuer")), "bad_issuer", "wrong iss"),
        (
            with("aud", json!("someone-else")),
            "bad_audience",
            "wrong aud",
        ),
        (
            sign(Algorithm::HS256, "hs", &hs, &no_exp),
            "malformed",
            "no exp",
        ),
        (tampered, "bad_signature", "tampered payload"),
        (
            format!(
                "{}.{}.{}",
                "a".repeat(3000),
                "b".repeat(3000),
                "c".repeat(3300)
            ),
            "too_large",
            "9 KiB token",
        ),
        ("not.a.jwt".to_string(), "malformed", "garbage"),
        (oct_signed, "unknown_key", "JWK with kty oct"),
    ];
    for (token, reason, name) in &cases {
        let before = auth_failures(&s.gw.metrics(), reason);
        let resp = call(&s.gw, &[("authorization", &bearer(token))], "mock-gpt");
        assert_eq!(resp.status, 401, "{name}: {}", resp.body);
        assert!(
            resp.header("www-authenticate")
                .unwrap()
                .contains("invalid_token"),
            "{name}"
        );
        assert_eq!(
            auth_failures(&s.gw.metrics(), reason),
            before + 1,
            "{name} not counted as {reason}"
        );
    }
    assert_eq!(s.mock.api_requests(), 0, "nothing reached the upstream");
}

fn base64_encode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token signed with the JWKS key `rsa1`, once the gateway accepts it
/// (the key set is fetched in the background at start).
fn accepted_rsa1_token(s: &Setup) -> String {
    let rsa1 = sign(
        Algorithm::RS256,
        "rsa1",
        &pem_key(Algorithm::RS256, "rsa1.key"),
        &claims(),
    );
    assert!(eventually(Duration::from_secs(10), || {
        call(&s.gw, &[("authorization", &bearer(&rsa1))], "mock-gpt").status == 200
    }));
    rsa1
}

#[test]
fn a_rotated_key_is_accepted_after_one_shared_refetch() {
    let s = setup();
    accepted_rsa1_token(&s);
    let rotated = sign(
        Algorithm::RS256,
        "rsa2",
        &pem_key(Algorithm::RS256, "rsa2.key"),
        &claims(),
    );
    call(&s.gw, &[("authorization", &bearer(&rotated))], "mock-gpt")
        .assert_error(401, "invalid_credentials");

    s.issuer.set_jwks(&jwks_of(&["rsa1", "rsa2"], &[]));
    std::thread::sleep(Duration::from_millis(400)); // past the refetch cooldown
    let before = s.issuer.fetches();
    // Many requests with the new kid at once: one fetch serves them all.
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let url = s.gw.url("/v1/chat/completions");
            let auth = bearer(&rotated);
            std::thread::spawn(move || {
                post_json(
                    &url,
                    &json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
                    &[("authorization", &auth)],
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(s.issuer.fetches() - before, 1, "single flight");
}

/// Verified tokens are remembered (`auth.jwt.cache_tokens`), but never past
/// a key change: once a refresh drops the key that signed a token, the
/// token is refused even though it was accepted a moment before.
#[test]
fn a_remembered_token_does_not_outlive_the_key_that_signed_it() {
    let s = setup();
    let rsa1 = accepted_rsa1_token(&s);
    for _ in 0..5 {
        assert_eq!(
            call(&s.gw, &[("authorization", &bearer(&rsa1))], "mock-gpt").status,
            200
        );
    }
    // The issuer drops rsa1; a token with a kid the gateway does not know
    // makes it refetch the key set at once.
    s.issuer.set_jwks(&jwks_of(&["rsa2"], &[]));
    std::thread::sleep(Duration::from_millis(400)); // past the refetch cooldown
    let before = s.issuer.fetches();
    let rsa2 = sign(
        Algorithm::RS256,
        "rsa2",
        &pem_key(Algorithm::RS256, "rsa2.key"),
        &claims(),
    );
    assert_eq!(
        call(&s.gw, &[("authorization", &bearer(&rsa2))], "mock-gpt").status,
        200
    );
    assert_eq!(s.issuer.fetches() - before, 1);
    call(&s.gw, &[("authorization", &bearer(&rsa1))], "mock-gpt")
        .assert_error(401, "invalid_credentials");
}

#[test]
fn hash_key_prints_the_sha256() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-alice-0123456789\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ai_api_gateway::auth::hash_key(ALICE_KEY)
    );
}

#[test]
fn a_route_may_require_scopes() {
    let mock = Mock::start("a");
    let body = format!(
        "auth:\n  api_keys:\n    - {{id: granted, key: sk-granted, scopes: [batch, chat]}}\n    - {{id: plain, key: sk-plain}}\n  \
         jwt:\n    keys:\n      - {{algorithms: [HS256], secret: \"{JWT_SECRET}\"}}\n\
         upstreams:\n{}routes:\n  - name: batch\n    paths: [/v1/chat/completions]\n    models: [mock-gpt]\n    upstream: main\n    scopes: [batch]\n",
        pool_yaml("main", &[mock.url()], "")
    );
    let gw = Gateway::start(&body);
    let resp = call(&gw, &[("x-api-key", "sk-granted")], "mock-gpt");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = call(&gw, &[("x-api-key", "sk-plain")], "mock-gpt");
    resp.assert_error(403, "insufficient_scope");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer realm=\"ai-api-gateway\", error=\"insufficient_scope\"")
    );
    // A token's `scope` claim (space-separated, OAuth style) grants them too.
    let hmac = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let with_scope = json!({"sub": "svc", "exp": now() + 300, "scope": "read batch"});
    let without = json!({"sub": "svc", "exp": now() + 300, "scope": "read"});
    let token = encode(&Header::new(Algorithm::HS256), &with_scope, &hmac).unwrap();
    assert_eq!(
        call(&gw, &[("authorization", &bearer(&token))], "mock-gpt").status,
        200
    );
    let token = encode(&Header::new(Algorithm::HS256), &without, &hmac).unwrap();
    call(&gw, &[("authorization", &bearer(&token))], "mock-gpt")
        .assert_error(403, "insufficient_scope");
    assert_eq!(
        mock.api_requests(),
        2,
        "refused calls never reach the upstream"
    );
    assert_eq!(
        auth_failures(&gw.metrics(), "insufficient_scope"),
        2,
        "{}",
        gw.metrics()
    );
}
