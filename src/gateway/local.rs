//! Endpoints the gateway answers itself on the proxy port.

use pingora::proxy::Session;

use super::{respond, RequestCtx};
use crate::admin;
use crate::observability::metrics::metrics;
use crate::state::GatewayState;

/// Answers `/health`, `/ready`, `/v1/models` and (unless
/// `listen.metrics_on_proxy` is off) `/metrics`; true when it answered.
pub async fn answer(
    state: &GatewayState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<bool> {
    let req = session.req_header();
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Ok(false);
    }
    let (label, content_type, (status, body)) = match req.uri.path() {
        "/health" => ("health", admin::JSON, admin::health(state)),
        "/ready" => ("ready", admin::JSON, admin::ready(state)),
        "/v1/models" => ("models", admin::JSON, (200, model_list(state))),
        "/metrics" if state.metrics_on_proxy => {
            ("metrics", admin::PROMETHEUS, (200, metrics().render()))
        }
        _ => return Ok(false),
    };
    ctx.route_label = label;
    respond::send(session, status, content_type, body, &ctx.request_id, &[]).await?;
    Ok(true)
}

/// `GET /v1/models` in OpenAI's list format, from the route table.
fn model_list(state: &GatewayState) -> Vec<u8> {
    let data: Vec<serde_json::Value> = state
        .routes
        .listed_models()
        .into_iter()
        .map(|(id, owner)| {
            serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"object": "list", "data": data})).unwrap_or_default()
}
