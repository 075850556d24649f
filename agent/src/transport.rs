//! The agent's side of the wire: TLS channels to the server, evidence
//! delivery from the spool, policy fetch and certificate renewal. The only
//! agent module that knows protobuf.
//!
//! Invariant: a record is removed from the spool only after the server
//! answered `accepted` or `duplicate` for it.

use std::time::Duration;

use custos_proto::evidence::Envelope;
use custos_proto::v1;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::spool::{Spool, SpoolError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach {server}: {message}")]
    Connect { server: String, message: String },
    #[error("server answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("the server refused record {seq} and asks to retry later: {reason}")]
    RetryLater { seq: u64, reason: String },
    #[error("the evidence stream ended before every record was answered ({answered} of {sent})")]
    Incomplete { answered: usize, sent: usize },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl From<tonic::Status> for TransportError {
    fn from(s: tonic::Status) -> Self {
        TransportError::Status { code: s.code(), message: s.message().to_string() }
    }
}

/// Opens a TLS channel to `server`, checking its certificate against `ca_pem`
/// and the name `server_name`; with `identity` (cert PEM, key PEM) as client.
pub async fn connect(
    server: &str,
    server_name: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, TransportError> {
    let err = |message: String| TransportError::Connect { server: server.to_string(), message };
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(server_name);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{server}"))
        .map_err(|e| err(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    endpoint.connect().await.map_err(|e| err(full_error(&e)))
}

fn full_error(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub async fn fetch_policy(channel: Channel) -> Result<v1::Policy, TransportError> {
    let mut client = v1::agent_service_client::AgentServiceClient::new(channel);
    Ok(client.get_policy(v1::PolicyRequest {}).await?.into_inner())
}

/// Asks for a fresh client certificate for a new CSR; returns (cert PEM, not_after).
pub async fn renew(channel: Channel, csr_der: Vec<u8>) -> Result<(String, i64), TransportError> {
    let mut client = v1::agent_service_client::AgentServiceClient::new(channel);
    let r = client.renew_certificate(v1::RenewRequest { csr_der }).await?.into_inner();
    Ok((r.client_cert_pem, r.not_after_unix))
}

/// What one delivery session achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub accepted: u64,
    pub duplicate: u64,
    /// Refused for good and moved to quarantine: (seq, reason).
    pub quarantined: Vec<(u64, String)>,
}

/// Records sent per stream round; acknowledged ones are removed per round.
const ROUND: usize = 1000;

/// Sends everything in the spool, oldest first, removing what the server
/// acknowledged. Stops at the first retryable refusal (kept for later).
pub async fn deliver(channel: Channel, spool: &mut Spool) -> Result<DeliveryReport, TransportError> {
    let mut client = v1::agent_service_client::AgentServiceClient::new(channel);
    let mut report = DeliveryReport::default();
    loop {
        let batch = spool.pending(ROUND)?;
        if batch.is_empty() {
            return Ok(report);
        }
        let sent = batch.len();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let feeder = tokio::spawn(async move {
            for r in batch {
                let msg = v1::EvidenceRecord { envelope: Some(to_wire(r.envelope)), client_ref: r.seq };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        let mut acks =
            client.submit_evidence(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
        let mut done = Vec::with_capacity(sent);
        let mut answered = 0;
        let mut stop: Option<TransportError> = None;
        while answered < sent {
            let Some(ack) = acks.message().await? else { break };
            answered += 1;
            match v1::AckStatus::try_from(ack.status) {
                Ok(v1::AckStatus::Accepted) => {
                    report.accepted += 1;
                    done.push(ack.client_ref);
                }
                Ok(v1::AckStatus::Duplicate) => {
                    report.duplicate += 1;
                    done.push(ack.client_ref);
                }
                _ if ack.retryable => {
                    stop = Some(TransportError::RetryLater { seq: ack.client_ref, reason: ack.reason });
                    break;
                }
                _ => {
                    tracing::error!(
                        seq = ack.client_ref,
                        reason = ack.reason,
                        "server refused record; quarantined"
                    );
                    spool.quarantine(
                        ack.client_ref,
                        &ack.reason,
                        time::OffsetDateTime::now_utc().unix_timestamp(),
                    )?;
                    report.quarantined.push((ack.client_ref, ack.reason));
                }
            }
        }
        drop(acks);
        feeder.abort();
        spool.remove(&done)?;
        if let Some(e) = stop {
            return Err(e);
        }
        if answered < sent {
            return Err(TransportError::Incomplete { answered, sent });
        }
    }
}

pub fn to_wire(e: Envelope) -> v1::Envelope {
    v1::Envelope {
        payload: e.payload,
        payload_type: e.payload_type,
        signatures: e.signatures.into_iter().map(|s| v1::Signature { keyid: s.keyid, sig: s.sig }).collect(),
    }
}
