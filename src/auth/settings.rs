//! The `auth` and `admin` sections, lowered: API keys (by hash), client
//! certificates, JWT keys and issuers, and the admin token.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use sha2::{Digest, Sha256};

use crate::config::check::{
    ca_bundle, count_in, duration_in, ensure, fault, globs, positive_up_to, unique_name, up_to,
    Fault, Lowered, DAY, HOUR, MINUTE, SECOND,
};
use crate::config::{check_fetch_url, expand, schema, CaBundle, Env, Glob, Secret};

#[derive(Debug, Default)]
pub struct Auth {
    pub api_keys: Vec<ApiKey>,
    pub client_certs: Vec<ClientCert>,
    pub jwt: Option<Jwt>,
}

impl Auth {
    /// The credentials this section configures, in the order routes take
    /// them by default.
    pub fn methods(&self) -> Vec<crate::config::AuthMethod> {
        use crate::config::AuthMethod;
        let mut methods = Vec::new();
        if !self.api_keys.is_empty() {
            methods.push(AuthMethod::ApiKey);
        }
        if self.jwt.is_some() {
            methods.push(AuthMethod::Jwt);
        }
        if !self.client_certs.is_empty() {
            methods.push(AuthMethod::ClientCert);
        }
        methods
    }
}

/// How a verified client certificate is recognised, and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateName {
    /// The subject's common name.
    Subject(String),
    /// A DNS, URI (SPIFFE ID) or email subject alternative name.
    AltName(String),
}

#[derive(Debug)]
pub struct ClientCert {
    pub id: String,
    pub name: CertificateName,
    pub grants: Grants,
}

#[derive(Debug)]
pub struct ApiKey {
    pub id: String,
    /// SHA-256 of the key: keys are looked up by hash.
    pub sha256: [u8; 32],
    pub grants: Grants,
}

/// Who a configured caller (an API key, a client certificate) is and what
/// it may do.
#[derive(Debug)]
pub struct Grants {
    pub owner: Option<String>,
    pub team: Option<String>,
    /// Models the caller may use; empty: every model.
    pub models: Vec<Glob>,
    pub limits: Vec<String>,
    /// Scopes granted (routes may require them).
    pub scopes: Vec<String>,
    pub enabled: bool,
}

#[derive(Debug)]
pub struct Jwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values; one must match when any is set.
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub keys: Vec<JwtKey>,
    pub oidc: Option<Oidc>,
    pub claims: ClaimNames,
    /// Verified tokens remembered until their `exp` (0: none).
    pub cache_tokens: usize,
}

/// A key configured for JWTs, parsed, with the algorithms pinned to it.
pub struct JwtKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key itself may be an HMAC secret.
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Oidc {
    pub source: OidcSource,
    /// For JWKS keys that name no `alg` (never HMAC).
    pub algorithms: Vec<Algorithm>,
    pub refresh_interval: Duration,
    pub refetch_cooldown: Duration,
    pub fetch_timeout: Duration,
    pub ca: Option<CaBundle>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcSource {
    /// `<issuer>/.well-known/openid-configuration` names the JWKS.
    Discovery {
        issuer_url: String,
        allow_http_loopback: bool,
    },
    Jwks(String),
}

/// Which claims carry the caller's identity.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub subject: String,
    pub team: String,
    pub models: String,
    pub scopes: String,
    pub limits: String,
}

