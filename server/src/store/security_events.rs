//! Security events, aggregated: every refusal the server makes is noted
//! against its source (an agent id, a peer address, or [`SERVER_SOURCE`])
//! and its kind, and the notes of one source and kind fold into one event
//! while that event is open, so a flood of refusals updates one row.
//!
//! Aggregation rule: an event of (source, kind) stays open while its last
//! occurrence is at most [`OPEN_WINDOW_SECS`] old and its first at most
//! [`MAX_SPAN_SECS`] old; an occurrence then adds its count to the event,
//! moves `last_at` and replaces the detail (the last occurrence's, cut to
//! [`DETAIL_CHARS`] characters). Otherwise it opens a new event. A flood
//! that never pauses is one event per hour; one that pauses for a minute
//! starts a new one.
//!
//! Invariant: notes are written in the caller's transaction (the ingest
//! writer's, which decides the refused records' outcomes) or in one of
//! their own, and nothing here acknowledges anything: callers answer only
//! after the commit.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError};

/// An event takes further occurrences while its last one is at most this old...
pub const OPEN_WINDOW_SECS: i64 = 60;
/// ...and its first one at most this old.
pub const MAX_SPAN_SECS: i64 = 3600;
/// Longest detail kept, in characters.
pub const DETAIL_CHARS: usize = 200;
/// The source of what the server raises about itself (a refused policy
/// file, a checkpoint not signed).
pub const SERVER_SOURCE: &str = "server";

/// One or more occurrences of a refusal from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    pub kind: String,
    /// Agent id, peer address or [`SERVER_SOURCE`].
    pub source: String,
    /// Set when the source is an agent.
    pub agent_id: Option<String>,
    pub first_at: i64,
    pub last_at: i64,
    pub count: u64,
    /// The last occurrence's detail, cut to [`DETAIL_CHARS`].
    pub detail: String,
}

impl EventNote {
    /// One occurrence from agent `agent_id`.
    pub fn agent(kind: &str, agent_id: &str, at: i64, detail: &str) -> Self {
        EventNote { agent_id: Some(agent_id.to_string()), ..Self::new(kind, agent_id, at, detail) }
    }

    /// One occurrence from a network peer (an address, see `security::source_of`).
    pub fn peer(kind: &str, peer: &str, at: i64, detail: &str) -> Self {
        Self::new(kind, peer, at, detail)
    }

    /// One occurrence the server raises about itself.
    pub fn server(kind: &str, at: i64, detail: &str) -> Self {
        Self::new(kind, SERVER_SOURCE, at, detail)
    }

    fn new(kind: &str, source: &str, at: i64, detail: &str) -> Self {
        EventNote {
            kind: kind.to_string(),
            source: source.to_string(),
            agent_id: None,
            first_at: at,
            last_at: at,
            count: 1,
            detail: cut(detail),
        }
    }
}

