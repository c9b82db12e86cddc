//! Verified tokens, remembered so that a JWT caller's next request costs a
//! hash and a lookup instead of a signature check. An entry is keyed by the
//! SHA-256 of the token (the token itself is not kept), lasts until the
//! token's `exp`, and belongs to one generation of the verifying keys: when
//! a JWKS refresh replaces the keys, every entry of the old generation is
//! gone, so no cached token outlives a key that was dropped. The cache is
//! bounded: when full, expired entries go first, then an eighth of the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::Identity;

pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    capacity: usize,
}

struct Entry {
    identity: Arc<Identity>,
    /// The token's `exp`, in seconds since the epoch.
    expires_at: u64,
    /// The generation of the keys that verified it.
    generation: u64,
}

/// The cache's key for a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenCache {
    /// `capacity` 0: nothing is ever remembered.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The identity of a token verified under the keys of `generation`,
    /// while the token has not expired.
    pub fn get(&self, digest: &[u8; 32], generation: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(digest)?;
        (entry.generation == generation && now_secs() < entry.expires_at)
            .then(|| entry.identity.clone())
    }

    /// Remembers a token just verified, until its `exp`.
    pub fn insert(
        &self,
        digest: [u8; 32],
        identity: &Arc<Identity>,
        expires_at: u64,
        generation: u64,
    ) {
        if self.capacity == 0 || expires_at <= now_secs() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            let now = now_secs();
            entries.retain(|_, e| e.expires_at > now && e.generation == generation);
            if entries.len() >= self.capacity {
                let evict: Vec<[u8; 32]> = entries
                    .keys()
                    .take(self.capacity.div_ceil(8))
                    .copied()
                    .collect();
                for key in evict {
                    entries.remove(&key);
                }
            }
        }
        entries.insert(
            digest,
            Entry {
                identity: identity.clone(),
                expires_at,
                generation,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMethod;

    fn identity(id: &str) -> Arc<Identity> {
        Arc::new(Identity {
            method: AuthMethod::Jwt,
            id: id.into(),
            owner: None,
            team: None,
            models: Vec::new(),
            scopes: Vec::new(),
            limits: Vec::new(),
        })
    }

    #[test]
    fn an_entry_lasts_until_exp_and_within_its_key_generation() {
        let cache = TokenCache::new(10);
        let key = digest("a.b.c");
        cache.insert(key, &identity("u"), now_secs() + 60, 1);
        assert_eq!(
            cache.get(&key, 1).map(|i| i.id.clone()),
            Some("u".to_string())
        );
        assert!(cache.get(&key, 2).is_none(), "the keys changed");
        assert!(cache.get(&digest("a.b.d"), 1).is_none());
        let expired = digest("x.y.z");
        cache.insert(expired, &identity("v"), now_secs(), 1);
        assert!(
            cache.get(&expired, 1).is_none(),
            "an expired token is never kept"
        );
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = TokenCache::new(64);
        for i in 0..1000 {
            cache.insert(digest(&format!("t{i}")), &identity("u"), now_secs() + 60, 1);
            assert!(cache.len() <= 64);
        }
        let last = digest("t999");
        assert!(cache.get(&last, 1).is_some(), "the newest entry is kept");
        let off = TokenCache::new(0);
        off.insert(last, &identity("u"), now_secs() + 60, 1);
        assert!(off.get(&last, 1).is_none());
    }
}
