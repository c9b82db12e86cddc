//! The admin endpoints' bearer token (`admin.token`). Only its SHA-256 is
//! kept, and a presented token is compared digest to digest in constant
//! time, so neither its length nor its first wrong byte shows in timing.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::credentials::{extract, Credential};

pub struct AdminToken {
    sha256: [u8; 32],
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self {
            sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether the request carries the token as `Authorization: Bearer`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Ok(Credential::Bearer(presented)) = extract(headers) else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let difference = presented
            .iter()
            .zip(self.sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        difference == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            value.parse().expect("a header value"),
        );
        headers
    }

    #[test]
    fn only_the_bearer_token_itself_is_admitted() {
        let token = AdminToken::new("s3cret-admin-token");
        assert!(token.admits(&with_auth("Bearer s3cret-admin-token")));
        assert!(!token.admits(&with_auth("Bearer s3cret-admin-tokeN")));
        assert!(!token.admits(&with_auth("Bearer s3cret")));
        assert!(!token.admits(&with_auth("Basic s3cret-admin-token")));
        assert!(!token.admits(&HeaderMap::new()));
    }
}
