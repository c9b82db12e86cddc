//! API keys, stored and looked up by SHA-256: the config never needs the
//! key itself, and a lookup's timing depends on the hash, not the key.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{Failure, Identity};
use crate::config::{ApiKeySettings, AuthMethod};

/// Hex SHA-256 of a key, as `auth.api_keys[].sha256` expects.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

struct Entry {
    identity: Identity,
    enabled: bool,
}

#[derive(Default)]
pub struct ApiKeyStore {
    by_hash: HashMap<[u8; 32], Entry>,
}

impl ApiKeyStore {
    pub fn from_config(keys: &[ApiKeySettings]) -> Result<Self, String> {
        let mut by_hash = HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let hash = match (&key.sha256, &key.key) {
                (Some(hex), _) => decode_hex(&hex.to_ascii_lowercase())
                    .ok_or_else(|| format!("auth.api_keys[{i}].sha256: not 64 hex digits"))?,
                (None, Some(secret)) => Sha256::digest(secret.expose().as_bytes()).into(),
                (None, None) => return Err(format!("auth.api_keys[{i}]: no key")),
            };
            let identity = Identity {
                method: AuthMethod::ApiKey,
                id: key.id.clone(),
                team: key.team.clone(),
                models: key.models.clone(),
                scopes: Vec::new(),
                limits: key.limits.clone(),
            };
            let entry = Entry {
                identity,
                enabled: key.enabled,
            };
            if by_hash.insert(hash, entry).is_some() {
                return Err(format!(
                    "auth.api_keys[{i}]: the same key is configured twice"
                ));
            }
        }
        Ok(Self { by_hash })
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The identity of an enabled key; unknown and disabled keys look alike.
    pub fn lookup(&self, key: &str) -> Result<Identity, Failure> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        match self.by_hash.get(&hash) {
            Some(entry) if entry.enabled => Ok(entry.identity.clone()),
            _ => Err(Failure::UnknownKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn settings(
        id: &str,
        sha256: Option<String>,
        key: Option<&str>,
        enabled: bool,
    ) -> ApiKeySettings {
        ApiKeySettings {
            id: id.into(),
            sha256,
            key: key.map(Secret::new),
            owner: None,
            team: Some("t".into()),
            models: vec!["gpt-*".into()],
            limits: vec![],
            enabled,
        }
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
        let store = ApiKeyStore::from_config(&[
            settings("a", Some(hash_key("sk-a").to_uppercase()), None, true),
            settings("b", None, Some("sk-b"), true),
            settings("c", None, Some("sk-c"), false),
        ])
        .unwrap();
        assert_eq!(store.lookup("sk-a").unwrap().id, "a");
        assert_eq!(store.lookup("sk-b").unwrap().team.as_deref(), Some("t"));
        assert_eq!(store.lookup("sk-c"), Err(Failure::UnknownKey));
        assert_eq!(store.lookup("sk-x"), Err(Failure::UnknownKey));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let dup = ApiKeyStore::from_config(&[
            settings("a", None, Some("same"), true),
            settings("b", None, Some("same"), true),
        ]);
        assert!(dup.is_err());
    }

    #[test]
    fn model_permissions() {
        let store = ApiKeyStore::from_config(&[settings("a", None, Some("k"), true)]).unwrap();
        let id = store.lookup("k").unwrap();
        assert!(id.may_use("gpt-4o"));
        assert!(!id.may_use("claude-3"));
    }
}
