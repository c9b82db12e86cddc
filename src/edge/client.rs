//! Who the client is. The peer's address, unless the peer is a trusted
//! proxy (`listen.trusted_proxies`): then the rightmost `X-Forwarded-For`
//! hop that is not itself a trusted proxy. An untrusted peer's
//! `X-Forwarded-For` is ignored, so nobody can choose their own `client_ip`
//! limit key. Upstream, the gateway adds the peer to `X-Forwarded-For` and
//! sets `X-Forwarded-Proto` (`https` on a TLS listener), as proxies do. A
//! PROXY protocol header from a trusted peer has already replaced the
//! peer's address by then (`edge/proxy_protocol.rs`).

use std::net::IpAddr;

use pingora::http::RequestHeader;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::proxy::Session;

use crate::config::Cidr;

#[derive(Debug, Default, Clone, Copy)]
pub struct ClientAddress {
    /// The client: the peer, or the address a trusted proxy forwarded.
    pub ip: Option<IpAddr>,
    /// The connection's own peer.
    pub peer: Option<IpAddr>,
    /// The peer is a trusted proxy (its forwarding headers are kept).
    pub peer_trusted: bool,
    /// The connection is TLS (`X-Forwarded-Proto: https` upstream).
    pub tls: bool,
}

impl ClientAddress {
    /// Whether the client's address came from `X-Forwarded-For`.
    pub fn forwarded(&self) -> bool {
        self.ip != self.peer
    }
}

/// Most `X-Forwarded-For` hops looked at: a longer chain is refused as a
/// whole (the peer stands as the client).
const MAX_HOPS: usize = 32;

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// A connection's peer address as the trust checks compare it (an
/// IPv4-mapped IPv6 address as IPv4).
pub fn peer_ip(addr: &SocketAddr) -> Option<IpAddr> {
    addr.as_inet().map(|a| a.ip().to_canonical())
}

pub fn resolve(session: &Session, trusted: &[Cidr]) -> ClientAddress {
    let peer = session.client_addr().and_then(peer_ip);
    let is_trusted = |ip: IpAddr| is_trusted(trusted, ip);
    let peer_trusted = peer.is_some_and(is_trusted);
    let tls = session
        .digest()
        .is_some_and(|digest| digest.ssl_digest.is_some());
    let mut client = ClientAddress {
        ip: peer,
        peer,
        peer_trusted,
        tls,
    };
    if !peer_trusted {
        return client;
    }
    let headers = session.req_header().headers.get_all("x-forwarded-for");
    let hops: Vec<&str> = headers
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .take(MAX_HOPS + 1)
        .collect();
    if hops.len() > MAX_HOPS {
        return client;
    }
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage stops the walk: what a trusted hop vouched for so far
            // stands.
            break;
        };
        let ip = ip.to_canonical();
        client.ip = Some(ip);
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// `X-Forwarded-For` and `X-Forwarded-Proto` for the upstream.
pub fn forwarding_headers(
    upstream: &mut RequestHeader,
    client: &ClientAddress,
) -> pingora::Result<()> {
    let Some(peer) = client.peer else {
        return Ok(());
    };
    let chain = client
        .peer_trusted
        .then(|| {
            let values: Vec<&str> = upstream
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        })
        .flatten();
    let value = match chain {
        Some(chain) => format!("{chain}, {peer}"),
        None => peer.to_string(),
    };
    upstream.insert_header("x-forwarded-for", value)?;
    let keep_proto = client.peer_trusted && upstream.headers.contains_key("x-forwarded-proto");
    if !keep_proto {
        let proto = if client.tls { "https" } else { "http" };
        upstream.insert_header("x-forwarded-proto", proto)?;
    }
    Ok(())
}
