//! The change log of every host's standing on every requirement: one row
//! per change with the record that decided it and the policy and mapping
//! versions in force, plus the latest standing per host and requirement.

use std::collections::BTreeMap;

use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError};
use crate::evaluate::RequirementStanding;

/// One logged change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequirementChange {
    pub agent_id: String,
    pub requirement: String,
    /// `None` for the first evaluation of the pair.
    pub from: Option<String>,
    pub to: String,
    pub at: i64,
    /// The requirement's checks with their statuses at the change.
    pub checks: serde_json::Value,
    /// `sha256:<hex>` of the record that decided it, when there is one.
    pub record_digest: Option<String>,
    pub policy_version: String,
    pub mapping_version: String,
}

/// Which changes to list.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    pub agent_id: Option<String>,
    /// A requirement id or prefix.
    pub requirement: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: u32,
}

impl Store {
    /// Logs every pair whose standing differs from the stored one and
    /// updates the stored standings, in one transaction. Pairs no longer
    /// evaluated (a host left) are logged as `removed`. Returns the number
    /// of changes.
    pub fn log_requirement_standings(
        &self,
        standings: &BTreeMap<(String, String), RequirementStanding>,
        at: i64,
        policy_version: &str,
        mapping_version: &str,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut stored: BTreeMap<(String, String), String> = BTreeMap::new();
        {
            let mut stmt = tx.prepare_cached("SELECT agent_id, requirement, state FROM requirement_state")?;
            let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
            for row in rows {
                let (k, v) = row?;
                stored.insert(k, v);
            }
        }
        let mut changes = 0;
        {
            let mut log = tx.prepare_cached(
                "INSERT INTO requirement_changes (agent_id, requirement, from_state, to_state, at, record_digest, policy_version, mapping_version, checks)
                 VALUES (?1, ?2, ?3, ?4, ?5,
                         (SELECT 'sha256:' || lower(hex(digest)) FROM records WHERE agent_id = ?1 AND seq = ?6),
                         ?7, ?8, ?9)",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO requirement_state (agent_id, requirement, state, since, record_digest)
                 VALUES (?1, ?2, ?3, ?4, (SELECT 'sha256:' || lower(hex(digest)) FROM records WHERE agent_id = ?1 AND seq = ?5))
                 ON CONFLICT (agent_id, requirement) DO UPDATE SET state = excluded.state, since = excluded.since,
                     record_digest = excluded.record_digest",
            )?;
            for ((agent, req), s) in standings {
                let before = stored.remove(&(agent.clone(), req.clone()));
                if before.as_deref() == Some(s.state) {
                    continue;
                }
                let seq = s.record_seq.map(|q| q as i64);
                let checks = serde_json::to_string(&s.checks).unwrap_or_else(|_| "{}".into());
                log.execute(params![
                    agent,
                    req,
                    before,
                    s.state,
                    at,
                    seq,
                    policy_version,
                    mapping_version,
                    checks
                ])?;
                upsert.execute(params![agent, req, s.state, at, seq])?;
                changes += 1;
            }
            let mut delete =
                tx.prepare_cached("DELETE FROM requirement_state WHERE agent_id = ?1 AND requirement = ?2")?;
            for ((agent, req), before) in stored {
                log.execute(params![
                    agent,
                    req,
                    before,
                    "removed",
                    at,
                    None::<i64>,
                    policy_version,
                    mapping_version
                ])?;
                delete.execute(params![agent, req])?;
                changes += 1;
            }
        }
        tx.commit()?;
        Ok(changes)
    }

    pub fn requirement_changes(&self, f: &ChangeFilter) -> Result<Vec<RequirementChange>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, requirement, from_state, to_state, at, record_digest, policy_version, mapping_version, checks
             FROM requirement_changes
             WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR substr(requirement, 1, length(?2)) = ?2)
               AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at <= ?4)
             ORDER BY rowid LIMIT ?5",
        )?;
        let rows = stmt.query_map(params![f.agent_id, f.requirement, f.from, f.to, f.limit], |r| {
            Ok(RequirementChange {
                agent_id: r.get(0)?,
                requirement: r.get(1)?,
                from: r.get(2)?,
                to: r.get(3)?,
                at: r.get(4)?,
                record_digest: r.get(5)?,
                policy_version: r.get(6)?,
                mapping_version: r.get(7)?,
                checks: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
