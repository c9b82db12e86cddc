//! Upstream pools: backends, their health, and how one is picked.
//!
//! Selection is lock-free (atomics only) so it costs nothing next to the
//! proxying itself. A backend is available when active health checks say it
//! is healthy, passive ejection has not taken it out, and its name resolved.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue};
use pingora::upstreams::peer::HttpPeer;

use super::settings::{HealthCheck, PassiveHealth, Timeouts};
use crate::config::{BaseUrl, CaBundle, Strategy};
use crate::llm::Dialect;
use crate::observability::metrics::metrics;
use crate::providers::Provider;

/// Milliseconds since the first call: a cheap monotonic clock for atomics.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug)]
pub struct Backend {
    pub index: usize,
    /// `pool/host:port`, the bounded name used in metrics and logs.
    pub label: String,
    pub url: BaseUrl,
    pub weight: u32,
    /// What the backend is: where requests go, how they are authenticated.
    pub provider: Arc<dyn Provider>,
    /// `upstream_requests_total{status="200"}` for this backend, resolved once.
    pub ok_counter: prometheus::IntCounter,
    /// Headers the config adds to every request, after the provider's.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// What the backend has shown so far; carried across reloads while the
    /// backend stays the same (same pool, same base URL).
    live: Arc<LiveState>,
}

/// A backend's addresses, health, ejection and load.
#[derive(Debug)]
struct LiveState {
    addrs: ArcSwap<Vec<SocketAddr>>,
    healthy: AtomicBool,
    check_streak: AtomicU32,
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    inflight: AtomicUsize,
}

impl LiveState {
    /// A new backend: resolved once here (at start or reload, never on the
    /// request path), healthy until shown otherwise.
    fn new(pool: &str, url: &BaseUrl) -> Self {
        let addrs = resolve(&url.host, url.port).unwrap_or_else(|e| {
            log::warn!("upstream {pool}: cannot resolve {}: {e}", url.host);
            Vec::new()
        });
        Self {
            addrs: ArcSwap::from_pointee(addrs),
            healthy: AtomicBool::new(true),
            check_streak: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
        }
    }
}

impl Backend {
    /// The chat dialect the backend speaks.
    pub fn dialect(&self) -> Dialect {
        self.provider.dialect()
    }

    /// What every request to it carries: the provider's headers, then the
    /// config's.
    pub fn request_headers(&self) -> impl Iterator<Item = &(HeaderName, HeaderValue)> {
        self.provider.headers().iter().chain(&self.extra_headers)
    }

    /// Healthy by the active checks and resolved: could take a request.
    pub fn is_routable(&self) -> bool {
        self.is_healthy() && !self.live.addrs.load().is_empty()
    }

    /// Routable and not passively ejected.
    pub fn is_available(&self) -> bool {
        self.is_routable() && !self.is_ejected()
    }

