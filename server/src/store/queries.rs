//! Read-side queries for the HTTP API, evaluation and tests.

use std::collections::HashMap;

use custos_proto::evidence::CheckStatus;
use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub agent_id: String,
    pub display_name: String,
    pub enrolled_at: i64,
    pub last_seen_at: Option<i64>,
    pub last_collected_at: Option<i64>,
    pub head_seq: u64,
    pub os: String,
    pub os_version: String,
    pub kernel: String,
    pub agent_version: String,
    pub revoked: bool,
    pub cert_not_after: i64,
    /// Host-group tags assigned on the server.
    pub tags: Vec<String>,
    /// Tags the agent reports (agent.toml).
    pub reported_tags: Vec<String>,
}

impl HostRow {
    /// Every tag of the host, assigned or reported, sorted and unique.
    pub fn all_tags(&self) -> Vec<String> {
        let mut t: Vec<String> = self.tags.iter().chain(&self.reported_tags).cloned().collect();
        t.sort();
        t.dedup();
        t
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStateRow {
    pub agent_id: String,
    pub check_id: String,
    pub status: CheckStatus,
    pub backend: String,
    pub reason: Option<String>,
    pub collected_at: i64,
    pub record_seq: u64,
    pub since: i64,
    /// The result's facts as stored (JSON object text), for the policy.
    #[serde(skip)]
    pub facts: Option<String>,
    /// The agent's own status when the policy decided otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<CheckStatus>,
    /// Whether a policy rule decided this status.
    pub by_policy: bool,
}

/// A stored record exactly as accepted, with its collection time and its
/// leaf in the transparency log.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub agent_id: String,
    pub seq: u64,
    pub digest: Vec<u8>,
    pub payload: Vec<u8>,
    pub payload_type: String,
    pub keyid: String,
    pub sig: Vec<u8>,
    pub collected_at: i64,
    pub received_at: i64,
    /// `None` for records stored before the log existed.
    pub leaf_index: Option<u64>,
}

impl StoredRecord {
    /// The DSSE JSON envelope: the bytes of its log leaf, of
    /// `GET /api/v1/records/{agent}/{seq}` and of an export.
    pub fn envelope_json(&self) -> String {
        super::records::dsse_json(&self.payload, &self.payload_type, &self.keyid, &self.sig)
    }
}

/// Each result's facts (JSON object text) in a record's statement, by check
/// id; empty when the payload is not a statement with results.
fn facts_by_check(payload: &[u8]) -> HashMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Statement {
        predicate: Predicate,
    }
    #[derive(serde::Deserialize)]
    struct Predicate {
        #[serde(default)]
        checks: Vec<Check>,
    }
    #[derive(serde::Deserialize)]
    struct Check {
        id: String,
        #[serde(default)]
        facts: Option<Box<serde_json::value::RawValue>>,
    }
    match serde_json::from_slice::<Statement>(payload) {
        Ok(s) => {
            s.predicate.checks.into_iter().filter_map(|c| Some((c.id, c.facts?.get().to_string()))).collect()
        }
        Err(_) => HashMap::new(),
    }
}

/// The `records` columns [`stored_record`] reads, in its order.
pub(super) const RECORD_COLUMNS: &str =
    "agent_id, seq, digest, payload, payload_type, keyid, sig, collected_at, received_at, leaf_index";

/// A `records` row selected as [`RECORD_COLUMNS`].
pub(super) fn stored_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        agent_id: r.get(0)?,
        seq: r.get::<_, i64>(1)? as u64,
        digest: r.get(2)?,
        payload: r.get(3)?,
        payload_type: r.get(4)?,
        keyid: r.get(5)?,
        sig: r.get(6)?,
        collected_at: r.get(7)?,
        received_at: r.get(8)?,
        leaf_index: r.get::<_, Option<i64>>(9)?.map(|i| i as u64),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct GapEntry {
    pub agent_id: String,
    pub record_seq: Option<u64>,
    pub missed_collections: u64,
    pub first_missed_at: String,
    pub last_missed_at: String,
    pub reason: String,
    pub recorded_at: i64,
}

