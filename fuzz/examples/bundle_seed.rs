//! Writes the committed seeds of `bundle_verify`, `dsse_envelope` and
//! `intoto_statement`: a real export bundle of two agents (`agent-0` signs
//! with `custos_fuzz::AGENT_KEY`), its checkpoint signed with
//! `custos_fuzz::LOG_KEY`, made through the server's own paths (init,
//! enrolment with a token, records signed by the agent's code and verified
//! as ingest does, the store's checkpoint, `export`).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example bundle_seed` (on
//! stable; it rewrites `fuzz/seeds/{bundle_verify,dsse_envelope,intoto_statement}/`).

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use custos_agent::spool::ChainTip;
use custos_proto::evidence::statement::Facts;
use custos_proto::evidence::{CheckResult, CheckStatus, Envelope, HostInfo, Observation, payload_digest};
use custos_server::app;
use custos_server::config::Config;
use custos_server::datadir::DataDir;
use custos_server::export::{ExportOptions, export};
use custos_server::store::Store;
use custos_server::store::agents::{AgentKey, NewAgent};
use custos_verify::tlog::NoteSigner;
use ed25519_dalek::SigningKey;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn checks(ok: bool) -> Vec<CheckResult> {
    let facts = |v: serde_json::Value| -> Facts { v.as_object().cloned().unwrap_or_default() };
    vec![
        CheckResult {
            id: "firewall".into(),
            status: if ok { CheckStatus::Pass } else { CheckStatus::Fail },
            backend: "nftables".into(),
            facts: facts(
                serde_json::json!({"ipv4_filtered": ok, "exposed": [{"ports": "22", "proto": "tcp"}]}),
            ),
            observation: Observation {
                sha256: hex::encode(payload_digest(b"nft")),
                excerpt: "table inet filter".into(),
            },
            reason: (!ok).then(|| "inbound traffic is accepted by default".to_string()),
        },
        CheckResult {
            id: "disk_encryption".into(),
            status: CheckStatus::Unknown,
            backend: "lsblk".into(),
            facts: facts(serde_json::json!({"volumes": [], "ratio": 0.25})),
            observation: Observation::default(),
            reason: Some("no fixed filesystem found to assess".into()),
        },
    ]
}

/// Writes the seeds:
/// 1. a data dir initialised by the server, with the fuzz log key;
/// 2. two agents enrolled with one token;
/// 3. three records each, signed by the agent's code, verified as ingest
///    does and stored, then a signed checkpoint;
/// 4. two exports (the whole window, and one with chain context) as
///    `bundle_verify` seeds, the first checked VERIFIED against the key;
/// 5. the first two envelopes and statements as `dsse_envelope` and
///    `intoto_statement` seeds.
fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let signer = init_data_dir(&data);
    let store = Store::open(&DataDir(data.clone()).database()).unwrap();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let keys = [SigningKey::from_bytes(&custos_fuzz::AGENT_KEY), SigningKey::from_bytes(&[0x43; 32])];
    enroll(&store, &data, &keys, now);
    let envelopes = ingest(&store, &keys, now);
    store.sign_checkpoint(&signer, LOG_ORIGIN_CHECKED, now.unix_timestamp()).unwrap();
    write_bundle_seeds(&out, dir.path(), &data, now);
    for (i, env) in envelopes.iter().take(2).enumerate() {
        write_seed(&out, "dsse_envelope", &format!("record-{i}.dsse.json"), env.to_json().as_bytes());
        write_seed(&out, "intoto_statement", &format!("statement-{i}.json"), &env.payload);
    }
    println!("seeds written under {}", out.display());
}

/// A data dir as `custos-server init` makes it, its log key replaced by the
/// fixed fuzz key so the seed bundle verifies against a pinned key.
fn init_data_dir(data: &Path) -> NoteSigner {
    app::init(data, &[], None).unwrap();
    let config = Config::load(&DataDir(data.to_path_buf()).config()).unwrap();
    assert_eq!(config.log_origin(), custos_fuzz::LOG_ORIGIN);
    let signer = NoteSigner::new(LOG_ORIGIN_CHECKED, SigningKey::from_bytes(&custos_fuzz::LOG_KEY)).unwrap();
    std::fs::write(DataDir(data.to_path_buf()).log_key(), format!("{}\n", signer.private_key_string()))
        .unwrap();
    signer
}