    pub fn is_healthy(&self) -> bool {
        self.live.healthy.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        self.live.ejected_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    pub fn addrs(&self) -> Arc<Vec<SocketAddr>> {
        self.live.addrs.load_full()
    }

    pub fn set_addrs(&self, addrs: Vec<SocketAddr>) {
        self.live.addrs.store(Arc::new(addrs));
    }

    pub fn inflight(&self) -> usize {
        self.live.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> InflightGuard {
        self.live.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// A request succeeded: the failure streak starts over.
    pub fn record_success(&self) {
        self.live.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// A request failed (connect error, timeout, 5xx). Returns true when this
    /// failure ejected the backend.
    pub fn record_failure(&self, passive: &PassiveHealth) -> bool {
        let failures = self
            .live
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if failures >= passive.consecutive_failures {
            self.live.consecutive_failures.store(0, Ordering::Relaxed);
            let until = now_ms() + passive.cooldown.as_millis() as u64;
            self.live.ejected_until_ms.store(until, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Feeds one active health-check result; returns the new health when it flipped.
    pub fn observe_check(&self, ok: bool, settings: &HealthCheck) -> Option<bool> {
        let healthy = self.live.healthy.load(Ordering::Relaxed);
        if ok == healthy {
            self.live.check_streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.live.check_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if ok {
            settings.healthy_threshold
        } else {
            settings.unhealthy_threshold
        };
        if streak >= threshold {
            self.live.check_streak.store(0, Ordering::Relaxed);
            self.live.healthy.store(ok, Ordering::Relaxed);
            if ok {
                // A backend the checks bring back gets a clean slate.
                self.live.ejected_until_ms.store(0, Ordering::Relaxed);
            }
            return Some(ok);
        }
        None
    }
}

/// Keeps a backend's in-flight count right whatever path the request takes.
pub struct InflightGuard(Arc<Backend>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.live.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Pool {
    pub name: String,
    pub strategy: Strategy,
    pub backends: Vec<Arc<Backend>>,
    /// Weighted order of backend indexes, interleaved (smooth weighted round robin).
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    pub passive: PassiveHealth,
    pub timeouts: Timeouts,
    pub health_check: Option<HealthCheck>,
    ca: Option<CaBundle>,
    sni_override: Option<String>,
    /// The dialects the backends speak, each once (found at load, read per
    /// request).
    dialects: Vec<Dialect>,
    /// Upstream model (or glob) → the most output tokens it gives.
    max_output_tokens: Vec<(crate::config::Glob, u64)>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("name", &self.name).finish()
    }
}

impl Pool {
    /// Builds a pool from its config. A backend that `previous` (the same
    /// pool before a reload) had under the same base URL keeps what it
    /// showed: its health, its ejection, its load and its addresses; a new
    /// one is resolved now and starts healthy. A name that does not resolve
    /// leaves its backend unavailable until the refresher succeeds.
    pub fn new(settings: &super::settings::Pool, previous: Option<&Pool>) -> Self {
        let name = &settings.name;
        let backends: Vec<Arc<Backend>> = settings
            .backends
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let carried = previous
                    .and_then(|pool| pool.backends.iter().find(|old| old.url == b.url))
                    .map(|old| old.live.clone());
                let live = carried.unwrap_or_else(|| Arc::new(LiveState::new(name, &b.url)));
                let label = format!("{name}/{}", b.url.authority());
                let ok_counter = metrics()
                    .upstream_requests
                    .with_label_values(&[name, &label, "200"]);
                Arc::new(Backend {
                    index,
                    label,
                    ok_counter,
                    weight: b.weight,
                    provider: b.provider.clone(),
                    extra_headers: b.headers.clone(),
                    url: b.url.clone(),
                    live,
                })
            })
            .collect();
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let mut dialects = Vec::with_capacity(1);
        for dialect in backends.iter().map(|b| b.dialect()) {
            if !dialects.contains(&dialect) {
                dialects.push(dialect);
            }
        }
        Self {
            name: name.clone(),
            strategy: settings.strategy,
            schedule: smooth_weighted_schedule(&weights),
            backends,
            cursor: AtomicUsize::new(0),
            passive: settings.passive,
            timeouts: settings.timeouts,
            health_check: settings.health_check.clone(),
            ca: settings.ca.clone(),
            sni_override: settings.sni.clone(),
            dialects,
            max_output_tokens: settings.max_output_tokens.clone(),
        }
    }

    /// The most output tokens `model` (the name sent upstream) gives, when
    /// the config says.
    pub fn max_output_tokens(&self, model: &str) -> Option<u64> {
        self.max_output_tokens
            .iter()
            .find(|(glob, _)| glob.matches(model))
            .map(|(_, tokens)| *tokens)
    }

    /// The dialects the pool's backends speak, each once.
    pub fn dialects(&self) -> &[Dialect] {
        &self.dialects
    }

    /// Whether a request could be sent now (see [`Pool::select`]).
    pub fn has_available_backend(&self) -> bool {
        self.backends.iter().any(|b| b.is_routable())
    }

    /// Whether a backend outside `tried` could take a retry.
    pub fn has_untried(&self, tried: &[usize]) -> bool {
        self.backends
            .iter()
            .any(|b| b.is_available() && !tried.contains(&b.index))
    }

    /// Picks an available backend not in `tried`, or `None` when there is none.
    /// When passive ejection has taken out every backend the checks still call
    /// healthy, ejection is ignored: a pool that always answers 503 turns a
    /// blip into an outage (Envoy's "panic routing").
    pub fn select(&self, tried: &[usize]) -> Option<Arc<Backend>> {
        let all_ejected = self
            .backends
            .iter()
            .filter(|b| b.is_routable())
            .all(|b| b.is_ejected());
        let usable = |b: &Backend| {
            let ok = if all_ejected {
                b.is_routable()
            } else {
                b.is_available()
            };
            ok && !tried.contains(&b.index)
        };
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        match self.strategy {
            Strategy::RoundRobin => {
                let n = self.backends.len();
                (0..n)
                    .map(|i| &self.backends[(start + i) % n])
                    .find(|b| usable(b))
                    .cloned()
            }
            Strategy::Weighted => {
                let n = self.schedule.len();
                (0..n)
                    .map(|i| &self.backends[self.schedule[(start + i) % n]])
                    .find(|b| usable(b))
                    .cloned()
            }
            Strategy::LeastRequests => {
                // Ties go round robin, so idle pools still spread the load.
                let n = self.backends.len();
                (0..n)
                    .map(|i| &self.backends[(start + i) % n])
                    .filter(|b| usable(b))
                    .min_by_key(|b| b.inflight())
                    .cloned()
            }
        }
    }

    /// The Pingora peer for one attempt at `backend`. `deadline_left` caps the
    /// read timeout so the whole exchange stays within `timeouts.total`.
    pub fn peer(&self, backend: &Backend, deadline_left: Duration) -> Option<HttpPeer> {
        let addr = *backend.addrs().first()?;
        let sni = self
            .sni_override
            .clone()
            .unwrap_or_else(|| backend.url.host.clone());
        let mut peer = HttpPeer::new(addr, backend.url.tls, sni);
        let t = &self.timeouts;
        peer.options.connection_timeout = Some(t.connect);
        peer.options.total_connection_timeout = Some(t.connect);
        peer.options.read_timeout = Some(t.read.min(deadline_left));
        peer.options.write_timeout = Some(t.write);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer.options.ca = self.tls_ca();
        Some(peer)
    }

    /// The same TLS settings for a health-check peer template.
    pub fn tls_ca(&self) -> Option<Arc<[pingora::utils::tls::WrappedX509]>> {
        self.ca.as_ref().map(|ca| ca.certificates.clone())
    }

    pub fn sni_for(&self, backend: &Backend) -> String {
        self.sni_override
            .clone()
            .unwrap_or_else(|| backend.url.host.clone())
    }
}

/// Resolves a host name (or IP literal) to socket addresses. Blocking: call at
/// start or from a background task, never on the request path.
pub fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    // IPv4 first: `localhost` and dual-stack names then reach servers bound
    // to 127.0.0.1 / 0.0.0.0, the common case.
    addrs.sort_by_key(|a| a.is_ipv6());
    if addrs.is_empty() {
        return Err(std::io::Error::other("no addresses"));
    }
    Ok(addrs)
}

/// Nginx's smooth weighted round robin, unrolled into one period: weights
/// {a:5, b:1, c:1} give a a b a c a a rather than a a a a a b c.
fn smooth_weighted_schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += w as i64;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        current[best] -= total;
        schedule.push(best);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(strategy: Strategy, weights: &[u32]) -> Pool {
        let settings = crate::routing::settings::Pool {
            name: "p".into(),
            strategy,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| crate::routing::settings::Backend {
                    url: BaseUrl::parse(&format!("http://127.0.0.1:{}", 9000 + i)).unwrap(),
                    weight,
                    provider: crate::providers::build(
                        "openai",
                        &crate::providers::Spec {
                            at: "test",
                            api_key: None,
                            options: None,
                            env: &crate::config::Expander::new(&|_| None),
                        },
                    )
                    .unwrap(),
                    headers: Vec::new(),
                })
                .collect(),
            health_check: None,
            passive: PassiveHealth {
                consecutive_failures: 2,
                cooldown: Duration::from_secs(60),
            },
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                read: Duration::from_secs(1),
                write: Duration::from_secs(1),
                total: Duration::from_secs(1),
            },
            ca: None,
            sni: None,
            max_output_tokens: Vec::new(),
        };
        Pool::new(&settings, None)
    }

    fn picks(pool: &Pool, n: usize) -> Vec<usize> {
        (0..n).map(|_| pool.select(&[]).unwrap().index).collect()
    }

    #[test]
    fn round_robin_cycles() {
        let p = pool(Strategy::RoundRobin, &[1, 1, 1]);
        assert_eq!(picks(&p, 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_follows_weights_smoothly() {
        let p = pool(Strategy::Weighted, &[5, 1, 1]);
        let got = picks(&p, 7);
        assert_eq!(got, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_schedule(&[2, 1]), vec![0, 1, 0]);
    }

    #[test]
    fn least_requests_prefers_the_idle_backend() {
        let p = pool(Strategy::LeastRequests, &[1, 1]);
        let _busy = p.backends[0].start_request();
        assert_eq!(picks(&p, 3), vec![1, 1, 1]);
    }

    #[test]
    fn tried_backends_are_skipped_and_exhaustion_is_none() {
        let p = pool(Strategy::RoundRobin, &[1, 1]);
        let first = p.select(&[]).unwrap().index;
        let second = p.select(&[first]).unwrap().index;
        assert_ne!(first, second);
        assert!(p.select(&[0, 1]).is_none());
    }

    #[test]
    fn passive_ejection_after_consecutive_failures() {
        let p = pool(Strategy::RoundRobin, &[1, 1]);
        let b = &p.backends[0];
        assert!(!b.record_failure(&p.passive));
        b.record_success();
        assert!(!b.record_failure(&p.passive));
        assert!(b.record_failure(&p.passive));
        assert!(!b.is_available());
        assert_eq!(picks(&p, 3), vec![1, 1, 1]);
    }

    #[test]
    fn a_fully_ejected_pool_still_routes() {
        let p = pool(Strategy::RoundRobin, &[1]);
        let b = &p.backends[0];
        b.record_failure(&p.passive);
        assert!(b.record_failure(&p.passive));
        assert!(p.select(&[]).is_some(), "panic routing ignores ejection");
        assert!(!p.has_untried(&[]), "but never counts it for a retry");
    }

    #[test]
    fn health_flips_only_at_thresholds() {
        let p = pool(Strategy::RoundRobin, &[1]);
        let b = &p.backends[0];
        let hc = HealthCheck {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        };
        assert_eq!(b.observe_check(false, &hc), None);
        assert_eq!(b.observe_check(false, &hc), None);
        assert_eq!(b.observe_check(false, &hc), Some(false));
        assert!(p.select(&[]).is_none());
        assert_eq!(b.observe_check(true, &hc), None);
        assert_eq!(b.observe_check(true, &hc), Some(true));
        assert!(p.select(&[]).is_some());
    }
}
