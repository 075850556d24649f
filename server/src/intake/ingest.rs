//! The ingest pipeline: strict verification of each record against the
//! sending agent's key, then group commit through a single writer thread.
//!
//! Invariants:
//! - A record is verified over the exact bytes received; nothing is
//!   re-serialized before the signature check.
//! - A record is acknowledged `accepted` or `duplicate` only after the
//!   transaction holding it has committed.
//! - Records of one stream are answered in the order they arrived.
//! - A refused record is answered only after the transaction holding its
//!   security event (aggregated per agent and kind) has committed: the
//!   writer commits refusals with the batch they arrived in.

use std::sync::Arc;

use custos_proto::evidence::{
    ChainVerdict, Envelope, EvidenceError, StatementError, StatementRaw, payload_digest, verify_envelope,
};
use ed25519_dalek::VerifyingKey;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::Checkpointer;
use crate::store::agents::AgentKey;
use crate::store::records::{AppendOutcome, CheckRow, GapRow, NewRecord, RecordWriter};
use crate::store::security_events::{EventBatch, EventNote};

/// How far a record's collection time may lie ahead of the server's clock.
pub const MAX_FUTURE_SKEW_SECS: i64 = 300;

/// Why a record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    Malformed,
    BadSignature,
    WrongKey,
    WrongAgent,
    TooLarge,
    SequenceGap,
    Equivocation,
    ChainMismatch,
    Replay,
    Storage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub message: String,
    /// For chain refusals: the seq the server expects next from this agent.
    pub expected_seq: u64,
}

impl Rejection {
    pub fn new(kind: RejectKind, message: impl Into<String>) -> Self {
        Rejection { kind, message: message.into(), expected_seq: 0 }
    }

    pub fn with_expected(mut self, seq: u64) -> Self {
        self.expected_seq = seq;
        self
    }

    /// Whether sending the same record later may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self.kind, RejectKind::Storage | RejectKind::SequenceGap)
    }
}

/// The outcome of one record, as the agent learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Rejected(Rejection),
}

/// Verifies one envelope from the mTLS peer `agent` and parses it into a
/// record ready to append. Pure: `received_at` is passed in.
pub fn verify_record(env: Envelope, agent: &AgentKey, received_at: i64) -> Result<NewRecord, Rejection> {
    use RejectKind::*;
    if env.payload.len() > custos_proto::evidence::MAX_PAYLOAD_BYTES {
        return Err(Rejection::new(
            TooLarge,
            format!(
                "payload is {} bytes, limit {}",
                env.payload.len(),
                custos_proto::evidence::MAX_PAYLOAD_BYTES
            ),
        ));
    }
    let key = VerifyingKey::from_bytes(&agent.evidence_key)
        .map_err(|_| Rejection::new(WrongKey, "agent's registered evidence key is unusable"))?;
    verify_envelope(&env, &key).map_err(|e| match e {
        EvidenceError::KeyIdMismatch { .. } => Rejection::new(WrongKey, e.to_string()),
        EvidenceError::BadSignature | EvidenceError::SignatureLength(_) | EvidenceError::WeakKey => {
            Rejection::new(BadSignature, e.to_string())
        }
        _ => Rejection::new(Malformed, e.to_string()),
    })?;
    let st = StatementRaw::raw_from_payload(&env.payload).map_err(|e| match e {
        StatementError::TooLarge(_) => Rejection::new(TooLarge, e.to_string()),
        _ => Rejection::new(Malformed, e.to_string()),
    })?;
    let expected_digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(agent.evidence_key))
    };
    if st.predicate.agent_id != agent.agent_id
        || st.subject.first().and_then(|s| s.digest.get("sha256")) != Some(&expected_digest)
    {
        return Err(Rejection::new(
            WrongAgent,
            format!(
                "statement names agent {:?}, the connection is agent {}",
                st.predicate.agent_id, agent.agent_id
            ),
        ));
    }
    let collected_at = OffsetDateTime::parse(&st.predicate.collected_at, &Rfc3339)
        .map_err(|e| Rejection::new(Malformed, format!("collected_at {:?}: {e}", st.predicate.collected_at)))?
        .unix_timestamp();
    // Records are ordered by seq, not by time; a collection time far ahead of
    // the server's clock is kept but flagged.
    let clock_skew = (collected_at > received_at + MAX_FUTURE_SKEW_SECS).then(|| {
        format!("collected_at is {} s ahead of the server's receive time", collected_at - received_at)
    });
    into_record(st, env, collected_at, received_at, clock_skew)
}

