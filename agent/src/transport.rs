//! The agent's side of the wire: TLS channels to the server, evidence
//! delivery from the spool, policy fetch and certificate renewal. The only
//! agent module that knows protobuf.
//!
//! Invariants: a record is removed from the spool only after the server
//! answered `accepted` or `duplicate` for it; every network wait is bounded
//! by a [`Deadlines`] limit naming its phase.

use custos_proto::evidence::Envelope;
use custos_proto::v1;
use prost::Message as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use std::time::Duration;

use crate::deadlines::{Deadlines, Phase, TimedOut, within, within_until};
use crate::policy::{ActivePolicy, Received};
use crate::spool::{Spool, SpoolError, Spooled};

/// The trailer naming the server's size limit when it ends a stream on a
/// record too large (RESOURCE_EXHAUSTED); see `proto/custos.proto`.
pub const MAX_RECORD_BYTES_TRAILER: &str = "custos-max-record-bytes";

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach {server}: {message}")]
    Connect { server: String, message: String },
    #[error("{server}: {source}")]
    TimedOut { server: String, source: TimedOut },
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

impl TransportError {
    /// The phase that timed out, if this is a timeout.
    pub fn timed_out(&self) -> Option<Phase> {
        match self {
            TransportError::TimedOut { source, .. } => Some(source.phase),
            _ => None,
        }
    }
}

/// A connected channel and the limits its exchanges keep.
#[derive(Debug, Clone)]
pub struct Link {
    pub channel: Channel,
    pub server: String,
    pub deadlines: Deadlines,
}

impl Link {
    fn timed_out(&self, source: TimedOut) -> TransportError {
        TransportError::TimedOut { server: self.server.clone(), source }
    }
}

