//! The risk register's persistence: entries, their affected hosts, and the
//! history of every change.

use std::collections::BTreeSet;

use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError};
use crate::risk::RiskChange;

/// A stored risk-register entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RiskRow {
    pub id: i64,
    pub control_id: String,
    pub check_id: String,
    pub title: String,
    pub threats: Vec<String>,
    pub likelihood: String,
    pub impact: String,
    pub status: String,
    pub affected_hosts: Vec<String>,
    pub opened_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
}

fn hosts_json(hosts: &BTreeSet<String>) -> String {
    serde_json::to_string(hosts).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Entries filtered by state: `Some(true)` open, `Some(false)` closed, `None` all.
    pub fn risks(&self, open: Option<bool>) -> Result<Vec<RiskRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, control_id, check_id, title, threats, likelihood, impact, status, affected_hosts,
                    opened_at, updated_at, closed_at
             FROM risks WHERE (?1 IS NULL OR status = ?1) ORDER BY id",
        )?;
        let status = open.map(|o| if o { "open" } else { "closed" });
        let rows = stmt.query_map(params![status], |r| {
            Ok((
                RiskRow {
                    id: r.get(0)?,
                    control_id: r.get(1)?,
                    check_id: r.get(2)?,
                    title: r.get(3)?,
                    threats: Vec::new(),
                    likelihood: r.get(5)?,
                    impact: r.get(6)?,
                    status: r.get(7)?,
                    affected_hosts: Vec::new(),
                    opened_at: r.get(9)?,
                    updated_at: r.get(10)?,
                    closed_at: r.get(11)?,
                },
                r.get::<_, String>(4)?,
                r.get::<_, String>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut risk, threats, hosts) = row?;
            risk.threats = serde_json::from_str(&threats)
                .map_err(|e| StoreError::Corrupt(format!("risk {} threats: {e}", risk.id)))?;
            risk.affected_hosts = serde_json::from_str(&hosts)
                .map_err(|e| StoreError::Corrupt(format!("risk {} hosts: {e}", risk.id)))?;
            out.push(risk);
        }
        Ok(out)
    }

    /// Applies changes decided by the risk logic in one transaction, with a
    /// history row for each.
    pub fn apply_risk_changes(&self, changes: &[RiskChange]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for change in changes {
            match change {
                RiskChange::Open {
                    control_id,
                    check_id,
                    title,
                    threats,
                    likelihood,
                    impact,
                    affected_hosts,
                    at,
                } => {
                    let threats = serde_json::to_string(threats).unwrap_or_else(|_| "[]".into());
                    let (likelihood, impact, at) =
                        (likelihood.to_string(), impact.to_string(), at.unix_timestamp());
                    tx.execute(
                        "INSERT INTO risks (control_id, check_id, title, threats, likelihood, impact, status, affected_hosts, opened_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7, ?8, ?8)",
                        params![control_id, check_id, title, threats, likelihood, impact, hosts_json(affected_hosts), at],
                    )?;
                    let id = tx.last_insert_rowid();
                    tx.execute(
                        "INSERT INTO risk_events (risk_id, at, change, affected_hosts) VALUES (?1, ?2, 'opened', ?3)",
                        params![id, at, hosts_json(affected_hosts)],
                    )?;
                }
                RiskChange::Update { id, affected_hosts, at } => {
                    let at = at.unix_timestamp();
                    tx.execute(
                        "UPDATE risks SET affected_hosts = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'open'",
                        params![id, hosts_json(affected_hosts), at],
                    )?;
                    tx.execute(
                        "INSERT INTO risk_events (risk_id, at, change, affected_hosts) VALUES (?1, ?2, 'updated', ?3)",
                        params![id, at, hosts_json(affected_hosts)],
                    )?;
                }
                // A closed entry keeps the hosts it last listed, for the record.
                RiskChange::Close { id, at } => {
                    let at = at.unix_timestamp();
                    tx.execute(
                        "UPDATE risks SET status = 'closed', updated_at = ?2, closed_at = ?2
                         WHERE id = ?1 AND status = 'open'",
                        params![id, at],
                    )?;
                    tx.execute(
                        "INSERT INTO risk_events (risk_id, at, change, affected_hosts) VALUES (?1, ?2, 'closed', '[]')",
                        params![id, at],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
