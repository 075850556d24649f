//! A refusal's security event is committed before the refusal is
//! answered: a `custos-server` process killed with SIGKILL the moment the
//! agent has its REJECTED answer (or its refused enrollment) still holds
//! the event after a restart.

mod support {
    pub mod process;
}

use custos_agent::spool::ChainTip;
use custos_proto::evidence::{CheckStatus, HostInfo};
use custos_proto::v1;
use custos_server::store::Store;
use custos_server::store::security_events::{EventFilter, SecurityEvent};
use support::process::ServerProcess;

fn events(data: &std::path::Path, kind: &str) -> Vec<SecurityEvent> {
    let store = Store::open(&data.join("custos.db")).expect("database");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let filter = EventFilter { kind: Some(kind.into()), limit: 100, ..Default::default() };
    store.security_events(&filter).expect("events").events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_answered_before_a_sigkill_is_an_event_after_the_restart() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::init(&tmp.path().join("server"));
    server.start();
    let state = custos_agent::state::StateDir(tmp.path().join("agent"));
    let id = server.enroll(&state, "forger").await;
    let key = state.load_evidence_key().unwrap();

    // A record with a forged signature; the server is killed as soon as its answer arrives.
    let mut forged = custos_agent::signing::sign_record(
        &key,
        &id.agent_id,
        &ChainTip { seq: 1, prev: None, gap: None },
        "2026-11-23T10:00:00Z",
        HostInfo { os: "linux".into(), ..Default::default() },
        vec![one_check()],
    );
    forged.signatures[0].sig[3] ^= 0x10;
    let msg = v1::EvidenceRecord { envelope: Some(custos_agent::transport::to_wire(forged)), client_ref: 1 };
    let mut client = v1::agent_service_client::AgentServiceClient::new(server.channel(&state).await);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut acks =
        client.submit_evidence(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(msg).await.unwrap();
    let ack = acks.message().await.unwrap().expect("an answer");
    server.kill();
    assert_eq!(ack.status, v1::AckStatus::Rejected as i32, "{ack:?}");
    assert_eq!(ack.reject_reason, v1::RejectReason::BadSignature as i32, "{ack:?}");

    let found = events(&server.data, "bad_signature");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].source.as_str(), found[0].count), (id.agent_id.as_str(), 1));

    // The same for a refused enrollment, after a restart.
    server.start();
    let refused = loop {
        let state = custos_agent::state::StateDir(tmp.path().join("guess"));
        match custos_agent::enroll::enroll(&state, &server.addr(), "cenr_guessed", &server.ca_pem(), "g")
            .await
        {
            Err(custos_agent::enroll::EnrollError::Transport(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => break other,
        }
    };
    server.kill();
    assert!(refused.is_err(), "a guessed token enrolled: {refused:?}");
    let found = events(&server.data, "enrollment_refused");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].source.as_str(), found[0].count), ("127.0.0.1", 1));
}

/// One passing check, enough for a well-formed record.
fn one_check() -> custos_proto::evidence::CheckResult {
    custos_proto::evidence::CheckResult {
        id: "firewall".into(),
        status: CheckStatus::Pass,
        backend: "test".into(),
        facts: serde_json::Map::new(),
        observation: custos_proto::evidence::Observation::default(),
        reason: None,
    }
}