impl Store {
    pub fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        self.hosts_where("ORDER BY display_name, agent_id", [])
    }

    /// One host, if enrolled.
    pub fn host(&self, agent_id: &str) -> Result<Option<HostRow>, StoreError> {
        Ok(self.hosts_where("WHERE agent_id = ?1", [agent_id])?.pop())
    }

    fn hosts_where(&self, tail: &str, params: impl rusqlite::Params) -> Result<Vec<HostRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT agent_id, display_name, enrolled_at, last_seen_at, last_collected_at, head_seq,
                    os, os_version, kernel, agent_version, revoked_at IS NOT NULL, cert_not_after, tags, reported_tags
             FROM agents {tail}"
        ))?;
        let rows = stmt.query_map(params, |r| {
            let tags: String = r.get(12)?;
            let reported: String = r.get(13)?;
            Ok(HostRow {
                tags: serde_json::from_str(&tags).unwrap_or_default(),
                reported_tags: serde_json::from_str(&reported).unwrap_or_default(),
                agent_id: r.get(0)?,
                display_name: r.get(1)?,
                enrolled_at: r.get(2)?,
                last_seen_at: r.get(3)?,
                last_collected_at: r.get(4)?,
                head_seq: r.get::<_, i64>(5)? as u64,
                os: r.get(6)?,
                os_version: r.get(7)?,
                kernel: r.get(8)?,
                agent_version: r.get(9)?,
                revoked: r.get(10)?,
                cert_not_after: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest result of every check on every agent that is not revoked.
    pub fn check_states(&self) -> Result<Vec<CheckStateRow>, StoreError> {
        self.states_where(
            "FROM check_state s JOIN agents a USING (agent_id)
             WHERE a.revoked_at IS NULL ORDER BY s.agent_id, s.check_id",
            [],
        )
    }

    /// The latest result of every check on every agent, revoked or not.
    pub fn check_states_all(&self) -> Result<Vec<CheckStateRow>, StoreError> {
        self.states_where("FROM check_state s ORDER BY s.agent_id, s.check_id", [])
    }

    /// The latest result of every check of one agent.
    pub fn check_states_of(&self, agent_id: &str) -> Result<Vec<CheckStateRow>, StoreError> {
        self.states_where("FROM check_state s WHERE s.agent_id = ?1 ORDER BY s.check_id", [agent_id])
    }

    /// `check_state` rows selected by `tail` (a FROM clause naming the table `s`).
    fn states_where(
        &self,
        tail: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<CheckStateRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT s.agent_id, s.check_id, s.status, s.backend, s.reason, s.collected_at, s.record_seq, s.since, s.facts {tail}"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (agent_id, check_id, status, backend, reason, collected_at, seq, since, facts) = row?;
            let status = CheckStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("check_state status {status:?}")))?;
            out.push(CheckStateRow {
                agent_id,
                check_id,
                status,
                backend,
                reason,
                collected_at,
                record_seq: seq as u64,
                since,
                facts,
                agent_status: None,
                by_policy: false,
            });
        }
        Ok(out)
    }

    /// The highest record id (acceptance order); 0 when there is none.
    pub fn records_high_water(&self) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("SELECT COALESCE(MAX(id), 0) FROM records", [], |r| r.get(0))?)
    }

    /// Agents with a record accepted after record id `mark`.
    pub fn agents_with_records_after(&self, mark: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT DISTINCT agent_id FROM records WHERE id > ?1")?;
        let rows = stmt.query_map([mark], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What [`Store::check_states`] would have answered at `at` (Unix
    /// seconds), for every agent or `only` one: per agent enrolled and not
    /// revoked by then, the result of each check in its newest record
    /// collected at or before `at`. Read from the signed records themselves,
    /// so the past is what the evidence says.
    pub fn check_states_as_of(&self, at: i64, only: Option<&str>) -> Result<Vec<CheckStateRow>, StoreError> {
        let conn = self.conn();
        // SQLite returns the bare columns of the row holding MAX(...). The
        // facts are read afterwards, once per record, not once per result.
        let mut stmt = conn.prepare_cached(
            "SELECT r.agent_id, j.value ->> 'id', j.value ->> 'status', j.value ->> 'backend',
                    j.value ->> 'reason', MAX(r.collected_at * 4294967296 + r.seq), r.collected_at, r.seq,
                    (SELECT MAX(c.collected_at) FROM check_changes c
                      WHERE c.agent_id = r.agent_id AND c.check_id = j.value ->> 'id' AND c.collected_at <= ?1)
             FROM records r JOIN agents a USING (agent_id), json_each(r.results) j
             WHERE r.collected_at <= ?1 AND a.enrolled_at <= ?1 AND (a.revoked_at IS NULL OR a.revoked_at > ?1)
               AND (?2 IS NULL OR r.agent_id = ?2)
             GROUP BY r.agent_id, j.value ->> 'id'
             ORDER BY r.agent_id, 2",
        )?;
        let rows = stmt.query_map(params![at, only], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (agent_id, check_id, status, backend, reason, collected_at, seq, since) = row?;
            let (Some(check_id), Some(status)) = (check_id, status) else {
                return Err(StoreError::Corrupt(format!(
                    "record {agent_id}/{seq}: a result without id or status"
                )));
            };
            let status = CheckStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("record {agent_id}/{seq}: status {status:?}")))?;
            out.push(CheckStateRow {
                agent_id,
                check_id,
                status,
                backend: backend.unwrap_or_default(),
                reason,
                collected_at,
                record_seq: seq as u64,
                since: since.unwrap_or(collected_at),
                facts: None,
                agent_status: None,
                by_policy: false,
            });
        }
        drop(stmt);
        // The facts, from each record's payload, parsed once per record.
        let mut payload_of =
            conn.prepare_cached("SELECT payload FROM records WHERE agent_id = ?1 AND seq = ?2")?;
        let mut facts: HashMap<(String, u64), HashMap<String, String>> = HashMap::new();
        for row in &mut out {
            let key = (row.agent_id.clone(), row.record_seq);
            if !facts.contains_key(&key) {
                let payload: Vec<u8> =
                    payload_of.query_row(params![row.agent_id, row.record_seq as i64], |r| r.get(0))?;
                facts.insert(key.clone(), facts_by_check(&payload));
            }
            row.facts = facts.get(&key).and_then(|f| f.get(&row.check_id)).cloned();
            if facts.len() > 1024 {
                // Rows come per agent: earlier agents' records are done.
                facts.retain(|k, _| k.0 == row.agent_id);
            }
        }
        Ok(out)
    }

    /// All stored records of an agent, in chain order.
    pub fn records_of(&self, agent_id: &str) -> Result<Vec<StoredRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE agent_id = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map(params![agent_id], stored_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One stored record, if there is one.
    pub fn record(&self, agent_id: &str, seq: u64) -> Result<Option<StoredRecord>, StoreError> {
        use rusqlite::OptionalExtension as _;
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM records WHERE agent_id = ?1 AND seq = ?2"),
                params![agent_id, seq as i64],
                stored_record,
            )
            .optional()?)
    }

    pub fn record_count(&self) -> Result<u64, StoreError> {
        Ok(self.conn().query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0))? as u64)
    }

    pub fn gaps(&self) -> Result<Vec<GapEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, record_seq, missed_collections, first_missed_at, last_missed_at, reason, recorded_at
             FROM gaps ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(GapEntry {
                agent_id: r.get(0)?,
                record_seq: r.get::<_, Option<i64>>(1)?.map(|s| s as u64),
                missed_collections: r.get::<_, i64>(2)? as u64,
                first_missed_at: r.get(3)?,
                last_missed_at: r.get(4)?,
                reason: r.get(5)?,
                recorded_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
