//! Read queries for export bundles: the records of a time window (streamed,
//! a bundle may hold millions), single records behind the current standings,
//! the records that anchor each agent's chain at the window's edges, the
//! agents' key-binding leaves and the log's leaf hashes.
//!
//! Read-only; nothing here changes the store. Record rows carry their log
//! leaf index so the exporter can prove each one's inclusion.

use rusqlite::params;

use super::queries::{RECORD_COLUMNS, StoredRecord, stored_record};
use super::{Store, StoreError};
use custos_verify::tlog::Hash;

/// A key-binding leaf as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBindingLeaf {
    pub leaf_index: u64,
    pub agent_id: String,
    /// The leaf data: the key-binding JSON exactly as hashed into the log.
    pub data: Vec<u8>,
}

/// The records just outside a window that tie an agent's chain to it, so a
/// verifier can tell a chain that starts or ends there from one cut short.
#[derive(Debug, Clone)]
pub struct ChainContext {
    pub agent_id: String,
    /// With records in the window, the one at the first one's seq - 1 (none
    /// when that is seq 1); without, the last record collected before it.
    pub predecessor: Option<StoredRecord>,
    /// The record after the last one in the window (after the predecessor,
    /// or seq 1, when the window holds none), if the store has it.
    pub successor: Option<StoredRecord>,
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

    /// The chain context of each of `agents` around `[from, to]`, in the
    /// order of `agents`. A chain is contiguous in the store (the server
    /// accepts only seq = head + 1), so the neighbours are found by seq.
    pub fn chain_context(
        &self,
        agents: &[String],
        from: i64,
        to: i64,
    ) -> Result<Vec<ChainContext>, StoreError> {
        let spans: std::collections::HashMap<String, (u64, u64)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT agent_id, MIN(seq), MAX(seq) FROM records
                 WHERE collected_at BETWEEN ?1 AND ?2 AND agent_id IN (SELECT value FROM json_each(?3))
                 GROUP BY agent_id",
            )?;
            let rows = stmt.query_map(params![from, to, json_list(agents)?], |r| {
                Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(agents.len());
        for agent in agents {
            let (before, after) = match spans.get(agent) {
                Some(&(first, last)) => ((first > 1).then(|| first - 1), last + 1),
                None => {
                    let last_before: Option<i64> = self.conn().query_row(
                        "SELECT MAX(seq) FROM records WHERE agent_id = ?1 AND collected_at < ?2",
                        params![agent, from],
                        |r| r.get(0),
                    )?;
                    let last_before = last_before.map(|s| s as u64);
                    (last_before, last_before.map_or(1, |s| s + 1))
                }
            };
            let predecessor = match before {
                Some(seq) => Some(self.record(agent, seq)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("record {agent}/{seq} is missing from a contiguous chain"))
                })?),
                None => None,
            };
            let successor = self.record(agent, after)?;
            out.push(ChainContext { agent_id: agent.clone(), predecessor, successor });
        }
        Ok(out)
    }

    /// Streams the records of `agents` collected in `[from, to]`, by agent
    /// and seq, to `each`; stops at the first error `each` returns.
    pub fn each_record_between<E: From<StoreError>>(
        &self,
        agents: &[String],
        from: i64,
        to: i64,
        mut each: impl FnMut(StoredRecord) -> Result<(), E>,
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
            each(stored_record(row).map_err(StoreError::from)?)?;
        }
        Ok(())
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
