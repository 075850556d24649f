//! The agent's state directory: identity, keys, certificates and spool.
//!
//! Layout (directory mode 0700, every file 0600):
//! `agent.toml` (agent id, server address), `evidence.key` (Ed25519 seed),
//! `tls.key` + `client.pem` (mTLS identity), `ca.pem` (the server's CA),
//! `spool.db` (signed records not yet acknowledged), `policy.pb` (the last
//! policy the server sent, as received).
//!
//! Invariant: private keys are generated here and never leave this dir.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path} is not an enrolled agent's state dir: run `custos-agent enroll` first")]
    NotEnrolled { path: PathBuf },
    #[error("{path} is readable by others (mode {mode:o}); it must be 0700 / 0600")]
    Permissions { path: PathBuf, mode: u32 },
}

/// Identity and server address, written at enrollment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentIdentity {
    pub agent_id: String,
    /// `HOST:PORT` of the server's gRPC endpoint.
    pub server: String,
    /// Name the server certificate must carry (defaults to the host part).
    pub server_name: String,
    /// Client certificate expiry, Unix seconds.
    pub cert_not_after: i64,
    /// Client certificate start, Unix seconds (renewal happens at 2/3 of the lifetime).
    pub cert_not_before: i64,
}

#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn identity(&self) -> PathBuf {
        self.0.join("agent.toml")
    }
    pub fn evidence_key(&self) -> PathBuf {
        self.0.join("evidence.key")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.0.join("tls.key")
    }
    pub fn client_cert(&self) -> PathBuf {
        self.0.join("client.pem")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.pem")
    }
    pub fn spool(&self) -> PathBuf {
        self.0.join("spool.db")
    }
    pub fn policy(&self) -> PathBuf {
        self.0.join("policy.pb")
    }

    /// Creates the directory with mode 0700 (or tightens it).
    pub fn create(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.0).map_err(io(&self.0))?;
        set_mode(&self.0, 0o700)
    }

    /// Refuses a state dir or key files that others can read.
    pub fn check_permissions(&self) -> Result<(), StateError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for p in [self.0.clone(), self.evidence_key(), self.tls_key()] {
                let mode = std::fs::metadata(&p).map_err(io(&p))?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(StateError::Permissions { path: p, mode });
                }
            }
        }
        Ok(())
    }

    pub fn load_identity(&self) -> Result<AgentIdentity, StateError> {
        let path = self.identity();
        if !path.exists() {
            return Err(StateError::NotEnrolled { path: self.0.clone() });
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        toml::from_str(&text).map_err(|e| StateError::Invalid { path, message: e.to_string() })
    }

    pub fn save_identity(&self, id: &AgentIdentity) -> Result<(), StateError> {
        let text = toml::to_string(id)
            .map_err(|e| StateError::Invalid { path: self.identity(), message: e.to_string() })?;
        write_private(&self.identity(), text.as_bytes())
    }

    pub fn load_evidence_key(&self) -> Result<SigningKey, StateError> {
        let path = self.evidence_key();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|e| StateError::Invalid {
            path: path.clone(),
            message: format!("not a hex Ed25519 seed: {e}"),
        })?;
        Ok(SigningKey::from_bytes(&seed))
    }

    pub fn read(&self, path: &Path) -> Result<String, StateError> {
        std::fs::read_to_string(path).map_err(io(path))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StateError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes a file with mode 0600, atomically (temp file + rename), replacing
/// any previous version.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(contents).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A new TLS key (ECDSA P-256) and a CSR for it (the subject is ignored by the server).
pub fn new_tls_key_and_csr() -> Result<(rcgen::KeyPair, Vec<u8>), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

/// A new Ed25519 evidence key from the OS random source.
pub fn generate_evidence_key() -> SigningKey {
    let mut seed = [0u8; 32];
    // Without an OS random source no key can be made safely: stop.
    getrandom::fill(&mut seed).expect("the operating system's random source is unavailable");
    SigningKey::from_bytes(&seed)
}
