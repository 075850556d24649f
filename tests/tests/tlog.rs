//! The transparency log end to end: every record and key binding (enrolled,
//! renewed, revoked) is a leaf; signed checkpoints verify with the published
//! log key, an Ed25519 key of its own in `log.key`; a record fetched from the
//! API and a renewal's key binding are proven included; a later checkpoint
//! is proven consistent with an earlier one; and a log whose stored hashes
//! were altered gets no new checkpoint.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;
use custos_server::config::Config;
use custos_server::datadir::DataDir;
use custos_tests::{TestAgent, TestServer, core_results};
use custos_verify::leaf::{KEY_BINDING_TYPE, KeyBinding};
use custos_verify::tlog::{
    Checkpoint, ConsistencyProof, Hash, InclusionProof, NoteSigner, VerifierKey, check_consistent, leaf_hash,
};
use serde_json::Value;

fn system() -> Arc<dyn Host> {
    Arc::new(SystemHost::default())
}

fn hash(v: &Value) -> Hash {
    let b = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
    Hash::try_from(b.as_slice()).unwrap()
}

async fn text(server: &TestServer, path: &str) -> (u16, String) {
    let (status, body) = server.get_bytes(path).await;
    (status, String::from_utf8(body).expect("UTF-8 body"))
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
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
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

    // A renewal, more evidence and a revocation: a later checkpoint, consistent with the first.
    let id = a.agent.identity();
    let renew_at = id.cert_not_before + (id.cert_not_after - id.cert_not_before) * 3 / 4;
    let before_renewal = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(a.agent.renew_if_due(renew_at).await.unwrap(), "due at 3/4 of the lifetime");
    let after_renewal = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut b = TestAgent::enroll(&server, "b", system()).await;
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    b.agent.deliver().await.unwrap();
    let (status, _) =
        server.post_with(&format!("/api/v1/agents/{}/revoke", b.id()), Some(&server.admin_token)).await;
    assert_eq!(status, 200);
    let (second, _) = checkpoint(&server, &key, &origin, 8).await;
    assert_eq!(second.size(), 8, "renew a, enrol b, b's record, revoke b");

    // The renewal is a key-binding leaf naming the agent, its evidence key
    // and the event, proven included in the later checkpoint.
    let bindings = server.handle().store.key_binding_leaves(&[a.id()]).unwrap();
    let events: Vec<(u64, KeyBinding)> =
        bindings.iter().map(|l| (l.leaf_index, serde_json::from_slice(&l.data).unwrap())).collect();
    assert_eq!(
        events.iter().map(|(i, b)| (*i, b.event.as_str())).collect::<Vec<_>>(),
        [(0, "enrolled"), (4, "renewed")],
        "{events:?}"
    );
    let (renewed_index, renewed) = &events[1];
    let evidence_key = a.state.load_evidence_key().unwrap().verifying_key().to_bytes();
    assert_eq!(renewed.type_, KEY_BINDING_TYPE);
    assert_eq!(renewed.agent_id, a.id());
    let hex: String = evidence_key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(renewed.evidence_key, hex, "the key that still speaks for the agent");
    assert!((before_renewal..=after_renewal).contains(&renewed.at), "{renewed:?}");
    let (status, p) = server.api(&format!("/api/v1/log/inclusion?index={renewed_index}&size=8")).await;
    assert_eq!(status, 200, "{p}");
    let renewal_leaf = leaf_hash(&bindings[1].data);
    assert_eq!(hash(&p["leaf_hash"]), renewal_leaf);
    let proof = InclusionProof {
        leaf_index: p["leaf_index"].as_u64().unwrap(),
        tree_size: p["tree_size"].as_u64().unwrap(),
        path: p["hashes"].as_array().unwrap().iter().map(hash).collect(),
    };
    assert_eq!((proof.leaf_index, proof.tree_size), (4, 8));
    proof.verify(&renewal_leaf, second.root()).unwrap();
    // The enrolment's bytes do not pass as the renewal.
    assert!(proof.verify(&leaf_hash(&bindings[0].data), second.root()).is_err());
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

    // Someone rewrites history: the stored hash over leaves 0..7 (which the
    // next root is built from). The server refuses to sign past it.
    server.stop().await;
    {
        let conn = rusqlite::Connection::open(DataDir(dir.clone()).database()).unwrap();
        let n = conn
            .execute("UPDATE tlog_hashes SET hash = zeroblob(32) WHERE level = 3 AND idx = 0", [])
            .unwrap();
        assert_eq!(n, 1);
    }
    server.restart().await;
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, note) = text(&server, "/api/v1/log/checkpoint").await;
    let latest = Checkpoint::open(note.as_bytes(), &origin, &key).unwrap();
    assert_eq!(latest.size(), 8, "no checkpoint over an altered log");
    let (_, events) = server.api("/api/v1/security-events").await;
    let refused = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "checkpoint_refused")
        .expect("raised");
    assert!(refused["detail"].as_str().unwrap().contains("not consistent with checkpoint 8"), "{refused}");
}

