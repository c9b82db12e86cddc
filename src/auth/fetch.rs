//! HTTPS GET for OIDC discovery and JWKS, on Pingora's own HTTP client (so
//! TLS and timeouts behave like upstream traffic). Off the request path except
//! for the one refetch an unknown `kid` may cause.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;

/// Bodies larger than this are not a JWKS.
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
    tokio::time::timeout(timeout, get_inner(url, timeout, ca))
        .await
        .map_err(|_| format!("GET {url}: timed out"))?
}

async fn get_inner(
    url: &str,
    timeout: Duration,
    ca: Option<Arc<[WrappedX509]>>,
) -> Result<Vec<u8>, String> {
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
    let (mut session, _) = connector()
        .get_http_session(&peer)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(|e| e.to_string())?;
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    req.insert_header("host", authority)
        .map_err(|e| e.to_string())?;
    req.insert_header("accept", "application/json")
        .map_err(|e| e.to_string())?;
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = session.response_header().map_or(0, |h| h.status.as_u16());
    let mut body = Vec::new();
    while let Some(chunk) = session
        .read_response_body()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("GET {url}: answer over {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    if status != 200 {
        return Err(format!("GET {url}: status {status}"));
    }
    Ok(body)
}
