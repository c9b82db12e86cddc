//! JWT verification. Algorithms are pinned per key (by config or by the
//! JWK), never taken from the token's header; `exp` is required, `nbf`
//! checked, `iss`/`aud` required and checked when configured.

use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::credentials::MAX_CREDENTIAL_LEN;
use super::jwks::{JwksCache, JwksRefresher};
use super::{Failure, Identity};
use crate::config::{AuthMethod, ClaimNames, JwtSettings};

/// Parses algorithm names, refusing mixed key families (one key verifies
/// one family) and, for JWKS fallbacks, HMAC.
pub fn parse_algorithms(names: &[String], no_hmac: bool) -> Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Err("needs at least one algorithm".into());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let alg = Algorithm::from_str(name).map_err(|_| {
            format!("unknown algorithm `{name}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)")
        })?;
        if no_hmac && alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return Err(format!("`{name}`: HMAC keys are never taken from a JWKS"));
        }
        out.push(alg);
    }
    if !no_hmac && out.iter().any(|a| a.family() != out[0].family()) {
        return Err("one key's algorithms must be of one family (e.g. RS256 and PS256, not RS256 and ES256)".into());
    }
    Ok(out)
}

/// A key with the validation that applies to it (its own algorithms).
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub validation: Validation,
}

impl VerifyingKey {
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.validation.algorithms.contains(&alg)
    }
}

/// The checks shared by every key, specialised per key by [`with_algorithms`].
#[derive(Clone)]
pub struct ValidationTemplate {
    issuer: Option<String>,
    audience: Vec<String>,
    leeway: u64,
}

impl ValidationTemplate {
    pub fn with_algorithms(&self, algorithms: Vec<Algorithm>) -> Validation {
        let mut v = Validation::new(algorithms[0]);
        v.algorithms = algorithms;
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.issuer {
            v.set_issuer(&[issuer]);
            required.push("iss");
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        v
    }
}

pub struct JwtVerifier {
    static_keys: Vec<VerifyingKey>,
    jwks: Option<Arc<JwksCache>>,
    claims: ClaimNames,
}

impl JwtVerifier {
    pub fn from_config(settings: &JwtSettings) -> Result<Self, String> {
        let template = ValidationTemplate {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway.as_secs(),
        };
        let mut static_keys = Vec::with_capacity(settings.keys.len());
        for (i, key) in settings.keys.iter().enumerate() {
            let at = format!("auth.jwt.keys[{i}]");
            let algorithms = parse_algorithms(&key.algorithms, false)
                .map_err(|e| format!("{at}.algorithms: {e}"))?;
            let decoding = match (&key.secret, &key.public_key_file) {
                (Some(secret), _) => DecodingKey::from_secret(secret.expose().as_bytes()),
                (None, Some(file)) => {
                    let pem = std::fs::read(file)
                        .map_err(|e| format!("{at}.public_key_file: {file}: {e}"))?;
                    let parsed = match algorithms[0].family() {
                        jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                        jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                        jsonwebtoken::AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
                        _ => return Err(format!("{at}: HMAC keys take `secret`")),
                    };
                    parsed.map_err(|e| {
                        format!("{at}.public_key_file: {file} is not a usable public key: {e}")
                    })?
                }
                (None, None) => return Err(format!("{at}: needs `secret` or `public_key_file`")),
            };
            static_keys.push(VerifyingKey {
                kid: key.kid.clone(),
                key: decoding,
                validation: template.with_algorithms(algorithms),
            });
        }
        let jwks = match &settings.oidc {
            Some(oidc) => Some(Arc::new(JwksCache::new(oidc, template)?)),
            None => None,
        };
        Ok(Self {
            static_keys,
            jwks,
            claims: settings.claims.clone(),
        })
    }

    pub fn jwks_refresher(&self) -> Option<JwksRefresher> {
        self.jwks
            .as_ref()
            .map(|cache| JwksRefresher::new(cache.clone()))
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, Failure> {
        if token.len() > MAX_CREDENTIAL_LEN {
            return Err(Failure::TooLarge);
        }
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
    ) -> Result<Identity, Failure> {
        let mut last = Failure::UnknownKey;
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation) {
                Ok(data) => return self.identity(&data.claims),
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
            team: claims
                .get(&names.team)
                .and_then(Value::as_str)
                .map(str::to_string),
            models: string_list(claims.get(&names.models)),
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
    use crate::config::{JwtKeySettings, Secret};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn verifier(issuer: Option<&str>, audience: &[&str]) -> JwtVerifier {
        JwtVerifier::from_config(&JwtSettings {
            issuer: issuer.map(str::to_string),
            audience: audience.iter().map(|s| s.to_string()).collect(),
            leeway: std::time::Duration::from_secs(30),
            keys: vec![JwtKeySettings {
                kid: None,
                algorithms: vec!["HS256".into()],
                secret: Some(Secret::new("top-secret")),
                public_key_file: None,
            }],
            oidc: None,
            claims: ClaimNames::default(),
        })
        .unwrap()
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"top-secret"),
        )
        .unwrap()
    }

    fn verify(v: &JwtVerifier, t: &str) -> Result<Identity, Failure> {
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
        assert_eq!(id.models, vec!["gpt-*"]);
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

    #[test]
    fn algorithm_lists_are_checked() {
        assert!(parse_algorithms(&["RS256".into(), "PS256".into()], false).is_ok());
        assert!(parse_algorithms(&["RS256".into(), "ES256".into()], false).is_err());
        assert!(parse_algorithms(&["none".into()], false).is_err());
        assert!(parse_algorithms(&["HS256".into()], true).is_err());
    }
}
