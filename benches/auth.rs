//! What authentication costs per request: an API-key check, and RS256 and
//! ES256 JWT verification with configured keys, verified in full
//! (`cache_tokens: 0`) and remembered (the default).
//!   cargo bench --bench auth

use std::hint::black_box;

use ai_api_gateway::auth::{hash_key, ApiKeyStore, JwtVerifier};
use ai_api_gateway::settings::{load_str, Settings};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A config with `auth` (YAML lines) and one route.
fn config(auth: &str) -> Settings {
    let text = format!(
        "auth:\n{auth}upstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\n\
         routes:\n  - {{name: r, paths: [/v1], upstream: u}}\n"
    );
    load_str(&text, "bench.yaml", |_| None).expect("the bench config loads")
}

fn api_keys(c: &mut Criterion) {
    let keys: String = (0..1000)
        .map(|i| {
            format!(
                "    - {{id: key-{i}, sha256: \"{}\"}}\n",
                hash_key(&format!("sk-bench-{i}"))
            )
        })
        .collect();
    let store = ApiKeyStore::new(&config(&format!("  api_keys:\n{keys}")).auth.api_keys);
    c.bench_function("api_key_check (1000 keys)", |b| {
        b.iter(|| store.lookup(black_box("sk-bench-517")))
    });
}

fn verifier(cache_tokens: usize) -> JwtVerifier {
    let config = config(&format!(
        "  jwt:\n    issuer: bench\n    audience: [gateway]\n    cache_tokens: {cache_tokens}\n    keys:\n\
         \x20     - {{kid: rs, algorithms: [RS256], public_key_file: {}}}\n\
         \x20     - {{kid: es, algorithms: [ES256], public_key_file: {}}}\n",
        key_file("rsa1.pub"),
        key_file("ec1.pub")
    ));
    JwtVerifier::new(config.auth.jwt.as_ref().expect("jwt"))
}

fn jwt(c: &mut Criterion) {
    let claims = serde_json::json!({"sub": "u", "iss": "bench", "aud": "gateway",
        "exp": jsonwebtoken::get_current_timestamp() + 3600});
    let token = |alg: Algorithm, kid: &str, key: &str| {
        let pem = std::fs::read(key_file(key)).expect("key");
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .expect("pem");
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, &claims, &encoding).expect("sign")
    };
    let rs = token(Algorithm::RS256, "rs", "rsa1.key");
    let es = token(Algorithm::ES256, "es", "ec1.key");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (full, remembered) = (verifier(0), verifier(10_000));
    for (name, verifier, t) in [
        ("jwt_verify_rs256", &full, &rs),
        ("jwt_verify_es256", &full, &es),
        ("jwt_remembered_rs256", &remembered, &rs),
        ("jwt_remembered_es256", &remembered, &es),
    ] {
        assert!(
            rt.block_on(verifier.verify(t)).is_ok(),
            "{name} must verify"
        );
        c.bench_function(name, |b| {
            b.iter(|| rt.block_on(verifier.verify(black_box(t))))
        });
    }
}

criterion_group!(benches, api_keys, jwt);
criterion_main!(benches);
