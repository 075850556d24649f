//! Webhook deliveries: the queue of what is to be sent, and the log of every
//! attempt.
//!
//! Invariant: an attempt's log row and its delivery's new state are written
//! in one transaction, and only while the delivery is still pending at the
//! attempt count the sender saw (so two senders cannot both record one).

use std::str::FromStr;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{Store, StoreError};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// Parse error of a [`DeliveryStatus`] (`?status=` in the API).
#[derive(Debug, thiserror::Error)]
#[error("unknown delivery status {0:?} (pending, delivered or failed)")]
pub struct UnknownStatus(pub String);

impl FromStr for DeliveryStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(UnknownStatus(other.to_string())),
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Not this time; tried again later.
    Retry,
    /// Given up: a permanent refusal, or the last attempt.
    Failed,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "delivered" => Ok(AttemptOutcome::Delivered),
            "retry" => Ok(AttemptOutcome::Retry),
            "failed" => Ok(AttemptOutcome::Failed),
            other => Err(StoreError::Corrupt(format!("webhook attempt outcome {other:?}"))),
        }
    }

    /// The delivery's status after an attempt with this outcome.
    fn status(self) -> DeliveryStatus {
        match self {
            AttemptOutcome::Delivered => DeliveryStatus::Delivered,
            AttemptOutcome::Retry => DeliveryStatus::Pending,
            AttemptOutcome::Failed => DeliveryStatus::Failed,
        }
    }
}

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Random hex; `X-Custos-Delivery`.
    pub id: String,
    pub webhook: String,
    /// `risk.opened`, ...
    pub event: String,
    pub risk_id: i64,
    pub body: String,
    pub created_at: i64,
}

/// A pending delivery whose time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: String,
    pub webhook: String,
    pub event: String,
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// One attempt, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: u32,
    pub at: i64,
    pub outcome: AttemptOutcome,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A delivery with its log, for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook: String,
    pub event: String,
    pub risk_id: i64,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due; only while pending.
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    /// Every attempt, oldest first.
    pub log: Vec<Attempt>,
}

/// Queues deliveries inside the caller's transaction (so a risk change and
/// its notifications commit together). Each is due at once.
pub(crate) fn insert_deliveries(tx: &Transaction<'_>, rows: &[NewDelivery]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO webhook_deliveries (id, webhook, event, risk_id, body, attempts, next_attempt_at,
                                         status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 'pending', ?6)",
    )?;
    for r in rows {
        stmt.execute(params![r.id, r.webhook, r.event, r.risk_id, r.body, r.created_at])?;
    }
    Ok(())
}

