//! JWT verification. Algorithms are pinned per key (by config or by the
//! JWK), never taken from the token's header; `exp` is required, `nbf`
//! checked, `iss`/`aud` required and checked when configured.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use super::credentials::MAX_CREDENTIAL_LEN;
use super::jwks::{JwksCache, JwksRefresher};
use super::keys::{ValidationTemplate, VerifyingKey};
use super::settings::{ClaimNames, Jwt};
use super::token_cache::{self, TokenCache};
use super::{Failure, Identity};
use crate::config::{AuthMethod, Glob};

pub struct JwtVerifier {
    static_keys: Vec<VerifyingKey>,
    jwks: Option<Arc<JwksCache>>,
    claims: ClaimNames,
    /// Tokens verified before, until their `exp` or the next key change.
    verified: TokenCache,
}

impl JwtVerifier {
    pub fn new(settings: &Jwt) -> Self {
        let template = ValidationTemplate {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway.as_secs(),
        };
        let static_keys = settings
            .keys
            .iter()
            .map(|key| VerifyingKey {
                kid: key.kid.clone(),
                key: key.key.clone(),
                validation: template.with_algorithms(key.algorithms.clone()),
            })
            .collect();
        let jwks = settings
            .oidc
            .as_ref()
            .map(|oidc| Arc::new(JwksCache::new(oidc, template)));
        Self {
            static_keys,
            jwks,
            claims: settings.claims.clone(),
            verified: TokenCache::new(settings.cache_tokens),
        }
    }

    pub fn jwks_refresher(&self) -> Option<JwksRefresher> {
        self.jwks
            .as_ref()
            .map(|cache| JwksRefresher::new(cache.clone()))
    }

    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, Failure> {
        if token.len() > MAX_CREDENTIAL_LEN {
            return Err(Failure::TooLarge);
        }
        if !self.verified.is_enabled() {
            return self
                .verify_signature(token)
                .await
                .map(|(id, _)| Arc::new(id));
        }
        // Read before the keys are: a key change during the verification
        // leaves the entry in the old generation, where it is never found.
        let generation = self.jwks.as_ref().map_or(0, |jwks| jwks.generation());
        let digest = token_cache::digest(token);
        if let Some(identity) = self.verified.get(&digest, generation) {
            return Ok(identity);
        }
        let (identity, expires_at) = self.verify_signature(token).await?;
        let identity = Arc::new(identity);
        self.verified
            .insert(digest, &identity, expires_at, generation);
        Ok(identity)
    }

    /// The full check: the signature against the candidate keys, then the
    /// claims. Returns the identity and the token's `exp`.
    async fn verify_signature(&self, token: &str) -> Result<(Identity, u64), Failure> {
        // The header only picks candidate keys; it is trusted for nothing else.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Failure::Malformed)?;
        let kid = header.kid.as_deref();
        let matches = |k: &VerifyingKey| match (kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => k.accepts(header.alg),
        };
        let static_hits: Vec<&VerifyingKey> =
            self.static_keys.iter().filter(|k| matches(k)).collect();
        if !static_hits.is_empty() {
            return self.try_keys(token, static_hits.into_iter());
        }
        let Some(jwks) = &self.jwks else {
            return Err(Failure::UnknownKey);
        };
        let mut keys = jwks.keys();
        if !keys.iter().any(|k| matches(k)) && kid.is_some() {
            // A key the issuer may have just rotated in: one refetch, shared
            // by every request that wants it and limited by a cooldown.
            keys = jwks.refetch_for_unknown_kid().await;
        }
        let hits: Vec<&VerifyingKey> = keys
            .iter()
            .map(Arc::as_ref)
            .filter(|k| matches(k))
            .collect();
        if hits.is_empty() {
            return Err(Failure::UnknownKey);
        }
        self.try_keys(token, hits.into_iter())
    }

