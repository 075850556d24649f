//! The ingest write path: appends verified records under the hash-chain
//! rules, in batched transactions on a connection of its own.
//!
//! Invariants: a record, its parsed results, the resulting check-state
//! changes and the agent's new chain head are written in one transaction;
//! the in-memory chain heads are only trusted while they match what was
//! committed (any failed transaction drops them, they are reloaded); the
//! security events of a batch's refusals are written in the transaction
//! that decides them.

use std::collections::HashMap;

use custos_proto::evidence::{ChainHead, ChainVerdict, CheckStatus, judge};
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::security_events::{EventBatch, EventNote};

/// A record whose signature, key binding and statement were verified.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub agent_id: String,
    pub seq: u64,
    pub prev: Option<[u8; 32]>,
    pub digest: [u8; 32],
    pub payload: Vec<u8>,
    pub payload_type: String,
    pub keyid: String,
    pub sig: Vec<u8>,
    pub collected_at: i64,
    pub received_at: i64,
    pub os: String,
    /// Tags the agent reports (JSON array text).
    pub reported_tags: String,
    pub os_version: String,
    pub kernel: String,
    pub agent_version: String,
    pub gap: Option<GapRow>,
    pub checks: Vec<CheckRow>,
    /// Set when the collection time lies implausibly far ahead of the
    /// receive time: stored, and raised as a security event.
    pub clock_skew: Option<String>,
}

/// A record's DSSE envelope as JSON from its signed parts: the bytes its
/// log leaf hashes, the API serves and an export holds. The one place that
/// builds them, so the three never differ.
pub fn dsse_json(payload: &[u8], payload_type: &str, keyid: &str, sig: &[u8]) -> String {
    custos_proto::evidence::Envelope {
        payload: payload.to_vec(),
        payload_type: payload_type.to_string(),
        signatures: vec![custos_proto::evidence::EnvelopeSignature {
            keyid: keyid.to_string(),
            sig: sig.to_vec(),
        }],
    }
    .to_json()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    pub id: String,
    pub status: CheckStatus,
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The result's facts as JSON text: kept with the latest state for the
    /// policy, not copied into each record's results (the signed payload
    /// holds them).
    #[serde(skip)]
    pub facts: String,
}

#[derive(Debug, Clone)]
pub struct GapRow {
    pub missed_collections: u64,
    pub first_missed_at: String,
    pub last_missed_at: String,
    pub reason: String,
}

/// The fate of one record in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Accepted,
    Duplicate,
    /// Not stored: the chain verdict says why. `expected` is the next seq.
    Refused {
        verdict: ChainVerdict,
        expected: u64,
    },
}

/// A security-relevant refusal worth an alert.
fn alert_kind(verdict: ChainVerdict) -> Option<&'static str> {
    match verdict {
        ChainVerdict::Equivocation => Some("equivocation"),
        ChainVerdict::Replay => Some("replay"),
        ChainVerdict::PrevMismatch => Some("chain_mismatch"),
        ChainVerdict::Gap { .. } => Some("sequence_gap"),
        ChainVerdict::Append | ChainVerdict::Duplicate => None,
    }
}

pub struct RecordWriter {
    conn: Connection,
    heads: HashMap<String, Option<ChainHead>>,
    states: HashMap<String, HashMap<String, CheckStatus>>,
}

/// What one transaction has changed so far, merged into the writer's
/// caches only after it commits.
struct Pass<'a> {
    /// Chain heads changed or loaded inside this transaction.
    heads: HashMap<String, Option<ChainHead>>,
    states: HashMap<String, HashMap<String, CheckStatus>>,
    /// Each agent's last accepted record of the batch.
    touched: HashMap<String, &'a NewRecord>,
    log: Option<super::tlog::LogAppender>,
    /// Security events of this batch: given by the caller, and raised by
    /// the chain rules and clock checks here.
    events: EventBatch,
}

impl RecordWriter {
    pub(super) fn new(conn: Connection) -> Self {
        RecordWriter { conn, heads: HashMap::new(), states: HashMap::new() }
    }

    /// Appends `batch` in one transaction and returns one outcome per record,
    /// in order. On error nothing of the batch is stored.
    pub fn append(&mut self, batch: &[NewRecord], now: i64) -> Result<Vec<AppendOutcome>, StoreError> {
        self.append_noting(batch, &EventBatch::default(), now)
    }

