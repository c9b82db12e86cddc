//! What authentication costs per request: an API-key check, and RS256 and
//! ES256 JWT verification with configured keys.
//!   cargo bench --bench auth

use std::hint::black_box;

use ai_api_gateway::auth::{hash_key, ApiKeyStore, JwtVerifier};
use ai_api_gateway::config::{ApiKeySettings, ClaimNames, JwtKeySettings, JwtSettings};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn api_keys(c: &mut Criterion) {
    let keys: Vec<ApiKeySettings> = (0..1000)
        .map(|i| ApiKeySettings {
            id: format!("key-{i}"),
            sha256: Some(hash_key(&format!("sk-bench-{i}"))),
            key: None,
            owner: None,
            team: None,
            models: vec![],
            limits: vec![],
            enabled: true,
        })
        .collect();
    let store = ApiKeyStore::from_config(&keys).expect("keys");
    c.bench_function("api_key_check (1000 keys)", |b| {
        b.iter(|| store.lookup(black_box("sk-bench-517")))
    });
}

fn jwt(c: &mut Criterion) {
    let settings = JwtSettings {
        issuer: Some("bench".into()),
        audience: vec!["gateway".into()],
        leeway: std::time::Duration::from_secs(30),
        keys: vec![
            JwtKeySettings {
                kid: Some("rs".into()),
                algorithms: vec!["RS256".into()],
                secret: None,
                public_key_file: Some(key_file("rsa1.pub")),
            },
            JwtKeySettings {
                kid: Some("es".into()),
                algorithms: vec!["ES256".into()],
                secret: None,
                public_key_file: Some(key_file("ec1.pub")),
            },
        ],
        oidc: None,
        claims: ClaimNames::default(),
    };
    let verifier = JwtVerifier::from_config(&settings).expect("verifier");
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
    for (name, t) in [("jwt_verify_rs256", &rs), ("jwt_verify_es256", &es)] {
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
