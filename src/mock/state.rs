//! What one mock server holds between requests: what it recorded, held
//! streams, the statuses it was told to answer, the clouds' credentials.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU16;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::cloud::Cloud;

/// Shared state of one mock server.
pub struct MockState {
    pub name: String,
    pub(super) record: bool,
    pub(super) recorded: Mutex<VecDeque<serde_json::Value>>,
    holds: Mutex<HashMap<String, Arc<Notify>>>,
    pub(super) health_status: AtomicU16,
    /// When not 0, every API request is answered with this status.
    pub(super) forced_status: AtomicU16,
    /// The clouds' credentials it accepts and the tokens it issued.
    pub cloud: Cloud,
}

impl MockState {
    pub fn new(name: impl Into<String>, record: bool) -> Arc<Self> {
        Self::with_cloud(
            name,
            record,
            Cloud::new(None, None, None, Duration::from_secs(3600)),
        )
    }

    pub fn with_cloud(name: impl Into<String>, record: bool, cloud: Cloud) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            record,
            recorded: Mutex::new(VecDeque::new()),
            holds: Mutex::new(HashMap::new()),
            health_status: AtomicU16::new(200),
            forced_status: AtomicU16::new(0),
            cloud,
        })
    }

    pub(super) fn hold(&self, key: &str) -> Arc<Notify> {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.entry(key.to_string()).or_default().clone()
    }

    pub(super) fn remember(&self, entry: serde_json::Value) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        if recorded.len() >= 256 {
            recorded.pop_front();
        }
        recorded.push_back(entry);
    }
}
