//! The admin service (its own Pingora service and port): `/health`, `/ready`
//! and `/metrics` for probes and scrapers, and behind `admin.token` the
//! endpoints that show what callers did (`/v1/spend`). The proxy port
//! answers `/health` and `/ready` with the same functions.

mod spend;

use std::time::SystemTime;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::listening::Service as ListeningService;
use pingora::services::Service;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::{ApiError, ErrorCode};
use crate::lifecycle::drain;
use crate::observability::metrics::metrics;
use crate::reload::SharedState;
use crate::state::GatewayState;

pub const JSON: &str = "application/json";
/// Prometheus' text exposition format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4";

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    timestamp: String,
    version: &'a str,
    uptime: u64,
}

/// `GET /health`: the process is up. Always 200.
pub fn health(state: &GatewayState) -> (u16, Vec<u8>) {
    let body = Health {
        status: "healthy",
        timestamp: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
    };
    (200, serde_json::to_vec(&body).unwrap_or_default())
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    reasons: Vec<String>,
}

/// `GET /ready`: 200 when config is loaded and every route has a healthy
/// backend, else 503 with the reasons. From SIGTERM on it is 503, so the
/// load balancer stops sending while the process drains.
pub fn ready(state: &GatewayState) -> (u16, Vec<u8>) {
    let mut reasons = state.unready_reasons();
    if drain().is_terminating() {
        reasons.insert(0, "draining: the process is shutting down".to_string());
    }
    let (status, word) = if reasons.is_empty() {
        (200, "ready")
    } else {
        (503, "not_ready")
    };
    let body = Readiness {
        status: word,
        reasons,
    };
    (status, serde_json::to_vec(&body).unwrap_or_default())
}

pub struct Admin {
    state: SharedState,
}

impl Admin {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            let e = ApiError::new(ErrorCode::MethodNotAllowed, "Use GET.");
            return respond(e.status, JSON, e.body());
        }
        let state = self.state.load();
        match req.uri.path() {
            "/health" => {
                let (status, body) = health(&state);
                return respond(status, JSON, body);
            }
            "/ready" => {
                let (status, body) = ready(&state);
                return respond(status, JSON, body);
            }
            "/metrics" => return respond(200, PROMETHEUS, metrics().render()),
            _ => {}
        }
        // Everything else needs the token, unknown paths too: a caller
        // without it learns nothing of what is here.
        let admitted = state
            .admin_token
            .as_ref()
            .is_some_and(|token| token.admits(&req.headers));
        if !admitted {
            let e = ApiError::new(
                ErrorCode::InvalidAdminToken,
                if state.admin_token.is_some() {
                    "This endpoint needs `Authorization: Bearer` with the admin token."
                } else {
                    "Admin endpoints are off: set `admin.token` to use them."
                },
            );
            return respond(e.status, JSON, e.body());
        }
        match req.uri.path() {
            "/v1/spend" => match spend::answer(&state.limiter, req.uri.query()).await {
                Ok(body) => respond(200, JSON, body),
                Err(e) => respond(e.status, JSON, e.body()),
            },
            path => {
                let e = ApiError::unknown_path(req.method.as_str(), path);
                respond(e.status, JSON, e.body())
            }
        }
    }
}

/// The admin service keeps its port open while the process drains after
/// SIGTERM: probes must keep seeing `/health` 200 and `/ready` 503 until
/// the process ends. After SIGQUIT it stops with the proxy at the end of
/// the hand-over, leaving the shared socket to the new process.
pub struct AdminService {
    inner: ListeningService<HttpServer<Admin>>,
}

impl AdminService {
    pub fn new(state: SharedState, address: &str) -> Self {
        let mut inner =
            ListeningService::new("admin".to_string(), HttpServer::new_app(Admin::new(state)));
        inner.add_tcp(address);
        inner.threads = Some(1);
        Self { inner }
    }
}

#[async_trait]
impl Service for AdminService {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        mut shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            while shutdown.changed().await.is_ok() {
                if *shutdown.borrow() && !drain().is_terminating() {
                    let _ = stop.send(true);
                    break;
                }
            }
            // Dropping the sender would read as a shutdown: keep it until the
            // process ends.
            std::future::pending::<()>().await;
            drop(stop);
        });
        self.inner
            .start_service(fds, stopped, listeners_per_fd)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}