/// The verified statement and its envelope as the record the store appends.
fn into_record(
    st: StatementRaw,
    env: Envelope,
    collected_at: i64,
    received_at: i64,
    clock_skew: Option<String>,
) -> Result<NewRecord, Rejection> {
    let prev = st.prev_digest();
    let p = st.predicate;
    let digest = payload_digest(&env.payload);
    let Envelope { payload, payload_type, signatures } = env;
    let Some(sig) = signatures.into_iter().next() else {
        return Err(Rejection::new(RejectKind::Malformed, "expected exactly one signature"));
    };
    Ok(NewRecord {
        agent_id: p.agent_id,
        seq: p.seq,
        prev,
        digest,
        payload,
        payload_type,
        keyid: sig.keyid,
        sig: sig.sig,
        collected_at,
        received_at,
        os: p.host.os,
        os_version: p.host.os_version,
        reported_tags: serde_json::to_string(&p.host.tags).unwrap_or_else(|_| "[]".into()),
        kernel: p.host.kernel,
        agent_version: p.agent_version,
        gap: p.gap.map(|g| GapRow {
            missed_collections: g.missed_collections,
            first_missed_at: g.first_missed_at,
            last_missed_at: g.last_missed_at,
            reason: g.reason,
        }),
        checks: p
            .checks
            .into_iter()
            .map(|c| CheckRow {
                facts: c.facts.get().to_string(),
                id: c.id,
                status: c.status,
                backend: c.backend,
                reason: c.reason,
            })
            .collect(),
        clock_skew,
    })
}

fn outcome_of(append: AppendOutcome) -> Outcome {
    match append {
        AppendOutcome::Accepted => Outcome::Accepted,
        AppendOutcome::Duplicate => Outcome::Duplicate,
        AppendOutcome::Refused { verdict, expected } => Outcome::Rejected(
            match verdict {
                ChainVerdict::Gap { expected } => Rejection::new(
                    RejectKind::SequenceGap,
                    format!("sequence gap: the server expects seq {expected} next"),
                ),
                ChainVerdict::Equivocation => Rejection::new(
                    RejectKind::Equivocation,
                    "a different record with this seq is already stored (equivocation)",
                ),
                ChainVerdict::PrevMismatch => Rejection::new(
                    RejectKind::ChainMismatch,
                    format!("prev does not match the digest of stored record {}", expected - 1),
                ),
                ChainVerdict::Replay => Rejection::new(
                    RejectKind::Replay,
                    "seq lies behind the chain head but was never stored here",
                ),
                ChainVerdict::Append | ChainVerdict::Duplicate => {
                    Rejection::new(RejectKind::Storage, "internal: inconsistent chain verdict")
                }
            }
            .with_expected(expected),
        ),
    }
}

/// The security event a refusal made before the store raises, by kind.
/// Chain refusals are raised by the store, which decides them.
fn event_kind(kind: RejectKind) -> Option<&'static str> {
    match kind {
        RejectKind::Malformed => Some("malformed_record"),
        RejectKind::BadSignature => Some("bad_signature"),
        RejectKind::WrongKey => Some("wrong_key"),
        RejectKind::WrongAgent => Some("wrong_agent"),
        RejectKind::TooLarge => Some("oversized_record"),
        RejectKind::SequenceGap
        | RejectKind::Equivocation
        | RejectKind::ChainMismatch
        | RejectKind::Replay
        | RejectKind::Storage => None,
    }
}

/// One stream's batch on its way to the writer.
struct Job {
    /// The mTLS peer that sent the batch: the source of its refusals.
    agent_id: String,
    items: Vec<Result<NewRecord, Rejection>>,
    reply: oneshot::Sender<Vec<Outcome>>,
}

/// Handle to the single writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    jobs: mpsc::Sender<Job>,
    /// Signalled after every commit that accepted something.
    pub changed: Arc<Notify>,
}

