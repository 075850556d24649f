//! TLS for the gRPC port: rustls with the aws-lc-rs provider, the server
//! certificate, and client certificates verified against our own CA.
//!
//! Client certificates are optional at the handshake so that an agent
//! without one can reach `Enrollment`; every other service refuses a call
//! without a verified certificate (see `grpc`). A certificate from another CA,
//! an expired one or a malformed one fails the handshake.
//!
//! A revoked agent's certificate fails the handshake (the registry is
//! consulted after the CA check).
//!
//! A refused handshake (a certificate from another CA, expired or revoked,
//! a TLS error, a handshake past its deadline) is a security event from the
//! peer's address; a peer that just closes the connection is not.
//!
//! Invariants: TLS 1.2+ only (rustls never negotiates older versions), the
//! handshake has a deadline, open connections are capped, and a refused
//! handshake's event is committed before its connection is closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::identity::ca::agent_id_from_cert;
use crate::identity::registry::AgentRegistry;
use crate::identity::security::{SecurityEvents, source_name};
use crate::store::security_events::EventNote;
use held::HeldTcp;

mod held;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{what}: {message}")]
    Pem { what: &'static str, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// The provider every TLS config of this process uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Client-certificate verification against our CA that also refuses the
/// certificates of revoked agents, so a revoked agent fails the handshake.
#[derive(Debug)]
struct RevocationAwareVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    agents: Arc<AgentRegistry>,
}

impl ClientCertVerifier for RevocationAwareVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if let Some(agent_id) = agent_id_from_cert(end_entity.as_ref())
            && let Ok(Some(agent)) = self.agents.get(&agent_id)
            && agent.revoked
        {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked));
        }
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the gRPC server's TLS configuration.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    agents: Arc<AgentRegistry>,
) -> Result<rustls::ServerConfig, TlsSetupError> {
    let pem = |what, e: rustls::pki_types::pem::Error| TlsSetupError::Pem { what, message: e.to_string() };
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.map_err(|e| pem("CA certificate", e))?)?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| pem("server certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| pem("server key", e))?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let verifier = Arc::new(RevocationAwareVerifier { inner, agents });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts TCP connections, completes TLS handshakes within `handshake`,
/// and yields established streams. At most `max_connections` are open.
/// A refused handshake is a security event from the peer's address,
/// committed through `events` before the connection is closed.
/// The listener closes when `shutdown` turns true.
pub fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handshake: Duration,
    max_connections: usize,
    events: SecurityEvents,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> mpsc::Receiver<Result<CappedStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(max_connections));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, events) = (acceptor.clone(), tx.clone(), events.clone());
            tokio::spawn(async move {
                if let Some(tls) = handshake_with(&acceptor, tcp, peer, handshake, &events).await {
                    let _ = tx.send(Ok(CappedStream { inner: tls, _permit: permit })).await;
                }
            });
        }
    });
    rx
}

/// The TLS handshake on `tcp` within `deadline`. A refusal is recorded
/// while its alert is still held back (see [`held`]); then the alert is
/// sent and the connection closed.
async fn handshake_with(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Duration,
    events: &SecurityEvents,
) -> Option<TlsStream<HeldTcp>> {
    let accept = acceptor.accept(HeldTcp::new(tcp)).into_fallible();
    tokio::pin!(accept);
    let (refusal, held) = tokio::select! {
        done = &mut accept => match done {
            Ok(mut tls) => {
                tls.get_mut().0.pass_through();
                return Some(tls);
            }
            Err((e, held)) => (handshake_refusal(&e), Some(held)),
        },
        _ = tokio::time::sleep(deadline) => {
            let why = format!("TLS handshake not finished within {} s", deadline.as_secs());
            (Some(("tls_handshake_timeout", why)), None)
        }
    };
    match refusal {
        Some((kind, detail)) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            events.record(EventNote::peer(kind, &source_name(peer.ip()), now, &detail)).await;
        }
        // A peer that closed or reset the connection (a port probe, a
        // health check) refused nothing.
        None => tracing::debug!(%peer, "TLS connection closed during the handshake"),
    }
    if let Some(mut held) = held {
        // The alert, then the close; a peer that is gone changes nothing.
        let _ = tokio::time::timeout(Duration::from_secs(1), held.shutdown()).await;
    }
    None
}

/// The event kind and detail of a failed handshake; `None` when the
/// failure is the peer's connection ending rather than TLS refusing it.
fn handshake_refusal(e: &io::Error) -> Option<(&'static str, String)> {
    // tokio-rustls passes rustls' verdict as the inner error.
    let refused = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())?;
    Some(match refused {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => {
            ("revoked_agent", "TLS handshake with a revoked agent certificate".to_string())
        }
        rustls::Error::InvalidCertificate(why) => {
            ("tls_certificate_refused", format!("client certificate refused: {why}"))
        }
        other => ("tls_handshake_failed", other.to_string()),
    })
}

/// A TLS stream holding one of the connection slots until it is dropped.
pub struct CappedStream {
    inner: TlsStream<HeldTcp>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for CappedStream {
    type ConnectInfo = <TlsStream<HeldTcp> as tonic::transport::server::Connected>::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl tokio::io::AsyncRead for CappedStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CappedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