/// Opens a TLS channel to `server`, checking its certificate against `ca_pem`
/// and the name `server_name`; with `identity` (cert PEM, key PEM) as client.
/// TCP connect and handshake together take at most `deadlines.connect`.
pub async fn connect(
    server: &str,
    server_name: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    deadlines: &Deadlines,
) -> Result<Link, TransportError> {
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
        .connect_timeout(deadlines.connect())
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    // tonic's connect timeout covers the TCP connect; the handshake after it
    // needs a limit of its own, so the whole connect runs under one.
    let channel = within(Phase::Connect, deadlines.connect(), endpoint.connect())
        .await
        .map_err(|source| TransportError::TimedOut { server: server.to_string(), source })?
        .map_err(|e| err(full_error(&e)))?;
    Ok(Link { channel, server: server.to_string(), deadlines: *deadlines })
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

/// Runs one request under the call deadline, as `phase`.
pub async fn call<T>(
    link: &Link,
    phase: Phase,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, TransportError> {
    match within(phase, link.deadlines.call(), fut).await {
        Ok(r) => Ok(r?.into_inner()),
        Err(t) => Err(link.timed_out(t)),
    }
}

/// The server's policy for this agent, under the call deadline.
pub async fn fetch_policy(link: &Link) -> Result<Received, TransportError> {
    let mut client = v1::agent_service_client::AgentServiceClient::new(link.channel.clone());
    let p = call(link, Phase::PolicyFetch, client.get_policy(v1::PolicyRequest {})).await?;
    Ok(Received { saved_form: p.encode_to_vec(), policy: active_policy(p) })
}

/// A policy saved by an earlier run (`Received::saved_form`).
pub fn decode_saved_policy(bytes: &[u8]) -> Result<ActivePolicy, prost::DecodeError> {
    Ok(active_policy(v1::Policy::decode(bytes)?))
}

/// The policy message as the agent applies it: floors on every interval so
/// a mistaken policy cannot make the agent spin.
fn active_policy(p: v1::Policy) -> ActivePolicy {
    let secs = |s: u32, min: u32| Duration::from_secs(u64::from(s.max(min)));
    ActivePolicy {
        interval: secs(p.interval_seconds, 10),
        collector_timeout: secs(p.collector_timeout_seconds, 1),
        checks: p.checks,
        check_intervals: p.check_interval_seconds.into_iter().map(|(c, s)| (c, secs(s, 10))).collect(),
        jitter_percent: p.jitter_percent.min(50),
        // Older servers send no poll interval: poll once a minute.
        poll: if p.poll_seconds == 0 { Duration::from_secs(60) } else { secs(p.poll_seconds, 5) },
        collect_now_generation: p.collect_now_generation,
    }
}

/// Asks for a fresh client certificate for a new CSR; returns (cert PEM, not_after).
pub async fn renew(link: &Link, csr_der: Vec<u8>) -> Result<(String, i64), TransportError> {
    let mut client = v1::agent_service_client::AgentServiceClient::new(link.channel.clone());
    let r = call(link, Phase::Renewal, client.renew_certificate(v1::RenewRequest { csr_der })).await?;
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
/// acknowledged and quarantining what it refused for good. Stops at the
/// first retryable refusal (kept for later), at a stream that stops
/// answering, or when the whole attempt exceeds `deadlines.delivery`.
pub async fn deliver(link: &Link, spool: &mut Spool) -> Result<DeliveryReport, TransportError> {
    let mut client = v1::agent_service_client::AgentServiceClient::new(link.channel.clone());
    let total = link.deadlines.delivery();
    let overall = (Phase::Delivery, tokio::time::Instant::now() + total, total);
    let mut report = DeliveryReport::default();
    loop {
        let batch = spool.pending(ROUND)?;
        if batch.is_empty() {
            return Ok(report);
        }
        let round = send_round(&mut client, link, batch, overall).await;
        // What was answered counts even when the round ended early.
        spool.remove(&round.done)?;
        report.accepted += round.accepted;
        report.duplicate += round.duplicate;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for (seq, reason) in round.refused {
            tracing::error!(seq, reason, "server refused record; quarantined");
            spool.quarantine(seq, &reason, now)?;
            report.quarantined.push((seq, reason));
        }
        round.end?;
    }
}

/// One stream of at most [`ROUND`] records and what came back.
struct Round {
    done: Vec<u64>,
    accepted: u64,
    duplicate: u64,
    refused: Vec<(u64, String)>,
    end: Result<(), TransportError>,
}

type Client = v1::agent_service_client::AgentServiceClient<Channel>;

/// Streams `batch` and collects the answers, in order, each under the
/// progress deadline and all under the attempt's `overall` deadline.
async fn send_round(
    client: &mut Client,
    link: &Link,
    batch: Vec<Spooled>,
    overall: (Phase, tokio::time::Instant, Duration),
) -> Round {
    let mut round = Round { done: Vec::new(), accepted: 0, duplicate: 0, refused: Vec::new(), end: Ok(()) };
    let sent: Vec<(u64, usize)> = batch.iter().map(|r| (r.seq, wire(r).encoded_len())).collect();
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let feeder = tokio::spawn(async move {
        for r in &batch {
            if tx.send(wire(r)).await.is_err() {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let deadlines = link.deadlines;
    round.end = match within_until(
        Phase::StreamOpen,
        deadlines.call(),
        overall,
        client.submit_evidence(stream),
    )
    .await
    {
        Err(t) => Err(link.timed_out(t)),
        Ok(Err(status)) => Err(status.into()),
        Ok(Ok(acks)) => read_acks(acks.into_inner(), link, &sent, overall, &mut round).await,
    };
    feeder.abort();
    round
}

/// Reads one answer per record sent; returns how the stream ended.
async fn read_acks(
    mut acks: tonic::Streaming<v1::Ack>,
    link: &Link,
    sent: &[(u64, usize)],
    overall: (Phase, tokio::time::Instant, Duration),
    round: &mut Round,
) -> Result<(), TransportError> {
    let progress = link.deadlines.stream_progress();
    let mut answered = 0;
    while answered < sent.len() {
        let ack = match within_until(Phase::StreamProgress, progress, overall, acks.message()).await {
            Err(t) => return Err(link.timed_out(t)),
            Ok(Ok(Some(ack))) => ack,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => return too_large(&status, sent.get(answered), round),
        };
        answered += 1;
        match v1::AckStatus::try_from(ack.status) {
            Ok(v1::AckStatus::Accepted) => {
                round.accepted += 1;
                round.done.push(ack.client_ref);
            }
            Ok(v1::AckStatus::Duplicate) => {
                round.duplicate += 1;
                round.done.push(ack.client_ref);
            }
            _ if ack.retryable => {
                return Err(TransportError::RetryLater { seq: ack.client_ref, reason: ack.reason });
            }
            _ => round.refused.push((ack.client_ref, ack.reason)),
        }
    }
    if answered < sent.len() {
        return Err(TransportError::Incomplete { answered, sent: sent.len() });
    }
    Ok(())
}

/// A stream the server ended because a record exceeds its size limit: the
/// first unanswered record is refused for good when it is indeed larger
/// than the limit the server names; any other error status stands.
fn too_large(
    status: &tonic::Status,
    next: Option<&(u64, usize)>,
    round: &mut Round,
) -> Result<(), TransportError> {
    let limit = status
        .metadata()
        .get(MAX_RECORD_BYTES_TRAILER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match (status.code(), limit, next) {
        (tonic::Code::ResourceExhausted, Some(limit), Some(&(seq, size))) if size > limit => {
            let reason = format!("record too large: {size} bytes, the server accepts at most {limit}");
            round.refused.push((seq, reason));
            // The stream is over; the next round carries on after it.
            Ok(())
        }
        _ => Err(status.clone().into()),
    }
}

fn wire(r: &Spooled) -> v1::EvidenceRecord {
    v1::EvidenceRecord { envelope: Some(to_wire(r.envelope.clone())), client_ref: r.seq }
}

pub fn to_wire(e: Envelope) -> v1::Envelope {
    v1::Envelope {
        payload: e.payload,
        payload_type: e.payload_type,
        signatures: e.signatures.into_iter().map(|s| v1::Signature { keyid: s.keyid, sig: s.sig }).collect(),
    }
}
