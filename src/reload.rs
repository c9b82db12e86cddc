//! Configuration reload without a restart. The running state sits behind an
//! `ArcSwap`: SIGHUP (and, when configured, a change of the file) re-reads the
//! file, validates it, builds a whole new state (routes, pools, keys, limit
//! rules) and swaps it in at once; requests in flight finish on the state they
//! started with. A file that does not validate changes nothing. Background
//! work that belongs to a state (health checks, DNS refresh, JWKS refresh,
//! limit sync) is restarted with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::edge::client;
use crate::edge::connection::{ConnectionSettings, LiveSettings};
use crate::lifecycle::{self, drain};
use crate::observability::metrics::metrics;
use crate::observability::redact;
use crate::routing::health::{DnsRefresher, HealthChecker};
use crate::settings::{self, Process};
use crate::state::GatewayState;

/// The state every request reads, swapped whole on reload.
pub type SharedState = Arc<ArcSwap<GatewayState>>;

/// The connection guard reads the live state's deadlines, cap and trusted
/// proxies at every accept.
impl LiveSettings for SharedState {
    fn connections(&self) -> ConnectionSettings {
        let state = self.load();
        ConnectionSettings {
            header_timeout: state.request.header_timeout,
            idle_timeout: state.request.idle_timeout,
            max_connections: state.max_connections,
        }
    }

    fn trusts_proxy(&self, peer: std::net::IpAddr) -> bool {
        client::is_trusted(&self.load().trusted_proxies, peer)
    }
}