/// `text` cut to [`DETAIL_CHARS`] characters, marked when cut.
pub fn cut(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Notes merged by (source, kind) before they are written: one upsert per
/// key and transaction, however many occurrences.
#[derive(Debug, Default, Clone)]
pub struct EventBatch {
    notes: Vec<EventNote>,
    index: HashMap<(String, String), usize>,
}

impl EventBatch {
    pub fn add(&mut self, note: EventNote) {
        let key = (note.source.clone(), note.kind.clone());
        match self.index.get(&key) {
            Some(&i) => {
                let n = &mut self.notes[i];
                n.count += note.count;
                n.first_at = n.first_at.min(note.first_at);
                if note.last_at >= n.last_at {
                    n.last_at = note.last_at;
                    n.detail = note.detail;
                }
            }
            None => {
                self.index.insert(key, self.notes.len());
                self.notes.push(note);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }

    /// The merged notes, in the order their keys first came.
    pub fn notes(&self) -> &[EventNote] {
        &self.notes
    }

    /// Occurrences noted (not events).
    pub fn occurrences(&self) -> u64 {
        self.notes.iter().map(|n| n.count).sum()
    }

    /// Writes every note in `conn`'s open transaction.
    pub(super) fn write(&self, conn: &Connection) -> Result<(), StoreError> {
        self.notes.iter().try_for_each(|n| upsert(conn, n))
    }
}

/// Adds `note` to the open event of its source and kind, or opens one.
fn upsert(conn: &Connection, note: &EventNote) -> Result<(), StoreError> {
    let open: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM security_events
             WHERE source = ?1 AND kind = ?2 AND last_at >= ?3 AND first_at >= ?4
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(
            params![note.source, note.kind, note.first_at - OPEN_WINDOW_SECS, note.last_at - MAX_SPAN_SECS],
            |r| r.get(0),
        )
        .optional()?;
    let count = i64::try_from(note.count).unwrap_or(i64::MAX);
    match open {
        Some(id) => {
            conn.prepare_cached(
                "UPDATE security_events SET count = count + ?2, last_at = max(last_at, ?3), detail = ?4
                 WHERE id = ?1",
            )?
            .execute(params![id, count, note.last_at, note.detail])?;
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO security_events (kind, source, agent_id, first_at, last_at, count, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                note.kind,
                note.source,
                note.agent_id,
                note.first_at,
                note.last_at,
                count,
                note.detail
            ])?;
        }
    }
    Ok(())
}

/// One aggregated event as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityEvent {
    pub id: i64,
    pub kind: String,
    pub source: String,
    pub agent_id: Option<String>,
    pub first_at: i64,
    pub last_at: i64,
    pub count: u64,
    pub detail: String,
    /// `first_at` under the name events had before aggregation.
    pub at: i64,
}

/// Which events to list: newest first (by id), each filter optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub source: Option<String>,
    /// Events whose span reaches to or past this time (unix seconds)...
    pub since: Option<i64>,
    /// ...and begins at or before this one.
    pub until: Option<i64>,
    /// Only events older than this id (the previous page's `next`).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// One page of events and the cursor to the next, if there are more.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub events: Vec<SecurityEvent>,
    pub next: Option<i64>,
}

impl Store {
    /// Notes one occurrence in a transaction of its own (keeper, checkpoints).
    pub fn record_security_event(
        &self,
        at: i64,
        agent_id: Option<&str>,
        kind: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let note = match agent_id {
            Some(id) => EventNote::agent(kind, id, at, detail),
            None => EventNote::server(kind, at, detail),
        };
        let mut batch = EventBatch::default();
        batch.add(note);
        self.record_security_events(&batch)
    }

