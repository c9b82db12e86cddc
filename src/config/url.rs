//! The addresses config holds: a backend's base URL, and the https
//! addresses the gateway fetches from (OIDC discovery, JWKS).

use std::net::IpAddr;

use http::{HeaderValue, Uri};

/// A backend's base URL, split into what the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (empty for none).
    pub path_prefix: String,
    /// `host` or `host:port` as the Host header carries it.
    pub host_header: HeaderValue,
}

impl BaseUrl {
    /// `http://host:port[/prefix]` or `https://host[:port][/prefix]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "unsupported scheme `{other}` (expected http or https)"
                ))
            }
            None => return Err(format!("`{text}` needs a scheme (http:// or https://)")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{text}` has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if uri.query().is_some() {
            return Err(format!("`{text}` must not carry a query"));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        let authority = authority(&host, port, tls);
        let host_header = HeaderValue::from_str(&authority)
            .map_err(|_| format!("`{authority}` is not a valid Host"))?;
        Ok(Self {
            tls,
            host,
            port,
            path_prefix,
            host_header,
        })
    }

    /// `host` or `host:port`, the port left out when it is the scheme's.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port, self.tls)
    }
}

fn authority(host: &str, port: u16, tls: bool) -> String {
    let default_port = if tls { 443 } else { 80 };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Checks an address the gateway fetches keys from: https, or http on
/// loopback when allowed (tests). Configured and discovered addresses meet
/// the same rule.
pub fn check_fetch_url(url: &str, allow_http_loopback: bool) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http_loopback && is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "`{url}` must use https (plain http only on loopback with `allow_http_loopback`)"
        )),
        _ => Err(format!("`{url}` must be an https URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_parts() {
        let url = BaseUrl::parse("https://api.openai.com/").unwrap();
        assert_eq!(url.authority(), "api.openai.com");
        assert_eq!(url.host_header, "api.openai.com");
        assert_eq!(url.port, 443);
        assert_eq!(url.path_prefix, "");
        let url = BaseUrl::parse("http://10.0.0.1:8000/proxy/").unwrap();
        assert_eq!(url.authority(), "10.0.0.1:8000");
        assert_eq!(url.path_prefix, "/proxy");
        let url = BaseUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.host_header, "[::1]:9000");
        assert!(BaseUrl::parse("localhost:8000").is_err());
        assert!(BaseUrl::parse("http://h/?q=1").is_err());
    }

    #[test]
    fn only_https_or_allowed_loopback() {
        assert!(check_fetch_url("https://issuer.example", false).is_ok());
        assert!(check_fetch_url("http://issuer.example", true).is_err());
        assert!(check_fetch_url("http://127.0.0.1:9000/jwks", false).is_err());
        assert!(check_fetch_url("http://127.0.0.1:9000/jwks", true).is_ok());
        assert!(check_fetch_url("http://localhost:9000", true).is_ok());
        assert!(check_fetch_url("ftp://x", true).is_err());
    }
}