/// The log key is an Ed25519 key of its own, kept in `log.key`: the key the
/// API publishes is that file's, the CA's key file holds none of it, and it
/// is not derived from anything the data dir keeps (the CA included): with
/// the CA unchanged, a data dir without `log.key` starts with a new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_key_is_its_own_key_in_its_own_file() {
    use base64::engine::general_purpose::STANDARD as B64;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    let mut server = TestServer::start_in(&dir, Config::default()).await;
    let data = DataDir(dir.clone());
    let published = |text: String| VerifierKey::parse(text.trim()).unwrap();
    let key = published(text(&server, "/api/v1/log/key").await.1);

    // The published key is the public half of log.key, a private file.
    let file = std::fs::read_to_string(data.log_key()).unwrap();
    let signer = NoteSigner::from_private_key_string(file.trim()).expect("log.key is a note signing key");
    assert_eq!(signer.verifier_key(), key);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(data.log_key()).unwrap().permissions().mode() & 0o777, 0o600);

    // The CA key file (PKCS#8 DER in PEM) contains neither the log key's
    // seed nor its public key: the CA's secret is not reused as the log's.
    // PRIVATE+KEY+<name>+<id>+<base64>; the base64 may itself hold '+'.
    let seed = B64.decode(file.trim().splitn(5, '+').nth(4).unwrap()).unwrap();
    assert_eq!((seed.len(), seed[0]), (33, 0x01), "an Ed25519 seed");
    let ca_pem = std::fs::read_to_string(data.ca_key()).unwrap();
    let ca_der = B64
        .decode(ca_pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
        .expect("the CA key is PEM");
    assert!(ca_der.len() > 64, "{ca_pem}");
    for (what, bytes) in [("seed", &seed[1..]), ("public key", key.verifying_key().as_bytes().as_slice())] {
        assert!(!ca_der.windows(32).any(|w| w == bytes), "the CA key file holds the log key's {what}");
    }

    // Not derived: remove log.key, keep the CA, start again: a new key.
    server.stop().await;
    let ca_before = std::fs::read(data.ca_key()).unwrap();
    std::fs::remove_file(data.log_key()).unwrap();
    server.restart().await;
    assert_eq!(std::fs::read(data.ca_key()).unwrap(), ca_before, "the CA is unchanged");
    let fresh = published(text(&server, "/api/v1/log/key").await.1);
    assert_eq!(fresh.name(), key.name(), "the same log origin");
    assert_ne!(
        fresh.verifying_key(),
        key.verifying_key(),
        "a new log.key equals the old one: it is derived, not random"
    );
    let file = std::fs::read_to_string(data.log_key()).unwrap();
    assert_eq!(NoteSigner::from_private_key_string(file.trim()).unwrap().verifier_key(), fresh);
}
