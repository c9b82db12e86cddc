//! TLS material named in config, loaded and checked once.

use std::fmt;
use std::sync::Arc;

use pingora::utils::tls::{parse_x509, WrappedX509};

/// CA certificates trusted in place of the system roots (upstream pools,
/// the OIDC issuer), in the form Pingora's connectors take.
#[derive(Clone)]
pub struct CaBundle {
    pub path: String,
    pub certificates: Arc<[WrappedX509]>,
}

impl CaBundle {
    /// Loads a PEM file of CA certificates. Each one is checked by rustls
    /// before Pingora parses it, because Pingora's parser panics on bad DER.
    pub fn load(path: &str) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let mut reader = std::io::BufReader::new(pem.as_slice());
        let mut out = Vec::new();
        let mut check = tokio_rustls::rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| format!("`{path}` is not valid PEM: {e}"))?;
            check
                .add(cert.clone())
                .map_err(|e| format!("`{path}` holds an invalid certificate: {e}"))?;
            out.push(WrappedX509::new(cert.to_vec(), parse_x509));
        }
        if out.is_empty() {
            return Err(format!("`{path}` holds no PEM certificate"));
        }
        Ok(Self {
            path: path.to_string(),
            certificates: Arc::from(out.into_boxed_slice()),
        })
    }
}

impl PartialEq for CaBundle {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaBundle({}, {} certificates)",
            self.path,
            self.certificates.len()
        )
    }
}
