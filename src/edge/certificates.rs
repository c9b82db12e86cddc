//! The certificates the TLS listeners serve. A client's SNI picks one by the
//! certificates' own names (exact names first, then `*.` wildcards of one
//! label); a client with no SNI, or one no certificate names, gets the first
//! one configured.
//!
//! Rotation: the files are read every `listen.tls.reload_interval` and the
//! set is replaced when their bytes change. Kubernetes and cert-manager swap
//! a symlinked directory, so the paths stay and the bytes change. A
//! handshake takes the set current when it starts; connections already up
//! keep the certificate they were served. A new set that does not load
//! (half written, a key that does not match) is refused and counted, and the
//! old one keeps serving until the files change again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::settings::CertificateFiles;
use crate::config::ServerCertificate;
use crate::observability::metrics::metrics;

/// The served certificates, with what their files held when they loaded.
pub struct CertificateStore {
    files: Vec<CertificateFiles>,
    served: ArcSwap<Vec<ServerCertificate>>,
    /// The files' bytes last looked at (loaded or refused): a refused set is
    /// not tried, nor logged, again until the files change.
    last_seen: Mutex<[u8; 32]>,
}

impl std::fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateStore({} certificates)", self.files.len())
    }
}

impl CertificateStore {
    pub fn load(files: &[CertificateFiles]) -> Result<Self, String> {
        let fingerprint = fingerprint(files);
        let served = load_all(files)?;
        export_expiry(&served);
        Ok(Self {
            files: files.to_vec(),
            served: ArcSwap::from_pointee(served),
            last_seen: Mutex::new(fingerprint),
        })
    }

    /// Reads the files and serves them if they changed and load. Returns
    /// whether the served set was replaced.
    pub fn reload_if_changed(&self) -> bool {
        let fingerprint = fingerprint(&self.files);
        {
            let mut last_seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            if *last_seen == fingerprint {
                return false;
            }
            *last_seen = fingerprint;
        }
        match load_all(&self.files) {
            Ok(served) => {
                let names: Vec<&str> = served
                    .iter()
                    .filter_map(|c| c.names.first().map(String::as_str))
                    .collect();
                log::info!("TLS certificates reloaded: {names:?}");
                export_expiry(&served);
                self.served.store(Arc::new(served));
                metrics()
                    .tls_certificate_reloads
                    .with_label_values(&["ok"])
                    .inc();
                true
            }
            Err(e) => {
                log::warn!(
                    "TLS certificates changed but do not load, the old ones keep serving: {e}"
                );
                metrics()
                    .tls_certificate_reloads
                    .with_label_values(&["error"])
                    .inc();
                false
            }
        }
    }

    fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let served = self.served.load();
        let chosen = server_name
            .and_then(|name| {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let exact = served.iter().find(|c| c.names.contains(&name));
                exact.or_else(|| {
                    let (_, parent) = name.split_once('.')?;
                    served
                        .iter()
                        .find(|c| c.names.iter().any(|n| n.strip_prefix("*.") == Some(parent)))
                })
            })
            .or_else(|| served.first());
        chosen.map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(client_hello.server_name())
    }
}

fn load_all(files: &[CertificateFiles]) -> Result<Vec<ServerCertificate>, String> {
    files
        .iter()
        .map(|f| ServerCertificate::load(&f.cert_file, &f.key_file))
        .collect()
}

/// A hash of every file's bytes (an unreadable file hashes as its error).
fn fingerprint(files: &[CertificateFiles]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for f in files {
        for path in [&f.cert_file, &f.key_file] {
            match std::fs::read(path) {
                Ok(bytes) => {
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(&bytes);
                }
                Err(e) => hash.update(e.kind().to_string().as_bytes()),
            }
        }
    }
    hash.finalize().into()
}

fn export_expiry(served: &[ServerCertificate]) {
    for certificate in served {
        if let Some(name) = certificate.names.first() {
            metrics()
                .tls_certificate_expiry
                .with_label_values(&[name])
                .set(certificate.not_after);
        }
    }
}

/// Reads the certificate files again every interval, until shutdown.
pub struct CertificateWatcher {
    pub store: Arc<CertificateStore>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for CertificateWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
            let store = self.store.clone();
            // A few small files, but still file IO: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
        }
    }
}
