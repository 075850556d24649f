//! Persistence in SQLite: the only module that knows SQL.
//!
//! One database file in the data dir, in WAL mode with `synchronous = FULL`,
//! so an acknowledged record survives a crash or power loss. The schema is
//! versioned by `PRAGMA user_version`; [`migrations`] applies what is missing.
//!
//! Write transactions begin `IMMEDIATE`: a read snapshot that later wants
//! to write would fail at once when another writer committed in between
//! (WAL), where an immediate one waits its turn under the busy timeout.
//!
//! Invariants: every write that belongs together (a record, its parsed
//! results, the agent's chain head) happens in one transaction; callers
//! acknowledge only after [`records::RecordWriter::append`] returned.

pub mod agents;
pub mod bulk;
pub mod exceptions;
pub mod export;
pub mod migrations;
pub mod queries;
pub mod records;
pub mod requirements;
pub mod risks;
pub mod security_events;
pub mod tlog;
pub mod tokens;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database migration {version} failed: {source}")]
    Migration { version: u32, source: rusqlite::Error },
    #[error("database is at schema version {found}, newer than this server ({supported})")]
    TooNew { found: u32, supported: u32 },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Opens a connection with the pragmas every connection needs.
pub fn connect(path: &Path) -> Result<Connection, StoreError> {
    let open = |source| StoreError::Open { path: path.to_path_buf(), source };
    let conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(open)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(open)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(open)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(open)?;
    // 64 MiB of page cache instead of SQLite's 2 MiB: the change log's
    // indexes and the fleet's states are read and written in bulk, and a
    // small cache turns that into disk reads.
    conn.pragma_update(None, "cache_size", -65_536).map_err(open)?;
    Ok(conn)
}

/// Runs WAL checkpoints on a connection of its own.
pub struct Checkpointer(Connection);

impl Checkpointer {
    /// A passive checkpoint: copies what it can without blocking writers.
    pub fn passive(&self) -> Result<(), StoreError> {
        self.0.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// The shared handle for everything but the ingest hot path (which owns its
/// own connection in a [`records::RecordWriter`]).
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = connect(path)?;
        migrations::migrate(&mut conn)?;
        Ok(Store { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A writer for accepted records, on its own connection. It never
    /// checkpoints the WAL itself (see [`Store::checkpointer`]), so commits
    /// on the ingest path do not wait for checkpoints.
    pub fn record_writer(&self) -> Result<records::RecordWriter, StoreError> {
        let conn = connect(&self.path)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(records::RecordWriter::new(conn))
    }

    /// A connection that copies the WAL back into the database, off the ingest path.
    pub fn checkpointer(&self) -> Result<Checkpointer, StoreError> {
        Ok(Checkpointer(connect(&self.path)?))
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions
        // roll back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// A store in a fresh temporary directory, for unit tests; the directory
/// lives as long as the returned guard.
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("custos.db")).expect("open store");
    (dir, store)
}