    fn try_keys<'a>(
        &self,
        token: &str,
        keys: impl Iterator<Item = &'a VerifyingKey>,
    ) -> Result<(Identity, u64), Failure> {
        let mut last = Failure::UnknownKey;
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation) {
                Ok(data) => {
                    // Required and checked by the validation.
                    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    return self.identity(&data.claims).map(|id| (id, exp));
                }
                Err(e) => {
                    last = failure_of(e.kind());
                    // Another key with the same kid-less fit may still verify it.
                    if last != Failure::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, Failure> {
        let names = &self.claims;
        let id = claims
            .get(&names.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Failure::Malformed)?;
        Ok(Identity {
            method: AuthMethod::Jwt,
            id: id.to_string(),
            owner: None,
            team: claims
                .get(&names.team)
                .and_then(Value::as_str)
                .map(str::to_string),
            models: string_list(claims.get(&names.models))
                .iter()
                .filter_map(|m| Glob::new(m))
                .collect(),
            scopes: string_list(claims.get(&names.scopes)),
            limits: string_list(claims.get(&names.limits)),
        })
    }
}

/// A claim holding a list of strings, or one space-separated string.
fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn failure_of(kind: &ErrorKind) -> Failure {
    match kind {
        ErrorKind::ExpiredSignature => Failure::Expired,
        ErrorKind::ImmatureSignature => Failure::NotYetValid,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Failure::BadSignature,
        ErrorKind::InvalidIssuer => Failure::BadIssuer,
        ErrorKind::InvalidAudience => Failure::BadAudience,
        _ => Failure::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::json;

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn verifier(issuer: Option<&str>, audience: &[&str]) -> JwtVerifier {
        let issuer = issuer.map_or(String::new(), |i| format!("    issuer: {i}\n"));
        let yaml = format!(
            "auth:\n  jwt:\n{issuer}    audience: {audience:?}\n    keys:\n      - {{algorithms: [HS256], secret: top-secret}}\n\
             upstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\n\
             routes:\n  - {{name: r, paths: [/v1], upstream: u}}\n"
        );
        let config = crate::settings::load_str(&yaml, "test.yaml", |_| None).unwrap();
        JwtVerifier::new(config.auth.jwt.as_ref().unwrap())
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"top-secret"),
        )
        .unwrap()
    }

    fn verify(v: &JwtVerifier, t: &str) -> Result<Arc<Identity>, Failure> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(v.verify(t))
    }

    #[test]
    fn valid_token_maps_claims() {
        let v = verifier(Some("iss-a"), &["gw"]);
        let t = token(
            json!({"sub": "u1", "exp": now() + 60, "iss": "iss-a", "aud": "gw",
            "team": "red", "models": ["gpt-*"], "scope": "read write"}),
        );
        let id = verify(&v, &t).unwrap();
        assert_eq!(id.id, "u1");
        assert_eq!(id.team.as_deref(), Some("red"));
        assert_eq!(id.models, vec![Glob::new("gpt-*").unwrap()]);
        assert_eq!(id.scopes, vec!["read", "write"]);
    }

    #[test]
    fn each_fault_has_its_reason() {
        let v = verifier(Some("iss-a"), &["gw"]);
        let base = json!({"sub": "u1", "exp": now() + 60, "iss": "iss-a", "aud": "gw"});
        let with = |k: &str, val: Value| {
            let mut c = base.clone();
            c[k] = val;
            token(c)
        };
        assert_eq!(
            verify(&v, &with("exp", json!(now() - 120))),
            Err(Failure::Expired)
        );
        assert_eq!(
            verify(&v, &with("nbf", json!(now() + 120))),
            Err(Failure::NotYetValid)
        );
        assert_eq!(
            verify(&v, &with("iss", json!("other"))),
            Err(Failure::BadIssuer)
        );
        assert_eq!(
            verify(&v, &with("aud", json!("other"))),
            Err(Failure::BadAudience)
        );
        assert_eq!(
            verify(&v, &with("exp", json!("soon"))),
            Err(Failure::Malformed)
        );
        let mut no_exp = base.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(verify(&v, &token(no_exp)), Err(Failure::Malformed));
        let other_key = encode(
            &Header::new(Algorithm::HS256),
            &base,
            &EncodingKey::from_secret(b"nope"),
        )
        .unwrap();
        assert_eq!(verify(&v, &other_key), Err(Failure::BadSignature));
        assert_eq!(verify(&v, "garbage"), Err(Failure::Malformed));
        assert_eq!(verify(&v, &"a".repeat(9000)), Err(Failure::TooLarge));
    }
}
