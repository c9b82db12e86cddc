//! Answers the gateway writes itself.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::RequestCtx;
use crate::error::ApiError;
use crate::lifecycle::drain;

/// Writes a complete JSON response carrying the request id.
pub async fn send_json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &str,
    extra_headers: &[(&'static str, &str)],
) -> Result<()> {
    send(
        session,
        status,
        "application/json",
        body,
        request_id,
        extra_headers,
    )
    .await
}

/// Writes a complete response carrying the request id.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    request_id: &str,
    extra_headers: &[(&'static str, &str)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra_headers.len()))?;
    for (name, value) in extra_headers {
        resp.insert_header(*name, *value)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header("x-request-id", request_id)?;
    // A client whose body was not read, or was told its framing is wrong,
    // cannot safely send another request on this connection.
    // A draining process closes every connection after its answer.
    if !session.is_body_done() || status == 400 || drain().is_draining() {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    // An HTTP/2 stream whose request body is still coming would be reset
    // with CANCEL when the session drops, and clients (curl, httpx) then
    // report a stream error instead of the answer they already have. The
    // rest of the body is taken and dropped, briefly, so the stream ends
    // cleanly; the connection itself stays.
    if session.is_http2() && !session.is_body_done() {
        let _ = tokio::time::timeout(H2_BODY_DRAIN, session.drain_request_body()).await;
    }
    Ok(())
}

/// How long an HTTP/2 request body is taken after a local answer.
const H2_BODY_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes an error in the client's dialect (Anthropic clients also get
/// the id in `request-id`, where their SDK looks for it).
pub async fn send_error(session: &mut Session, error: &ApiError, ctx: &RequestCtx) -> Result<()> {
    let mut extra: Vec<(&'static str, &str)> = Vec::with_capacity(2 + error.extra_headers.len());
    if let Some(challenge) = error.challenge {
        extra.push(("www-authenticate", challenge));
    }
    if let Some(name) = ctx.dialect.client().request_id_header() {
        extra.push((name, &ctx.request_id));
    }
    extra.extend(error.extra_headers.iter().map(|(k, v)| (*k, v.as_str())));
    let body = error.body_for(ctx.dialect);
    send_json(session, error.status, body, &ctx.request_id, &extra).await
}
