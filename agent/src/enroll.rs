//! Enrollment: the agent makes its own keys, proves it holds them, and
//! exchanges a bootstrap token for its identity and client certificate.
//!
//! Invariant: no private key is ever sent; only the CSR (TLS key) and the
//! evidence public key with a proof-of-possession signature.

use custos_proto::enrollment_proof_message;
use custos_proto::v1;
use ed25519_dalek::Signer as _;
use rcgen::{CertificateParams, KeyPair};

use crate::state::{AgentIdentity, StateDir, generate_evidence_key, write_private};
use crate::transport::{self, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0} is already enrolled (agent.toml exists); use another --state-dir or remove it")]
    AlreadyEnrolled(String),
    #[error("--server must be HOST:PORT, got {0:?}")]
    BadServer(String),
    #[error("cannot make a key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the server refused enrollment: {0}")]
    Refused(String),
}

/// A new TLS key (ECDSA P-256) and a CSR for it (the subject is ignored by the server).
pub fn new_tls_key_and_csr() -> Result<(KeyPair, Vec<u8>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

/// The host part of `HOST:PORT` (brackets removed for IPv6).
pub fn server_host(server: &str) -> Option<String> {
    let (host, port) = server.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

pub async fn enroll(
    state: &StateDir,
    server: &str,
    token: &str,
    ca_pem: &str,
    display_name: &str,
) -> Result<AgentIdentity, EnrollError> {
    if state.identity().exists() {
        return Err(EnrollError::AlreadyEnrolled(state.0.display().to_string()));
    }
    let server_name = server_host(server).ok_or_else(|| EnrollError::BadServer(server.to_string()))?;
    let existed = state.0.exists();
    state.create()?;
    let result = enroll_into(state, server, server_name, token, ca_pem, display_name).await;
    // A failed enrollment leaves no trace: a directory it created goes again
    // (nothing but this call has written into it).
    if result.is_err() && !existed {
        let _ = std::fs::remove_dir_all(&state.0);
    }
    result
}

/// The enrollment proper, into a state directory that exists.
async fn enroll_into(
    state: &StateDir,
    server: &str,
    server_name: String,
    token: &str,
    ca_pem: &str,
    display_name: &str,
) -> Result<AgentIdentity, EnrollError> {
    let evidence = generate_evidence_key();
    let (tls_key, csr_der) = new_tls_key_and_csr()?;
    let proof = evidence.sign(&enrollment_proof_message(&csr_der, token));

    let channel = transport::connect(server, &server_name, ca_pem, None).await?;
    let mut client = v1::enrollment_client::EnrollmentClient::new(channel);
    let resp = client
        .enroll(v1::EnrollRequest {
            token: token.to_string(),
            csr_der,
            evidence_public_key: evidence.verifying_key().as_bytes().to_vec(),
            evidence_key_proof: proof.to_bytes().to_vec(),
            display_name: display_name.to_string(),
            agent_version: crate::record::AGENT_VERSION.to_string(),
        })
        .await
        .map_err(|s| EnrollError::Refused(s.message().to_string()))?
        .into_inner();

    write_private(&state.evidence_key(), hex::encode(evidence.to_bytes()).as_bytes())?;
    write_private(&state.tls_key(), tls_key.serialize_pem().as_bytes())?;
    write_private(&state.client_cert(), resp.client_cert_pem.as_bytes())?;
    write_private(&state.ca_cert(), ca_pem.as_bytes())?;
    let identity = AgentIdentity {
        agent_id: resp.agent_id,
        server: server.to_string(),
        server_name,
        cert_not_after: resp.not_after_unix,
        cert_not_before: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    // Written last: its presence means enrollment completed.
    state.save_identity(&identity)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_host_parses_host_and_port() {
        assert_eq!(server_host("127.0.0.1:7443").as_deref(), Some("127.0.0.1"));
        assert_eq!(server_host("custos.example:7443").as_deref(), Some("custos.example"));
        assert_eq!(server_host("[::1]:7443").as_deref(), Some("::1"));
        assert_eq!(server_host("nohost"), None);
        assert_eq!(server_host(":7443"), None);
        assert_eq!(server_host("h:notaport"), None);
    }

    #[tokio::test]
    async fn a_failed_enrollment_leaves_no_state_directory_behind() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir(dir.path().join("state"));
        let err = enroll(&state, "127.0.0.1:9", "token", "not a certificate", "host").await.unwrap_err();
        assert!(!state.0.exists(), "{err}: the state directory was left behind");
        // One that was there before stays, and is not filled.
        std::fs::create_dir(&state.0).unwrap();
        assert!(enroll(&state, "127.0.0.1:9", "token", "not a certificate", "host").await.is_err());
        assert!(state.0.exists() && std::fs::read_dir(&state.0).unwrap().next().is_none());
    }
}
