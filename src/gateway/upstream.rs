//! How a client request becomes the upstream request: where it goes and
//! with which credentials is the backend's provider's to say.

use http::HeaderName;
use pingora::http::RequestHeader;

use crate::error::{ApiError, ErrorCode};

use crate::llm::ClientDialect;
use crate::providers::Call;
use crate::routing::Backend;

/// Client credentials: the gateway authenticates callers itself and never
/// passes their secrets on to a provider.
const CLIENT_CREDENTIAL_HEADERS: [HeaderName; 4] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    http::header::PROXY_AUTHORIZATION,
];

/// What the request to `backend` is: `model` and `stream` for one that
/// names a model; `client` is the client's dialect, `body_len` the length
/// of the body prepared for the backend.
pub struct Rewrite<'a> {
    pub backend: &'a Backend,
    pub client: ClientDialect,
    pub model: Option<&'a str>,
    pub stream: bool,
    pub body_len: Option<usize>,
    pub request_id: &'a str,
}

/// Rewrites `req` for the backend; an error answer when its provider has
/// no valid credential now (or the rewrite is impossible).
pub fn rewrite_request(req: &mut RequestHeader, r: &Rewrite<'_>) -> Result<(), ApiError> {
    let backend = r.backend;
    let translated = r.model.is_some() && backend.dialect() != r.client;
    let path = backend.provider.path(&Call {
        client_path: req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        translated,
        model: r.model,
        stream: r.stream,
    });
    let prefix = &backend.url.path_prefix;
    if !prefix.is_empty() || path.is_some() {
        let path_and_query = match &path {
            Some(path) => path.as_str(),
            None => req.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        };
        let uri = format!("{prefix}{path_and_query}")
            .parse::<http::Uri>()
            .map_err(|e| internal(&e))?;
        req.set_uri(uri);
    }
    req.insert_header(http::header::HOST, backend.url.host_header.clone())
        .map_err(|e| internal(&e))?;
    // The client dialect's own headers mean nothing, or something else, to
    // a backend of another. Identity encoding keeps event streams flowing
    // event by event and lets the gateway read usage from answers.
    let own: &[HeaderName] = if translated {
        r.client.client().own_headers()
    } else {
        &[]
    };
    for name in CLIENT_CREDENTIAL_HEADERS
        .iter()
        .chain(own)
        .chain([&http::header::ACCEPT_ENCODING])
    {
        // Lookups are cheaper than Pingora's case-preserving removal.
        if req.headers.contains_key(name) {
            req.remove_header(name);
        }
    }
    backend.provider.authenticate(req).map_err(|why| {
        ApiError::new(
            ErrorCode::UpstreamCredentials,
            format!(
                "The credentials for upstream `{}` are not available: {}.",
                backend.label, why.0
            ),
        )
    })?;
    for (name, value) in &backend.extra_headers {
        req.insert_header(name.clone(), value.clone())
            .map_err(|e| internal(&e))?;
    }
    req.insert_header("x-request-id", r.request_id)
        .map_err(|e| internal(&e))?;
    if let Some(len) = r.body_len {
        if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
            req.remove_header(http::header::TRANSFER_ENCODING.as_str());
        }
        req.insert_header(http::header::CONTENT_LENGTH, len)
            .map_err(|e| internal(&e))?;
    }
    Ok(())
}

fn internal(e: &dyn std::fmt::Display) -> ApiError {
    log::error!("cannot write the upstream request: {e}");
    ApiError::internal()
}