    /// Writes `batch` in one transaction; returns once it is committed.
    pub fn record_security_events(&self, batch: &EventBatch) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        batch.write(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// A page of events under `filter`, newest first.
    pub fn security_events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, kind, source, agent_id, first_at, last_at, count, detail FROM security_events
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR source = ?2)
               AND (?3 IS NULL OR last_at >= ?3) AND (?4 IS NULL OR first_at <= ?4)
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![
                filter.kind,
                filter.source,
                filter.since,
                filter.until,
                filter.before_id,
                i64::from(filter.limit) + 1
            ],
            |r| {
                let first_at = r.get(4)?;
                Ok(SecurityEvent {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    source: r.get(2)?,
                    agent_id: r.get(3)?,
                    first_at,
                    last_at: r.get(5)?,
                    count: r.get::<_, i64>(6)?.max(0) as u64,
                    detail: r.get(7)?,
                    at: first_at,
                })
            },
        )?;
        let mut events: Vec<SecurityEvent> = rows.collect::<Result<_, _>>()?;
        // One row past the page tells whether there is a next one.
        let next = if events.len() > filter.limit as usize {
            events.truncate(filter.limit as usize);
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(EventPage { events, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::temp_store as store;

    fn all(store: &Store) -> Vec<SecurityEvent> {
        store.security_events(&EventFilter { limit: 1000, ..Default::default() }).unwrap().events
    }

    #[test]
    fn a_burst_is_one_event_until_it_pauses_for_the_window_or_spans_an_hour() {
        let (_dir, store) = store();
        for at in [1000, 1010, 1070] {
            store.record_security_event(at, Some("a1"), "bad_signature", &format!("at {at}")).unwrap();
        }
        // Another kind and another source each have their own event.
        store.record_security_event(1071, Some("a1"), "malformed_record", "x").unwrap();
        store.record_security_event(1072, Some("a2"), "bad_signature", "x").unwrap();
        let events = all(&store);
        assert_eq!(events.len(), 3, "{events:?}");
        let burst = events.iter().find(|e| e.source == "a1" && e.kind == "bad_signature").unwrap();
        assert_eq!((burst.count, burst.first_at, burst.last_at, burst.at), (3, 1000, 1070, 1000));
        assert_eq!(burst.detail, "at 1070", "the last occurrence's detail");
        // A pause longer than the window opens a new event.
        store
            .record_security_event(1070 + OPEN_WINDOW_SECS + 1, Some("a1"), "bad_signature", "later")
            .unwrap();
        assert_eq!(all(&store).len(), 4);
        // A flood that never pauses is cut after MAX_SPAN_SECS.
        let start = 10_000;
        for at in (start..=start + MAX_SPAN_SECS + 30).step_by(30) {
            store.record_security_event(at, None, "flood", "x").unwrap();
        }
        let flood: Vec<_> = all(&store).into_iter().filter(|e| e.kind == "flood").collect();
        assert_eq!(flood.len(), 2, "{flood:?}");
        assert_eq!(flood.iter().map(|e| e.count).sum::<u64>(), (MAX_SPAN_SECS as u64 + 30) / 30 + 1);
        assert!(flood.iter().all(|e| e.source == SERVER_SOURCE && e.agent_id.is_none()));
    }

    #[test]
    fn a_batch_merges_by_source_and_kind_and_cuts_details() {
        let (_dir, store) = store();
        let mut batch = EventBatch::default();
        for i in 0..5000 {
            batch.add(EventNote::agent("bad_signature", "a1", 2000 + i / 1000, &format!("record {i}")));
        }
        batch.add(EventNote::peer("tls_certificate_refused", "192.0.2.7", 2001, &"x".repeat(5000)));
        assert_eq!(batch.occurrences(), 5001);
        store.record_security_events(&batch).unwrap();
        let events = all(&store);
        assert_eq!(events.len(), 2);
        let tls = &events[0];
        assert_eq!((tls.source.as_str(), tls.agent_id.as_deref()), ("192.0.2.7", None));
        assert_eq!(tls.detail.chars().count(), DETAIL_CHARS + 1, "cut and marked");
        let sig = &events[1];
        assert_eq!((sig.count, sig.first_at, sig.last_at), (5000, 2000, 2004));
        assert_eq!(sig.detail, "record 4999");
    }

    #[test]
    fn pages_are_disjoint_newest_first_and_filters_apply() {
        let (_dir, store) = store();
        for i in 0..25 {
            let kind = if i % 2 == 0 { "even" } else { "odd" };
            store.record_security_event(100 * i, Some(&format!("a{}", i % 3)), kind, "x").unwrap();
        }
        let mut seen = Vec::new();
        let mut filter = EventFilter { limit: 10, ..Default::default() };
        loop {
            let page = store.security_events(&filter).unwrap();
            seen.extend(page.events.iter().map(|e| e.id));
            match page.next {
                Some(next) => filter.before_id = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, (1..=25).rev().collect::<Vec<i64>>());
        let odd = EventFilter {
            kind: Some("odd".into()),
            source: Some("a1".into()),
            limit: 100,
            ..Default::default()
        };
        let page = store.security_events(&odd).unwrap();
        assert!(page.events.iter().all(|e| e.kind == "odd" && e.source == "a1"));
        assert_eq!(page.events.len(), 4);
        let window = EventFilter { since: Some(500), until: Some(900), limit: 100, ..Default::default() };
        let ids: Vec<i64> = store.security_events(&window).unwrap().events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [10, 9, 8, 7, 6]);
    }
}