    /// [`RecordWriter::append`], writing `events` (the refusals decided
    /// before the store, such as bad signatures) in the same transaction as
    /// the batch's own events (chain refusals, clock skew): an answer that
    /// waits for this call never leaves before the events are committed.
    /// On error nothing is stored, the events neither.
    pub fn append_noting(
        &mut self,
        batch: &[NewRecord],
        events: &EventBatch,
        now: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let result = self.append_inner(batch, events.clone(), now);
        if result.is_err() {
            self.heads.clear();
            self.states.clear();
        }
        result
    }

    /// One transaction: each record judged and stored, the agents touched
    /// updated once, the events written, committed; the caches take the
    /// new heads and states only then.
    fn append_inner(
        &mut self,
        batch: &[NewRecord],
        events: EventBatch,
        now: i64,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut pass = Pass {
            heads: HashMap::new(),
            states: std::mem::take(&mut self.states),
            touched: HashMap::new(),
            log: None,
            events,
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for rec in batch {
            outcomes.push(append_one(&tx, &self.heads, &mut pass, rec, now)?);
        }
        update_agents(&tx, &pass.touched, now)?;
        pass.events.write(&tx)?;
        tx.commit()?;
        self.heads.extend(pass.heads);
        self.states = pass.states;
        Ok(outcomes)
    }
}

/// Judges `rec` against its agent's chain head and stores it when it
/// extends the chain; a refusal worth an alert becomes an event.
fn append_one<'a>(
    tx: &Connection,
    cached: &HashMap<String, Option<ChainHead>>,
    pass: &mut Pass<'a>,
    rec: &'a NewRecord,
    now: i64,
) -> Result<AppendOutcome, StoreError> {
    let head = match pass.heads.get(&rec.agent_id).or_else(|| cached.get(&rec.agent_id)) {
        Some(h) => *h,
        None => {
            let h = load_head(tx, &rec.agent_id)?;
            pass.heads.insert(rec.agent_id.clone(), h);
            h
        }
    };
    let verdict = judge(head, rec.seq, rec.prev, rec.digest, |seq| {
        stored_digest(tx, &rec.agent_id, seq).ok().flatten()
    });
    let expected = head.map_or(0, |h| h.seq) + 1;
    match verdict {
        ChainVerdict::Append => {}
        ChainVerdict::Duplicate => return Ok(AppendOutcome::Duplicate),
        refused => {
            if let Some(kind) = alert_kind(refused) {
                let detail = format!("seq {} refused; expected {expected}", rec.seq);
                pass.events.add(EventNote::agent(kind, &rec.agent_id, now, &detail));
            }
            return Ok(AppendOutcome::Refused { verdict: refused, expected });
        }
    }
    store_record(tx, pass, rec, now)?;
    pass.heads.insert(rec.agent_id.clone(), Some(ChainHead { seq: rec.seq, digest: rec.digest }));
    pass.touched.insert(rec.agent_id.clone(), rec);
    Ok(AppendOutcome::Accepted)
}

/// Writes an accepted record: its log leaf, the record, its check changes,
/// its gap; a collection time far ahead becomes an event.
fn store_record(tx: &Connection, pass: &mut Pass<'_>, rec: &NewRecord, now: i64) -> Result<(), StoreError> {
    let results =
        serde_json::to_string(&rec.checks).map_err(|e| StoreError::Corrupt(format!("results: {e}")))?;
    // Its leaf in the transparency log, in the same transaction.
    let log = match pass.log.as_mut() {
        Some(log) => log,
        None => pass.log.insert(super::tlog::LogAppender::open(tx)?),
    };
    let leaf = log.append(
        tx,
        super::tlog::LeafKind::Record { agent_id: &rec.agent_id, seq: rec.seq },
        dsse_json(&rec.payload, &rec.payload_type, &rec.keyid, &rec.sig).as_bytes(),
        now,
    )?;
    tx.prepare_cached(
        "INSERT INTO records (agent_id, seq, digest, payload, payload_type, keyid, sig, collected_at, received_at, results, leaf_index)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        rec.agent_id,
        rec.seq as i64,
        rec.digest.as_slice(),
        rec.payload,
        rec.payload_type,
        rec.keyid,
        rec.sig,
        rec.collected_at,
        rec.received_at,
        results,
        leaf as i64
    ])?;
    record_changes(tx, &mut pass.states, rec)?;
    if let Some(skew) = &rec.clock_skew {
        let detail = format!("seq {}: {skew}", rec.seq);
        pass.events.add(EventNote::agent("clock_skew", &rec.agent_id, now, &detail));
    }
    if let Some(gap) = &rec.gap {
        tx.execute(
            "INSERT INTO gaps (agent_id, record_seq, missed_collections, first_missed_at, last_missed_at, reason, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                rec.agent_id,
                rec.seq as i64,
                gap.missed_collections as i64,
                gap.first_missed_at,
                gap.last_missed_at,
                gap.reason,
                now
            ],
        )?;
    }
    Ok(())
}

