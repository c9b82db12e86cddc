//! Credential extraction and verification on any headers: nothing panics, and
//! nothing authenticates but the configured API key or a token signed with
//! the configured secret (which the fuzzer does not know).
#![no_main]

use std::sync::OnceLock;

use ai_api_gateway::auth::Authenticator;
use ai_api_gateway::config::AuthMethod;
use ai_api_gateway::settings::load_str;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const API_KEY: &str = "sk-fuzz-known-key";

/// The input: a selector byte, then the header value. Selectors 0-2 put the
/// raw value in `authorization`, `x-api-key` or `api-key`; selector 3 splits
/// it at 0xff bytes into scheme, JWT header JSON, claims JSON and signature,
/// and sends `<scheme> <b64(header)>.<b64(claims)>.<b64(signature)>` as
/// `authorization`, so the fuzzer reaches past the base64 into the JWT checks.
fn headers_of(data: &[u8]) -> Option<HeaderMap> {
    let (&selector, value) = data.split_first()?;
    let (name, value) = match selector % 4 {
        0 => ("authorization", value.to_vec()),
        1 => ("x-api-key", value.to_vec()),
        2 => ("api-key", value.to_vec()),
        _ => {
            let mut parts = value.split(|&b| b == 0xff);
            let scheme = parts.next().unwrap_or_default();
            let encoded: Vec<String> = parts.take(3).map(|p| URL_SAFE_NO_PAD.encode(p)).collect();
            let mut token = scheme.to_vec();
            token.push(b' ');
            token.extend_from_slice(encoded.join(".").as_bytes());
            ("authorization", token)
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static(name),
        HeaderValue::from_bytes(&value).ok()?,
    );
    Some(headers)
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    auth: Authenticator,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = format!(
            "upstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\n\
             routes:\n  - name: r\n    paths: [/v1/chat/completions]\n    upstream: u\n\
             auth:\n  api_keys:\n    - {{id: fuzz, key: {API_KEY}}}\n\
             \x20 jwt:\n    issuer: fuzz-issuer\n    keys:\n\
             \x20     - {{kid: hs, algorithms: [HS256, HS384], secret: fuzz-secret-not-in-any-input}}\n"
        );
        let config = load_str(&text, "fuzz.yaml", |_| None).expect("the fuzz config loads");
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            auth: Authenticator::new(&config.auth),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(headers) = headers_of(data) else {
        return;
    };
    let fixture = fixture();
    let methods = [AuthMethod::ApiKey, AuthMethod::Jwt];
    let outcome = fixture
        .runtime
        .block_on(fixture.auth.authenticate(&headers, None, &methods));
    if let Ok(Some(identity)) = outcome {
        let offered_key = headers
            .iter()
            .any(|(_, v)| v.to_str().is_ok_and(|v| v.contains(API_KEY)));
        assert!(
            offered_key,
            "authenticated without the key: {identity:?} from {headers:?}"
        );
        assert_eq!(identity.id, "fuzz");
    }
});
