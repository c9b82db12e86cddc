//! What the gateway runs on, built once from a validated config: the route
//! table with its pools, callers, limits, and the request settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::{AdminToken, Authenticator};
use crate::config::Cidr;
use crate::edge::settings::RequestLimits;
use crate::limits::Limiter;
use crate::llm::Pricing;
use crate::observability::settings::AccessLog;
use crate::routing::{Pool, RouteEntry, RouteTable};
use crate::settings::Settings;

pub struct GatewayState {
    pub routes: RouteTable,
    pub auth: Authenticator,
    pub limiter: Arc<Limiter>,
    pub pools: Vec<Arc<Pool>>,
    pub request: RequestLimits,
    pub answers: crate::llm::AnswerBounds,
    /// Most client connections open at once (0: no cap).
    pub max_connections: usize,
    /// Answer `/metrics` on the proxy port too.
    pub metrics_on_proxy: bool,
    pub access_log: AccessLog,
    pub pricing: Pricing,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// `None`: the admin endpoints beyond health and metrics answer 401.
    pub admin_token: Option<AdminToken>,
    pub started: Instant,
}

impl GatewayState {
    /// Builds the state of a translated config; the translation checked
    /// everything that could fail. On a reload, `previous` is the running
    /// state: backends that stay the same keep their health and ejection.
    pub fn new(config: &Settings, previous: Option<&GatewayState>) -> Result<Self, String> {
        let previous_pool =
            |name: &str| previous.and_then(|state| state.pools.iter().find(|p| p.name == name));
        let pools: HashMap<&str, Arc<Pool>> = config
            .pools
            .iter()
            .map(|settings| {
                let pool = Pool::new(settings, previous_pool(&settings.name).map(Arc::as_ref));
                (settings.name.as_str(), Arc::new(pool))
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .filter_map(|route| {
                let pool = pools.get(route.pool.as_str())?;
                Some(Arc::new(RouteEntry::new(route, pool.clone())))
            })
            .collect();
        let mut pools: Vec<Arc<Pool>> = pools.into_values().collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            routes: RouteTable::new(routes),
            auth: Authenticator::new(&config.auth),
            limiter: Arc::new(Limiter::new(&config.limits)?),
            pools,
            request: config.request,
            answers: config.answers,
            max_connections: config.max_connections,
            metrics_on_proxy: config.metrics_on_proxy,
            access_log: config.access_log,
            pricing: Pricing::new(&config.pricing),
            trusted_proxies: config.trusted_proxies.clone(),
            admin_token: config
                .admin_token
                .as_ref()
                .map(|token| AdminToken::new(token.expose())),
            started: Instant::now(),
        })
    }

    /// Why the gateway is not ready to take traffic; empty when it is: a
    /// route whose pool has no healthy backend, or none whose provider has
    /// its credentials (a token not fetched yet).
    pub fn unready_reasons(&self) -> Vec<String> {
        self.routes
            .routes()
            .iter()
            .filter_map(|r| {
                let pool = &r.pool;
                if !pool.has_available_backend() {
                    return Some(format!(
                        "route `{}`: no healthy backend in upstream `{}`",
                        r.name, pool.name
                    ));
                }
                let missing: Vec<String> = pool
                    .backends
                    .iter()
                    .map(|b| b.provider.readiness())
                    .collect::<Option<_>>()?;
                let why = missing.first()?;
                Some(format!(
                    "route `{}`: upstream `{}` has no credentials: {why}",
                    r.name, pool.name
                ))
            })
            .collect()
    }
}
