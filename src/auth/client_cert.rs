//! Callers known by their TLS client certificate (mTLS). The certificate was
//! verified against `listen.tls.client_ca_file` at the handshake; here its
//! names are looked up in `auth.client_certs`: an alternative name (a SPIFFE
//! ID, a DNS name) first, as the more specific, then the common name.

use std::collections::HashMap;
use std::sync::Arc;

use super::settings::{self, CertificateName};
use super::{Caller, Failure, Identity};
use crate::config::AuthMethod;
use crate::edge::tls::ClientCertificate;

#[derive(Default)]
pub struct ClientCertStore {
    by_subject: HashMap<String, Caller>,
    by_alt_name: HashMap<String, Caller>,
}

impl ClientCertStore {
    pub fn new(certs: &[settings::ClientCert]) -> Self {
        let mut store = Self::default();
        for cert in certs {
            let entry = Caller::new(AuthMethod::ClientCert, &cert.id, &cert.grants);
            match &cert.name {
                CertificateName::Subject(cn) => store.by_subject.insert(cn.clone(), entry),
                CertificateName::AltName(san) => store.by_alt_name.insert(san.clone(), entry),
            };
        }
        store
    }

    pub fn is_empty(&self) -> bool {
        self.by_subject.is_empty() && self.by_alt_name.is_empty()
    }

    /// The identity of a verified certificate; one named nowhere, or
    /// disabled, is an unknown credential.
    pub fn lookup(&self, certificate: &ClientCertificate) -> Result<Arc<Identity>, Failure> {
        let caller = certificate
            .alt_names
            .iter()
            .find_map(|name| self.by_alt_name.get(name))
            .or_else(|| {
                let cn = certificate.common_name.as_ref()?;
                self.by_subject.get(cn)
            });
        caller.map_or(Err(Failure::UnknownKey), Caller::identity)
    }
}
