//! The mock's HTTP server (hyper): request dispatch, knobs, recording.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::chat::completion;
use super::responses::{self, full, Body, Dialect, Knobs};
use super::state::MockState;
use super::{azure, checks, gemini, tokens};

/// Binds `addr` now (so a taken port fails the caller at start) and serves it
/// from a thread of its own. Used by the gateway's demo config.
pub fn bind_and_spawn_thread(
    addr: SocketAddr,
    state: Arc<MockState>,
) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    std::thread::Builder::new()
        .name("mock-upstream".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("mock upstream: cannot start a runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(listener) => serve(listener, None, state).await,
                    Err(e) => log::error!("mock upstream: {e}"),
                }
            });
        })?;
    Ok(local)
}

/// Serves connections until the process ends.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<MockState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                log::warn!("mock upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), peer, req));
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls_stream) => {
                        http1::Builder::new()
                            .serve_connection(TokioIo::new(tls_stream), service)
                            .await
                    }
                    Err(e) => {
                        log::debug!("mock upstream: TLS handshake failed: {e}");
                        return;
                    }
                },
                None => {
                    http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = result {
                log::debug!("mock upstream: connection ended: {e}");
            }
        });
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    full(status, "application/json", value.to_string())
}

async fn handle(
    state: Arc<MockState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let knobs = Knobs::from_headers(req.headers());
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(full(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "body read failed",
            ))
        }
    };
    if state.record && !parts.uri.path().starts_with("/mock/") {
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        state.remember(serde_json::json!({
            "method": parts.method.as_str(),
            "peer": peer.to_string(),
            "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }));
    }
    if knobs.latency > Duration::ZERO {
        tokio::time::sleep(knobs.latency).await;
    }
    let mut resp = route(&state, &parts, &body, &knobs).await;
    if let Ok(name) = state.name.parse() {
        resp.headers_mut().insert("x-mock-backend", name);
    }
    if parts.uri.path().starts_with("/v1/messages") {
        // Anthropic sends every answer's id in `request-id`; its SDK reads it.
        resp.headers_mut()
            .insert("request-id", http::HeaderValue::from_static("req_mock"));
    }
    Ok(resp)
}

async fn route(
    state: &Arc<MockState>,
    parts: &http::request::Parts,
    body: &Bytes,
    knobs: &Knobs,
) -> Response<Body> {
    let path = parts.uri.path();
    if let Some(key) = path.strip_prefix("/mock/release/") {
        state.hold(key).notify_one();
        return json(StatusCode::OK, serde_json::json!({"released": key}));
    }
    if let Some(code) = path.strip_prefix("/mock/health/") {
        let code = code.parse::<u16>().unwrap_or(200);
        state.health_status.store(code, Ordering::Relaxed);
        return json(StatusCode::OK, serde_json::json!({"health_status": code}));
    }
    if let Some(code) = path.strip_prefix("/mock/fail/") {
        let code = code.parse::<u16>().unwrap_or(0);
        state.forced_status.store(code, Ordering::Relaxed);
        return json(StatusCode::OK, serde_json::json!({"forced_status": code}));
    }
    if path == "/mock/tokens" {
        return json(StatusCode::OK, state.cloud.counts());
    }
    if let Some(setting) = path.strip_prefix("/mock/token-endpoint/") {
        let down = setting == "down";
        state.cloud.tokens_down.store(down, Ordering::Relaxed);
        return json(
            StatusCode::OK,
            serde_json::json!({"token_endpoint_down": down}),
        );
    }
    if let Some(answer) = tokens::handle(state, parts, body) {
        return answer;
    }
    // `PUT /mock/fail/<status>` holds for the clouds' routes too.
    let forced = StatusCode::from_u16(state.forced_status.load(Ordering::Relaxed)).ok();
    let cloud_knobs = Knobs {
        status: knobs.status.or(forced),
        ..knobs.clone()
    };
    if path.starts_with("/openai/") {
        return azure::handle(state, parts, body, &cloud_knobs);
    }
    if let Some(answer) = gemini::handle(state, parts, body, &cloud_knobs) {
        return answer;
    }
    if path == "/mock/requests" {
        let recorded = state.recorded.lock().unwrap_or_else(|p| p.into_inner());
        return json(
            StatusCode::OK,
            serde_json::Value::Array(recorded.iter().cloned().collect()),
        );
    }
    if path == "/health" {
        let code = state.health_status.load(Ordering::Relaxed);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        return json(
            status,
            serde_json::json!({"status": if status.is_success() {"ok"} else {"failing"}}),
        );
    }
    let dialect = if path.starts_with("/v1/messages") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    let forced = StatusCode::from_u16(state.forced_status.load(Ordering::Relaxed)).ok();
    if let Some(status) = knobs.status.or(forced) {
        return responses::error(status, dialect);
    }
    match (parts.method.as_str(), path) {
        ("GET", "/v1/models") => json(StatusCode::OK, responses::models()),
        ("POST", "/v1/chat/completions" | "/v1/messages") => {
            completion(state, &parts.headers, body, knobs, dialect)
        }
        ("POST", "/v1/messages/count_tokens") => {
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(request) => match checks::anthropic_count_tokens(&parts.headers, &request) {
                    Ok(()) => json(StatusCode::OK, responses::anthropic_token_count(body)),
                    Err(problem) => responses::error_with(
                        StatusCode::BAD_REQUEST,
                        dialect,
                        &format!("mock: {problem}"),
                    ),
                },
                Err(_) => responses::error(StatusCode::BAD_REQUEST, dialect),
            }
        }
        ("POST", "/v1/embeddings") => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(request) => json(StatusCode::OK, responses::embeddings(&request)),
            Err(_) => responses::error(StatusCode::BAD_REQUEST, dialect),
        },
        _ => responses::error(StatusCode::NOT_FOUND, dialect),
    }
}