/// Enrolls `agent-0`, `agent-1`, ... with one two-use token, a day ago.
fn enroll(store: &Store, data: &Path, keys: &[SigningKey], now: OffsetDateTime) {
    let token = app::create_enrollment_token(data, 2, Duration::from_secs(3600)).unwrap();
    let hash = custos_server::identity::secrets::token_hash(&token);
    for (i, key) in keys.iter().enumerate() {
        let agent = NewAgent {
            agent_id: &format!("agent-{i}"),
            display_name: &format!("host-{i}.example"),
            evidence_key: &key.verifying_key().to_bytes(),
            cert_serial: &format!("{i:016x}"),
            cert_not_after: now.unix_timestamp() + 86_400,
            agent_version: "0.1.0",
        };
        store.enroll_agent(&hash, &agent, now.unix_timestamp() - 86_400).unwrap().unwrap();
    }
}

/// Three chained records per agent, an hour apart ending two hours ago;
/// `agent-1`'s second one fails the firewall. Returns every envelope.
fn ingest(store: &Store, keys: &[SigningKey], now: OffsetDateTime) -> Vec<Envelope> {
    let mut writer = store.record_writer().unwrap();
    let mut envelopes: Vec<Envelope> = Vec::new();
    for seq in 1..=3u64 {
        for (i, key) in keys.iter().enumerate() {
            let id = format!("agent-{i}");
            let keyid = custos_proto::evidence::key_id(&key.verifying_key());
            let prev = envelopes.iter().rev().find(|e| e.signatures[0].keyid == keyid);
            let tip = ChainTip { seq, prev: prev.map(|e| payload_digest(&e.payload)), gap: None };
            let collected = now - time::Duration::hours(5) + time::Duration::hours(seq as i64);
            let host = HostInfo { os: "linux".into(), ..HostInfo::default() };
            let at = collected.format(&Rfc3339).unwrap();
            let env =
                custos_agent::signing::sign_record(key, &id, &tip, &at, host, checks(i == 0 || seq != 2));
            envelopes.push(env.clone());
            let agent =
                AgentKey { agent_id: id, evidence_key: key.verifying_key().to_bytes(), revoked: false };
            let rec = custos_server::intake::ingest::verify_record(env, &agent, now.unix_timestamp()).unwrap();
            writer.append(&[rec], now.unix_timestamp()).unwrap();
        }
    }
    envelopes
}

/// Exports the whole window and a window with chain context on both
/// sides, and writes each as a tar seed (mode byte 0); the whole window
/// also as the gzip file itself (mode byte 1), after checking it verifies.
fn write_bundle_seeds(out: &Path, tmp: &Path, data: &Path, now: OffsetDateTime) {
    for (name, from) in [
        ("whole-window", now - time::Duration::days(1)),
        ("with-context", now - time::Duration::minutes(210)),
    ] {
        let file = tmp.join(format!("{name}.tar.gz"));
        let opts = ExportOptions {
            data_dir: data.to_path_buf(),
            from,
            to: now - time::Duration::minutes(90),
            // Two controls: the CSV and the OSCAL document stay small seeds.
            controls: vec!["iso27001:2022/A.8.20".into(), "iso27001:2022/A.8.24".into()],
            hosts: Vec::new(),
            sample: None,
            by: "fuzz seed".into(),
            out: file.clone(),
            now,
            progress: false,
        };
        export(&opts).unwrap();
        let gz = std::fs::read(&file).unwrap();
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(gz.as_slice()).read_to_end(&mut tar).unwrap();
        write_seed(out, "bundle_verify", &format!("{name}.tar"), &[&[0u8][..], &tar].concat());
        if name == "whole-window" {
            write_seed(out, "bundle_verify", &format!("{name}.tar.gz"), &[&[1u8][..], &gz].concat());
            assert_verifies(&file);
        }
    }
}

/// The bundle is VERIFIED against the fixed fuzz log key.
fn assert_verifies(file: &Path) {
    let key = SigningKey::from_bytes(&custos_fuzz::LOG_KEY).verifying_key();
    let pinned = custos_verify::tlog::VerifierKey::new(LOG_ORIGIN_CHECKED, key).unwrap();
    let report = custos_verify::verify_bundle(file, Some(&pinned)).unwrap();
    assert_eq!(report.outcome(), custos_verify::Outcome::Verified, "{:?}", report.failure_messages());
}

fn write_seed(out: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = out.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

const LOG_ORIGIN_CHECKED: &str = custos_fuzz::LOG_ORIGIN;
