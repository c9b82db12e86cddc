//! TLS material named in config, loaded and checked once.

use std::fmt;
use std::sync::Arc;

use pingora::utils::tls::{parse_x509, WrappedX509};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::RootCertStore;
use x509_parser::extensions::GeneralName;

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

/// A certificate chain and its private key, ready for the TLS listeners,
/// with the names it serves (its DNS subject alternative names, or its
/// common name when it has none).
#[derive(Clone)]
pub struct ServerCertificate {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
    /// Seconds since the epoch at which the leaf certificate expires.
    pub not_after: i64,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerCertificate({:?})", self.names)
    }
}

impl ServerCertificate {
    /// Loads and checks a PEM chain and its PEM key: the chain parses, the
    /// key is one rustls can sign with, and the key belongs to the leaf.
    pub fn load(cert_file: &str, key_file: &str) -> Result<Self, String> {
        let pem =
            std::fs::read(cert_file).map_err(|e| format!("cannot read `{cert_file}`: {e}"))?;
        let chain = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("`{cert_file}` is not valid PEM: {e}"))?;
        let leaf = chain
            .first()
            .ok_or_else(|| format!("`{cert_file}` holds no PEM certificate"))?;
        let leaf_names = CertificateNames::of(leaf)
            .map_err(|e| format!("`{cert_file}`: the certificate {e}"))?;
        let pem = std::fs::read(key_file).map_err(|e| format!("cannot read `{key_file}`: {e}"))?;
        let key = rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| format!("`{key_file}` is not valid PEM: {e}"))?
            .ok_or_else(|| format!("`{key_file}` holds no PEM private key"))?;
        let signing_key = tokio_rustls::rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("`{key_file}`: unusable private key: {e}"))?;
        let key = CertifiedKey::new(chain, signing_key);
        key.keys_match()
            .map_err(|e| format!("`{key_file}` is not the key of `{cert_file}`: {e}"))?;
        Ok(Self {
            key: Arc::new(key),
            names: leaf_names.served(),
            not_after: leaf_names.not_after,
        })
    }
}

/// What an X.509 certificate names: the subject's common names, its
/// subject alternative names in their order, and when it expires. Read for
/// the listeners' certificates (SNI) and for verified client certificates.
pub struct CertificateNames {
    pub common_names: Vec<String>,
    pub alt_names: Vec<AltName>,
    /// Seconds since the epoch.
    pub not_after: i64,
}

/// A subject alternative name the gateway matches on.
pub enum AltName {
    Dns(String),
    /// A URI (a SPIFFE ID) or an email address.
    Other(String),
}

impl CertificateNames {
    pub fn of(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("does not parse: {e}"))?;
        let common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_string)
            .collect();
        let mut alt_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => alt_names.push(AltName::Dns(dns.to_string())),
                    GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                        alt_names.push(AltName::Other(s.to_string()))
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            common_names,
            alt_names,
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// The names a server certificate serves, lowercased: its DNS names, or
    /// its common names when it has none.
    fn served(&self) -> Vec<String> {
        let dns: Vec<String> = self
            .alt_names
            .iter()
            .filter_map(|name| match name {
                AltName::Dns(dns) => Some(dns.to_ascii_lowercase()),
                AltName::Other(_) => None,
            })
            .collect();
        if !dns.is_empty() {
            return dns;
        }
        self.common_names
            .iter()
            .map(|cn| cn.to_ascii_lowercase())
            .collect()
    }
}

/// The CAs that sign client certificates (mTLS), as rustls verifies them.
#[derive(Clone)]
pub struct ClientCa {
    pub path: String,
    pub roots: Arc<RootCertStore>,
}

impl ClientCa {
    pub fn load(path: &str) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("`{path}` is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("`{path}` holds an invalid certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("`{path}` holds no PEM certificate"));
        }
        Ok(Self {
            path: path.to_string(),
            roots: Arc::new(roots),
        })
    }
}

impl PartialEq for ClientCa {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCa({}, {} roots)", self.path, self.roots.len())
    }
}
