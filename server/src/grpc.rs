//! The gRPC services (`custos.v1`): enrollment, certificate renewal, policy
//! and the evidence stream. Only this module and `http` know the wire types.
//!
//! Invariants:
//! - The agent id of a call is taken from the verified client certificate's
//!   URI SAN, never from a message field.
//! - Every record gets exactly one answer, in arrival order.
//! - A revoked agent is refused on every call, and its open streams end at
//!   the next batch.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use custos_proto::evidence::{Envelope, EnvelopeSignature};
use custos_proto::{enrollment_proof_message, v1};
use ed25519_dalek::{Signature, VerifyingKey};
use time::OffsetDateTime;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::ca::{CertAuthority, agent_id_from_cert};
use crate::config::Config;
use crate::ingest::{Ingest, Outcome, RejectKind, Rejection, verify_record};
use crate::registry::AgentRegistry;
use crate::secrets;
use crate::store::Store;
use crate::store::agents::{AgentKey, NewAgent};

/// Records read from a stream before handing them to verification at once.
const STREAM_BATCH: usize = 256;

/// Shared state of all gRPC services.
pub struct GrpcState {
    pub store: Arc<Store>,
    pub ca: Arc<CertAuthority>,
    pub config: Config,
    pub ingest: Ingest,
    pub agents: Arc<AgentRegistry>,
}

impl GrpcState {
    pub fn new(
        store: Arc<Store>,
        ca: Arc<CertAuthority>,
        config: Config,
        ingest: Ingest,
        agents: Arc<AgentRegistry>,
    ) -> Arc<Self> {
        Arc::new(GrpcState { store, ca, config, ingest, agents })
    }

    /// The calling agent, from its client certificate; refused if absent,
    /// unknown or revoked.
    fn caller<T>(&self, req: &Request<T>) -> Result<AgentKey, Status> {
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate issued by this server is required")
        })?;
        let agent_id = certs
            .first()
            .and_then(|c| agent_id_from_cert(c.as_ref()))
            .ok_or_else(|| Status::unauthenticated("client certificate names no Custos agent"))?;
        self.agent(&agent_id)
    }

    fn agent(&self, agent_id: &str) -> Result<AgentKey, Status> {
        let agent = self
            .agents
            .get(agent_id)
            .map_err(|e| internal("agent lookup", e))?
            .ok_or_else(|| Status::unauthenticated(format!("agent {agent_id} is not enrolled")))?;
        if agent.revoked {
            return Err(Status::permission_denied(format!("agent {agent_id} is revoked")));
        }
        Ok(agent)
    }

    fn lifetime(&self) -> time::Duration {
        time::Duration::hours(self.config.agent_cert.lifetime_hours as i64)
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "{what} failed");
    Status::internal(format!("{what} failed on the server"))
}

pub struct EnrollmentService(pub Arc<GrpcState>);

#[tonic::async_trait]
impl v1::enrollment_server::Enrollment for EnrollmentService {
    async fn enroll(&self, req: Request<v1::EnrollRequest>) -> Result<Response<v1::EnrollResponse>, Status> {
        let s = &self.0;
        let remote = req.remote_addr();
        let r = req.into_inner();
        let refused = |why: String| {
            tracing::warn!(?remote, "enrollment refused: {why}");
            Status::permission_denied("enrollment token not accepted (unknown, expired or used up)")
        };
        if r.token.len() > 200 || r.display_name.len() > 200 || r.agent_version.len() > 64 {
            return Err(Status::invalid_argument("field too long"));
        }
        let key_bytes: [u8; 32] = r
            .evidence_public_key
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument("evidence_public_key must be 32 bytes (Ed25519)"))?;
        let key = VerifyingKey::from_bytes(&key_bytes)
            .map_err(|_| Status::invalid_argument("evidence_public_key is not a valid Ed25519 point"))?;
        if key.is_weak() {
            return Err(Status::invalid_argument("evidence_public_key is a weak (small-order) key"));
        }
        let proof: [u8; 64] = r
            .evidence_key_proof
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument("evidence_key_proof must be a 64-byte signature"))?;
        key.verify_strict(&enrollment_proof_message(&r.csr_der, &r.token), &Signature::from_bytes(&proof))
            .map_err(|_| Status::invalid_argument("evidence_key_proof does not verify"))?;

        let now = OffsetDateTime::now_utc();
        let agent_id = secrets::new_agent_id();
        let cert =
            s.ca.issue_agent(&agent_id, &r.csr_der, now, s.lifetime())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let display_name = if r.display_name.is_empty() { agent_id.clone() } else { r.display_name.clone() };
        let agent = NewAgent {
            agent_id: &agent_id,
            display_name: &display_name,
            evidence_key: &key_bytes,
            cert_serial: &cert.serial_hex,
            cert_not_after: cert.not_after.unix_timestamp(),
            agent_version: &r.agent_version,
        };
        match s
            .store
            .enroll_agent(&secrets::token_hash(&r.token), &agent, now.unix_timestamp())
            .map_err(|e| internal("enrollment", e))?
        {
            Ok(()) => {}
            Err(refusal) => return Err(refused(refusal.to_string())),
        }
        tracing::info!(agent_id, display_name, "agent enrolled");
        Ok(Response::new(v1::EnrollResponse {
            agent_id,
            client_cert_pem: cert.cert_pem,
            ca_cert_pem: s.ca.cert_pem().to_string(),
            not_after_unix: cert.not_after.unix_timestamp(),
        }))
    }
}

