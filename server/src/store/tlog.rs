//! The transparency log's persistence: the stored subtree hashes
//! (`tlog_hashes`, the read side is `custos_verify::tlog::TreeStore`), what each leaf is
//! (`tlog_leaves`), and the signed checkpoints. Leaves are appended inside
//! the caller's transaction, so a record and its leaf commit together.
//!
//! Invariants: the hash table is append-only; a checkpoint is signed only
//! when the log is consistent with the last one signed (a consistency proof
//! from the stored hashes verifies), so the server never signs two
//! inconsistent checkpoints.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError};
use custos_verify::leaf::{KEY_BINDING_TYPE, KeyBinding};
use custos_verify::tlog::merkle::{hashes_to_append, prove_consistency, prove_inclusion, root};
use custos_verify::tlog::{
    Checkpoint, ConsistencyProof, Hash, InclusionProof, NoteSigner, TreeError, TreeStore, leaf_hash,
};

/// A view of the stored hashes through one connection (or transaction).
pub(crate) struct SqlTree<'a> {
    conn: &'a Connection,
    size: u64,
}

impl<'a> SqlTree<'a> {
    pub(crate) fn open(conn: &'a Connection) -> Result<SqlTree<'a>, StoreError> {
        let size: i64 =
            conn.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM tlog_hashes WHERE level = 0", [], |r| {
                r.get(0)
            })?;
        Ok(SqlTree { conn, size: size as u64 })
    }
}

impl TreeStore for SqlTree<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn subtree(&self, level: u8, index: u64) -> Result<Hash, TreeError> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| TreeError::Store { level, index, source: e };
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT hash FROM tlog_hashes WHERE level = ?1 AND idx = ?2",
                params![level, index as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| fail(Box::new(e)))?;
        let bytes = bytes.ok_or_else(|| fail("no stored hash".into()))?;
        <Hash>::try_from(bytes.as_slice()).map_err(|_| fail("stored hash is not 32 bytes".into()))
    }
}

fn tree_err(e: TreeError) -> StoreError {
    StoreError::Corrupt(format!("transparency log: {e}"))
}

/// What a leaf logs.
pub(crate) enum LeafKind<'a> {
    /// An accepted record; its data is the envelope, rebuilt from `records`.
    Record { agent_id: &'a str, seq: u64 },
    /// A key-binding event; its data is kept with the leaf.
    KeyBinding { agent_id: &'a str },
    /// An audit-trail row (an auditor's read, an export); its data is kept
    /// with the leaf.
    Audit,
}

/// Appends leaves inside one transaction, keeping the hashes it wrote in
/// memory: the left siblings a new leaf needs are nearly always among them,
/// so a batch reads the table once for its size and rarely after.
pub(crate) struct LogAppender {
    size: u64,
    written: std::collections::HashMap<(u8, u64), Hash>,
}

/// The stored hashes as seen through an appender.
struct Overlay<'a> {
    conn: &'a Connection,
    size: u64,
    written: &'a std::collections::HashMap<(u8, u64), Hash>,
}

impl TreeStore for Overlay<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn subtree(&self, level: u8, index: u64) -> Result<Hash, TreeError> {
        match self.written.get(&(level, index)) {
            Some(h) => Ok(*h),
            None => SqlTree { conn: self.conn, size: self.size }.subtree(level, index),
        }
    }
}

impl LogAppender {
    pub(crate) fn open(conn: &Connection) -> Result<LogAppender, StoreError> {
        Ok(LogAppender { size: SqlTree::open(conn)?.size, written: std::collections::HashMap::new() })
    }

