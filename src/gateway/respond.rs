//! Answers the gateway writes itself.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

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
    let mut resp = ResponseHeader::build(status, Some(4 + extra_headers.len()))?;
    for (name, value) in extra_headers {
        resp.insert_header(*name, *value)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
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
    Ok(())
}

pub async fn send_error(session: &mut Session, error: &ApiError, request_id: &str) -> Result<()> {
    let mut extra: Vec<(&'static str, &str)> = Vec::with_capacity(1 + error.extra_headers.len());
    if let Some(challenge) = error.challenge {
        extra.push(("www-authenticate", challenge));
    }
    extra.extend(error.extra_headers.iter().map(|(k, v)| (*k, v.as_str())));
    send_json(session, error.status, error.body(), request_id, &extra).await
}
