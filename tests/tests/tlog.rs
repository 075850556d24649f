//! The transparency log end to end: every record and key binding is a leaf;
//! signed checkpoints verify with the published log key; a record fetched
//! from the API is proven included; a later checkpoint is proven consistent
//! with an earlier one; and a log whose stored hashes were altered gets no
//! new checkpoint.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;
use custos_server::config::{Config, DataDir};
use custos_server::tlog::{
    Checkpoint, ConsistencyProof, Hash, InclusionProof, VerifierKey, check_consistent, leaf_hash,
};
use custos_tests::{TestAgent, TestServer, core_results};
use serde_json::Value;

fn system() -> Arc<dyn Host> {
    Arc::new(SystemHost::default())
}

fn hash(v: &Value) -> Hash {
    let b = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
    Hash::try_from(b.as_slice()).unwrap()
}

async fn text(server: &TestServer, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}{path}", server.http_addr))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Waits for a signed checkpoint of at least `size` leaves and opens it.
async fn checkpoint(server: &TestServer, key: &VerifierKey, origin: &str, size: u64) -> (Checkpoint, String) {
    for _ in 0..100 {
        let (status, note) = text(server, "/api/v1/log/checkpoint").await;
        if status == 200 {
            let cp = Checkpoint::open(note.as_bytes(), origin, key)
                .expect("the checkpoint verifies with the log key");
            if cp.size() >= size {
                return (cp, note);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint of {size} leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_proven_included_and_checkpoints_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    let mut config = Config::default();
    config.log.checkpoint_seconds = 1;
    let mut server = TestServer::start_in(&dir, config.clone()).await;
    let origin = config.log_origin();
    let (_, key_text) = text(&server, "/api/v1/log/key").await;
    let key = VerifierKey::parse(key_text.trim()).unwrap();
    assert_eq!(key.name(), origin);
    // The log key is not the CA key.
    let ca_key = std::fs::read_to_string(DataDir(dir.clone()).ca_key()).unwrap();
    assert!(!ca_key.contains(&key_text.trim().rsplit('+').next().unwrap().to_string()));

    let mut a = TestAgent::enroll(&server, "a", system()).await;
    for _ in 0..3 {
        a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    }
    a.agent.deliver().await.unwrap();
    // One key binding (the enrolment) and three records.
    let (first, first_note) = checkpoint(&server, &key, &origin, 4).await;
    assert_eq!(first.size(), 4);

    // Record 2 as the API serves it is the leaf the log holds.
    let (status, envelope) = text(&server, &format!("/api/v1/records/{}/2", a.id())).await;
    assert_eq!(status, 200);
    let (_, p) =
        server.api(&format!("/api/v1/log/inclusion?agent={}&seq=2&size={}", a.id(), first.size())).await;
    assert_eq!(hash(&p["leaf_hash"]), leaf_hash(envelope.as_bytes()));
    let proof = InclusionProof {
        leaf_index: p["leaf_index"].as_u64().unwrap(),
        tree_size: p["tree_size"].as_u64().unwrap(),
        path: p["hashes"].as_array().unwrap().iter().map(hash).collect(),
    };
    proof.verify(&leaf_hash(envelope.as_bytes()), first.root()).unwrap();
    // Another record's bytes do not pass as this one.
    let (_, other) = text(&server, &format!("/api/v1/records/{}/3", a.id())).await;
    assert!(proof.verify(&leaf_hash(other.as_bytes()), first.root()).is_err());
    // Bad proof requests get 400 with the reason.
    let (status, e) = server.api("/api/v1/log/inclusion?index=99&size=4").await;
    assert_eq!(status, 400, "{e}");
    let (status, _) = server.api(&format!("/api/v1/log/inclusion?index=0&size={}", 1u64 << 40)).await;
    assert_eq!(status, 400);

    // More evidence and a revocation: a later checkpoint, consistent with the first.
    let mut b = TestAgent::enroll(&server, "b", system()).await;
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    b.agent.deliver().await.unwrap();
    let (status, _) =
        server.post_with(&format!("/api/v1/agents/{}/revoke", b.id()), Some(&server.admin_token)).await;
    assert_eq!(status, 200);
    let (second, _) = checkpoint(&server, &key, &origin, 7).await;
    assert_eq!(second.size(), 7, "enrol b, b's record, revoke b");
    let (_, c) =
        server.api(&format!("/api/v1/log/consistency?from={}&to={}", first.size(), second.size())).await;
    let proof = ConsistencyProof {
        old_size: c["old_size"].as_u64().unwrap(),
        new_size: c["new_size"].as_u64().unwrap(),
        path: c["hashes"].as_array().unwrap().iter().map(hash).collect(),
    };
    check_consistent(&first, &second, &proof).unwrap();
    let reopened = Checkpoint::open(first_note.as_bytes(), &origin, &key).unwrap();
    assert_eq!(reopened.root(), first.root());

    // Someone rewrites history: the stored hash over leaves 0..3 (which the
    // next root is built from). The server refuses to sign past it.
    server.stop().await;
    {
        let conn = rusqlite::Connection::open(DataDir(dir.clone()).database()).unwrap();
        let n = conn
            .execute("UPDATE tlog_hashes SET hash = zeroblob(32) WHERE level = 2 AND idx = 0", [])
            .unwrap();
        assert_eq!(n, 1);
    }
    server.restart().await;
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, note) = text(&server, "/api/v1/log/checkpoint").await;
    let latest = Checkpoint::open(note.as_bytes(), &origin, &key).unwrap();
    assert_eq!(latest.size(), 7, "no checkpoint over an altered log");
    let (_, events) = server.api("/api/v1/security-events").await;
    let refused =
        events.as_array().unwrap().iter().find(|e| e["kind"] == "checkpoint_refused").expect("raised");
    assert!(refused["detail"].as_str().unwrap().contains("not consistent with checkpoint 7"), "{refused}");
}
