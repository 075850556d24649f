//! What happens to personal data before a record is signed.
//!
//! Host names, user names and network addresses identify people. The agent
//! configuration decides per kind whether it is collected as is, replaced by
//! a keyed pseudonym, or left out. A pseudonym is HMAC-SHA256 over the value
//! with a deployment-wide secret: the same user gives the same token on every
//! host (so "one admin account on 40 hosts" stays visible), while the name
//! cannot be recovered, or guessed by hashing candidates, without the secret.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The kinds of personal data collectors may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personal {
    UserName,
    HostName,
    Address,
}

/// What to do with one kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handling {
    #[default]
    Collect,
    Pseudonymise,
    Omit,
}

/// The `[privacy]` section of the agent configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    #[serde(default)]
    pub user_names: Handling,
    #[serde(default)]
    pub host_names: Handling,
    #[serde(default)]
    pub addresses: Handling,
    /// File holding the deployment secret (at least 32 bytes); required when
    /// anything is pseudonymised.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("pseudonymisation is on but no key_file is configured")]
    NoKey,
}

/// The privacy settings in force for a collection.
#[derive(Clone, Default)]
pub struct Privacy {
    user_names: Handling,
    host_names: Handling,
    addresses: Handling,
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Privacy")
            .field("user_names", &self.user_names)
            .field("host_names", &self.host_names)
            .field("addresses", &self.addresses)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Shortest accepted deployment secret.
pub const MIN_KEY_BYTES: usize = 32;

impl Privacy {
    /// Settings from configuration, reading the key file when needed.
    pub fn load(config: &PrivacyConfig) -> Result<Privacy, PrivacyError> {
        let needs_key =
            [config.user_names, config.host_names, config.addresses].contains(&Handling::Pseudonymise);
        let key = match (&config.key_file, needs_key) {
            (_, false) => None,
            (None, true) => return Err(PrivacyError::NoKey),
            (Some(path), true) => Some(read_key(path)?),
        };
        Ok(Privacy {
            user_names: config.user_names,
            host_names: config.host_names,
            addresses: config.addresses,
            key,
        })
    }

    /// Settings with an in-memory key (tests, benchmarks).
    pub fn with_key(user_names: Handling, host_names: Handling, addresses: Handling, key: &[u8]) -> Privacy {
        Privacy { user_names, host_names, addresses, key: Some(key.to_vec()) }
    }

    fn handling(&self, kind: Personal) -> Handling {
        match kind {
            Personal::UserName => self.user_names,
            Personal::HostName => self.host_names,
            Personal::Address => self.addresses,
        }
    }

    /// The value as it may enter a record, or `None` when omitted.
    pub fn apply(&self, kind: Personal, value: &str) -> Option<String> {
        match (self.handling(kind), &self.key) {
            (Handling::Collect, _) => Some(value.to_string()),
            (Handling::Omit, _) | (Handling::Pseudonymise, None) => None,
            (Handling::Pseudonymise, Some(key)) => Some(pseudonym(key, kind, value)),
        }
    }
}

/// `p:` and the first 16 bytes of HMAC-SHA256(key, kind || 0 || value), hex.
/// The kind is bound in so a user and a host of the same name differ.
pub fn pseudonym(key: &[u8], kind: Personal, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    let tag: &[u8] = match kind {
        Personal::UserName => b"user",
        Personal::HostName => b"host",
        Personal::Address => b"addr",
    };
    mac.update(tag);
    mac.update(&[0]);
    mac.update(value.as_bytes());
    let out = mac.finalize().into_bytes();
    format!("p:{}", hex::encode(&out[..16]))
}

fn read_key(path: &Path) -> Result<Vec<u8>, PrivacyError> {
    let err = |message: String| PrivacyError::Key { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let trimmed = bytes.trim_ascii().to_vec();
    if trimmed.len() < MIN_KEY_BYTES {
        return Err(err(format!("the key has {} bytes; at least {MIN_KEY_BYTES} are needed", trimmed.len())));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_kind_bound() {
        let key = [7u8; 32];
        let p = Privacy::with_key(Handling::Pseudonymise, Handling::Collect, Handling::Omit, &key);
        let a = p.apply(Personal::UserName, "alice").unwrap();
        assert!(a.starts_with("p:") && a.len() == 34, "{a}");
        assert_eq!(p.apply(Personal::UserName, "alice").unwrap(), a);
        assert_ne!(p.apply(Personal::UserName, "bob").unwrap(), a);
        assert_ne!(pseudonym(&[8u8; 32], Personal::UserName, "alice"), a);
        assert_ne!(pseudonym(&key, Personal::HostName, "alice"), a);
        assert_eq!(p.apply(Personal::HostName, "web1").as_deref(), Some("web1"));
        assert_eq!(p.apply(Personal::Address, "10.0.0.1"), None);
    }

    #[test]
    fn pseudonymisation_needs_a_real_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |key_file| PrivacyConfig {
            user_names: Handling::Pseudonymise,
            key_file,
            ..PrivacyConfig::default()
        };
        assert!(matches!(Privacy::load(&cfg(None)), Err(PrivacyError::NoKey)));
        let short = dir.path().join("short");
        std::fs::write(&short, "tooshort").unwrap();
        let e = Privacy::load(&cfg(Some(short.clone()))).unwrap_err().to_string();
        assert!(e.contains("short") && e.contains("at least 32"), "{e}");
        let good = dir.path().join("good");
        std::fs::write(&good, [b'k'; 40]).unwrap();
        let p = Privacy::load(&cfg(Some(good))).unwrap();
        assert!(p.apply(Personal::UserName, "root").unwrap().starts_with("p:"));
        assert!(!format!("{p:?}").contains("kkkk"));
    }
}
