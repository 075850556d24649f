//! The durable, bounded spool of signed records awaiting the server's
//! acknowledgement (SQLite, WAL, `synchronous = FULL`).
//!
//! Invariants:
//! - A record is signed and stored in the same transaction that advances the
//!   chain tip, so a crash can neither lose a signed record nor reuse a seq.
//! - A record leaves the spool only when the server acknowledged it
//!   (accepted or duplicate), or into quarantine when refused for good.
//! - When the spool is full, collections are skipped and counted; the next
//!   record carries that count as an explicit, signed gap. Nothing already
//!   signed is ever dropped to make room.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custos_proto::evidence::{Envelope, EnvelopeSignature, Gap, payload_digest};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("spool {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq          INTEGER PRIMARY KEY,
    digest       BLOB    NOT NULL,
    payload      BLOB    NOT NULL,
    payload_type TEXT    NOT NULL,
    keyid        TEXT    NOT NULL,
    sig          BLOB    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chain (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq         INTEGER NOT NULL,
    last_digest      BLOB,
    missed           INTEGER NOT NULL DEFAULT 0,
    first_missed_at  TEXT,
    last_missed_at   TEXT
);
INSERT OR IGNORE INTO chain (id, last_seq) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS quarantine (
    seq          INTEGER PRIMARY KEY,
    payload      BLOB    NOT NULL,
    payload_type TEXT    NOT NULL,
    keyid        TEXT    NOT NULL,
    sig          BLOB    NOT NULL,
    reason       TEXT    NOT NULL,
    at           INTEGER NOT NULL
);
";

/// A signed record waiting in the spool.
#[derive(Debug, Clone, PartialEq)]
pub struct Spooled {
    pub seq: u64,
    pub envelope: Envelope,
}

/// What the next record must carry to extend the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainTip {
    pub seq: u64,
    pub prev: Option<[u8; 32]>,
    pub gap: Option<Gap>,
}

/// Result of trying to add a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored {
        seq: u64,
    },
    /// The spool is full: the collection was counted as missed.
    Missed {
        missed_so_far: u64,
    },
}

pub struct Spool {
    path: PathBuf,
    conn: Connection,
    max_records: u64,
}

impl Spool {
    pub fn open(path: &Path, max_records: u64) -> Result<Spool, SpoolError> {
        let sql = |source| SpoolError::Sql { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Spool { path: path.to_path_buf(), conn, max_records: max_records.max(1) })
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> SpoolError + '_ {
        move |source| SpoolError::Sql { path: self.path.clone(), source }
    }

