//! API keys, stored and looked up by SHA-256: the config never needs the
//! key itself, and a lookup's timing depends on the hash, not the key.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::settings::ApiKey;
use super::{Caller, Failure, Identity};
use crate::config::AuthMethod;

/// Hex SHA-256 of a key, as `auth.api_keys[].sha256` expects.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
pub struct ApiKeyStore {
    by_hash: HashMap<[u8; 32], Caller>,
}

impl ApiKeyStore {
    pub fn new(keys: &[ApiKey]) -> Self {
        let by_hash = keys
            .iter()
            .map(|key| {
                let caller = Caller::new(AuthMethod::ApiKey, &key.id, &key.grants);
                (key.sha256, caller)
            })
            .collect();
        Self { by_hash }
    }

    /// The identity of an enabled key; unknown and disabled keys look alike.
    pub fn lookup(&self, key: &str) -> Result<Arc<Identity>, Failure> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        match self.by_hash.get(&hash) {
            Some(caller) => caller.identity(),
            None => Err(Failure::UnknownKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(text: &str) -> ApiKeyStore {
        let yaml = format!(
            "auth:\n  api_keys:\n{text}upstreams:\n  u:\n    backends:\n      - base_url: http://127.0.0.1:9\n\
             routes:\n  - {{name: r, paths: [/v1], upstream: u}}\n"
        );
        let config = crate::settings::load_str(&yaml, "test.yaml", |_| None).unwrap();
        ApiKeyStore::new(&config.auth.api_keys)
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn lookup_by_hash_or_key() {
        let store = store(&format!(
            "    - {{id: a, sha256: \"{}\", team: t, owner: alice}}\n\
             \x20   - {{id: b, key: sk-b, team: t}}\n\
             \x20   - {{id: c, key: sk-c, enabled: false}}\n",
            hash_key("sk-a").to_uppercase()
        ));
        let a = store.lookup("sk-a").unwrap();
        assert_eq!((a.id.as_str(), a.owner.as_deref()), ("a", Some("alice")));
        assert_eq!(store.lookup("sk-b").unwrap().team.as_deref(), Some("t"));
        assert_eq!(store.lookup("sk-c"), Err(Failure::UnknownKey));
        assert_eq!(store.lookup("sk-x"), Err(Failure::UnknownKey));
    }

    #[test]
    fn model_permissions_and_scopes() {
        let store = store("    - {id: a, key: k, models: [\"gpt-*\"], scopes: [chat]}\n");
        let id = store.lookup("k").unwrap();
        assert!(id.may_use("gpt-4o"));
        assert!(!id.may_use("claude-3"));
        assert!(id.has_scopes(&["chat".to_string()]));
        assert!(!id.has_scopes(&["chat".to_string(), "admin".to_string()]));
    }
}