fn status_of(s: &str) -> Result<DeliveryStatus, StoreError> {
    s.parse().map_err(|e: UnknownStatus| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Queues deliveries in one transaction: all or none.
    pub fn enqueue_webhook_deliveries(&self, rows: &[NewDelivery]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        insert_deliveries(&tx, rows)?;
        tx.commit()?;
        Ok(())
    }

    /// Pending deliveries due at `now`, the longest waiting first.
    pub fn due_webhook_deliveries(&self, now: i64, limit: usize) -> Result<Vec<DueDelivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, webhook, event, body, attempts FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at, created_at, rowid LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![now, limit], |r| {
            Ok(DueDelivery {
                id: r.get(0)?,
                webhook: r.get(1)?,
                event: r.get(2)?,
                body: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Logs an attempt and moves its delivery on: delivered, failed, or
    /// pending again from `next_attempt_at` (required for a retry). Returns
    /// false, writing nothing, when the delivery is no longer pending at
    /// `attempt.attempt - 1` attempts (someone else recorded it).
    pub fn record_webhook_attempt(
        &self,
        delivery: &str,
        attempt: &Attempt,
        next_attempt_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        if attempt.outcome == AttemptOutcome::Retry && next_attempt_at.is_none() {
            return Err(StoreError::Corrupt(format!("webhook delivery {delivery}: a retry needs a time")));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let delivered_at = (attempt.outcome == AttemptOutcome::Delivered).then_some(attempt.at);
        let changed = tx.execute(
            "UPDATE webhook_deliveries
             SET attempts = ?2, status = ?3, next_attempt_at = coalesce(?4, next_attempt_at),
                 last_status_code = ?5, last_error = ?6, delivered_at = ?7
             WHERE id = ?1 AND status = 'pending' AND attempts = ?2 - 1",
            params![
                delivery,
                attempt.attempt,
                attempt.outcome.status().as_str(),
                next_attempt_at,
                attempt.status_code,
                attempt.error,
                delivered_at,
            ],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO webhook_attempts (delivery, attempt, at, outcome, status_code, error, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                delivery,
                attempt.attempt,
                attempt.at,
                attempt.outcome.as_str(),
                attempt.status_code,
                attempt.error,
                i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX),
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Fails a pending delivery without an attempt (its webhook is gone).
    /// Returns false when it was not pending.
    pub fn fail_webhook_delivery(&self, delivery: &str, reason: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = ?2
             WHERE id = ?1 AND status = 'pending'",
            params![delivery, reason],
        )?;
        Ok(changed == 1)
    }

    /// The newest deliveries (all, or those in `status`) with their logs.
    pub fn webhook_deliveries(
        &self,
        limit: usize,
        status: Option<DeliveryStatus>,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE (?1 IS NULL OR status = ?1)
             ORDER BY created_at DESC, rowid DESC LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![status.map(DeliveryStatus::as_str), limit], delivery_row)?;
        rows.map(|row| with_log(&conn, row?)).collect()
    }

    /// One delivery with its log, if it exists.
    pub fn webhook_delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1"),
                [id],
                delivery_row,
            )
            .optional()?;
        row.map(|row| with_log(&conn, row)).transpose()
    }
}

const DELIVERY_COLUMNS: &str = "id, webhook, event, risk_id, status, attempts, next_attempt_at, \
     last_status_code, last_error, created_at, delivered_at";

/// A delivery row without its log, and its status text (checked by [`with_log`]).
fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(DeliveryRow, String)> {
    Ok((
        DeliveryRow {
            id: r.get(0)?,
            webhook: r.get(1)?,
            event: r.get(2)?,
            risk_id: r.get(3)?,
            status: DeliveryStatus::Pending,
            attempts: r.get(5)?,
            next_attempt_at: r.get(6)?,
            last_status_code: r.get(7)?,
            last_error: r.get(8)?,
            created_at: r.get(9)?,
            delivered_at: r.get(10)?,
            log: Vec::new(),
        },
        r.get(4)?,
    ))
}

fn with_log(
    conn: &rusqlite::Connection,
    (mut row, status): (DeliveryRow, String),
) -> Result<DeliveryRow, StoreError> {
    row.status = status_of(&status)?;
    if row.status != DeliveryStatus::Pending {
        row.next_attempt_at = None;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, at, outcome, status_code, error, duration_ms FROM webhook_attempts
         WHERE delivery = ?1 ORDER BY attempt",
    )?;
    let attempts = stmt.query_map([&row.id], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<u16>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for a in attempts {
        let (attempt, at, outcome, status_code, error, duration_ms) = a?;
        row.log.push(Attempt {
            attempt,
            at,
            outcome: AttemptOutcome::parse(&outcome)?,
            status_code,
            error,
            duration_ms: u64::try_from(duration_ms).unwrap_or(0),
        });
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::temp_store as store;

    fn new(id: &str, at: i64) -> NewDelivery {
        NewDelivery {
            id: id.into(),
            webhook: "ops".into(),
            event: "risk.opened".into(),
            risk_id: 7,
            body: "{}".into(),
            created_at: at,
        }
    }

    fn attempt(n: u32, at: i64, outcome: AttemptOutcome, code: Option<u16>) -> Attempt {
        Attempt { attempt: n, at, outcome, status_code: code, error: None, duration_ms: 3 }
    }

    #[test]
    fn queue_attempts_and_log() {
        let (_dir, s) = store();
        s.enqueue_webhook_deliveries(&[new("a", 100), new("b", 101)]).unwrap();
        let due = s.due_webhook_deliveries(100, 10).unwrap();
        assert_eq!(due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.due_webhook_deliveries(200, 10).unwrap().len(), 2);
        assert_eq!(s.due_webhook_deliveries(200, 1).unwrap().len(), 1);

        let retry =
            Attempt { error: Some("HTTP 503".into()), ..attempt(1, 200, AttemptOutcome::Retry, Some(503)) };
        assert!(s.record_webhook_attempt("a", &retry, Some(230)).unwrap());
        // Recorded twice (a second sender): refused, nothing written.
        assert!(!s.record_webhook_attempt("a", &retry, Some(230)).unwrap());
        assert_eq!(
            s.due_webhook_deliveries(229, 10).unwrap().iter().map(|d| &d.id).collect::<Vec<_>>(),
            ["b"]
        );
        let again = s.due_webhook_deliveries(230, 10).unwrap();
        assert_eq!(again.iter().find(|d| d.id == "a").unwrap().attempts, 1);
        assert!(
            s.record_webhook_attempt("a", &attempt(2, 230, AttemptOutcome::Delivered, Some(204)), None)
                .unwrap()
        );
        assert!(s.fail_webhook_delivery("b", "webhook \"ops\" is no longer configured").unwrap());
        assert!(!s.fail_webhook_delivery("a", "x").unwrap(), "delivered stays delivered");
        assert!(s.due_webhook_deliveries(10_000, 10).unwrap().is_empty());

        let all = s.webhook_deliveries(10, None).unwrap();
        assert_eq!(all.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["b", "a"], "newest first");
        let a = &all[1];
        assert_eq!(
            (a.status, a.attempts, a.delivered_at, a.next_attempt_at),
            (DeliveryStatus::Delivered, 2, Some(230), None)
        );
        assert_eq!((a.last_status_code, a.last_error.as_deref()), (Some(204), None));
        assert_eq!(a.log.len(), 2);
        assert_eq!(
            (a.log[0].outcome, a.log[0].status_code, a.log[0].error.as_deref()),
            (AttemptOutcome::Retry, Some(503), Some("HTTP 503"))
        );
        assert_eq!(a.log[1].outcome, AttemptOutcome::Delivered);
        let b = &all[0];
        assert_eq!((b.status, b.attempts, b.log.len()), (DeliveryStatus::Failed, 0, 0));
        assert!(b.last_error.as_deref().unwrap().contains("no longer configured"));

        let failed = s.webhook_deliveries(10, Some(DeliveryStatus::Failed)).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(s.webhook_deliveries(1, None).unwrap().len(), 1);
        assert_eq!(s.webhook_delivery("a").unwrap().unwrap(), all[1]);
        assert!(s.webhook_delivery("zz").unwrap().is_none());
    }

    #[test]
    fn enqueue_is_all_or_nothing() {
        let (_dir, s) = store();
        s.enqueue_webhook_deliveries(&[new("a", 1)]).unwrap();
        // The duplicate id fails the batch; "c" must not stay behind.
        assert!(s.enqueue_webhook_deliveries(&[new("c", 2), new("a", 2)]).is_err());
        let ids: Vec<String> = s.webhook_deliveries(10, None).unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["a"]);
    }

    #[test]
    fn a_retry_needs_a_time_and_status_names_parse() {
        let (_dir, s) = store();
        s.enqueue_webhook_deliveries(&[new("a", 1)]).unwrap();
        assert!(s.record_webhook_attempt("a", &attempt(1, 2, AttemptOutcome::Retry, None), None).is_err());
        for st in [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed] {
            assert_eq!(st.as_str().parse::<DeliveryStatus>().unwrap(), st);
        }
        let err = "done".parse::<DeliveryStatus>().unwrap_err();
        assert!(err.to_string().contains("\"done\""), "{err}");
    }
}
