//! The gRPC services (`custos.v1`): enrollment, certificate renewal, policy
//! and the evidence stream. Only this module and `api` know the wire types.
//!
//! Invariants:
//! - The agent id of a call is taken from the verified client certificate's
//!   URI SAN, never from a message field.
//! - Every record gets exactly one answer, in arrival order, until the
//!   stream ends; a stream that ends for any reason but the agent closing
//!   it ends with an error status, never OK (see [`stream`]).
//! - A revoked agent is refused on every call, and its open streams end at
//!   the next batch.
//! - Every refusal made here is a security event, committed before the
//!   refusal is answered (records' refusals by the ingest writer, the
//!   others through [`SecurityEvents`]).
//!
//! Modules: [`enroll`] (enrollment, rate-limited per source address),
//! [`stream`] (the evidence stream and how it ends).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use custos_proto::evidence::{Envelope, EnvelopeSignature};
use custos_proto::v1;
use time::OffsetDateTime;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::Config;
use crate::identity::ca::{CertAuthority, agent_id_from_cert};
use crate::identity::registry::AgentRegistry;
use crate::identity::security::{RateLimiter, SecurityEvents, source_name};
use crate::intake::ingest::{Ingest, Outcome, RejectKind};
use crate::store::Store;
use crate::store::agents::AgentKey;
use crate::store::security_events::EventNote;

mod enroll;
mod stream;

pub use enroll::EnrollmentService;
pub use stream::MAX_RECORD_BYTES_KEY;

/// Shared state of all gRPC services.
pub struct GrpcState {
    pub store: Arc<Store>,
    pub ca: Arc<CertAuthority>,
    pub config: Config,
    pub ingest: Ingest,
    pub agents: Arc<AgentRegistry>,
    /// Records the refusals made here (and in the TLS accept loop).
    pub events: SecurityEvents,
    /// Enrollment attempts per source address.
    pub enroll_limiter: RateLimiter,
}

/// A call refused: the status to answer and, when the refusal is a
/// security event, its note (recorded before the status is sent).
struct Refusal {
    status: Status,
    /// Boxed: refusals are the rare path, results stay small.
    event: Option<Box<EventNote>>,
}

impl Refusal {
    fn event(status: Status, note: EventNote) -> Self {
        Refusal { status, event: Some(Box::new(note)) }
    }
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        Refusal { status, event: None }
    }
}

impl GrpcState {
    pub fn new(
        store: Arc<Store>,
        ca: Arc<CertAuthority>,
        config: Config,
        ingest: Ingest,
        agents: Arc<AgentRegistry>,
    ) -> Arc<Self> {
        let events = SecurityEvents::start(Arc::clone(&store));
        let enroll_limiter = RateLimiter::from_limits(&config.limits);
        Arc::new(GrpcState { store, ca, config, ingest, agents, events, enroll_limiter })
    }

    /// The calling agent, from its client certificate; refused if absent,
    /// unknown or revoked, the refusal recorded before it is answered.
    async fn caller<T>(&self, req: &Request<T>) -> Result<AgentKey, Status> {
        match self.identify(req) {
            Ok(agent) => Ok(agent),
            Err(refusal) => Err(self.refuse(refusal).await),
        }
    }

    fn identify<T>(&self, req: &Request<T>) -> Result<AgentKey, Refusal> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let peer = req.remote_addr().map_or_else(|| "unknown".to_string(), |a| source_name(a.ip()));
        let Some(certs) = req.peer_certs() else {
            return Err(Refusal::event(
                Status::unauthenticated("a client certificate issued by this server is required"),
                EventNote::peer(
                    "no_client_certificate",
                    &peer,
                    now,
                    "agent call without a client certificate",
                ),
            ));
        };
        let Some(agent_id) = certs.first().and_then(|c| agent_id_from_cert(c.as_ref())) else {
            return Err(Refusal::event(
                Status::unauthenticated("client certificate names no Custos agent"),
                EventNote::peer("unknown_agent", &peer, now, "client certificate names no Custos agent"),
            ));
        };
        self.agent(&agent_id)
    }

    /// Agent `agent_id` as it stands now: refused when unknown or revoked.
    fn agent(&self, agent_id: &str) -> Result<AgentKey, Refusal> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let Some(agent) = self.agents.get(agent_id).map_err(|e| internal("agent lookup", e))? else {
            return Err(Refusal::event(
                Status::unauthenticated(format!("agent {agent_id} is not enrolled")),
                EventNote::agent("unknown_agent", agent_id, now, "call by an agent that is not enrolled"),
            ));
        };
        if agent.revoked {
            return Err(Refusal::event(
                Status::permission_denied(format!("agent {agent_id} is revoked")),
                EventNote::agent("revoked_agent", agent_id, now, "call by a revoked agent"),
            ));
        }
        Ok(agent)
    }

    /// Records the refusal's event (waiting for the commit), then gives the
    /// status to answer.
    async fn refuse(&self, refusal: Refusal) -> Status {
        if let Some(note) = refusal.event {
            self.events.record(*note).await;
        }
        refusal.status
    }

    fn lifetime(&self) -> time::Duration {
        time::Duration::hours(self.config.agent_cert.lifetime_hours as i64)
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "{what} failed");
    Status::internal(format!("{what} failed on the server"))
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
        let agent = s.caller(&req).await?;
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
        let agent = self.0.caller(&req).await?;
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
        let agent = self.0.caller(&req).await?;
        Ok(Response::new(stream::serve(Arc::clone(&self.0), agent, req.into_inner())))
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
