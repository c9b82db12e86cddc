//! How a client request becomes the upstream request.

use http::HeaderName;
use pingora::http::RequestHeader;
use pingora::Result;

use crate::routing::Backend;

/// Client credentials: the gateway authenticates callers itself and never
/// passes their secrets on to a provider.
const CLIENT_CREDENTIAL_HEADERS: [HeaderName; 4] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    http::header::PROXY_AUTHORIZATION,
];

/// Headers of the client's dialect that mean nothing, or something else,
/// to a backend of the other: dropped from a translated request.
const DIALECT_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
];

/// `path`: the path a translated request goes to (the upstream dialect's),
/// in place of the client's.
pub fn rewrite_request(
    req: &mut RequestHeader,
    backend: &Backend,
    body_len: Option<usize>,
    path: Option<&str>,
    request_id: &str,
) -> Result<()> {
    let prefix = &backend.url.path_prefix;
    if !prefix.is_empty() || path.is_some() {
        let path_and_query = match path {
            Some(path) => path.to_string(),
            None => req
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
        };
        let uri = format!("{prefix}{path_and_query}")
            .parse::<http::Uri>()
            .map_err(|e| {
                pingora::Error::because(pingora::ErrorType::InternalError, "upstream uri", e)
            })?;
        req.set_uri(uri);
    }
    req.insert_header(http::header::HOST, backend.url.host_header.clone())?;
    // Identity encoding keeps event streams flowing event by event and lets
    // the gateway read usage from responses.
    let translated: &[HeaderName] = if path.is_some() {
        &DIALECT_HEADERS
    } else {
        &[]
    };
    for name in CLIENT_CREDENTIAL_HEADERS
        .iter()
        .chain(translated)
        .chain([&http::header::ACCEPT_ENCODING])
    {
        // Lookups are cheaper than Pingora's case-preserving removal.
        if req.headers.contains_key(name) {
            req.remove_header(name);
        }
    }
    for (name, value) in &backend.upstream_headers {
        req.insert_header(name.clone(), value.clone())?;
    }
    req.insert_header("x-request-id", request_id)?;
    if let Some(len) = body_len {
        if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
            req.remove_header(http::header::TRANSFER_ENCODING.as_str());
        }
        req.insert_header(http::header::CONTENT_LENGTH, len)?;
    }
    Ok(())
}
