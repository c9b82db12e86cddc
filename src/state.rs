//! What the gateway runs on, built once from a validated config: the route
//! table with its pools, and the request settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Authenticator;
use crate::config::{AccessLogSettings, Config};
use crate::limits::Limiter;
use crate::routing::{Pool, RouteEntry, RouteTable};

/// Client connection deadlines (see `gateway::connection`).
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// From a request's first byte to the end of its headers.
    pub header: std::time::Duration,
    /// Between keep-alive requests.
    pub idle: std::time::Duration,
}

pub struct GatewayState {
    pub routes: RouteTable,
    pub auth: Authenticator,
    pub limiter: Arc<Limiter>,
    pub pools: Vec<Arc<Pool>>,
    pub max_body_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub body_timeout: std::time::Duration,
    pub client_timeouts: ClientTimeouts,
    pub max_connections: usize,
    pub access_log: AccessLogSettings,
    pub started: Instant,
}

impl GatewayState {
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let auth = Authenticator::from_config(config.auth.as_ref())?;
        let default_auth = auth.default_methods();
        let mut pools = BTreeMap::new();
        for (name, settings) in &config.upstreams {
            let pool =
                Pool::from_config(name, settings).map_err(|e| format!("upstreams.{name}: {e}"))?;
            pools.insert(name.clone(), Arc::new(pool));
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let pool = pools.get(&route.upstream).ok_or_else(|| {
                format!("route {}: unknown upstream {}", route.name, route.upstream)
            })?;
            routes.push(Arc::new(RouteEntry::new(
                route,
                pool.clone(),
                &default_auth,
            )));
        }
        Ok(Self {
            routes: RouteTable::new(routes),
            auth,
            limiter: Arc::new(Limiter::from_config(config.limits.as_ref())?),
            pools: pools.into_values().collect(),
            max_body_bytes: config.request.max_body_bytes,
            max_headers: config.request.max_headers,
            max_header_bytes: config.request.max_header_bytes,
            body_timeout: config.request.body_timeout,
            client_timeouts: ClientTimeouts {
                header: config.request.header_timeout,
                idle: config.request.idle_timeout,
            },
            max_connections: config.listen.max_connections,
            access_log: config.access_log.clone(),
            started: Instant::now(),
        })
    }

    /// Why the gateway is not ready to take traffic; empty when it is.
    pub fn unready_reasons(&self) -> Vec<String> {
        self.routes
            .routes()
            .iter()
            .filter(|r| !r.pool.has_available_backend())
            .map(|r| {
                format!(
                    "route `{}`: no healthy backend in upstream `{}`",
                    r.name, r.pool.name
                )
            })
            .collect()
    }
}
