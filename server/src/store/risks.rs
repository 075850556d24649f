//! The risk register's persistence: entries (kept whole as JSON, with
//! copies of the fields that are filtered on) and their history.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::webhooks::{NewDelivery, insert_deliveries};
use super::{Store, StoreError};
use crate::register::{Origin, RiskEntry, RiskEvent, Status, Transition};

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct RiskFilter {
    /// `None`: every status but pending.
    pub statuses: Option<Vec<Status>>,
    pub origin: Option<Origin>,
    pub level: Option<String>,
    pub owner: Option<String>,
    /// A requirement id or a prefix of one (`iso27001:2022/` for a framework).
    pub requirement_prefix: Option<String>,
}

impl RiskFilter {
    /// Every evidence entry, whatever its status (pending and closed too):
    /// what the keeper reconciles.
    pub fn every_evidence_entry() -> RiskFilter {
        RiskFilter {
            statuses: Some(vec![
                Status::Pending,
                Status::Open,
                Status::InTreatment,
                Status::Accepted,
                Status::Closed,
            ]),
            origin: Some(Origin::Evidence),
            ..RiskFilter::default()
        }
    }

    /// A filter from user-given values (API query or command line); the
    /// error names the bad value and what is allowed. An empty value is
    /// refused rather than matching nothing (`owner=`) or everything
    /// (`requirement=`), and a requirement that `known_requirement` does not
    /// know as an id or the start of one is refused rather than answered
    /// with nothing.
    pub fn parse(
        status: Option<&str>,
        level: Option<&str>,
        owner: Option<&str>,
        requirement: Option<&str>,
        origin: Option<&str>,
        known_requirement: impl Fn(&str) -> bool,
    ) -> Result<RiskFilter, String> {
        for (name, value) in [
            ("status", status),
            ("level", level),
            ("owner", owner),
            ("requirement", requirement),
            ("origin", origin),
        ] {
            if value.is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("{name} is empty"));
            }
        }
        if let Some(r) = requirement
            && !known_requirement(r)
        {
            return Err(format!(
                "requirement {r:?} is neither a requirement of the catalog nor the start of one \
                 (e.g. iso27001:2022/A.8.24, or iso27001:2022/ for a framework)"
            ));
        }
        let statuses = match status {
            None | Some("live") => Some(vec![Status::Open, Status::InTreatment, Status::Accepted]),
            Some("all") => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<Status>, _>>()
                    .map_err(|e| format!("status {e} (or live, all)"))?,
            ),
        };
        if let Some(l) = level {
            l.parse::<crate::register::Level>().map_err(|e| format!("level {e}"))?;
        }
        Ok(RiskFilter {
            statuses,
            origin: origin.map(str::parse::<Origin>).transpose().map_err(|e| format!("origin {e}"))?,
            level: level.map(String::from),
            owner: owner.map(String::from),
            requirement_prefix: requirement.map(String::from),
        })
    }
}

/// One row of an entry's history.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryRow {
    pub at: i64,
    pub change: String,
    pub actor: String,
    pub detail: String,
}

fn decode(id: i64, json: &str) -> Result<RiskEntry, StoreError> {
    let mut e: RiskEntry =
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("risk {id}: {e}")))?;
    e.id = id;
    Ok(e)
}

fn encode(e: &RiskEntry) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(|err| StoreError::Corrupt(format!("risk {}: {err}", e.id)))
}

fn load(conn: &rusqlite::Connection, filter: &RiskFilter) -> Result<Vec<RiskEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, status, entry FROM risks
         WHERE (?1 IS NULL OR origin = ?1) AND (?2 IS NULL OR level = ?2) AND (?3 IS NULL OR owner = ?3)
           AND (?4 IS NULL OR substr(requirement, 1, length(?4)) = ?4)
         ORDER BY id",
    )?;
    let origin = filter.origin.map(|o| o.as_str());
    let rows = stmt
        .query_map(params![origin, filter.level, filter.owner, filter.requirement_prefix], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, status, json) = row?;
        let wanted = match &filter.statuses {
            Some(list) => list.iter().any(|s| s.as_str() == status),
            None => status != Status::Pending.as_str(),
        };
        if wanted {
            out.push(decode(id, &json)?);
        }
    }
    Ok(out)
}