pub fn auth(a: &schema::Auth, env: Env<'_>) -> Lowered<Auth> {
    let mut ids = HashSet::new();
    let mut hashes = HashSet::new();
    let mut api_keys = Vec::with_capacity(a.api_keys.len());
    for (i, key) in a.api_keys.iter().enumerate() {
        let at = format!("auth.api_keys[{i}]");
        unique_name(&mut ids, format!("{at}.id"), &key.id, "key")?;
        let sha256: [u8; 32] = match (&key.sha256, &key.key) {
            (Some(hex), None) => decode_hex(hex).ok_or_else(|| Fault {
                field: format!("{at}.sha256"),
                message: "must be 64 hex digits (`ai-api-gateway hash-key` prints it)".into(),
            })?,
            (None, Some(secret)) => {
                let secret = expand(&format!("{at}.key"), secret, env)?;
                ensure(
                    !secret.expose().is_empty(),
                    || format!("{at}.key"),
                    "must not be empty",
                )?;
                Sha256::digest(secret.expose().as_bytes()).into()
            }
            _ => return fault(at, "needs exactly one of `sha256` and `key`"),
        };
        if !hashes.insert(sha256) {
            return fault(at, "the same key is configured twice");
        }
        api_keys.push(ApiKey {
            id: key.id.clone(),
            sha256,
            grants: grants(&at, key.grants())?,
        });
    }
    let jwt = match &a.jwt {
        Some(jwt) => Some(self::jwt(jwt, env)?),
        None => None,
    };
    let mut names = HashSet::new();
    let mut client_certs = Vec::with_capacity(a.client_certs.len());
    for (i, cert) in a.client_certs.iter().enumerate() {
        let at = format!("auth.client_certs[{i}]");
        unique_name(&mut ids, format!("{at}.id"), &cert.id, "identity")?;
        let name = match (&cert.subject, &cert.san) {
            (Some(cn), None) if !cn.is_empty() => CertificateName::Subject(cn.clone()),
            (None, Some(san)) if !san.is_empty() => CertificateName::AltName(san.clone()),
            _ => return fault(at, "needs exactly one non-empty `subject` or `san`"),
        };
        if !names.insert(name.clone()) {
            return fault(at, "the same certificate name is configured twice");
        }
        client_certs.push(ClientCert {
            id: cert.id.clone(),
            name,
            grants: grants(&at, cert.grants())?,
        });
    }
    Ok(Auth {
        api_keys,
        client_certs,
        jwt,
    })
}

/// A caller's grants, at `at`.
fn grants(at: &str, g: schema::Grants<'_>) -> Lowered<Grants> {
    Ok(Grants {
        owner: g.owner.map(str::to_string),
        team: g.team.map(str::to_string),
        models: globs(&format!("{at}.models"), g.models)?,
        limits: g.limits.to_vec(),
        scopes: g.scopes.to_vec(),
        enabled: g.enabled,
    })
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The JWT algorithms a key may name.
pub const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Algorithm names of one key: one family (one key verifies one family),
/// and never HMAC for keys that come from a JWKS.
pub fn parse_algorithms(
    names: &[String],
    no_hmac: bool,
) -> std::result::Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Err("needs at least one algorithm".into());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let alg: Algorithm = name
            .parse()
            .ok()
            .filter(|_| ALGORITHMS.contains(&name.as_str()))
            .ok_or_else(|| {
                format!("unknown algorithm `{name}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)")
            })?;
        if no_hmac && alg.family() == AlgorithmFamily::Hmac {
            return Err(format!("`{name}`: HMAC keys are never taken from a JWKS"));
        }
        out.push(alg);
    }
    if !no_hmac && out.iter().any(|a| a.family() != out[0].family()) {
        return Err("one key's algorithms must be of one family (e.g. RS256 and PS256, not RS256 and ES256)".into());
    }
    Ok(out)
}