    /// Appends one leaf with `data`; returns its index.
    pub(crate) fn append(
        &mut self,
        conn: &Connection,
        kind: LeafKind<'_>,
        data: &[u8],
        at: i64,
    ) -> Result<u64, StoreError> {
        let index = self.size;
        let rows =
            hashes_to_append(&Overlay { conn, size: self.size, written: &self.written }, leaf_hash(data))
                .map_err(tree_err)?;
        let mut insert =
            conn.prepare_cached("INSERT INTO tlog_hashes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for r in rows {
            insert.execute(params![r.level, r.index as i64, r.hash.as_slice()])?;
            self.written.insert((r.level, r.index), r.hash);
        }
        let (k, agent, seq, stored) = match kind {
            LeafKind::Record { agent_id, seq } => ("record", Some(agent_id), Some(seq as i64), None),
            LeafKind::KeyBinding { agent_id } => ("key_binding", Some(agent_id), None, Some(data)),
            LeafKind::Audit => ("audit", None, None, Some(data)),
        };
        conn.prepare_cached(
            "INSERT INTO tlog_leaves (idx, kind, agent_id, record_seq, data, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![index as i64, k, agent, seq, stored, at])?;
        self.size += 1;
        Ok(index)
    }
}

/// Logs a key-binding event inside the caller's transaction.
pub(crate) fn log_key_binding(
    conn: &Connection,
    event: &str,
    agent_id: &str,
    evidence_key: &[u8],
    at: i64,
) -> Result<u64, StoreError> {
    let b = KeyBinding {
        type_: KEY_BINDING_TYPE.into(),
        event: event.into(),
        agent_id: agent_id.into(),
        evidence_key: hex::encode(evidence_key),
        at,
    };
    let data = serde_json::to_vec(&b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    LogAppender::open(conn)?.append(conn, LeafKind::KeyBinding { agent_id }, &data, at)
}

/// A stored signed checkpoint.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: String,
    /// The signed note text (C2SP tlog-checkpoint).
    pub note: String,
    pub at: i64,
}

/// What signing a checkpoint did.
#[derive(Debug)]
pub enum Signed {
    /// A new checkpoint over more leaves.
    New(StoredCheckpoint),
    /// The log has not grown since the last one.
    Unchanged,
}

impl Store {
    /// Number of leaves in the log.
    pub fn tlog_size(&self) -> Result<u64, StoreError> {
        Ok(SqlTree::open(&self.conn())?.size)
    }

    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT size, root, note, at FROM tlog_checkpoints ORDER BY size DESC LIMIT 1",
                [],
                |r| {
                    Ok(StoredCheckpoint {
                        size: r.get::<_, i64>(0)? as u64,
                        root: base64_of(&r.get::<_, Vec<u8>>(1)?),
                        note: r.get(2)?,
                        at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Signs a checkpoint over the whole log if it grew, after checking it
    /// is consistent with the last checkpoint signed. A log that is not (its
    /// stored hashes were altered) is refused: nothing is signed.
    pub fn sign_checkpoint(&self, signer: &NoteSigner, origin: &str, now: i64) -> Result<Signed, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let tree = SqlTree::open(&tx)?;
        let last: Option<(u64, String)> = tx
            .query_row("SELECT size, note FROM tlog_checkpoints ORDER BY size DESC LIMIT 1", [], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?;
        if last.as_ref().is_some_and(|(s, _)| *s == tree.size) || (last.is_none() && tree.size == 0) {
            return Ok(Signed::Unchanged);
        }
        let head = root(&tree, tree.size).map_err(tree_err)?;
        let new = Checkpoint::new(origin, tree.size, head).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if let Some((old_size, old_note)) = &last {
            let old = Checkpoint::open(old_note.as_bytes(), origin, &signer.verifier_key())
                .map_err(|e| StoreError::Corrupt(format!("last checkpoint does not verify: {e}")))?;
            let proof = prove_consistency(&tree, *old_size, tree.size).map_err(tree_err)?;
            custos_verify::tlog::check_consistent(&old, &new, &proof).map_err(|e| {
                StoreError::Corrupt(format!(
                    "refusing to sign: the log is not consistent with checkpoint {old_size}: {e}"
                ))
            })?;
        }
        let note = new.sign(signer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO tlog_checkpoints (size, root, note, at) VALUES (?1, ?2, ?3, ?4)",
            params![tree.size as i64, head.as_slice(), note, now],
        )?;
        tx.commit()?;
        Ok(Signed::New(StoredCheckpoint { size: new.size(), root: base64_of(&head), note, at: now }))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves, with the leaf hash.
    pub fn tlog_inclusion(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Result<(Hash, InclusionProof), TreeError>, StoreError> {
        let conn = self.conn();
        let tree = SqlTree::open(&conn)?;
        let proof = match prove_inclusion(&tree, index, size) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(tree.subtree(0, index).map(|leaf| (leaf, proof)))
    }

    /// The consistency proof between the trees of `old` and `new` leaves.
    pub fn tlog_consistency(
        &self,
        old: u64,
        new: u64,
    ) -> Result<Result<ConsistencyProof, TreeError>, StoreError> {
        let conn = self.conn();
        let tree = SqlTree::open(&conn)?;
        Ok(prove_consistency(&tree, old, new))
    }

    /// The leaf index of a stored record.
    pub fn record_leaf(&self, agent_id: &str, seq: u64) -> Result<Option<u64>, StoreError> {
        let conn = self.conn();
        let idx: Option<Option<i64>> = conn
            .query_row(
                "SELECT leaf_index FROM records WHERE agent_id = ?1 AND seq = ?2",
                params![agent_id, seq as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(idx.flatten().map(|i| i as u64))
    }
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