fn load_one(conn: &rusqlite::Connection, id: i64) -> Result<Option<RiskEntry>, StoreError> {
    let json: Option<String> =
        conn.query_row("SELECT entry FROM risks WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
    json.map(|j| decode(id, &j)).transpose()
}

/// New entries get their id, changed ones are replaced, discarded pending
/// ones deleted, and every event is appended to its entry's history.
fn apply(tx: &rusqlite::Transaction<'_>, transitions: &mut [Transition]) -> Result<(), StoreError> {
    for t in transitions.iter_mut() {
        let e = &mut t.entry;
        if t.discard {
            if e.id != 0 {
                tx.execute("DELETE FROM risk_history WHERE risk_id = ?1", params![e.id])?;
                tx.execute("DELETE FROM risks WHERE id = ?1 AND status = 'pending'", params![e.id])?;
            }
            continue;
        }
        let (status, level) = (e.status.as_str(), e.current.level.to_string());
        if e.id == 0 {
            tx.execute(
                "INSERT INTO risks (origin, requirement, scope, status, level, owner, due_at, updated_at, entry)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '{}')",
                params![e.origin.as_str(), e.requirement, e.scope, status, level, e.owner, e.due_at, e.updated_at],
            )?;
            e.id = tx.last_insert_rowid();
        } else {
            tx.execute(
                "UPDATE risks SET status = ?2, level = ?3, owner = ?4, due_at = ?5, updated_at = ?6 WHERE id = ?1",
                params![e.id, status, level, e.owner, e.due_at, e.updated_at],
            )?;
        }
        tx.execute("UPDATE risks SET entry = ?2 WHERE id = ?1", params![e.id, encode(e)?])?;
        for RiskEvent { change, at, actor, detail } in &t.events {
            tx.execute(
                "INSERT INTO risk_history (risk_id, at, change, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![e.id, at, change.as_str(), actor, detail],
            )?;
        }
    }
    Ok(())
}

impl Store {
    pub fn risks(&self, filter: &RiskFilter) -> Result<Vec<RiskEntry>, StoreError> {
        load(&self.conn(), filter)
    }

    pub fn risk(&self, id: i64) -> Result<Option<RiskEntry>, StoreError> {
        load_one(&self.conn(), id)
    }

    pub fn risk_history(&self, id: i64) -> Result<Vec<HistoryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT at, change, actor, detail FROM risk_history WHERE risk_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![id], |r| {
            Ok(HistoryRow { at: r.get(0)?, change: r.get(1)?, actor: r.get(2)?, detail: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs `decide` on every evidence entry (the latest per requirement and
    /// scope, pending and closed ones included) and stores what it returns,
    /// all in one transaction, so no change by a person slips in between.
    pub fn reconcile_risks(
        &self,
        decide: impl FnOnce(&[RiskEntry]) -> Vec<Transition>,
        notify: impl FnOnce(&[Transition]) -> Vec<NewDelivery>,
    ) -> Result<Vec<Transition>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let entries = load(&tx, &RiskFilter::every_evidence_entry())?;
        let mut transitions = decide(&entries);
        apply(&tx, &mut transitions)?;
        insert_deliveries(&tx, &notify(&transitions))?;
        tx.commit()?;
        Ok(transitions)
    }

    /// Runs `change` on entry `id` and stores the result in one transaction.
    /// `Ok(None)`: no such entry.
    pub fn change_risk<E>(
        &self,
        id: i64,
        change: impl FnOnce(&RiskEntry) -> Result<Transition, E>,
        notify: impl FnOnce(&[Transition]) -> Vec<NewDelivery>,
    ) -> Result<Option<Result<Transition, E>>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(entry) = load_one(&tx, id)? else { return Ok(None) };
        let mut t = match change(&entry) {
            Ok(t) => t,
            Err(e) => return Ok(Some(Err(e))),
        };
        apply(&tx, std::slice::from_mut(&mut t))?;
        insert_deliveries(&tx, &notify(std::slice::from_ref(&t)))?;
        tx.commit()?;
        Ok(Some(Ok(t)))
    }

    /// Stores a new (manual) entry; returns it with its id.
    pub fn insert_risk(
        &self,
        mut t: Transition,
        notify: impl FnOnce(&[Transition]) -> Vec<NewDelivery>,
    ) -> Result<Transition, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        apply(&tx, std::slice::from_mut(&mut t))?;
        insert_deliveries(&tx, &notify(std::slice::from_ref(&t)))?;
        tx.commit()?;
        Ok(t)
    }
}