fn jwt(j: &schema::Jwt, env: Env<'_>) -> Lowered<Jwt> {
    ensure(
        !j.keys.is_empty() || j.oidc.is_some(),
        || "auth.jwt".into(),
        "needs `keys` or `oidc`",
    )?;
    let mut keys = Vec::with_capacity(j.keys.len());
    for (i, key) in j.keys.iter().enumerate() {
        let at = format!("auth.jwt.keys[{i}]");
        let algorithms = parse_algorithms(&key.algorithms, false)
            .or_else(|e| fault(format!("{at}.algorithms"), e))?;
        let family = algorithms[0].family();
        let decoding = match (family, &key.secret, &key.public_key_file) {
            (AlgorithmFamily::Hmac, Some(secret), None) => {
                let secret = expand(&format!("{at}.secret"), secret, env)?;
                DecodingKey::from_secret(secret.expose().as_bytes())
            }
            (AlgorithmFamily::Hmac, _, _) => {
                return fault(
                    at,
                    "HS* algorithms need `secret` (and no `public_key_file`)",
                )
            }
            (family, None, Some(file)) => {
                let field = format!("{at}.public_key_file");
                let pem = std::fs::read(file)
                    .or_else(|e| fault(&field, format!("cannot read `{file}`: {e}")))?;
                let parsed = match family {
                    AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                    AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                };
                parsed.or_else(|e| {
                    fault(&field, format!("`{file}` is not a usable public key: {e}"))
                })?
            }
            _ => {
                return fault(
                    at,
                    "this algorithm needs `public_key_file` (and no `secret`)",
                )
            }
        };
        keys.push(JwtKey {
            kid: key.kid.clone(),
            algorithms,
            key: decoding,
        });
    }
    let oidc = match &j.oidc {
        Some(oidc) => Some(self::oidc(oidc)?),
        None => None,
    };
    let c = &j.claims;
    Ok(Jwt {
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        leeway: up_to("auth.jwt.leeway", j.leeway, HOUR)?,
        keys,
        oidc,
        claims: ClaimNames {
            subject: c.subject.clone(),
            team: c.team.clone(),
            models: c.models.clone(),
            scopes: c.scopes.clone(),
            limits: c.limits.clone(),
        },
        cache_tokens: count_in("auth.jwt.cache_tokens", j.cache_tokens, 0, 10_000_000)?,
    })
}

fn oidc(o: &schema::Oidc) -> Lowered<Oidc> {
    let at = "auth.jwt.oidc";
    let (field, url) = match (&o.issuer_url, &o.jwks_uri) {
        (Some(url), None) => ("issuer_url", url),
        (None, Some(url)) => ("jwks_uri", url),
        _ => return fault(at, "needs exactly one of `issuer_url` and `jwks_uri`"),
    };
    check_fetch_url(url, o.allow_http_loopback).or_else(|e| fault(format!("{at}.{field}"), e))?;
    let source = if field == "issuer_url" {
        OidcSource::Discovery {
            issuer_url: url.clone(),
            allow_http_loopback: o.allow_http_loopback,
        }
    } else {
        OidcSource::Jwks(url.clone())
    };
    Ok(Oidc {
        source,
        algorithms: parse_algorithms(&o.algorithms, true)
            .or_else(|e| fault(format!("{at}.algorithms"), e))?,
        refresh_interval: duration_in(
            &format!("{at}.refresh_interval"),
            o.refresh_interval,
            SECOND,
            DAY,
        )?,
        refetch_cooldown: up_to(&format!("{at}.refetch_cooldown"), o.refetch_cooldown, DAY)?,
        fetch_timeout: positive_up_to(&format!("{at}.fetch_timeout"), o.fetch_timeout, MINUTE)?,
        ca: ca_bundle(&format!("{at}.ca_file"), &o.ca_file)?,
    })
}

/// Shorter than this, a token can be guessed by a patient scanner.
const MIN_ADMIN_TOKEN: usize = 16;

pub fn admin_token(token: &Secret, env: Env<'_>) -> Lowered<Secret> {
    let token = expand("admin.token", token, env)?;
    ensure(
        token.expose().len() >= MIN_ADMIN_TOKEN,
        || "admin.token".into(),
        &format!("must be at least {MIN_ADMIN_TOKEN} characters"),
    )?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_algorithm_parses() {
        for name in ALGORITHMS {
            assert!(name.parse::<Algorithm>().is_ok(), "{name}");
        }
    }

    #[test]
    fn algorithm_lists_are_checked() {
        assert!(parse_algorithms(&["RS256".into(), "PS256".into()], false).is_ok());
        assert!(parse_algorithms(&["RS256".into(), "ES256".into()], false).is_err());
        assert!(parse_algorithms(&["none".into()], false).is_err());
        assert!(parse_algorithms(&["HS256".into()], true).is_err());
        assert!(parse_algorithms(&[], false).is_err());
    }
}
