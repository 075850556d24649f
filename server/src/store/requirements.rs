//! The change log of every host's standing on every requirement: one row
//! per change with the record that decided it and the policy and mapping
//! versions in force. The latest standing of each pair, now or at any past
//! time, is read from the log itself, and so are the versions that decided
//! it.
//!
//! Invariant: `at` never decreases along the log, and the rows of one `at`
//! carry one policy and mapping version pair (a later pass under other
//! versions in the same second, or with a clock that went back, is logged
//! at the next second). So a standing's versions are read once per `at`,
//! not once per row.

use std::collections::BTreeMap;

use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError};

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

/// A pair's standing as the change log had it at some time.
#[derive(Debug, Clone, PartialEq)]
pub struct StateAt {
    pub agent_id: String,
    pub requirement: String,
    pub state: String,
    /// The checks JSON of a `not_satisfied` standing, when asked for.
    pub checks: Option<String>,
    /// When the change was logged.
    pub at: i64,
    /// The change log row it comes from.
    pub row: i64,
}

/// One host's standing on one requirement as the change log had it at
/// some time: what the keeper decided then, under the versions then.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostStanding {
    pub requirement: String,
    pub state: String,
    /// When this standing was logged (the keeper pass that decided it).
    pub since: i64,
    /// The requirement's checks with their statuses then.
    pub checks: serde_json::Value,
    /// `sha256:<hex>` of the record that decided it, when there is one.
    pub record_digest: Option<String>,
    pub policy_version: String,
    pub mapping_version: String,
}

/// The policy and mapping versions recorded on change log rows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LoggedVersions {
    pub policy_version: String,
    pub mapping_version: String,
}

/// Which requirements an as-of question is about.
#[derive(Debug, Clone, Copy)]
pub enum Requirements<'a> {
    All,
    /// Those of one framework (ids `<framework>/...`).
    Framework(&'a str),
    One(&'a str),
}

/// One change to log, as the keeper found it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequirementChangeRow {
    pub agent_id: String,
    pub requirement: String,
    /// `None` for the first evaluation of the pair.
    pub from: Option<&'static str>,
    /// A standing, or `removed` when the pair is no longer evaluated.
    pub to: &'static str,
    /// The newest record behind the requirement's checks on the host.
    pub record_seq: Option<u64>,
    pub checks: BTreeMap<String, &'static str>,
}

