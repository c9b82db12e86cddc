//! Reading a request body before the upstream is chosen.
//!
//! Pingora forwards a body it has already handed to us only through its retry
//! buffer (64 KiB): when that buffer holds data, `request_body_filter` is
//! called once with it, and we substitute the whole (maybe rewritten) body.
//! For a larger body we turn the buffer on only for the last 64 KiB, so it
//! still holds data and is not truncated. A chunked body over 64 KiB has no
//! known end to aim at, so it is refused with 411.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::context::Refusal;
use crate::error::{ApiError, ErrorCode};

/// Pingora's retry buffer size (`BODY_BUF_LIMIT` in pingora-core).
const RETRY_BUFFER: usize = 64 * 1024;

/// Reads the whole body, at most `limit` bytes.
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, Refusal> {
    let declared = declared_length(session)?;
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::body_too_large(limit).into());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(limit));
    let mut buffering = false;
    loop {
        let remaining = declared.map(|len| len.saturating_sub(body.len()));
        if !buffering && remaining.is_none_or(|left| left <= RETRY_BUFFER) {
            session.enable_retry_buffering();
            buffering = true;
        }
        let read = match session.read_request_body().await {
            Ok(read) => read,
            // A client that went away gets no answer; a malformed body does.
            Err(e)
                if matches!(
                    e.etype(),
                    pingora::ErrorType::ReadError | pingora::ErrorType::ConnectionClosed
                ) =>
            {
                return Err(Refusal::ClientGone(e));
            }
            Err(e) if matches!(e.etype(), pingora::ErrorType::ReadTimedout) => {
                session.set_keepalive(None);
                return Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    "The request body stopped arriving.",
                )
                .into());
            }
            Err(_) => {
                session.set_keepalive(None);
                return Err(ApiError::new(
                    ErrorCode::MalformedBody,
                    "The request body is not framed correctly.",
                )
                .into());
            }
        };
        match read {
            Some(chunk) => {
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::body_too_large(limit).into());
                }
                body.extend_from_slice(&chunk);
            }
            None => break,
        }
    }
    if !body.is_empty() && session.get_retry_buffer().is_none() {
        return Err(ApiError::new(
            ErrorCode::LengthRequired,
            "Request bodies over 64 KiB must be sent with a Content-Length header.",
        )
        .into());
    }
    Ok(body.freeze())
}

fn declared_length(session: &Session) -> Result<Option<usize>, ApiError> {
    match session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
    {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidContentLength,
                    "Content-Length is not a number.",
                )
            }),
    }
}
