//! What the mock knows of the clouds' credentials: the keys it accepts, the
//! Google service account whose assertions it verifies, and the bearer
//! tokens its token endpoints issued (each valid until it expires).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use jsonwebtoken::DecodingKey;

/// A Google service account's public half, for checking its assertions.
pub struct GoogleAccount {
    pub email: String,
    pub key_id: String,
    pub public_key: DecodingKey,
}

/// The credentials the mock accepts. A key left unset accepts any
/// non-empty one.
#[derive(Default)]
pub struct Cloud {
    pub azure_key: Option<String>,
    pub gemini_key: Option<String>,
    pub google: Option<GoogleAccount>,
    /// How long issued tokens live.
    pub token_ttl: Duration,
    issued: Mutex<HashMap<String, Instant>>,
    next: AtomicU64,
    /// Tokens issued, by endpoint (`entra`, `google`, `metadata`).
    counts: Mutex<HashMap<&'static str, u64>>,
    /// The token endpoints answer 503 (`PUT /mock/token-endpoint/down`).
    pub tokens_down: AtomicBool,
}

impl Cloud {
    pub fn new(
        azure_key: Option<String>,
        gemini_key: Option<String>,
        google: Option<GoogleAccount>,
        token_ttl: Duration,
    ) -> Self {
        Self {
            azure_key,
            gemini_key,
            google,
            token_ttl,
            ..Default::default()
        }
    }

    /// A new bearer token from endpoint `kind`, valid for `token_ttl`.
    pub fn issue(&self, kind: &'static str) -> (String, u64) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let token = format!("mock-{kind}-token-{n}");
        let ttl = self.token_ttl.max(Duration::from_secs(1));
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), Instant::now() + ttl);
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
        (token, ttl.as_secs())
    }

    /// Whether the request carries a bearer token issued here and not
    /// expired.
    pub fn valid_bearer(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }

    /// Tokens issued so far, by endpoint.
    pub fn counts(&self) -> serde_json::Value {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "entra": counts.get("entra").copied().unwrap_or(0),
            "google": counts.get("google").copied().unwrap_or(0),
            "metadata": counts.get("metadata").copied().unwrap_or(0),
        })
    }

    /// `key` is the configured one (any non-empty one when none is).
    pub fn key_matches(configured: &Option<String>, key: Option<&str>) -> bool {
        match (configured, key) {
            (_, None) => false,
            (_, Some("")) => false,
            (None, Some(_)) => true,
            (Some(expected), Some(key)) => expected == key,
        }
    }
}