impl Store {
    /// Appends `changes` to the change log in one transaction. The record
    /// digest is looked up once per record, not once per pair.
    pub fn log_requirement_changes(
        &self,
        changes: &[RequirementChangeRow],
        at: i64,
        policy_version: &str,
        mapping_version: &str,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            use rusqlite::OptionalExtension as _;
            // The log's invariant (module doc): never before the last row,
            // and other versions never share its second.
            let tail: Option<(i64, String, String)> = tx
                .prepare_cached(
                    "SELECT at, policy_version, mapping_version FROM requirement_changes
                     ORDER BY rowid DESC LIMIT 1",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let at = match tail {
                Some((last_at, p, m)) if p != policy_version || m != mapping_version => at.max(last_at + 1),
                Some((last_at, _, _)) => at.max(last_at),
                None => at,
            };
            let mut digest_of = tx.prepare_cached(
                "SELECT 'sha256:' || lower(hex(digest)) FROM records WHERE agent_id = ?1 AND seq = ?2",
            )?;
            let mut log = tx.prepare_cached(
                "INSERT INTO requirement_changes (agent_id, requirement, from_state, to_state, at, record_digest, policy_version, mapping_version, checks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut last: Option<((&str, u64), Option<String>)> = None;
            for c in changes {
                let digest = match c.record_seq {
                    None => None,
                    Some(seq) => match &last {
                        Some((key, d)) if *key == (c.agent_id.as_str(), seq) => d.clone(),
                        _ => {
                            let d: Option<String> = digest_of
                                .query_row(params![c.agent_id, seq as i64], |r| r.get(0))
                                .optional()?;
                            last = Some(((c.agent_id.as_str(), seq), d.clone()));
                            d
                        }
                    },
                };
                let checks = serde_json::to_string(&c.checks).unwrap_or_else(|_| "{}".into());
                log.execute(params![
                    c.agent_id,
                    c.requirement,
                    c.from,
                    c.to,
                    at,
                    digest,
                    policy_version,
                    mapping_version,
                    checks
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Each pair's standing as the change log had it at `at` (its latest
    /// change at or before then; pairs removed by then left out), for the
    /// `requirements` asked for. `with_checks`: read the checks of
    /// `not_satisfied` standings too (the rest is answered from the index
    /// alone).
    pub fn requirement_states_at(
        &self,
        at: i64,
        requirements: Requirements<'_>,
        with_checks: bool,
    ) -> Result<Vec<StateAt>, StoreError> {
        let conn = self.conn();
        // The bare columns come from the row holding MAX(rowid), the pair's
        // latest change by then; the index (requirement, agent_id, at,
        // to_state) covers the query, and a framework is a range of it.
        let mut stmt = match requirements {
            Requirements::One(_) => conn.prepare_cached(
                "SELECT agent_id, requirement, to_state, at, MAX(rowid) FROM requirement_changes
                 WHERE requirement = ?2 AND at <= ?1 GROUP BY agent_id",
            )?,
            Requirements::Framework(_) => conn.prepare_cached(
                "SELECT agent_id, requirement, to_state, at, MAX(rowid) FROM requirement_changes
                 WHERE requirement >= ?2 AND requirement < ?3 AND at <= ?1 GROUP BY requirement, agent_id",
            )?,
            Requirements::All => conn.prepare_cached(
                "SELECT agent_id, requirement, to_state, at, MAX(rowid) FROM requirement_changes
                 WHERE at <= ?1 GROUP BY requirement, agent_id",
            )?,
        };
        let map = |r: &rusqlite::Row<'_>| {
            Ok(StateAt {
                agent_id: r.get(0)?,
                requirement: r.get(1)?,
                state: r.get(2)?,
                checks: None,
                at: r.get(3)?,
                row: r.get(4)?,
            })
        };
        let rows = match requirements {
            Requirements::One(id) => stmt.query_map(params![at, id], map)?,
            // Ids of a framework run from "fw/" up to (not including) "fw0",
            // '0' being the character after '/'.
            Requirements::Framework(fw) => {
                stmt.query_map(params![at, format!("{fw}/"), format!("{fw}0")], map)?
            }
            Requirements::All => stmt.query_map(params![at], map)?,
        };
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            if row.state != "removed" {
                out.push(row);
            }
        }
        drop(stmt);
        if with_checks {
            let mut checks_of =
                conn.prepare_cached("SELECT checks FROM requirement_changes WHERE rowid = ?1")?;
            for s in out.iter_mut().filter(|s| s.state == "not_satisfied") {
                s.checks = Some(checks_of.query_row([s.row], |r| r.get(0))?);
            }
        }
        Ok(out)
    }

    /// `agent_id`'s standing on every requirement as the change log had it
    /// at `at` (each pair's latest change at or before then; pairs removed
    /// by then left out), ordered by requirement.
    pub fn host_standings_at(&self, agent_id: &str, at: i64) -> Result<Vec<HostStanding>, StoreError> {
        let conn = self.conn();
        // Bare columns come from the row holding MAX(rowid): the pair's
        // latest change by then (the (agent_id, at) index narrows the scan).
        let mut stmt = conn.prepare_cached(
            "SELECT requirement, to_state, at, checks, record_digest, policy_version, mapping_version, MAX(rowid)
             FROM requirement_changes WHERE agent_id = ?1 AND at <= ?2
             GROUP BY requirement ORDER BY requirement",
        )?;
        let rows = stmt.query_map(params![agent_id, at], |r| {
            Ok(HostStanding {
                requirement: r.get(0)?,
                state: r.get(1)?,
                since: r.get(2)?,
                // As `requirement_changes` reads them: unreadable is null.
                checks: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or(serde_json::Value::Null),
                record_digest: r.get(4)?,
                policy_version: r.get(5)?,
                mapping_version: r.get(6)?,
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            if row.state != "removed" {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The versions recorded on each of `rows` (change log row ids), in the
    /// same order. Callers pass one row per distinct `at`: by the log's
    /// invariant its versions are those of every row logged then.
    pub fn logged_versions(&self, rows: &[i64]) -> Result<Vec<LoggedVersions>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT policy_version, mapping_version FROM requirement_changes WHERE rowid = ?1",
        )?;
        rows.iter()
            .map(|row| {
                stmt.query_row([row], |r| {
                    Ok(LoggedVersions { policy_version: r.get(0)?, mapping_version: r.get(1)? })
                })
                .map_err(StoreError::from)
            })
            .collect()
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
