//! Certificates made by the tests: a CA, server certificates for names, and
//! client certificates for mTLS, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};

pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    pub pem: String,
}

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// Writes `{stem}.crt` and `{stem}.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        Self { cert, key, pem }
    }

    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server certificate for `names` (DNS SANs) with `common_name`.
    pub fn server(&self, names: &[&str], common_name: &str) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        self.issue(params)
    }

    /// A client certificate with `common_name` and, when given, a URI SAN
    /// (a SPIFFE ID).
    pub fn client(&self, common_name: &str, uri: Option<&str>) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(uri) = uri {
            params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        }
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A TLS listener for the harness' `listen` section, serving one
/// certificate for `localhost` from a new CA, all written into `dir`.
pub struct LocalhostTls {
    /// `listen` lines: `proxy_tls` and `tls` with its certificate, then
    /// `tls_extra` (lines indented four spaces).
    pub listen: String,
    pub ca_file: PathBuf,
    pub port: u16,
}

impl LocalhostTls {
    pub fn new(dir: &Path, tls_extra: &str) -> Self {
        let ca = TestCa::new("edge CA");
        let ca_file = ca.write(dir, "ca.pem");
        let (cert, key) = ca
            .server(&["localhost"], "localhost")
            .write(dir, "localhost");
        let port = super::free_port();
        let listen = format!(
            "  proxy_tls: [\"127.0.0.1:{port}\"]\n  tls:\n    certificates: [{{cert_file: {}, key_file: {}}}]\n{tls_extra}",
            cert.display(),
            key.display()
        );
        Self {
            listen,
            ca_file,
            port,
        }
    }
}
