//! The data dir's layout ([`DataDir`]) and what the server reads from and
//! writes into it besides the database: private files, the log key, the policy and mappings in force
//! (and, through `catalog_imports`, imported catalogs). The composition
//! root, the keeper, the export and the API all load through here, so none
//! of them reaches into another for it.

pub mod catalog_imports;
mod log_key;
mod policy;
pub mod reload;

use std::path::{Path, PathBuf};

pub use catalog_imports::load_catalog;
pub use log_key::log_signer;
pub use policy::{PolicyLoadError, load_policy, refresh_catalog, refresh_policy};

/// A data-dir file that could not be read or written, or holds what it must not.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io { path: path.to_path_buf(), source }
}

/// Writes a file readable by its owner only; never over an existing one.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Files in the data dir.
#[derive(Debug, Clone)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
    pub fn database(&self) -> PathBuf {
        self.0.join("custos.db")
    }
    /// Imported OSCAL catalogs and their index.
    pub fn catalogs(&self) -> PathBuf {
        self.0.join("catalogs")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.0.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.0.join("server.key")
    }
    /// The transparency log's signing key (Go note private-key string), apart from the CA key.
    pub fn log_key(&self) -> PathBuf {
        self.0.join("log.key")
    }
    /// The organisation's check → control mappings, replacing the built-in
    /// ones (optional; start from `server/data/mappings.toml`).
    pub fn mappings(&self) -> PathBuf {
        self.0.join("mappings.toml")
    }
    /// The organisation's policy, merged over the built-in one (optional).
    pub fn policy(&self) -> PathBuf {
        self.0.join("policy.toml")
    }
}
