//! `AgentService.SubmitEvidence`: one agent's evidence stream. Records are
//! read in batches, verified off the async workers, committed by the
//! ingest writer and answered strictly in arrival order.
//!
//! How a stream ends (the wire contract):
//! - The agent closes its side: every record is answered, then status OK.
//! - A message over `limits.max_message_bytes`: every record before it is
//!   answered, then RESOURCE_EXHAUSTED with a message beginning
//!   "record too large" and trailing metadata [`MAX_RECORD_BYTES_KEY`]
//!   (the limit, decimal); an `oversized_record` security event is
//!   committed before that status is sent.
//! - Any other stream error (the agent cancelled, the connection broke):
//!   every record received before it is answered, then that error, never OK.
//! - The agent is revoked: checked before each batch; the answers to the
//!   batches before it, then PERMISSION_DENIED (nothing of the batch read at
//!   that moment is stored), after a `revoked_agent` event.

use std::pin::Pin;
use std::sync::Arc;

use custos_proto::v1;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status, Streaming};

use super::{AckStream, GrpcState, ack, from_wire, internal};
use crate::intake::ingest::{Outcome, RejectKind, Rejection, verify_record};
use crate::store::agents::AgentKey;
use crate::store::security_events::EventNote;

/// Records read from a stream before handing them to verification at once.
const STREAM_BATCH: usize = 256;

/// Trailing metadata of a stream ended by an oversized record: the largest
/// message the server accepts, in bytes.
pub const MAX_RECORD_BYTES_KEY: &str = "custos-max-record-bytes";

/// What the reader hands the forwarder, in stream order.
enum Pending {
    /// A batch's client refs and, once committed, their outcomes.
    Batch(Vec<u64>, oneshot::Receiver<Vec<Outcome>>),
    /// The status that ends the stream, after every answer before it.
    End(Status),
}

/// Why reading stopped.
enum StreamEnd {
    Closed,
    Failed(Status),
}

/// Serves one stream of `agent`: a reader and a forwarder task, joined by
/// the queue of pending batches, so answers leave in arrival order while
/// the next batch is verified.
pub(super) fn serve(
    state: Arc<GrpcState>,
    agent: AgentKey,
    incoming: Streaming<v1::EvidenceRecord>,
) -> AckStream {
    let (ack_tx, ack_rx) = mpsc::channel::<Result<v1::Ack, Status>>(STREAM_BATCH * 4);
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(4);
    tokio::spawn(forward(pending_rx, ack_tx));
    tokio::spawn(read(state, agent, incoming, pending_tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(ack_rx))
}

/// Sends each batch's answers as its outcomes arrive, then the ending
/// status if there is one; returns when the agent has gone.
async fn forward(mut pending: mpsc::Receiver<Pending>, acks: mpsc::Sender<Result<v1::Ack, Status>>) {
    while let Some(next) = pending.recv().await {
        match next {
            Pending::Batch(refs, outcomes) => {
                let outcomes = outcomes.await.unwrap_or_default();
                for (i, client_ref) in refs.into_iter().enumerate() {
                    let outcome = outcomes.get(i).cloned().unwrap_or_else(|| {
                        Outcome::Rejected(Rejection::new(RejectKind::Storage, "no outcome"))
                    });
                    if acks.send(Ok(ack(client_ref, outcome))).await.is_err() {
                        return;
                    }
                }
            }
            Pending::End(status) => {
                let _ = acks.send(Err(status)).await;
                return;
            }
        }
    }
}

/// Reads batches until the stream ends: each checked against revocation,
/// verified and submitted; the end turned into the status the contract says.
async fn read(
    state: Arc<GrpcState>,
    agent: AgentKey,
    mut incoming: Streaming<v1::EvidenceRecord>,
    pending: mpsc::Sender<Pending>,
) {
    loop {
        let (batch, end) = next_batch(&mut incoming).await;
        if !batch.is_empty() {
            // Revocation takes effect on open streams at the next batch.
            if let Err(refusal) = state.agent(&agent.agent_id) {
                let _ = pending.send(Pending::End(state.refuse(refusal).await)).await;
                return;
            }
            let submitted = match submit(&state, &agent, batch).await {
                Ok(p) => p,
                Err(status) => Pending::End(status),
            };
            if pending.send(submitted).await.is_err() {
                return;
            }
        }
        match end {
            None => {}
            Some(StreamEnd::Closed) => return,
            Some(StreamEnd::Failed(status)) => {
                let _ = pending.send(Pending::End(failed(&state, &agent, status).await)).await;
                return;
            }
        }
    }
}

/// Waits for one message, then takes what is already buffered, up to
/// [`STREAM_BATCH`]; says whether the stream ended after them.
async fn next_batch(
    incoming: &mut Streaming<v1::EvidenceRecord>,
) -> (Vec<v1::EvidenceRecord>, Option<StreamEnd>) {
    let mut batch = Vec::new();
    match incoming.next().await {
        None => return (batch, Some(StreamEnd::Closed)),
        Some(Err(status)) => return (batch, Some(StreamEnd::Failed(status))),
        Some(Ok(m)) => batch.push(m),
    }
    while batch.len() < STREAM_BATCH {
        match poll_now(incoming) {
            Some(Some(Ok(m))) => batch.push(m),
            Some(Some(Err(status))) => return (batch, Some(StreamEnd::Failed(status))),
            Some(None) => return (batch, Some(StreamEnd::Closed)),
            None => break,
        }
    }
    (batch, None)
}

/// Polls the stream once without waiting: `None` when nothing is ready.
fn poll_now<S: Stream + Unpin>(s: &mut S) -> Option<Option<S::Item>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(s).poll_next(&mut cx) {
        std::task::Poll::Ready(item) => Some(item),
        std::task::Poll::Pending => None,
    }
}