    pub fn len(&self) -> Result<u64, SpoolError> {
        let n: i64 =
            self.conn.query_row("SELECT count(*) FROM records", [], |r| r.get(0)).map_err(self.sql())?;
        Ok(n as u64)
    }

    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.len()? == 0)
    }

    /// The last seq signed so far (0 before the first record).
    pub fn last_seq(&self) -> Result<u64, SpoolError> {
        let n: i64 = self
            .conn
            .query_row("SELECT last_seq FROM chain WHERE id = 1", [], |r| r.get(0))
            .map_err(self.sql())?;
        Ok(n as u64)
    }

    /// Signs and stores the next record, or counts a missed collection when
    /// the spool is full. `build` gets the chain tip and returns the signed
    /// envelope; it runs inside the transaction.
    pub fn append_with(
        &mut self,
        now_unix: i64,
        now_rfc3339: &str,
        build: impl FnOnce(&ChainTip) -> Envelope,
    ) -> Result<Appended, SpoolError> {
        let path = self.path.clone();
        let sql = |source| SpoolError::Sql { path: path.clone(), source };
        let max = self.max_records;
        let tx = self.conn.transaction().map_err(sql)?;
        let (last_seq, last_digest, missed, first_missed, last_missed): (
            i64,
            Option<Vec<u8>>,
            i64,
            Option<String>,
            Option<String>,
        ) = tx
            .query_row(
                "SELECT last_seq, last_digest, missed, first_missed_at, last_missed_at FROM chain WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(sql)?;
        let len: i64 = tx.query_row("SELECT count(*) FROM records", [], |r| r.get(0)).map_err(sql)?;
        if len as u64 >= max {
            tx.execute(
                "UPDATE chain SET missed = missed + 1, first_missed_at = coalesce(first_missed_at, ?1), last_missed_at = ?1 WHERE id = 1",
                [now_rfc3339],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            return Ok(Appended::Missed { missed_so_far: missed as u64 + 1 });
        }
        let prev = match last_digest {
            None => None,
            Some(d) => Some(<[u8; 32]>::try_from(d.as_slice()).map_err(|_| SpoolError::Corrupt {
                path: path.clone(),
                message: "chain digest is not 32 bytes".into(),
            })?),
        };
        let gap = (missed > 0).then(|| Gap {
            missed_collections: missed as u64,
            first_missed_at: first_missed.clone().unwrap_or_default(),
            last_missed_at: last_missed.clone().unwrap_or_default(),
            reason: format!("agent spool full ({max} records awaiting delivery); collections skipped"),
        });
        let tip = ChainTip { seq: last_seq as u64 + 1, prev, gap };
        let env = build(&tip);
        let digest = payload_digest(&env.payload);
        let [sig] = env.signatures.as_slice() else {
            return Err(SpoolError::Corrupt {
                path: path.clone(),
                message: "envelope must carry one signature".into(),
            });
        };
        tx.execute(
            "INSERT INTO records (seq, digest, payload, payload_type, keyid, sig, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![tip.seq as i64, digest.as_slice(), env.payload, env.payload_type, sig.keyid, sig.sig, now_unix],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE chain SET last_seq = ?1, last_digest = ?2, missed = 0, first_missed_at = NULL, last_missed_at = NULL WHERE id = 1",
            params![tip.seq as i64, digest.as_slice()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Appended::Stored { seq: tip.seq })
    }

    /// Up to `limit` records, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<Spooled>, SpoolError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, payload, payload_type, keyid, sig FROM records ORDER BY seq LIMIT ?1",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(Spooled {
                    seq: r.get::<_, i64>(0)? as u64,
                    envelope: Envelope {
                        payload: r.get(1)?,
                        payload_type: r.get(2)?,
                        signatures: vec![EnvelopeSignature { keyid: r.get(3)?, sig: r.get(4)? }],
                    },
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Removes acknowledged records.
    pub fn remove(&mut self, seqs: &[u64]) -> Result<(), SpoolError> {
        let path = self.path.clone();
        let sql = |source| SpoolError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM records WHERE seq = ?1").map_err(sql)?;
            for s in seqs {
                stmt.execute([*s as i64]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Moves a record the server refused for good out of the queue, keeping it.
    pub fn quarantine(&mut self, seq: u64, reason: &str, now_unix: i64) -> Result<(), SpoolError> {
        let path = self.path.clone();
        let sql = |source| SpoolError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO quarantine (seq, payload, payload_type, keyid, sig, reason, at)
             SELECT seq, payload, payload_type, keyid, sig, ?2, ?3 FROM records WHERE seq = ?1",
            params![seq as i64, reason, now_unix],
        )
        .map_err(sql)?;
        tx.execute("DELETE FROM records WHERE seq = ?1", [seq as i64]).map_err(sql)?;
        tx.commit().map_err(sql)
    }

    pub fn quarantined(&self) -> Result<u64, SpoolError> {
        let n: i64 =
            self.conn.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0)).map_err(self.sql())?;
        Ok(n as u64)
    }

    /// Collections skipped since the last stored record.
    pub fn missed(&self) -> Result<u64, SpoolError> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT missed FROM chain WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        Ok(n.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_proto::evidence::sign_envelope;
    use ed25519_dalek::SigningKey;

    fn build(key: &SigningKey) -> impl Fn(&ChainTip) -> Envelope + '_ {
        move |tip| {
            let body = format!(
                "{{\"seq\":{},\"prev\":{:?},\"gap\":{}}}",
                tip.seq,
                tip.prev.map(hex::encode),
                tip.gap.as_ref().map_or(0, |g| g.missed_collections)
            );
            sign_envelope(body.into_bytes(), key)
        }
    }

    #[test]
    fn records_chain_survive_reopen_and_leave_only_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let key = SigningKey::from_bytes(&[3; 32]);
        {
            let mut s = Spool::open(&path, 10).unwrap();
            assert_eq!(s.append_with(1, "t1", build(&key)).unwrap(), Appended::Stored { seq: 1 });
            assert_eq!(s.append_with(2, "t2", build(&key)).unwrap(), Appended::Stored { seq: 2 });
        }
        let mut s = Spool::open(&path, 10).unwrap();
        let p = s.pending(10).unwrap();
        assert_eq!(p.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        // Record 2 links to record 1.
        let d1 = hex::encode(payload_digest(&p[0].envelope.payload));
        assert!(String::from_utf8_lossy(&p[1].envelope.payload).contains(&d1));
        s.remove(&[1]).unwrap();
        assert_eq!(s.pending(10).unwrap().len(), 1);
        // Seq keeps counting after removal and reopen.
        assert_eq!(s.append_with(3, "t3", build(&key)).unwrap(), Appended::Stored { seq: 3 });
        assert_eq!(s.last_seq().unwrap(), 3);
    }

    #[test]
    fn full_spool_counts_missed_collections_and_declares_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[4; 32]);
        let mut s = Spool::open(&dir.path().join("spool.db"), 2).unwrap();
        s.append_with(1, "t1", build(&key)).unwrap();
        s.append_with(2, "t2", build(&key)).unwrap();
        assert_eq!(s.append_with(3, "t3", build(&key)).unwrap(), Appended::Missed { missed_so_far: 1 });
        assert_eq!(s.append_with(4, "t4", build(&key)).unwrap(), Appended::Missed { missed_so_far: 2 });
        // Nothing signed was dropped to make room.
        assert_eq!(s.pending(10).unwrap().len(), 2);
        s.remove(&[1, 2]).unwrap();
        let mut seen_gap = None;
        s.append_with(5, "t5", |tip| {
            seen_gap = tip.gap.clone();
            build(&key)(tip)
        })
        .unwrap();
        let gap = seen_gap.expect("gap declared");
        assert_eq!(gap.missed_collections, 2);
        assert_eq!((gap.first_missed_at.as_str(), gap.last_missed_at.as_str()), ("t3", "t4"));
        assert_eq!(s.missed().unwrap(), 0);
        assert_eq!(s.last_seq().unwrap(), 3);
    }

    #[test]
    fn quarantine_keeps_a_refused_record_out_of_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut s = Spool::open(&dir.path().join("spool.db"), 5).unwrap();
        s.append_with(1, "t1", build(&key)).unwrap();
        s.quarantine(1, "malformed", 2).unwrap();
        assert!(s.is_empty().unwrap());
        assert_eq!(s.quarantined().unwrap(), 1);
    }
}
