//! Endpoints the gateway answers itself on the proxy port.

use pingora::proxy::Session;

use super::{respond, RequestCtx};
use crate::admin;
use crate::state::GatewayState;

/// Answers `/health`, `/ready` and `/v1/models`; true when it answered.
pub async fn answer(
    state: &GatewayState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<bool> {
    let req = session.req_header();
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Ok(false);
    }
    let (label, (status, body)) = match req.uri.path() {
        "/health" => ("health", admin::health(state)),
        "/ready" => ("ready", admin::ready(state)),
        "/v1/models" => ("models", (200, model_list(state))),
        _ => return Ok(false),
    };
    ctx.route_label = label;
    respond::send_json(session, status, body, &ctx.request_id, &[]).await?;
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
