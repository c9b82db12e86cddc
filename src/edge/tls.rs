//! TLS termination on the proxy's TLS listeners: TLS 1.2 and 1.3 only
//! (Pingora's rustls backend offers nothing older), HTTP/2 or HTTP/1.1 by
//! ALPN, certificates from the [`CertificateStore`], and client
//! certificates verified against `listen.tls.client_ca_file` when set.
//!
//! The gateway runs the handshake itself, in its connection guard, instead
//! of letting Pingora's listener do it: Pingora logs every failed handshake
//! at ERROR (a scanner would flood the error log) and allows each one a
//! fixed 60 s. Here a handshake has `listen.tls.handshake_timeout`, and a
//! failure is counted and logged at DEBUG.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::listeners::{TlsAccept, ALPN};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::Stream;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

use super::certificates::CertificateStore;
use super::settings::EdgeTls;
use crate::config::{AltName, CertificateNames};

/// What the TLS listeners need to accept a connection.
pub struct TlsEdge {
    acceptor: Acceptor,
    pub store: Arc<CertificateStore>,
}

impl TlsEdge {
    pub fn new(config: &EdgeTls) -> Result<Self, String> {
        pingora::tls::install_default_crypto_provider();
        let store = Arc::new(CertificateStore::load(&config.certificates)?);
        let mut settings = TlsSettings::with_callbacks(Box::new(ClientCertificateReader))
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        settings.set_cert_resolver(store.clone());
        settings.set_alpn(ALPN::H2H1);
        if let Some(ca) = &config.client_ca {
            let builder = WebPkiClientVerifier::builder(ca.roots.clone());
            let builder = if config.client_cert_required {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            let verifier = builder
                .build()
                .map_err(|e| format!("`{}`: cannot verify client certificates: {e}", ca.path))?;
            settings.set_client_cert_verifier(verifier);
        }
        Ok(Self {
            acceptor: settings.build(),
            store,
        })
    }

    /// Runs the server side of a handshake on an accepted connection.
    pub async fn handshake(&self, stream: L4Stream) -> pingora::Result<Stream> {
        let stream = self.acceptor.tls_handshake(stream).await?;
        Ok(Box::new(stream))
    }
}

/// The names a verified client certificate carries, kept with the
/// connection (Pingora's `SslDigest` extension) for `client_cert` auth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's common name.
    pub common_name: Option<String>,
    /// Subject alternative names: DNS names, URIs (SPIFFE IDs), emails.
    pub alt_names: Vec<String>,
}

impl ClientCertificate {
    /// The names of a DER certificate; `None` if it does not parse (it was
    /// verified by then, so that does not happen in practice).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let names = CertificateNames::of(der).ok()?;
        Some(Self {
            common_name: names.common_names.into_iter().next(),
            alt_names: names
                .alt_names
                .into_iter()
                .map(|name| match name {
                    AltName::Dns(name) | AltName::Other(name) => name,
                })
                .collect(),
        })
    }
}

/// Reads the verified client certificate once per connection, at the end
/// of the handshake.
struct ClientCertificateReader;

#[async_trait]
impl TlsAccept for ClientCertificateReader {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        let certificate = ClientCertificate::from_der(der)?;
        Some(Arc::new(certificate))
    }
}
