//! Credentials that expire, kept fresh off the request path: a
//! [`TokenSource`] says how a token is got, a [`TokenCache`] holds the
//! current one for requests to read, and its refresher (a background
//! service) fetches a new one before the old one expires. When a fetch
//! fails the last good token is used until it expires; then requests to the
//! provider fail with the reason, and `/ready` says so.
//!
//! Caches are shared by what they fetch (the same source under the same
//! name), so a reload's new backends start with the token the old ones had.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::Unavailable;
use crate::observability::metrics::metrics;

pub mod azure;
pub mod google;

/// An OAuth error answer's `error` and description, never more (no token
/// or assertion is echoed).
pub fn oauth_error(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Error {
        error: Option<String>,
        error_description: Option<String>,
    }
    match serde_json::from_slice::<Error>(body) {
        Ok(Error {
            error: Some(error),
            error_description,
        }) => {
            let description = error_description.unwrap_or_default();
            let first_line = description.lines().next().unwrap_or("");
            format!(
                "{error}: {}",
                first_line.chars().take(200).collect::<String>()
            )
        }
        _ => "no OAuth error in the answer".into(),
    }
}

/// A token and how long it is good for, as its issuer said.
pub struct Fetched {
    pub token: String,
    pub lifetime: Duration,
}

/// How a provider's token is got.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// What it fetches, for the shared cache and for messages (never a
    /// secret).
    fn key(&self) -> String;
    async fn fetch(&self) -> Result<Fetched, String>;
}

struct Current {
    /// `Bearer <token>`, marked sensitive.
    header: HeaderValue,
    expires_at: Instant,
    /// When the refresher fetches the next one.
    refresh_at: Instant,
}

/// The current token of one source.
pub struct TokenCache {
    source: Arc<dyn TokenSource>,
    provider: &'static str,
    current: ArcSwapOption<Current>,
    /// Why the last fetch failed, until one succeeds.
    problem: Mutex<Option<String>>,
    /// One fetch at a time, and none before this: backends that share the
    /// cache (and the refreshers of a reload's old and new state) fetch
    /// once between them.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// How long before a token expires the refresher fetches the next: a tenth
/// of its life, at least a minute, at most ten, and never more than half
/// (a short-lived token is refreshed at its half-life).
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10)
        .clamp(Duration::from_secs(60), Duration::from_secs(600))
        .min(lifetime / 2)
}

impl TokenCache {
    /// The cache of `source`, shared with any other that fetches the same.
    pub fn shared(provider: &'static str, source: Arc<dyn TokenSource>) -> Arc<Self> {
        static CACHES: OnceLock<Mutex<HashMap<String, Weak<TokenCache>>>> = OnceLock::new();
        let key = format!("{provider} {}", source.key());
        let mut caches = CACHES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        caches.retain(|_, cache| cache.strong_count() > 0);
        if let Some(cache) = caches.get(&key).and_then(Weak::upgrade) {
            return cache;
        }
        let cache = Arc::new(Self {
            source,
            provider,
            current: ArcSwapOption::empty(),
            problem: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(None),
        });
        caches.insert(key, Arc::downgrade(&cache));
        cache
    }

    /// The `Authorization` value for a request now, or why there is none.
    pub fn header(&self) -> Result<HeaderValue, Unavailable> {
        match self.current.load().as_deref() {
            Some(current) if Instant::now() < current.expires_at => Ok(current.header.clone()),
            _ => Err(Unavailable(self.why_none())),
        }
    }

    /// Why no token is in hand, once it is not.
    pub fn why_none(&self) -> String {
        let problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
        match &*problem {
            Some(problem) => format!("no valid token from {}: {problem}", self.source.key()),
            None => format!("no token from {} yet", self.source.key()),
        }
    }

    /// Whether a token is in hand; why not, when it is not.
    pub fn readiness(&self) -> Option<String> {
        self.header().err().map(|e| e.0)
    }

    /// Fetches a token if one is due and no other fetch made it or failed
    /// moments ago; when the next is due.
    async fn refresh_if_due(&self) -> Instant {
        let mut not_before = self.fetching.lock().await;
        let now = Instant::now();
        if let Some(at) = *not_before {
            if now < at {
                return at;
            }
        }
        if let Some(due) = self.due().filter(|due| now < *due) {
            return due;
        }
        let next = self.refresh().await;
        *not_before = Some(next);
        next
    }

    /// Fetches a token now; when it is due next.
    async fn refresh(&self) -> Instant {
        match self.source.fetch().await {
            Ok(fetched) => {
                let now = Instant::now();
                let header = HeaderValue::try_from(format!("Bearer {}", fetched.token));
                let Ok(mut header) = header else {
                    return self.failed("the token is not a valid header value".into());
                };
                header.set_sensitive(true);
                let refresh_at = now
                    + fetched
                        .lifetime
                        .saturating_sub(refresh_margin(fetched.lifetime));
                self.current.store(Some(Arc::new(Current {
                    header,
                    expires_at: now + fetched.lifetime,
                    refresh_at,
                })));
                *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = None;
                metrics()
                    .upstream_token_refreshes
                    .with_label_values(&[self.provider, "ok"])
                    .inc();
                refresh_at
            }
            Err(e) => self.failed(e),
        }
    }

    /// A fetch failed: the last token stays until it expires; try again
    /// soon.
    fn failed(&self, problem: String) -> Instant {
        metrics()
            .upstream_token_refreshes
            .with_label_values(&[self.provider, "error"])
            .inc();
        let still_valid = self.header().is_ok();
        log::warn!(
            "{} credentials: cannot fetch a token from {}: {problem}{}",
            self.provider,
            self.source.key(),
            if still_valid {
                "; the current one is used until it expires"
            } else {
                ""
            }
        );
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
        Instant::now() + RETRY
    }

    /// The background service that keeps this cache fresh.
    pub fn refresher(self: &Arc<Self>) -> Box<dyn BackgroundService + Send + Sync> {
        Box::new(Refresher(self.clone()))
    }

    /// When the current token wants replacing; `None` without one.
    fn due(&self) -> Option<Instant> {
        self.current.load().as_deref().map(|c| c.refresh_at)
    }
}

/// How soon a failed fetch is tried again.
const RETRY: Duration = Duration::from_secs(2);

struct Refresher(Arc<TokenCache>);

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let next = self.0.refresh_if_due().await;
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::refresh_margin;
    use std::time::Duration;

    #[test]
    fn tokens_are_refreshed_well_before_they_expire() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(360)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(300)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(86400)),
            Duration::from_secs(600)
        );
    }
}
