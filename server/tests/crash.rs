//! The server killed with SIGKILL in the middle of ingest: after a restart
//! the database passes its integrity check, every acknowledged record is
//! present exactly once with the hash chain intact, and the agent's resend
//! completes the chain (stored records answered as duplicates).

mod support {
    pub mod process;
}

use custos_agent::spool::ChainTip;
use custos_proto::evidence::{
    CheckResult, CheckStatus, Envelope, HostInfo, Observation, Statement, payload_digest,
};
use custos_proto::v1;
use support::process::ServerProcess;

/// Records streamed; the server is killed after 500 acknowledgements, far from the end.
const TOTAL: u64 = 10_000;

fn records(key: &ed25519_dalek::SigningKey, agent_id: &str, n: u64) -> Vec<Envelope> {
    let mut prev = None;
    (1..=n)
        .map(|seq| {
            let checks = vec![CheckResult {
                id: "firewall".into(),
                status: CheckStatus::Pass,
                backend: "test".into(),
                facts: serde_json::Map::new(),
                observation: Observation::default(),
                reason: None,
            }];
            let host = HostInfo { os: "linux".into(), ..Default::default() };
            let env = custos_agent::signing::sign_record(
                key,
                agent_id,
                &ChainTip { seq, prev, gap: None },
                "2026-11-23T10:00:00Z",
                host,
                checks,
            );
            prev = Some(payload_digest(&env.payload));
            env
        })
        .collect()
}

/// Streams `envs`; returns the seqs acknowledged as accepted or duplicate
/// before the stream ended (for whatever reason).
async fn stream(
    channel: tonic::transport::Channel,
    envs: &[Envelope],
    kill_after: Option<(usize, &mut ServerProcess)>,
) -> Vec<u64> {
    let msgs: Vec<v1::EvidenceRecord> = envs
        .iter()
        .enumerate()
        .map(|(i, e)| v1::EvidenceRecord {
            envelope: Some(custos_agent::transport::to_wire(e.clone())),
            client_ref: i as u64 + 1,
        })
        .collect();
    let mut client = v1::agent_service_client::AgentServiceClient::new(channel);
    let mut acked = Vec::new();
    let Ok(resp) = client.submit_evidence(tokio_stream::iter(msgs)).await else { return acked };
    let mut acks = resp.into_inner();
    let mut kill = kill_after;
    while let Ok(Some(a)) = acks.message().await {
        if a.status == v1::AckStatus::Accepted as i32 || a.status == v1::AckStatus::Duplicate as i32 {
            acked.push(a.client_ref);
        }
        if let Some((after, server)) = kill.as_mut()
            && acked.len() >= *after
        {
            server.kill();
            kill = None;
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_nothing_acknowledged() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::init(&tmp.path().join("server"));
    server.start();
    let state = custos_agent::state::StateDir(tmp.path().join("agent"));
    let id = server.enroll(&state, "crash").await;
    let key = state.load_evidence_key().unwrap();
    let envs = records(&key, &id.agent_id, TOTAL);

    let channel = server.channel(&state).await;
    let acked = stream(channel, &envs, Some((500, &mut server))).await;
    assert!(acked.len() >= 500 && acked.len() < TOTAL as usize, "killed mid-way after {} acks", acked.len());

    server.start();
    let store = custos_server::store::Store::open(&server.data.join("custos.db")).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let stored = store.records_of(&id.agent_id).unwrap();
    let seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "contiguous, each once");
    for a in &acked {
        assert!(seqs.contains(a), "acknowledged record {a} lost");
    }
    let mut prev = None;
    for r in &stored {
        assert_eq!(Statement::from_payload(&r.payload).unwrap().prev_digest(), prev);
        prev = Some(payload_digest(&r.payload));
    }

    // The agent resends everything it has not seen acknowledged: all stored
    // ones come back as duplicates, the rest are accepted.
    let acked_again = stream(server.channel(&state).await, &envs, None).await;
    assert_eq!(acked_again.len(), TOTAL as usize);
    assert_eq!(store.records_of(&id.agent_id).unwrap().len(), TOTAL as usize);
}