/// Logs each check whose status differs from the agent's last one.
fn record_changes(
    tx: &Connection,
    states: &mut HashMap<String, HashMap<String, CheckStatus>>,
    rec: &NewRecord,
) -> Result<(), StoreError> {
    if !states.contains_key(&rec.agent_id) {
        let loaded = load_states(tx, &rec.agent_id)?;
        states.insert(rec.agent_id.clone(), loaded);
    }
    let agent_states = states.entry(rec.agent_id.clone()).or_default();
    let mut insert_change = tx.prepare_cached(
        "INSERT INTO check_changes (agent_id, check_id, status, reason, collected_at, record_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for c in &rec.checks {
        if agent_states.get(&c.id) != Some(&c.status) {
            insert_change.execute(params![
                rec.agent_id,
                c.id,
                c.status.as_str(),
                c.reason,
                rec.collected_at,
                rec.seq as i64
            ])?;
            agent_states.insert(c.id.clone(), c.status);
        }
    }
    Ok(())
}

/// Once per agent per batch: the chain head, host facts and the latest
/// state of each check, from the agent's last accepted record.
fn update_agents(tx: &Connection, touched: &HashMap<String, &NewRecord>, now: i64) -> Result<(), StoreError> {
    let mut update_agent = tx.prepare_cached(
        "UPDATE agents SET head_seq = ?2, head_digest = ?3, last_seen_at = ?4, last_collected_at = ?5,
                os = ?6, os_version = ?7, kernel = ?8, agent_version = ?9, reported_tags = ?10
         WHERE agent_id = ?1",
    )?;
    let mut upsert_state = tx.prepare_cached(
        "INSERT INTO check_state (agent_id, check_id, status, backend, reason, collected_at, record_seq, since, facts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8)
         ON CONFLICT (agent_id, check_id) DO UPDATE SET
            since = CASE WHEN check_state.status = excluded.status THEN check_state.since ELSE excluded.since END,
            status = excluded.status, backend = excluded.backend, reason = excluded.reason,
            collected_at = excluded.collected_at, record_seq = excluded.record_seq, facts = excluded.facts",
    )?;
    for (agent_id, last) in touched {
        update_agent.execute(params![
            agent_id,
            last.seq as i64,
            last.digest.as_slice(),
            now,
            last.collected_at,
            last.os,
            last.os_version,
            last.kernel,
            last.agent_version,
            last.reported_tags
        ])?;
        for c in &last.checks {
            upsert_state.execute(params![
                agent_id,
                c.id,
                c.status.as_str(),
                c.backend,
                c.reason,
                last.collected_at,
                last.seq as i64,
                c.facts
            ])?;
        }
    }
    Ok(())
}

fn load_head(conn: &Connection, agent_id: &str) -> Result<Option<ChainHead>, StoreError> {
    let row: Option<(i64, Option<Vec<u8>>)> = conn
        .query_row("SELECT head_seq, head_digest FROM agents WHERE agent_id = ?1", [agent_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match row {
        None | Some((0, _)) => Ok(None),
        Some((seq, Some(d))) => {
            let digest = <[u8; 32]>::try_from(d.as_slice())
                .map_err(|_| StoreError::Corrupt(format!("agent {agent_id}: head digest length")))?;
            Ok(Some(ChainHead { seq: seq as u64, digest }))
        }
        Some((_, None)) => Err(StoreError::Corrupt(format!("agent {agent_id}: head without digest"))),
    }
}

fn stored_digest(conn: &Connection, agent_id: &str, seq: u64) -> Result<Option<[u8; 32]>, StoreError> {
    let d: Option<Vec<u8>> = conn
        .query_row(
            "SELECT digest FROM records WHERE agent_id = ?1 AND seq = ?2",
            params![agent_id, seq as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(d.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()))
}

fn load_states(conn: &Connection, agent_id: &str) -> Result<HashMap<String, CheckStatus>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT check_id, status FROM check_state WHERE agent_id = ?1")?;
    let rows = stmt.query_map([agent_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (check, status) = row?;
        let status = CheckStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("check_state status {status:?}")))?;
        out.insert(check, status);
    }
    Ok(out)
}