pub struct AgentService(pub Arc<GrpcState>);

type AckStream = Pin<Box<dyn Stream<Item = Result<v1::Ack, Status>> + Send>>;

#[tonic::async_trait]
impl v1::agent_service_server::AgentService for AgentService {
    async fn renew_certificate(
        &self,
        req: Request<v1::RenewRequest>,
    ) -> Result<Response<v1::RenewResponse>, Status> {
        let s = &self.0;
        let agent = s.caller(&req)?;
        let now = OffsetDateTime::now_utc();
        let cert =
            s.ca.issue_agent(&agent.agent_id, &req.get_ref().csr_der, now, s.lifetime())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        s.store
            .record_renewal(
                &agent.agent_id,
                &cert.serial_hex,
                cert.not_after.unix_timestamp(),
                now.unix_timestamp(),
            )
            .map_err(|e| internal("renewal", e))?;
        tracing::info!(agent_id = agent.agent_id, "client certificate renewed");
        Ok(Response::new(v1::RenewResponse {
            client_cert_pem: cert.cert_pem,
            not_after_unix: cert.not_after.unix_timestamp(),
        }))
    }

    async fn get_policy(&self, req: Request<v1::PolicyRequest>) -> Result<Response<v1::Policy>, Status> {
        let agent = self.0.caller(&req)?;
        let store = Arc::clone(&self.0.store);
        let generation = tokio::task::spawn_blocking(move || store.collect_generation(&agent.agent_id))
            .await
            .map_err(|e| internal("policy", e))?
            .map_err(|e| internal("policy", e))?;
        let p = &self.0.config.policy;
        Ok(Response::new(v1::Policy {
            interval_seconds: p.interval_seconds,
            checks: p.checks.clone(),
            collector_timeout_seconds: p.collector_timeout_seconds,
            check_interval_seconds: p.check_interval_seconds.clone().into_iter().collect(),
            jitter_percent: p.jitter_percent,
            collect_now_generation: generation,
            poll_seconds: p.poll_seconds,
        }))
    }

    type SubmitEvidenceStream = AckStream;