impl Ingest {
    /// Starts the writer thread on `writer`'s connection, and a thread that
    /// checkpoints the WAL every half second while the writer lives.
    pub fn start(writer: RecordWriter, checkpointer: Checkpointer, max_batch_records: usize) -> Ingest {
        let (tx, rx) = mpsc::channel::<Job>(256);
        let changed = Arc::new(Notify::new());
        let notify = Arc::clone(&changed);
        let (alive, writer_gone) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("custos-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    writer_gone.recv_timeout(std::time::Duration::from_millis(500))
                {
                    if let Err(e) = checkpointer.passive() {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .expect("cannot start the checkpoint thread");
        std::thread::Builder::new()
            .name("custos-ingest-writer".into())
            .spawn(move || {
                // Dropped when this thread ends, which stops the checkpointer.
                let _alive = alive;
                write_loop(writer, rx, &notify, max_batch_records);
            })
            .expect("cannot start the ingest writer thread");
        Ingest { jobs: tx, changed }
    }

    /// Queues a batch from agent `agent_id`; the receiver yields one outcome
    /// per item, in order, once the batch and the security events of its
    /// refusals are durable.
    pub async fn submit(
        &self,
        agent_id: &str,
        items: Vec<Result<NewRecord, Rejection>>,
    ) -> oneshot::Receiver<Vec<Outcome>> {
        let (reply, rx) = oneshot::channel();
        let n = items.len();
        let job = Job { agent_id: agent_id.to_string(), items, reply };
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job).await {
            let _ = job.reply.send(vec![
                Outcome::Rejected(Rejection::new(
                    RejectKind::Storage,
                    "server is shutting down"
                ));
                n
            ]);
        }
        rx
    }
}

/// The writer loop: group commit of whatever batches wait, up to
/// `max_batch_records` records at once.
fn write_loop(
    mut writer: RecordWriter,
    mut rx: mpsc::Receiver<Job>,
    notify: &Notify,
    max_batch_records: usize,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut count = first.items.len();
        let mut jobs = vec![first];
        while count < max_batch_records {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.items.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if commit(&mut writer, jobs, count) {
            // Stores a permit if the keeper is busy, so no commit goes unseen.
            notify.notify_one();
        }
    }
}

/// Commits the verified records of `jobs` with the security events of
/// every refusal among them, then answers each job. Returns whether
/// anything was accepted.
///
/// A refusal is answered only after its event committed: when the commit
/// fails, every item of every job is answered as a retryable storage
/// refusal, the refused ones included (their events were not stored
/// either).
fn commit(writer: &mut RecordWriter, jobs: Vec<Job>, count: usize) -> bool {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    // Move the verified records out; remember where each answer goes.
    let mut records: Vec<NewRecord> = Vec::with_capacity(count);
    let mut events = EventBatch::default();
    let mut plans = Vec::with_capacity(jobs.len());
    for job in jobs {
        let slots: Vec<Option<Rejection>> = job
            .items
            .into_iter()
            .map(|item| match item {
                Ok(r) => {
                    records.push(r);
                    None
                }
                Err(rejection) => {
                    if let Some(kind) = event_kind(rejection.kind) {
                        events.add(EventNote::agent(kind, &job.agent_id, now, &rejection.message));
                    }
                    Some(rejection)
                }
            })
            .collect();
        plans.push((job.reply, slots));
    }
    let appended = if records.is_empty() && events.is_empty() {
        Ok(Vec::new())
    } else {
        writer.append_noting(&records, &events, now)
    };
    let mut results = match appended {
        Ok(outcomes) => outcomes.into_iter().map(outcome_of).collect::<Vec<_>>().into_iter(),
        Err(e) => {
            tracing::error!(error = %e, records = records.len(), "ingest commit failed; nothing acknowledged");
            let storage =
                Rejection::new(RejectKind::Storage, format!("server could not store the record: {e}"));
            for (reply, slots) in plans {
                let _ = reply.send(vec![Outcome::Rejected(storage.clone()); slots.len()]);
            }
            return false;
        }
    };
    let mut any_accepted = false;
    for (reply, slots) in plans {
        let outcomes: Vec<Outcome> = slots
            .into_iter()
            .map(|slot| match slot {
                None => results.next().unwrap_or_else(|| {
                    Outcome::Rejected(Rejection::new(RejectKind::Storage, "internal: missing outcome"))
                }),
                Some(rejection) => Outcome::Rejected(rejection),
            })
            .collect();
        any_accepted |= outcomes.contains(&Outcome::Accepted);
        // The stream may have gone away; its records stay committed.
        let _ = reply.send(outcomes);
    }
    any_accepted
}
