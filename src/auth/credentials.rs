//! Where credentials come from: `Authorization: Bearer`, `x-api-key`
//! (Anthropic clients) and `api-key` (Azure clients).

use http::HeaderMap;

use super::Failure;

/// Tokens over this size are refused before any decoding (Pingora accepts
/// headers up to ~1 MiB, so the cap is ours).
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    KeyHeader(&'a str),
    None,
}

pub fn extract(headers: &HeaderMap) -> Result<Credential<'_>, Failure> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        if value.len() > MAX_CREDENTIAL_LEN + 7 {
            return Err(Failure::TooLarge);
        }
        let text = value.to_str().map_err(|_| Failure::Malformed)?;
        let (scheme, rest) = text.split_once(' ').ok_or(Failure::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Malformed);
        }
        let token = rest.trim();
        if token.is_empty() {
            return Err(Failure::Missing);
        }
        return Ok(Credential::Bearer(token));
    }
    for name in ["x-api-key", "api-key"] {
        if let Some(value) = headers.get(name) {
            if value.len() > MAX_CREDENTIAL_LEN {
                return Err(Failure::TooLarge);
            }
            let key = value.to_str().map_err(|_| Failure::Malformed)?.trim();
            if key.is_empty() {
                return Err(Failure::Missing);
            }
            return Ok(Credential::KeyHeader(key));
        }
    }
    Ok(Credential::None)
}

/// A compact JWS has three base64url parts; API keys have no dots.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn bearer_and_key_headers() {
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(extract(&h), Ok(Credential::Bearer("abc")));
        let h = headers(&[("authorization", "bearer  abc ")]);
        assert_eq!(extract(&h), Ok(Credential::Bearer("abc")));
        let h = headers(&[("x-api-key", "k1")]);
        assert_eq!(extract(&h), Ok(Credential::KeyHeader("k1")));
        let h = headers(&[("api-key", "k2")]);
        assert_eq!(extract(&h), Ok(Credential::KeyHeader("k2")));
        assert_eq!(extract(&HeaderMap::new()), Ok(Credential::None));
    }

    #[test]
    fn bad_shapes() {
        assert_eq!(
            extract(&headers(&[("authorization", "Basic abc")])),
            Err(Failure::Malformed)
        );
        assert_eq!(
            extract(&headers(&[("authorization", "Bearer")])),
            Err(Failure::Malformed)
        );
        assert_eq!(
            extract(&headers(&[("authorization", "Bearer  ")])),
            Err(Failure::Missing)
        );
        let big = format!("Bearer {}", "a".repeat(9 * 1024));
        assert_eq!(
            extract(&headers(&[("authorization", &big)])),
            Err(Failure::TooLarge)
        );
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("sk-abc"));
        assert!(!looks_like_jwt("a.b"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any header value is parsed or refused, never a panic; a bearer
        /// token comes back exactly (trimmed).
        #[test]
        fn any_authorization_header(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(v) = http::HeaderValue::from_bytes(&value) {
                let mut headers = HeaderMap::new();
                headers.insert(http::header::AUTHORIZATION, v);
                let _ = extract(&headers);
            }
        }

        #[test]
        fn bearer_tokens_round_trip(token in "[A-Za-z0-9._~+/=-]{1,200}") {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
            prop_assert_eq!(extract(&headers), Ok(Credential::Bearer(token.as_str())));
        }
    }
}
