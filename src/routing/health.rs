//! Background work that keeps pools honest: active health checks and DNS
//! refresh. Both run off the request path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend as LbBackend;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{resolve, Backend, Pool};

/// Runs every pool's health checks, each pool on its own interval.
pub struct HealthChecker {
    pools: Vec<Arc<Pool>>,
}

impl HealthChecker {
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        Self { pools }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tasks = Vec::new();
        for pool in &self.pools {
            if pool.health_check.is_some() {
                tasks.push(tokio::spawn(check_pool_forever(pool.clone())));
            }
        }
        let _ = shutdown.changed().await;
        for task in tasks {
            task.abort();
        }
    }
}

async fn check_pool_forever(pool: Arc<Pool>) {
    let Some(settings) = pool.health_check.clone() else {
        return;
    };
    let checks: Vec<(Arc<Backend>, HttpHealthCheck)> = pool
        .backends
        .iter()
        .map(|b| {
            (
                b.clone(),
                http_check_for(&pool, b, &settings.path, settings.timeout),
            )
        })
        .collect();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let settings = &settings;
        let rounds = checks.iter().map(|(backend, check)| async move {
            let ok = check_once(backend, check, settings.timeout).await;
            if let Some(healthy) = backend.observe_check(ok, settings) {
                let state = if healthy { "healthy" } else { "unhealthy" };
                log::warn!("backend {} is now {state}", backend.label);
            }
        });
        futures_util::future::join_all(rounds).await;
    }
}

async fn check_once(backend: &Backend, check: &HttpHealthCheck, timeout: Duration) -> bool {
    let addrs = backend.addrs();
    let Some(addr) = addrs.first() else {
        return false;
    };
    let target = LbBackend {
        addr: PingoraAddr::Inet(*addr),
        weight: 1,
        ext: Default::default(),
    };
    match tokio::time::timeout(timeout, check.check(&target)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::debug!("health check of {} failed: {e}", backend.label);
            false
        }
        Err(_) => {
            log::debug!("health check of {} timed out", backend.label);
            false
        }
    }
}

fn http_check_for(
    pool: &Pool,
    backend: &Backend,
    path: &str,
    timeout: Duration,
) -> HttpHealthCheck {
    let mut check = HttpHealthCheck::new(&backend.url.authority(), backend.url.tls);
    let full_path = format!("{}{path}", backend.url.path_prefix);
    match full_path.parse::<http::Uri>() {
        Ok(uri) => check.req.set_uri(uri),
        Err(e) => log::warn!("health check path for {}: {e}", backend.label),
    }
    // Providers answer their model list only with a key, so the check
    // authenticates the way requests do.
    for (name, value) in backend.request_headers() {
        let _ = check.req.insert_header(name.clone(), value.clone());
    }
    check.peer_template.sni = pool.sni_for(backend);
    check.peer_template.options.connection_timeout = Some(timeout);
    check.peer_template.options.read_timeout = Some(timeout);
    check.peer_template.options.ca = pool.tls_ca();
    check
}

/// Re-resolves backend host names so a provider's changing addresses are
/// followed without a restart.
pub struct DnsRefresher {
    pools: Vec<Arc<Pool>>,
    every: Duration,
}

impl DnsRefresher {
    pub fn new(pools: Vec<Arc<Pool>>, every: Duration) -> Self {
        Self { pools, every }
    }
}

#[async_trait]
impl BackgroundService for DnsRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            for backend in self.pools.iter().flat_map(|p| p.backends.iter()) {
                if backend.url.host.parse::<std::net::IpAddr>().is_ok() {
                    continue;
                }
                let (host, port) = (backend.url.host.clone(), backend.url.port);
                match tokio::task::spawn_blocking(move || resolve(&host, port)).await {
                    Ok(Ok(addrs)) => backend.set_addrs(addrs),
                    // Keep the last good addresses: a resolver hiccup is no reason to stop serving.
                    Ok(Err(e)) => log::warn!("cannot resolve {}: {e}", backend.url.host),
                    Err(e) => log::warn!("resolver task failed: {e}"),
                }
            }
        }
    }
}