/// Verifies `batch` off the async workers and queues it for the writer.
async fn submit(
    state: &GrpcState,
    agent: &AgentKey,
    batch: Vec<v1::EvidenceRecord>,
) -> Result<Pending, Status> {
    let refs: Vec<u64> = batch.iter().map(|m| m.client_ref).collect();
    let key = agent.clone();
    let received_at = OffsetDateTime::now_utc().unix_timestamp();
    let verified = tokio::task::spawn_blocking(move || {
        batch
            .into_iter()
            .map(|m| match m.envelope {
                None => Err(Rejection::new(RejectKind::Malformed, "record has no envelope")),
                Some(e) => verify_record(from_wire(e), &key, received_at),
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| internal("record verification", e))?;
    let outcomes = state.ingest.submit(&agent.agent_id, verified).await;
    Ok(Pending::Batch(refs, outcomes))
}

/// The status that ends a stream that failed with `status`: an oversized
/// message becomes RESOURCE_EXHAUSTED with the limit (its event committed
/// first); any other error is passed on.
async fn failed(state: &GrpcState, agent: &AgentKey, status: Status) -> Status {
    // tonic's decoder refuses a message over the limit with OUT_OF_RANGE
    // before reading it; its message is the only sign of why.
    if !(status.code() == Code::OutOfRange && status.message().contains("message length too large")) {
        tracing::warn!(agent_id = agent.agent_id, %status, "evidence stream failed");
        return status;
    }
    let limit = state.config.limits.max_message_bytes;
    let detail = format!("stream ended: {}", status.message());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    state.events.record(EventNote::agent("oversized_record", &agent.agent_id, now, &detail)).await;
    let mut metadata = MetadataMap::new();
    metadata.insert(MAX_RECORD_BYTES_KEY, MetadataValue::from(limit as u64));
    Status::with_metadata(
        Code::ResourceExhausted,
        format!("record too large: a message exceeds the limit of {limit} bytes ({})", status.message()),
        metadata,
    )
}