    async fn submit_evidence(
        &self,
        req: Request<Streaming<v1::EvidenceRecord>>,
    ) -> Result<Response<Self::SubmitEvidenceStream>, Status> {
        let state = Arc::clone(&self.0);
        let agent = state.caller(&req)?;
        let mut incoming = req.into_inner();
        let (ack_tx, ack_rx) = tokio::sync::mpsc::channel::<Result<v1::Ack, Status>>(STREAM_BATCH * 4);
        // Pending batches, answered strictly in order by the forwarder below.
        let (pending_tx, mut pending_rx) =
            tokio::sync::mpsc::channel::<(Vec<u64>, tokio::sync::oneshot::Receiver<Vec<Outcome>>)>(4);

        let forward_tx = ack_tx.clone();
        tokio::spawn(async move {
            while let Some((refs, outcomes)) = pending_rx.recv().await {
                let outcomes = outcomes.await.unwrap_or_default();
                for (i, client_ref) in refs.into_iter().enumerate() {
                    let outcome = outcomes.get(i).cloned().unwrap_or_else(|| {
                        Outcome::Rejected(Rejection::new(RejectKind::Storage, "no outcome"))
                    });
                    if forward_tx.send(Ok(ack(client_ref, outcome))).await.is_err() {
                        return;
                    }
                }
            }
        });

        tokio::spawn(async move {
            loop {
                let mut batch = Vec::new();
                // Wait for one message, then take what is already buffered.
                match incoming.next().await {
                    None => break,
                    Some(Err(status)) => {
                        tracing::warn!(agent_id = agent.agent_id, %status, "evidence stream failed");
                        break;
                    }
                    Some(Ok(m)) => batch.push(m),
                }
                while batch.len() < STREAM_BATCH {
                    match futures_now(&mut incoming) {
                        Some(Some(Ok(m))) => batch.push(m),
                        Some(Some(Err(status))) => {
                            tracing::warn!(agent_id = agent.agent_id, %status, "evidence stream failed");
                            break;
                        }
                        Some(None) | None => break,
                    }
                }
                // Revocation takes effect on open streams at the next batch.
                if let Err(status) = state.agent(&agent.agent_id) {
                    let _ = ack_tx.send(Err(status)).await;
                    break;
                }
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
                .await;
                let Ok(verified) = verified else { break };
                // Forgery attempts are security events; written off the async workers.
                let refused: Vec<String> = verified
                    .iter()
                    .filter_map(|item| item.as_ref().err())
                    .filter(|r| {
                        matches!(
                            r.kind,
                            RejectKind::BadSignature | RejectKind::WrongKey | RejectKind::WrongAgent
                        )
                    })
                    .map(|r| r.message.clone())
                    .collect();
                if !refused.is_empty() {
                    tracing::warn!(
                        agent_id = agent.agent_id,
                        count = refused.len(),
                        "records refused: {}",
                        refused[0]
                    );
                    let (store, agent_id) = (Arc::clone(&state.store), agent.agent_id.clone());
                    tokio::task::spawn_blocking(move || {
                        for message in refused {
                            let _ = store.record_security_event(
                                received_at,
                                Some(&agent_id),
                                "refused_record",
                                &message,
                            );
                        }
                    });
                }
                let outcomes = state.ingest.submit(verified).await;
                if pending_tx.send((refs, outcomes)).await.is_err() {
                    break;
                }
            }
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(ack_rx);
        Ok(Response::new(Box::pin(out) as AckStream))
    }
}

/// Polls the stream once without waiting: `None` when nothing is ready.
fn futures_now<S: Stream + Unpin>(s: &mut S) -> Option<Option<S::Item>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(s).poll_next(&mut cx) {
        std::task::Poll::Ready(item) => Some(item),
        std::task::Poll::Pending => None,
    }
}

fn from_wire(e: v1::Envelope) -> Envelope {
    Envelope {
        payload: e.payload,
        payload_type: e.payload_type,
        signatures: e
            .signatures
            .into_iter()
            .map(|s| EnvelopeSignature { keyid: s.keyid, sig: s.sig })
            .collect(),
    }
}

fn ack(client_ref: u64, outcome: Outcome) -> v1::Ack {
    use v1::{AckStatus, RejectReason};
    match outcome {
        Outcome::Accepted => v1::Ack { client_ref, status: AckStatus::Accepted as i32, ..Default::default() },
        Outcome::Duplicate => {
            v1::Ack { client_ref, status: AckStatus::Duplicate as i32, ..Default::default() }
        }
        Outcome::Rejected(r) => {
            let reason = match r.kind {
                RejectKind::Malformed => RejectReason::Malformed,
                RejectKind::BadSignature => RejectReason::BadSignature,
                RejectKind::WrongKey => RejectReason::WrongKey,
                RejectKind::WrongAgent => RejectReason::WrongAgent,
                RejectKind::TooLarge => RejectReason::TooLarge,
                RejectKind::SequenceGap => RejectReason::SequenceGap,
                RejectKind::Equivocation => RejectReason::Equivocation,
                RejectKind::ChainMismatch => RejectReason::ChainMismatch,
                RejectKind::Replay => RejectReason::Replay,
                RejectKind::Storage => RejectReason::Storage,
            };
            v1::Ack {
                client_ref,
                status: AckStatus::Rejected as i32,
                reject_reason: reason as i32,
                retryable: r.retryable(),
                expected_seq: r.expected_seq,
                reason: r.message,
            }
        }
    }
}

/// Timeout applied to unary calls.
pub fn unary_timeout(config: &Config) -> Duration {
    Duration::from_secs(config.limits.unary_timeout_secs)
}
