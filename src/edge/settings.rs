//! The `listen` and `request` sections, lowered: the proxy's addresses,
//! TLS at the edge, and what one client request may be and take.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::check::{
    count_in, duration_in, ensure, fault, positive_up_to, socket_addr, word, Lowered, DAY, HOUR,
    MINUTE,
};
use crate::config::keyword::ClientAuth;
use crate::config::{schema, ClientCa, ServerCertificate};

#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub proxy: Vec<SocketAddr>,
    /// Proxy addresses that speak TLS; never empty when `tls` is set.
    pub proxy_tls: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// Read buffer of each client connection (0: unbuffered).
    pub read_buffer_bytes: usize,
    pub tls: Option<EdgeTls>,
    /// Cleartext HTTP/2 with prior knowledge on the `proxy` addresses.
    pub h2c: bool,
    /// Every proxy connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
}

/// TLS on the proxy's TLS listeners. The certificate files are read again
/// every `reload_interval` (rotation needs no restart); the paths are fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeTls {
    /// The first is the default for clients whose SNI matches none.
    pub certificates: Vec<CertificateFiles>,
    pub client_ca: Option<ClientCa>,
    /// A client without a certificate is refused at the handshake.
    pub client_cert_required: bool,
    pub reload_interval: Duration,
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_file: String,
    pub key_file: String,
}

/// What one request may be, and how long its client may take.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    /// Longest silence while a request body arrives.
    pub body_timeout: Duration,
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// Between keep-alive requests.
    pub idle_timeout: Duration,
    /// Longest a response write waits for the client to take bytes.
    pub write_timeout: Duration,
}

pub fn listen(l: &schema::Listen) -> Lowered<Listen> {
    ensure(
        !l.proxy.is_empty() || !l.proxy_tls.is_empty(),
        || "listen.proxy".into(),
        "needs at least one address (here or in listen.proxy_tls)",
    )?;
    let addresses = |field: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, addr)| socket_addr(&format!("{field}[{i}]"), addr))
            .collect::<Lowered<Vec<_>>>()
    };
    let proxy = addresses("listen.proxy", &l.proxy)?;
    let proxy_tls = addresses("listen.proxy_tls", &l.proxy_tls)?;
    // A connection is told TLS from cleartext by the port it came in on.
    for (i, addr) in proxy_tls.iter().enumerate() {
        if proxy.iter().any(|plain| plain.port() == addr.port()) {
            return fault(
                format!("listen.proxy_tls[{i}]"),
                format!("port {} is also a cleartext listen.proxy port", addr.port()),
            );
        }
    }
    ensure(
        l.read_buffer_bytes <= 1024 * 1024,
        || "listen.read_buffer_bytes".into(),
        "must be at most 1048576 (it is allocated for every connection)",
    )?;
    let tls = match (&l.tls, proxy_tls.is_empty()) {
        (None, true) => None,
        (None, false) => return fault("listen.tls", "is needed by listen.proxy_tls"),
        (Some(_), true) => return fault("listen.proxy_tls", "needs an address for listen.tls"),
        (Some(tls), false) => Some(edge_tls(tls)?),
    };
    Ok(Listen {
        proxy,
        proxy_tls,
        admin: socket_addr("listen.admin", &l.admin)?,
        read_buffer_bytes: l.read_buffer_bytes,
        tls,
        h2c: l.h2c,
        proxy_protocol: l.proxy_protocol,
    })
}

pub fn edge_tls(t: &schema::ListenTls) -> Lowered<EdgeTls> {
    ensure(
        !t.certificates.is_empty(),
        || "listen.tls.certificates".into(),
        "needs at least one {cert_file, key_file}",
    )?;
    let mut certificates = Vec::with_capacity(t.certificates.len());
    for (i, files) in t.certificates.iter().enumerate() {
        ServerCertificate::load(&files.cert_file, &files.key_file)
            .or_else(|e| fault(format!("listen.tls.certificates[{i}]"), e))?;
        certificates.push(CertificateFiles {
            cert_file: files.cert_file.clone(),
            key_file: files.key_file.clone(),
        });
    }
    let client_ca = match &t.client_ca_file {
        Some(path) => {
            Some(ClientCa::load(path).or_else(|e| fault("listen.tls.client_ca_file", e))?)
        }
        None => None,
    };
    let client_auth = match &t.client_auth {
        Some(text) => Some(word::<ClientAuth>("listen.tls.client_auth", text)?),
        None => None,
    };
    let client_cert_required = match (client_auth, &client_ca) {
        (None | Some(ClientAuth::Required), Some(_)) => true,
        (Some(ClientAuth::Optional), Some(_)) => false,
        (Some(_), None) => {
            return fault("listen.tls.client_auth", "needs listen.tls.client_ca_file")
        }
        (None, None) => false,
    };
    Ok(EdgeTls {
        certificates,
        client_ca,
        client_cert_required,
        reload_interval: duration_in(
            "listen.tls.reload_interval",
            t.reload_interval,
            Duration::from_millis(100),
            HOUR,
        )?,
        handshake_timeout: duration_in(
            "listen.tls.handshake_timeout",
            t.handshake_timeout,
            Duration::from_millis(100),
            MINUTE,
        )?,
    })
}

pub fn request(r: &schema::Request) -> Lowered<RequestLimits> {
    // The client deadlines are added to instants on every request.
    Ok(RequestLimits {
        max_body_bytes: count_in("request.max_body_bytes", r.max_body_bytes, 1, 1 << 30)?,
        max_headers: count_in("request.max_headers", r.max_headers, 8, 10_000)?,
        max_header_bytes: count_in(
            "request.max_header_bytes",
            r.max_header_bytes,
            1024,
            1024 * 1024,
        )?,
        body_timeout: positive_up_to("request.body_timeout", r.body_timeout, DAY)?,
        header_timeout: positive_up_to("request.header_timeout", r.header_timeout, DAY)?,
        idle_timeout: positive_up_to("request.idle_timeout", r.idle_timeout, DAY)?,
        write_timeout: positive_up_to("request.write_timeout", r.write_timeout, DAY)?,
    })
}
