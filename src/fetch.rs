//! The HTTP calls the gateway makes itself: OIDC discovery and JWKS, and
//! providers' token exchanges, on Pingora's own HTTP client (so TLS and
//! timeouts behave like upstream traffic). Off the request path, except for
//! the one JWKS refetch an unknown `kid` may cause.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;

/// Bodies larger than this are not a JWKS or a token.
const MAX_BODY: usize = 1024 * 1024;

fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

/// GETs `url` and returns the body of a 200 answer.
pub async fn get(
    url: &str,
    timeout: Duration,
    ca: Option<Arc<[WrappedX509]>>,
) -> Result<Vec<u8>, String> {
    let call = Call {
        method: "GET",
        url,
        headers: &[("accept", "application/json")],
        body: None,
    };
    let (status, body) = send(&call, timeout, ca).await?;
    if status != 200 {
        return Err(format!("GET {url}: status {status}"));
    }
    Ok(body)
}

/// One request the gateway makes itself.
pub struct Call<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// With its content type.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// Sends `call`; the status and body of whatever the server answered.
pub async fn send(
    call: &Call<'_>,
    timeout: Duration,
    ca: Option<Arc<[WrappedX509]>>,
) -> Result<(u16, Vec<u8>), String> {
    let what = format!("{} {}", call.method, call.url);
    tokio::time::timeout(timeout, send_inner(call, &what, timeout, ca))
        .await
        .map_err(|_| format!("{what}: timed out"))?
}

async fn send_inner(
    call: &Call<'_>,
    what: &str,
    timeout: Duration,
    ca: Option<Arc<[WrappedX509]>>,
) -> Result<(u16, Vec<u8>), String> {
    let url = call.url;
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    let tls = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .min_by_key(|a| a.is_ipv6())
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut peer = HttpPeer::new(
        addr,
        tls,
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    );
    peer.options.connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    peer.options.ca = ca;
    let failed = |e: pingora::BError| format!("{what}: {e}");
    let (mut session, _) = connector().get_http_session(&peer).await.map_err(failed)?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req =
        RequestHeader::build(call.method, path.as_bytes(), None).map_err(|e| e.to_string())?;
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    req.insert_header("host", authority)
        .map_err(|e| e.to_string())?;
    for (name, value) in call.headers {
        req.insert_header(name.to_string(), *value)
            .map_err(|e| e.to_string())?;
    }
    if let Some((content_type, body)) = call.body {
        req.insert_header("content-type", content_type)
            .map_err(|e| e.to_string())?;
        req.insert_header("content-length", body.len())
            .map_err(|e| e.to_string())?;
    }
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(failed)?;
    if let Some((_, body)) = call.body {
        session
            .write_request_body(bytes::Bytes::copy_from_slice(body), true)
            .await
            .map_err(failed)?;
    }
    session.finish_request_body().await.map_err(failed)?;
    session.read_response_header().await.map_err(failed)?;
    let status = session.response_header().map_or(0, |h| h.status.as_u16());
    let mut body = Vec::new();
    while let Some(chunk) = session.read_response_body().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("{what}: answer over {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}
