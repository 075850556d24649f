//! `Enrollment.Enroll`: token, CSR, evidence key and its proof of
//! possession turned into an agent and its client certificate.
//!
//! Guessing tokens is slowed per source address (see
//! `security::limiter`): an attempt takes a token from the source's bucket
//! before any work, a successful enrollment gives it back; with the bucket
//! empty the answer is RESOURCE_EXHAUSTED with trailing metadata
//! `custos-retry-after-seconds`. Every refusal, the throttled ones
//! included, is a security event from the peer's address, committed before
//! the answer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use custos_proto::{enrollment_proof_message, v1};
use ed25519_dalek::{Signature, VerifyingKey};
use time::OffsetDateTime;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

use super::{GrpcState, Refusal, internal};
use crate::identity::secrets;
use crate::identity::security::limiter::Throttled;
use crate::identity::security::source_name;
use crate::store::agents::NewAgent;
use crate::store::security_events::EventNote;

/// Trailing metadata of a throttled attempt: seconds until the next one is allowed.
pub const RETRY_AFTER_KEY: &str = "custos-retry-after-seconds";

pub struct EnrollmentService(pub Arc<GrpcState>);

#[tonic::async_trait]
impl v1::enrollment_server::Enrollment for EnrollmentService {
    /// Rate limit, then the request checked and the agent enrolled; a
    /// success gives its attempt back, a refusal is recorded, then answered.
    async fn enroll(&self, req: Request<v1::EnrollRequest>) -> Result<Response<v1::EnrollResponse>, Status> {
        let s = &self.0;
        // Every TCP peer has an address; without one all such calls share a bucket.
        let ip = req.remote_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let source = source_name(ip);
        if let Err(throttled) = s.enroll_limiter.try_take(ip, Instant::now()) {
            return Err(s.refuse(throttle(&s.config.limits, &source, throttled)).await);
        }
        match enroll(s, &source, req.into_inner()) {
            Ok(resp) => {
                s.enroll_limiter.give_back(ip);
                Ok(Response::new(resp))
            }
            Err(refusal) => Err(s.refuse(refusal).await),
        }
    }
}

/// The refusal of a throttled attempt.
fn throttle(limits: &crate::identity::security::Limits, source: &str, t: Throttled) -> Refusal {
    let secs = t.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut metadata = MetadataMap::new();
    metadata.insert(RETRY_AFTER_KEY, MetadataValue::from(secs));
    let status = Status::with_metadata(
        Code::ResourceExhausted,
        format!("too many enrollment attempts from {source}; try again in {secs} s"),
        metadata,
    );
    let detail = format!(
        "more than {} enrollment attempts at once or {} a minute; next allowed in {secs} s",
        limits.enroll_burst, limits.enroll_attempts_per_minute
    );
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Refusal::event(status, EventNote::peer("enrollment_throttled", source, now, &detail))
}

/// Checks the request, issues the certificate and enrolls the agent, its
/// token consumed in the same transaction.
fn enroll(s: &GrpcState, source: &str, r: v1::EnrollRequest) -> Result<v1::EnrollResponse, Refusal> {
    let now = OffsetDateTime::now_utc();
    let invalid = |status: Status| {
        let note = EventNote::peer("enrollment_invalid", source, now.unix_timestamp(), status.message());
        Refusal::event(status, note)
    };
    let key_bytes = checked_key(&r).map_err(invalid)?;
    let agent_id = secrets::new_agent_id();
    let cert =
        s.ca.issue_agent(&agent_id, &r.csr_der, now, s.lifetime())
            .map_err(|e| invalid(Status::invalid_argument(e.to_string())))?;
    let display_name = if r.display_name.is_empty() { agent_id.clone() } else { r.display_name.clone() };
    let agent = NewAgent {
        agent_id: &agent_id,
        display_name: &display_name,
        evidence_key: &key_bytes,
        cert_serial: &cert.serial_hex,
        cert_not_after: cert.not_after.unix_timestamp(),
        agent_version: &r.agent_version,
    };
    let enrolled = s
        .store
        .enroll_agent(&secrets::token_hash(&r.token), &agent, now.unix_timestamp())
        .map_err(|e| internal("enrollment", e))?;
    if let Err(refusal) = enrolled {
        return Err(Refusal::event(
            Status::permission_denied("enrollment token not accepted (unknown, expired or used up)"),
            EventNote::peer("enrollment_refused", source, now.unix_timestamp(), &refusal.to_string()),
        ));
    }
    tracing::info!(agent_id, display_name, "agent enrolled");
    Ok(v1::EnrollResponse {
        agent_id,
        client_cert_pem: cert.cert_pem,
        ca_cert_pem: s.ca.cert_pem().to_string(),
        not_after_unix: cert.not_after.unix_timestamp(),
    })
}

/// The request's field lengths, evidence key and proof of possession
/// checked; the key's bytes.
fn checked_key(r: &v1::EnrollRequest) -> Result<[u8; 32], Status> {
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
    Ok(key_bytes)
}
