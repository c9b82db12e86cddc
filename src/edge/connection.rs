//! Client connections. The proxy service's app is wrapped so every client
//! stream enforces what Pingora leaves open: a total deadline for a request's
//! headers (Pingora's read timeout is per read, so a client sending a byte a
//! minute holds a connection forever), an idle timeout between keep-alive
//! requests that the config sets, and a cap on open connections.
//!
//! The deadlines are the stream's (`guarded_stream.rs`). The stream cannot
//! tell where headers end, so the proxy tells it: the first hook of a
//! request marks the stream as serving, `logging` marks it idle. Local
//! answers close a connection whose body was not read
//! (`gateway/respond.rs`), so no body bytes follow the idle mark there;
//! were Pingora to drain a body after a proxied answer, those bytes would
//! start the next header deadline, which at worst closes that keep-alive
//! connection early.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::socket::SocketAddr as InetOrUnix;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::protocols::{GetSocketDigest, Peek, SocketDigest, ALPN};
use pingora::server::ShutdownWatch;

use super::client;
use super::guarded_stream::{ClientTimeouts, GuardedStream, OpenConnection};
use super::proxy_protocol::{self, ProxyHeader};
use super::tls::TlsEdge;
use crate::lifecycle::drain;
use crate::observability::metrics::metrics;

/// What the guard reads of the running config at every accept; it follows
/// reloads, so the proxy hands the guard a view of its live state.
pub trait LiveSettings: Send + Sync + 'static {
    fn connections(&self) -> ConnectionSettings;
    /// Whether a peer is a trusted proxy (`listen.trusted_proxies`).
    fn trusts_proxy(&self, peer: std::net::IpAddr) -> bool;
}

/// The deadlines and the cap of client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: std::time::Duration,
    /// Between keep-alive requests.
    pub idle_timeout: std::time::Duration,
    /// Most client connections open at once (0: no cap).
    pub max_connections: usize,
}

/// Wraps the proxy's app: counts, caps and guards every client connection,
/// and takes it through the edge (PROXY header, TLS) first.
pub struct ConnectionGuard<A> {
    app: Arc<A>,
    settings: Box<dyn LiveSettings>,
    edge: Edge,
}

/// What a connection goes through before HTTP, from `listen`.
pub struct Edge {
    pub tls: Option<TlsEdge>,
    /// Ports of the TLS listeners: a connection is TLS by the port it came
    /// in on (config refuses a port that is both).
    pub tls_ports: Vec<u16>,
    pub proxy_protocol: bool,
    pub h2c: bool,
    /// For the PROXY header and the TLS handshake together.
    pub handshake_timeout: std::time::Duration,
}

