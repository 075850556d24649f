//! Read queries for export bundles: the records of a time window (streamed,
//! a bundle may hold millions), single records behind the current standings,
//! the agents' key-binding leaves and the log's leaf hashes.
//!
//! Read-only; nothing here changes the store. Record rows carry their log
//! leaf index so the exporter can prove each one's inclusion.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::tlog::Hash;

/// A stored record as an export needs it: the signed parts verbatim, its
/// chain digest, its collection time and its leaf in the log.
#[derive(Debug, Clone)]
pub struct ExportRecord {
    pub agent_id: String,
    pub seq: u64,
    pub digest: Vec<u8>,
    pub payload: Vec<u8>,
    pub payload_type: String,
    pub keyid: String,
    pub sig: Vec<u8>,
    pub collected_at: i64,
    /// `None` for records stored before the log existed.
    pub leaf_index: Option<u64>,
}

impl ExportRecord {
    /// The DSSE JSON envelope: the bytes of its log leaf and of
    /// `GET /api/v1/records/{agent}/{seq}`.
    pub fn envelope_json(&self) -> String {
        custos_proto::evidence::Envelope {
            payload: self.payload.clone(),
            payload_type: self.payload_type.clone(),
            signatures: vec![custos_proto::evidence::EnvelopeSignature {
                keyid: self.keyid.clone(),
                sig: self.sig.clone(),
            }],
        }
        .to_json()
    }
}

const RECORD_COLUMNS: &str =
    "agent_id, seq, digest, payload, payload_type, keyid, sig, collected_at, leaf_index";

fn export_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRecord> {
    Ok(ExportRecord {
        agent_id: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        digest: r.get(2)?,
        payload: r.get(3)?,
        payload_type: r.get(4)?,
        keyid: r.get(5)?,
        sig: r.get(6)?,
        collected_at: r.get(7)?,
        leaf_index: r.get::<_, Option<i64>>(8)?.map(|i| i as u64),
    })
}

/// A key-binding leaf as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBindingLeaf {
    pub leaf_index: u64,
    pub agent_id: String,
    /// The leaf data: the key-binding JSON exactly as hashed into the log.
    pub data: Vec<u8>,
}

/// A JSON array of strings, for `IN (SELECT value FROM json_each(?))`.
fn json_list(items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Corrupt(format!("list: {e}")))
}

impl Store {
    /// Agents among `agents` with a record collected in `[from, to]` that
    /// carries one of `checks`.
    pub fn agents_with_checks_between(
        &self,
        agents: &[String],
        from: i64,
        to: i64,
        checks: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT r.agent_id FROM records r, json_each(r.results) j
             WHERE r.collected_at BETWEEN ?1 AND ?2
               AND r.agent_id IN (SELECT value FROM json_each(?3))
               AND json_extract(j.value, '$.id') IN (SELECT value FROM json_each(?4))
             ORDER BY r.agent_id",
        )?;
        let rows = stmt.query_map(params![from, to, json_list(agents)?, json_list(checks)?], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many records of `agents` were collected in `[from, to]`, and the
    /// highest log leaf among them (`None`: none has a leaf).
    pub fn window_extent(
        &self,
        agents: &[String],
        from: i64,
        to: i64,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let conn = self.conn();
        let (n, max): (i64, Option<i64>) = conn.query_row(
            "SELECT count(*), MAX(leaf_index) FROM records
             WHERE collected_at BETWEEN ?1 AND ?2 AND agent_id IN (SELECT value FROM json_each(?3))",
            params![from, to, json_list(agents)?],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n as u64, max.map(|m| m as u64)))
    }

    /// Streams the records of `agents` collected in `[from, to]`, by agent
    /// and seq, to `each`; stops at the first error `each` returns.
    pub fn each_record_between<E: From<StoreError>>(
        &self,
        agents: &[String],
        from: i64,
        to: i64,
        mut each: impl FnMut(ExportRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM records
                 WHERE collected_at BETWEEN ?1 AND ?2 AND agent_id IN (SELECT value FROM json_each(?3))
                 ORDER BY agent_id, seq"
            ))
            .map_err(StoreError::from)?;
        let mut rows = stmt.query(params![from, to, json_list(agents)?]).map_err(StoreError::from)?;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            each(export_record(row).map_err(StoreError::from)?)?;
        }
        Ok(())
    }

    /// One record, for export.
    pub fn export_record(&self, agent_id: &str, seq: u64) -> Result<Option<ExportRecord>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM records WHERE agent_id = ?1 AND seq = ?2"),
                params![agent_id, seq as i64],
                export_record,
            )
            .optional()?)
    }

    /// Every key-binding leaf of `agents` (enrolled, renewed, revoked), in log order.
    pub fn key_binding_leaves(&self, agents: &[String]) -> Result<Vec<KeyBindingLeaf>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT idx, agent_id, data FROM tlog_leaves
             WHERE kind = 'key_binding' AND agent_id IN (SELECT value FROM json_each(?1))
             ORDER BY idx",
        )?;
        let rows = stmt.query_map(params![json_list(agents)?], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<Vec<u8>>>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (idx, agent, data) = row?;
            let (Some(agent_id), Some(data)) = (agent, data) else {
                return Err(StoreError::Corrupt(format!("key-binding leaf {idx} has no agent or no data")));
            };
            out.push(KeyBindingLeaf { leaf_index: idx as u64, agent_id, data });
        }
        Ok(out)
    }

    /// The hashes of the first `size` leaves, in order.
    pub fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT idx, hash FROM tlog_hashes WHERE level = 0 AND idx < ?1 ORDER BY idx")?;
        let mut rows = stmt.query(params![size as i64])?;
        let mut out = Vec::with_capacity(size as usize);
        while let Some(row) = rows.next()? {
            let idx: i64 = row.get(0)?;
            let bytes: Vec<u8> = row.get(1)?;
            if idx as u64 != out.len() as u64 {
                return Err(StoreError::Corrupt(format!(
                    "transparency log: leaf hash {} is missing",
                    out.len()
                )));
            }
            let hash = <Hash>::try_from(bytes.as_slice()).map_err(|_| {
                StoreError::Corrupt(format!("transparency log: leaf hash {idx} is not 32 bytes"))
            })?;
            out.push(hash);
        }
        if (out.len() as u64) < size {
            return Err(StoreError::Corrupt(format!(
                "transparency log: {} leaf hashes stored, the checkpoint covers {size}",
                out.len()
            )));
        }
        Ok(out)
    }
}
