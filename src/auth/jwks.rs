//! The JWKS cache of an OIDC issuer: fetched by discovery or from a given
//! address, refreshed in the background, refetched once (single flight,
//! with a cooldown) when a token names an unknown `kid`, and kept as it was
//! when a fetch fails. `kty: oct` keys are dropped: from a JWKS they would
//! become HMAC secrets anyone holding the public set could sign with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::utils::tls::WrappedX509;

use super::keys::{ValidationTemplate, VerifyingKey};
use super::settings::{Oidc, OidcSource};
use crate::config::check_fetch_url;
use crate::fetch;

pub struct JwksCache {
    source: OidcSource,
    fallback_algorithms: Vec<Algorithm>,
    template: ValidationTemplate,
    refresh_interval: Duration,
    cooldown: Duration,
    fetch_timeout: Duration,
    ca: Option<Arc<[WrappedX509]>>,
    keys: ArcSwap<Vec<Arc<VerifyingKey>>>,
    /// Bumped after each new key set is stored: tokens verified under an
    /// older one are verified again (`token_cache.rs`).
    generation: AtomicU64,
    /// Serialises fetches (single flight) and remembers the last one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksCache {
    pub fn new(settings: &Oidc, template: ValidationTemplate) -> Self {
        Self {
            source: settings.source.clone(),
            fallback_algorithms: settings.algorithms.clone(),
            template,
            refresh_interval: settings.refresh_interval,
            cooldown: settings.refetch_cooldown,
            fetch_timeout: settings.fetch_timeout,
            ca: settings.ca.as_ref().map(|ca| ca.certificates.clone()),
            keys: ArcSwap::from_pointee(Vec::new()),
            generation: AtomicU64::new(0),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    pub fn keys(&self) -> Arc<Vec<Arc<VerifyingKey>>> {
        self.keys.load_full()
    }

    /// Which key set is current.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fetches the key set now; on failure the cached keys stay.
    async fn refresh(&self) -> Result<usize, String> {
        let jwks_uri = match &self.source {
            OidcSource::Jwks(uri) => uri.clone(),
            OidcSource::Discovery {
                issuer_url,
                allow_http_loopback,
            } => self.discover(issuer_url, *allow_http_loopback).await?,
        };
        let body = fetch::get(&jwks_uri, self.fetch_timeout, self.ca.clone()).await?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("{jwks_uri}: not a JWKS: {e}"))?;
        let keys: Vec<Arc<VerifyingKey>> = set
            .keys
            .iter()
            .filter_map(|jwk| self.verifying_key(jwk))
            .map(Arc::new)
            .collect();
        if keys.is_empty() {
            return Err(format!("{jwks_uri}: no usable signing key"));
        }
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        // After the store: whoever sees the new generation sees the new keys.
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(count)
    }

    async fn discover(&self, issuer: &str, allow_http_loopback: bool) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = fetch::get(&url, self.fetch_timeout, self.ca.clone()).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        let uri = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| format!("{url}: no jwks_uri"))?;
        // The discovered address must meet the same rule as a configured one.
        check_fetch_url(uri, allow_http_loopback)?;
        Ok(uri.to_string())
    }

    fn verifying_key(&self, jwk: &Jwk) -> Option<VerifyingKey> {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
            // `kty: oct` and anything newer.
            _ => return None,
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let algorithms: Vec<Algorithm> = match &jwk.common.key_algorithm {
            Some(alg) => {
                let alg = alg.to_string().parse::<Algorithm>().ok()?;
                vec![alg]
            }
            None => self
                .fallback_algorithms
                .iter()
                .copied()
                .filter(|a| a.family() == family)
                .collect(),
        };
        if algorithms.is_empty() || algorithms.iter().any(|a| a.family() != family) {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            key,
            validation: self.template.with_algorithms(algorithms),
        })
    }

    /// One refetch for a token whose `kid` is unknown. Concurrent callers
    /// wait for the same fetch; within the cooldown nobody fetches again.
    pub async fn refetch_for_unknown_kid(&self) -> Arc<Vec<Arc<VerifyingKey>>> {
        let before = self.keys();
        let mut last = self.last_fetch.lock().await;
        let fetched_meanwhile = !Arc::ptr_eq(&before, &self.keys.load());
        let cooling = last.is_some_and(|t| t.elapsed() < self.cooldown);
        if !fetched_meanwhile && !cooling {
            *last = Some(Instant::now());
            if let Err(e) = self.refresh().await {
                log::warn!("JWKS refetch failed, keeping the cached keys: {e}");
            }
        }
        self.keys()
    }

    /// Background refresh: now, then every `refresh_interval` (sooner while
    /// no key has ever loaded).
    async fn run(&self, mut shutdown: ShutdownWatch) {
        loop {
            let ok = {
                let mut last = self.last_fetch.lock().await;
                *last = Some(Instant::now());
                match self.refresh().await {
                    Ok(n) => {
                        log::info!("JWKS loaded: {n} keys");
                        true
                    }
                    Err(e) => {
                        log::warn!("JWKS fetch failed, keeping the cached keys: {e}");
                        false
                    }
                }
            };
            let wait = if ok || !self.keys.load().is_empty() {
                self.refresh_interval
            } else {
                self.cooldown.min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

pub struct JwksRefresher {
    cache: Arc<JwksCache>,
}

impl JwksRefresher {
    pub fn new(cache: Arc<JwksCache>) -> Self {
        Self { cache }
    }
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.cache.run(shutdown).await;
    }
}