impl<A> ConnectionGuard<A> {
    pub fn new(app: A, settings: Box<dyn LiveSettings>, edge: Edge) -> Self {
        Self {
            app: Arc::new(app),
            settings,
            edge,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = self.settings.connections();
        let timeouts = ClientTimeouts {
            header: settings.header_timeout,
            idle: settings.idle_timeout,
        };
        let max_connections = settings.max_connections;
        let open = OpenConnection::opened();
        if max_connections > 0 && open.count > max_connections {
            metrics().client_connections_refused.inc();
            return None; // dropping the stream closes it
        }
        // This future lives as long as the connection, and holds room for
        // the largest state it passes through. The handshakes' states (TLS
        // above all) are kilobytes, so they are boxed and awaited only where
        // a connection needs them: otherwise every open stream would keep
        // that room, written and resident, for its whole life.
        let tls = self.tls_for(&stream);
        let stream = if tls.is_some() || self.edge.proxy_protocol {
            Box::pin(self.through_edge(stream, tls)).await?
        } else {
            stream
        };
        // HTTP/2 multiplexes requests on one stream: per-request marks do not
        // apply. The guard only bounds the wait for its first bytes (the
        // client preface; h2 itself waits for it without a deadline); then
        // the bounds are the h2 settings (`edge/http2.rs`), Pingora's idle
        // timeout and the write timeout on every session.
        let (stream, protocol) = match self.protocol_known(&stream) {
            Some(protocol) => (stream, protocol),
            None => Box::pin(self.sniff_protocol(stream, timeouts.idle)).await?,
        };
        let guarded = match protocol {
            Protocol::Http1 => GuardedStream::new(stream, timeouts, open),
            Protocol::Http2 => GuardedStream::for_http2(stream, timeouts, open, None),
            // Shown to Pingora as ALPN h2, so that it does not wait for the
            // preface's 24 bytes itself.
            Protocol::H2c => GuardedStream::for_http2(stream, timeouts, open, Some(ALPN::H2)),
        };
        self.app.process_new(Box::new(guarded), shutdown).await
    }

    /// Called when the listeners have stopped (the process drains). The
    /// proxy's own cleanup closes every keep-alive connection waiting for its
    /// next request; it waits for the settle delay, so a request already on
    /// its way to an idle connection is still answered.
    async fn cleanup(&self) {
        drain().settle().await;
        self.app.cleanup().await
    }
}

impl<A> ConnectionGuard<A> {
    /// The TLS settings for a connection accepted on a TLS port.
    fn tls_for(&self, stream: &Stream) -> Option<&TlsEdge> {
        self.edge.tls.as_ref().filter(|_| {
            let port = stream
                .get_socket_digest()
                .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()));
            port.is_some_and(|port| self.edge.tls_ports.contains(&port))
        })
    }

    /// The PROXY header, where configured, and the TLS handshake, for a
    /// connection on a TLS port, within `handshake_timeout`. `None`: the
    /// connection failed them and is closed.
    async fn through_edge(&self, stream: Stream, tls: Option<&TlsEdge>) -> Option<Stream> {
        let mut l4 = into_tcp(stream)?;
        let _in_progress = HandshakeInProgress::new();
        let mut stage = if self.edge.proxy_protocol {
            "proxy_protocol"
        } else {
            "tls"
        };
        let steps = async {
            // A connection closed before its first byte (a load balancer's
            // TCP health check) is not a failed handshake.
            let mut first = [0u8; 1];
            if l4.try_peek(&mut first).await.is_err() {
                return Err(None);
            }
            if self.edge.proxy_protocol {
                let header = proxy_protocol::read_from(&mut l4).await.map_err(Some)?;
                self.apply_proxy_header(&mut l4, header);
            }
            match tls {
                Some(tls) => {
                    stage = "tls";
                    tls.handshake(l4).await.map_err(|e| Some(e.to_string()))
                }
                None => Ok(Box::new(l4) as Stream),
            }
        };
        let failure = match tokio::time::timeout(self.edge.handshake_timeout, steps).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(None)) => return None,
            Ok(Err(Some(e))) => ("invalid", e),
            Err(_) => (
                "timeout",
                format!("not done within {:?}", self.edge.handshake_timeout),
            ),
        };
        let (reason, detail) = failure;
        metrics()
            .client_handshake_failures
            .with_label_values(&[stage, reason])
            .inc();
        // DEBUG: scanners and broken clients are routine at an edge.
        log::debug!("client connection closed at its {stage} handshake: {detail}");
        None
    }

    /// A trusted peer's PROXY header names the client: it replaces the
    /// peer's address wherever the connection's address is read.
    fn apply_proxy_header(&self, l4: &mut L4Stream, header: ProxyHeader) {
        let ProxyHeader::Client(client) = header else {
            return;
        };
        let Some(original) = l4.get_socket_digest() else {
            return;
        };
        let peer = original.peer_addr().and_then(client::peer_ip);
        let trusted = peer.is_some_and(|ip| self.settings.trusts_proxy(ip));
        if !trusted {
            return;
        }
        let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
        let _ = digest.peer_addr.set(Some(InetOrUnix::Inet(client)));
        let _ = digest.local_addr.set(original.local_addr().cloned());
        l4.set_socket_digest(digest);
    }

    /// What the client speaks, where the connection tells without reading:
    /// HTTP/2 by ALPN, or HTTP/1 on TLS or where `listen.h2c` is off.
    /// `None`: its first bytes tell (`sniff_protocol`).
    fn protocol_known(&self, stream: &Stream) -> Option<Protocol> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return Some(Protocol::Http2);
        }
        if !self.edge.h2c || stream.get_ssl_digest().is_some() {
            return Some(Protocol::Http1);
        }
        None
    }

    /// h2c (its preface on a cleartext connection) or HTTP/1. `None`: the
    /// client sent nothing within the idle timeout, or closed.
    async fn sniff_protocol(
        &self,
        stream: Stream,
        idle: std::time::Duration,
    ) -> Option<(Stream, Protocol)> {
        let mut l4 = into_tcp(stream)?;
        match tokio::time::timeout(idle, sniff_h2c(&mut l4)).await {
            Ok(Ok(h2c)) => {
                let protocol = if h2c { Protocol::H2c } else { Protocol::Http1 };
                Some((Box::new(l4), protocol))
            }
            Ok(Err(_)) => None,
            Err(_) => {
                metrics().client_timeouts.with_label_values(&["idle"]).inc();
                None
            }
        }
    }
}

/// The TCP stream a proxy listener accepted (`None`, logged, for anything
/// else: the listeners are all TCP).
fn into_tcp(stream: Stream) -> Option<L4Stream> {
    match stream.into_any().downcast::<L4Stream>() {
        Ok(l4) => Some(*l4),
        Err(_) => {
            log::error!("a listener gave the proxy a stream that is not TCP; closed");
            None
        }
    }
}

/// Reads the connection's first bytes until they are the h2c preface or
/// cannot be, and puts them back. Unlike Pingora's own h2c check (the first
/// 24 bytes, however long they take), an HTTP/1 request shorter than the
/// preface (a load balancer's `OPTIONS / HTTP/1.0` check) is told apart at
/// its first bytes.
async fn sniff_h2c(l4: &mut L4Stream) -> io::Result<bool> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    let verdict = loop {
        let mut chunk = [0u8; H2_PREFACE.len()];
        let want = H2_PREFACE.len() - seen.len();
        let n = l4.read(&mut chunk[..want]).await?;
        if n == 0 {
            break Err(io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&seen) {
            break Ok(false);
        }
        if seen.len() == H2_PREFACE.len() {
            break Ok(true);
        }
    };
    l4.rewind(&seen);
    verdict
}

/// What a client connection speaks.
enum Protocol {
    Http1,
    /// Negotiated by ALPN on TLS.
    Http2,
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Counts a connection in `client_handshakes_in_progress` while it lives.
struct HandshakeInProgress;

impl HandshakeInProgress {
    fn new() -> Self {
        metrics().client_handshakes.inc();
        Self
    }
}

impl Drop for HandshakeInProgress {
    fn drop(&mut self) {
        metrics().client_handshakes.dec();
    }
}