/// The background work of one state, stopped together.
struct Generation {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Generation {
    fn start(state: &GatewayState) -> Self {
        let (stop, watch) = watch::channel(false);
        let mut services: Vec<Box<dyn BackgroundService + Send + Sync>> = vec![
            Box::new(HealthChecker::new(state.pools.clone())),
            Box::new(DnsRefresher::new(
                state.pools.clone(),
                Duration::from_secs(30),
            )),
        ];
        if let Some(sync) = state.limiter.sync_service() {
            services.push(Box::new(sync));
        }
        if let Some(refresher) = state.auth.jwks_refresher() {
            services.push(Box::new(refresher));
        }
        // Token refreshers of the providers that need one.
        for pool in &state.pools {
            services.extend(pool.backends.iter().filter_map(|b| b.provider.background()));
        }
        let tasks = services
            .into_iter()
            .map(|service| {
                let watch = watch.clone();
                tokio::spawn(async move { service.start(watch).await })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

/// Owns the background work and reloads the config on SIGHUP or file change.
pub struct Supervisor {
    state: SharedState,
    path: PathBuf,
    /// What the process was started with, to tell which changes need an upgrade.
    started_with: Process,
}

impl Supervisor {
    pub fn new(state: SharedState, path: PathBuf, started_with: Process) -> Self {
        Self {
            state,
            path,
            started_with,
        }
    }

    /// Loads the file and makes it the running state; returns the state
    /// it replaced. The old state stays on any fault.
    fn reload(&self) -> Result<Arc<GatewayState>, String> {
        let config = settings::load_file(&self.path).map_err(|e| e.to_string())?;
        for secret in &config.secrets {
            redact::register_secret(secret.expose());
        }
        let state = GatewayState::new(&config, Some(&self.state.load()))?;
        for warning in needs_upgrade(&self.started_with, &config.process) {
            log::warn!("config reload: {warning} changed; it takes a graceful upgrade (start a new process with -u) to apply");
        }
        Ok(self.state.swap(Arc::new(state)))
    }

    fn file_stamp(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }
}

/// The sections whose settings a running process cannot change: they are
/// bound at start. Each section of the model's `Process` is compared whole,
/// so a setting added to one is covered without a list to keep.
fn needs_upgrade(old: &Process, new: &Process) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.server != new.server {
        out.push("`server`");
    }
    if old.listen != new.listen {
        out.push("`listen`");
    }
    if old.mock_upstream != new.mock_upstream {
        out.push("`mock_upstream`");
    }
    if old.reload != new.reload {
        out.push("`reload`");
    }
    if old.tracing != new.tracing {
        out.push("`tracing`");
    }
    if old.access_log_output != new.access_log_output {
        out.push("`access_log.path` or `access_log.queue_lines`");
    }
    out
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut generation = Generation::start(&self.state.load());
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload by signal is off: {e}");
                None
            }
        };
        let reload = &self.started_with.reload;
        let watch_every = reload.watch.then_some(reload.interval);
        let mut stamp = self.file_stamp();
        loop {
            let poll = async {
                match watch_every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let cause = tokio::select! {
                _ = hup => "SIGHUP",
                _ = poll => {
                    let now = self.file_stamp();
                    if now == stamp {
                        continue;
                    }
                    stamp = now;
                    "file change"
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            };
            match self.reload() {
                Ok(replaced) => {
                    metrics().config_reloads.with_label_values(&["ok"]).inc();
                    log::warn!("config reloaded from {} ({cause})", self.path.display());
                    let new = Generation::start(&self.state.load());
                    std::mem::replace(&mut generation, new).stop().await;
                    let limiter = replaced.limiter.clone();
                    drop(replaced);
                    tokio::spawn(limiter.retire());
                }
                Err(e) => {
                    metrics().config_reloads.with_label_values(&["error"]).inc();
                    log::error!("config reload ({cause}) refused, the running config stays: {e}");
                }
            }
        }
        self.finish_drain(generation).await
    }
}

impl Supervisor {
    /// The listeners have stopped: serve what is in flight until it ends or
    /// the drain timeout passes, then end the process (see `lifecycle.rs`).
    async fn finish_drain(&self, generation: Generation) -> ! {
        let drain = drain();
        let deadline = drain.started() + self.started_with.server.drain_timeout;
        // Idle keep-alive connections are closed only after the settle delay.
        drain.settle().await;
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        let interrupted = async {
            match interrupt.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let quiet = tokio::select! {
            quiet = drain.quiet_by(deadline) => quiet,
            _ = interrupted => {
                log::warn!("SIGINT while draining: exiting now");
                false
            }
        };
        let waited = drain.started().elapsed();
        if quiet {
            log::warn!("drained in {waited:.1?}: no request in flight; exiting");
        } else {
            log::warn!(
                "drain ended after {waited:.1?} with {} requests in flight on {} connections; they are cut",
                drain.requests(),
                drain.connections()
            );
        }
        let state = self.state.load_full();
        generation.stop().await;
        state.limiter.return_leases().await;
        lifecycle::exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(top: &str) -> Process {
        let text = format!(
            "{top}upstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\n\
             routes:\n  - {{name: r, paths: [/v1], upstream: u}}\n"
        );
        settings::load_str(&text, "test.yaml", |_| None)
            .expect("loads")
            .process
    }

    #[test]
    fn bound_settings_need_an_upgrade_and_reloadable_ones_do_not() {
        let base = process("");
        for (change, section) in [
            ("listen:\n  read_buffer_bytes: 4096\n", Some("`listen`")),
            ("listen:\n  proxy: [\"127.0.0.1:1\"]\n", Some("`listen`")),
            ("server:\n  drain_timeout: 10s\n", Some("`server`")),
            (
                "server:\n  upstream_keepalive_pool_size: 1\n",
                Some("`server`"),
            ),
            (
                "mock_upstream:\n  listen: 127.0.0.1:1\n",
                Some("`mock_upstream`"),
            ),
            ("reload:\n  watch: true\n", Some("`reload`")),
            ("listen:\n  max_connections: 10\n", None),
            ("request:\n  idle_timeout: 5s\n", None),
        ] {
            let changed = needs_upgrade(&base, &process(change));
            assert_eq!(changed, section.into_iter().collect::<Vec<_>>(), "{change}");
        }
    }
}
