//! A verifying key and the checks it applies: the shape both configured
//! keys and JWKS keys take.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

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
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: u64,
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
