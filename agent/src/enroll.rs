//! Enrollment: the agent makes its own keys, proves it holds them, and
//! exchanges a bootstrap token for its identity and client certificate.
//!
//! Invariant: no private key is ever sent; only the CSR (TLS key) and the
//! evidence public key with a proof-of-possession signature.

use custos_proto::enrollment_proof_message;
use custos_proto::v1;
use ed25519_dalek::Signer as _;

use crate::courier::fetch_and_save_policy;
use crate::deadlines::{Deadlines, Phase};
use crate::policy::ActivePolicy;
use crate::state::{AgentIdentity, StateDir, generate_evidence_key, new_tls_key_and_csr, write_private};
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

/// The host part of `HOST:PORT` (brackets removed for IPv6).
pub fn server_host(server: &str) -> Option<String> {
    let (host, port) = server.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

/// Enrolls with the default deadlines; see [`enroll_within`].
pub async fn enroll(
    state: &StateDir,
    server: &str,
    token: &str,
    ca_pem: &str,
    display_name: &str,
) -> Result<AgentIdentity, EnrollError> {
    enroll_within(state, server, token, ca_pem, display_name, &Deadlines::default()).await
}

/// Exchanges `token` for an identity in `state`, then fetches and saves the
/// first policy so the first run collects by it even if the server is away
/// by then. Every exchange is bounded by `deadlines`.
pub async fn enroll_within(
    state: &StateDir,
    server: &str,
    token: &str,
    ca_pem: &str,
    display_name: &str,
    deadlines: &Deadlines,
) -> Result<AgentIdentity, EnrollError> {
    if state.identity().exists() {
        return Err(EnrollError::AlreadyEnrolled(state.0.display().to_string()));
    }
    let server_name = server_host(server).ok_or_else(|| EnrollError::BadServer(server.to_string()))?;
    let existed = state.0.exists();
    state.create()?;
    let request = Request { server, server_name, token, ca_pem, display_name };
    let result = enroll_into(state, request, deadlines).await;
    // A failed enrollment leaves no trace: a directory it created goes again
    // (nothing but this call has written into it).
    if result.is_err() && !existed {
        let _ = std::fs::remove_dir_all(&state.0);
    }
    let identity = result?;
    if let Err(e) = save_first_policy(state, &identity, ca_pem, deadlines).await {
        // Not fatal: the agent collects by its defaults until it hears again.
        tracing::warn!(error = %e, "enrolled, but the first policy fetch failed");
    }
    Ok(identity)
}

/// What the enrollment call carries besides the keys.
struct Request<'a> {
    server: &'a str,
    server_name: String,
    token: &'a str,
    ca_pem: &'a str,
    display_name: &'a str,
}

/// Fetches the policy with the new identity and saves it in `state`.
async fn save_first_policy(
    state: &StateDir,
    identity: &AgentIdentity,
    ca_pem: &str,
    deadlines: &Deadlines,
) -> Result<(), crate::courier::CourierError> {
    let cert = state.read(&state.client_cert())?;
    let key = state.read(&state.tls_key())?;
    let link =
        transport::connect(&identity.server, &identity.server_name, ca_pem, Some((&cert, &key)), deadlines)
            .await?;
    let none = ActivePolicy::initial(std::time::Duration::ZERO, std::time::Duration::ZERO);
    fetch_and_save_policy(state, &link, &none).await?;
    Ok(())
}

/// The enrollment proper, into a state directory that exists.
async fn enroll_into(
    state: &StateDir,
    Request { server, server_name, token, ca_pem, display_name }: Request<'_>,
    deadlines: &Deadlines,
) -> Result<AgentIdentity, EnrollError> {
    let evidence = generate_evidence_key();
    let (tls_key, csr_der) = new_tls_key_and_csr()?;
    let proof = evidence.sign(&enrollment_proof_message(&csr_der, token));

    let link = transport::connect(server, &server_name, ca_pem, None, deadlines).await?;
    let mut client = v1::enrollment_client::EnrollmentClient::new(link.channel.clone());
    let call = client.enroll(v1::EnrollRequest {
        token: token.to_string(),
        csr_der,
        evidence_public_key: evidence.verifying_key().as_bytes().to_vec(),
        evidence_key_proof: proof.to_bytes().to_vec(),
        display_name: display_name.to_string(),
        agent_version: crate::host_info::AGENT_VERSION.to_string(),
    });
    let resp = match transport::call(&link, Phase::Enrollment, call).await {
        Ok(r) => r,
        Err(TransportError::Status { message, .. }) => return Err(EnrollError::Refused(message)),
        Err(e) => return Err(e.into()),
    };

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
