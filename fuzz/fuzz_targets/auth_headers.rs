//! Credential extraction and verification on any headers: nothing panics, and
//! nothing authenticates but the configured API key or a token signed with
//! the configured secret (which the fuzzer does not know).
#![no_main]

use std::sync::OnceLock;

use ai_api_gateway::auth::Authenticator;
use ai_api_gateway::config::{load_str, AuthMethod};
use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const API_KEY: &str = "sk-fuzz-known-key";

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(Name, Value)>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    Authorization,
    XApiKey,
    ApiKey,
}

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(Vec<u8>),
    /// A bearer token built from parts, so the fuzzer reaches past the base64.
    Jwt {
        scheme: String,
        header: String,
        claims: String,
        signature: Vec<u8>,
    },
    KnownKey {
        scheme: String,
    },
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Raw(bytes) => bytes.clone(),
            Value::Jwt {
                scheme,
                header,
                claims,
                signature,
            } => format!(
                "{scheme} {}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims),
                URL_SAFE_NO_PAD.encode(signature)
            )
            .into_bytes(),
            Value::KnownKey { scheme } => format!("{scheme} {API_KEY}").into_bytes(),
        }
    }
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
            auth: Authenticator::from_config(config.auth.as_ref()).expect("auth builds"),
        }
    })
}

fuzz_target!(|input: Input| {
    let fixture = fixture();
    let mut headers = HeaderMap::new();
    for (name, value) in input.headers.iter().take(8) {
        let name = match name {
            Name::Authorization => HeaderName::from_static("authorization"),
            Name::XApiKey => HeaderName::from_static("x-api-key"),
            Name::ApiKey => HeaderName::from_static("api-key"),
        };
        if let Ok(value) = HeaderValue::from_bytes(&value.bytes()) {
            headers.append(name, value);
        }
    }
    let methods = [AuthMethod::ApiKey, AuthMethod::Jwt];
    let outcome = fixture
        .runtime
        .block_on(fixture.auth.authenticate(&headers, &methods));
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
