//! The server killed with SIGKILL in the middle of ingest: after a restart
//! the database passes its integrity check, every acknowledged record is
//! present exactly once with the hash chain intact, and the agent's resend
//! completes the chain (stored records answered as duplicates).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use custos_agent::spool::ChainTip;
use custos_proto::evidence::{
    CheckResult, CheckStatus, Envelope, HostInfo, Observation, Statement, payload_digest,
};
use custos_proto::v1;

/// Records streamed; the server is killed after 500 acknowledgements, far from the end.
const TOTAL: u64 = 10_000;

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

fn start(data: &std::path::Path, grpc: u16, http: u16) -> Server {
    Server(
        Command::new(env!("CARGO_BIN_EXE_custos-server"))
            .args(["run", "--data-dir"])
            .arg(data)
            .args([
                "--grpc-listen",
                &format!("127.0.0.1:{grpc}"),
                "--http-listen",
                &format!("127.0.0.1:{http}"),
            ])
            .env("CUSTOS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start server"),
    )
}

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
            let env = custos_agent::record::sign_record(
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
    kill_after: Option<(usize, &mut Server)>,
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
            // SIGKILL: no shutdown path runs.
            server.0.kill().expect("kill");
            server.0.wait().expect("wait");
            kill = None;
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_nothing_acknowledged() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let bin = env!("CARGO_BIN_EXE_custos-server");
    assert!(Command::new(bin).args(["init", "--data-dir"]).arg(&data).output().unwrap().status.success());
    let token = String::from_utf8(
        Command::new(bin).args(["token", "create", "--data-dir"]).arg(&data).output().unwrap().stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let (grpc, http) = (free_port(), free_port());
    let mut server = start(&data, grpc, http);
    let addr = format!("127.0.0.1:{grpc}");
    let ca = std::fs::read_to_string(data.join("ca.pem")).unwrap();
    let state = custos_agent::state::StateDir(tmp.path().join("agent"));
    let mut enrolled = None;
    for _ in 0..100 {
        match custos_agent::enroll::enroll(&state, &addr, &token, &ca, "crash").await {
            Ok(id) => {
                enrolled = Some(id);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let id = enrolled.expect("enrolled");
    let key = state.load_evidence_key().unwrap();
    let envs = records(&key, &id.agent_id, TOTAL);
    let identity = (
        std::fs::read_to_string(state.client_cert()).unwrap(),
        std::fs::read_to_string(state.tls_key()).unwrap(),
    );
    let connect =
        || custos_agent::transport::connect(&addr, "127.0.0.1", &ca, Some((&identity.0, &identity.1)));

    let acked = stream(connect().await.unwrap(), &envs, Some((500, &mut server))).await;
    assert!(acked.len() >= 500 && acked.len() < TOTAL as usize, "killed mid-way after {} acks", acked.len());

    drop(server);
    let server = start(&data, grpc, http);
    let store = custos_server::store::Store::open(&data.join("custos.db")).unwrap();
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
    let mut channel = None;
    for _ in 0..100 {
        if let Ok(c) = connect().await {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked_again = stream(channel.expect("server back"), &envs, None).await;
    assert_eq!(acked_again.len(), TOTAL as usize);
    assert_eq!(store.records_of(&id.agent_id).unwrap().len(), TOTAL as usize);
    drop(server);
}
