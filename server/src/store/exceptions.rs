//! Per-host exceptions: recorded, listed (expired and withdrawn ones too)
//! and withdrawn; never deleted.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::compliance::exception::{Exception, NewException};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Exception> {
    Ok(Exception {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        requirement: r.get(2)?,
        approver: r.get(3)?,
        justification: r.get(4)?,
        created_by: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        withdrawn_at: r.get(8)?,
    })
}

const COLUMNS: &str =
    "id, agent_id, requirement, approver, justification, created_by, created_at, expires_at, withdrawn_at";

impl Store {
    /// Records an exception; `Ok(None)` when the host is not enrolled.
    pub fn add_exception(&self, e: &NewException, now: i64) -> Result<Option<Exception>, StoreError> {
        let conn = self.conn();
        let known: Option<i64> = conn
            .query_row("SELECT 1 FROM agents WHERE agent_id = ?1", params![e.agent_id], |r| r.get(0))
            .optional()?;
        if known.is_none() {
            return Ok(None);
        }
        conn.execute(
            "INSERT INTO exceptions (agent_id, requirement, approver, justification, created_by, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![e.agent_id, e.requirement, e.approver, e.justification, e.actor, now, e.expires_at],
        )?;
        let id = conn.last_insert_rowid();
        Ok(conn
            .query_row(&format!("SELECT {COLUMNS} FROM exceptions WHERE id = ?1"), params![id], row)
            .optional()?)
    }

    /// Every exception ever recorded, oldest first.
    pub fn exceptions(&self) -> Result<Vec<Exception>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM exceptions ORDER BY id"))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Withdraws an exception at `now`; `Ok(None)` when there is no such
    /// exception, `Ok(Some(false))` when it was withdrawn already.
    pub fn withdraw_exception(&self, id: i64, now: i64) -> Result<Option<bool>, StoreError> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE exceptions SET withdrawn_at = ?2 WHERE id = ?1 AND withdrawn_at IS NULL",
            params![id, now],
        )?;
        if changed == 1 {
            return Ok(Some(true));
        }
        let exists: Option<i64> =
            conn.query_row("SELECT 1 FROM exceptions WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
        Ok(exists.map(|_| false))
    }
}
