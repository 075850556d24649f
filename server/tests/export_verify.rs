//! Export bundles and their offline verification on a real store: agents
//! enrolled with a real token (their key bindings logged), records signed by
//! the agent's code, verified by `verify_record` and appended by the real
//! `RecordWriter`, checkpoints signed by the store's own checkpoint path.
//!
//! A clean bundle verifies; each tampering case fails with its precise
//! message; a broken archive is an error, never a panic; a sample is the
//! same for the same seed.

#[path = "support/bundle.rs"]
mod bundle;

#[path = "support/seeded.rs"]
mod seeded;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bundle::{get, manifest_of, read_bundle, reseal, write_bundle};
use custos_agent::spool::ChainTip;
use custos_server::app;
use custos_server::export::format;
use custos_server::export::{ExportOptions, export};
use custos_server::store::records::AppendOutcome;
use custos_server::tlog::{Checkpoint, NoteSigner};
use custos_server::verify::{BundleError, Finding, TrustedKey, verify_bundle};
use ed25519_dalek::SigningKey;
use seeded::{Seeded, firewall_checks, signed};

const AGENTS: usize = 3;
const RECORDS: u64 = 4;

struct Fleet {
    seeded: Seeded,
    keys: Vec<(String, SigningKey)>,
    heads: Vec<(u64, Option<[u8; 32]>)>,
    writer: custos_server::store::records::RecordWriter,
}

impl Fleet {
    fn new() -> Fleet {
        let seeded = Seeded::new(10);
        let enrolled = seeded.now.unix_timestamp() - 3 * 86_400;
        let keys = (0..AGENTS)
            .map(|i| {
                let id = format!("agent-{i}");
                let key =
                    seeded.enroll(&id, &format!("host-{i}.example"), &format!("export-test-{i}"), enrolled);
                (id, key)
            })
            .collect();
        let writer = seeded.store.record_writer().unwrap();
        let heads = vec![(0, None); AGENTS];
        let mut fleet = Fleet { seeded, keys, heads, writer };
        for _ in 0..RECORDS {
            for i in 0..AGENTS {
                fleet.ingest(i);
            }
        }
        fleet.sign();
        fleet
    }

    /// One more record of agent `i`, collected an hour after its previous
    /// one. agent-1's firewall fails; everyone's screen lock is unknown.
    fn ingest(&mut self, i: usize) {
        let (seq, prev) = self.heads[i];
        let seq = seq + 1;
        let now = self.seeded.now;
        let collected = now - time::Duration::hours(10) + time::Duration::hours(seq as i64);
        let (agent_id, key) = &self.keys[i];
        let tip = ChainTip { seq, prev, gap: None };
        let rec = signed(key, agent_id, &tip, collected, firewall_checks(i != 1), now.unix_timestamp());
        let digest = rec.digest;
        assert_eq!(self.writer.append(&[rec], now.unix_timestamp()).unwrap(), [AppendOutcome::Accepted]);
        self.heads[i] = (seq, Some(digest));
    }

    fn signer(&self) -> NoteSigner {
        app::log_signer(&self.seeded.data, &self.seeded.config()).unwrap()
    }

    /// A checkpoint over the whole log, through the store's checkpoint path.
    fn sign(&self) {
        self.seeded.sign_checkpoint();
    }

    fn options(&self, out: &Path) -> ExportOptions {
        ExportOptions {
            data_dir: self.seeded.data.clone(),
            from: self.seeded.now - time::Duration::days(1),
            to: self.seeded.now + time::Duration::hours(1),
            controls: Vec::new(),
            hosts: Vec::new(),
            sample: None,
            by: "test auditor".into(),
            out: out.to_path_buf(),
            now: self.seeded.now,
            progress: false,
        }
    }

    fn export(&self, name: &str) -> PathBuf {
        let out = self.seeded.dir.path().join(name);
        export(&self.options(&out)).unwrap();
        out
    }
}

fn set(files: &mut [(String, Vec<u8>)], name: &str, bytes: Vec<u8>) {
    files.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not in bundle")).1 = bytes;
}

/// Tampers with a copy of `bundle` and returns the verification's failure messages.
fn tampered(
    bundle: &Path,
    name: &str,
    tamper: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> (custos_server::verify::Report, Vec<String>) {
    let mut files = read_bundle(bundle);
    tamper(&mut files);
    let out = bundle.with_file_name(name);
    write_bundle(&out, &files);
    let report = verify_bundle(&out, None).unwrap();
    let messages = report.failure_messages();
    assert!(!report.ok(), "{name}: tampered bundle verified:\n{report}");
    (report, messages)
}

fn has(messages: &[String], wanted: &str) -> bool {
    messages.iter().any(|m| m.starts_with(wanted))
}

#[track_caller]
fn assert_has(messages: &[String], wanted: &str) {
    assert!(has(messages, wanted), "no failure starting with {wanted:?} in:\n{}", messages.join("\n"));
}

#[test]
fn a_clean_bundle_verifies_with_its_own_and_with_the_pinned_key() {
    let fleet = Fleet::new();
    let bundle = fleet.export("clean.tar.gz");
    let files = read_bundle(&bundle);
    let m = manifest_of(&files);
    assert_eq!(m.format, format::FORMAT);
    assert_eq!(m.exported_by, "test auditor");
    // The export is in the audit trail, and so a leaf of the log.
    let trail = fleet.seeded.store.audit_trail(10).unwrap();
    assert!(
        trail
            .iter()
            .any(|r| r.entry.action == "export" && r.entry.name == "test auditor" && r.leaf_index.is_some()),
        "{trail:?}"
    );
    assert_eq!(m.counts.records, AGENTS as u64 * RECORDS);
    assert_eq!(m.counts.records_in_window, AGENTS as u64 * RECORDS);
    assert_eq!(m.counts.key_bindings, AGENTS);
    assert_eq!(m.counts.agents, AGENTS);
    assert!(!m.log.checkpoint_signed_for_export, "the latest checkpoint covered everything");
    // Every file but the manifest is listed with its digest.
    assert_eq!(m.files.len(), files.len() - 1);
    // A record is byte for byte its log leaf and what the API serves.
    let stored = fleet.seeded.store.record("agent-1", 2).unwrap().unwrap();
    let env = custos_proto::evidence::Envelope {
        payload: stored.payload,
        payload_type: stored.payload_type,
        signatures: vec![custos_proto::evidence::EnvelopeSignature { keyid: stored.keyid, sig: stored.sig }],
    };
    assert_eq!(get(&files, "records/agent-1/2.dsse.json"), env.to_json().as_bytes());

    // The CSV: one row per host and requirement the firewall and screen lock support.
    let csv_text = String::from_utf8(get(&files, format::EVIDENCE_CSV).to_vec()).unwrap();
    let a820: Vec<&str> = csv_text.lines().filter(|l| l.contains(",iso27001:2022/A.8.20,")).collect();
    assert_eq!(a820.len(), AGENTS, "{csv_text}");
    let failing = a820.iter().find(|l| l.contains(",agent-1,")).unwrap();
    assert!(failing.contains(",not_satisfied,") && failing.contains("firewall=fail@4"), "{failing}");
    assert_eq!(m.counts.csv_rows, csv_text.lines().count() - 1);

    let report = verify_bundle(&bundle, None).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!((report.records, report.records_verified), (AGENTS as u64 * RECORDS, AGENTS as u64 * RECORDS));
    assert_eq!(report.key_bindings, AGENTS);
    assert!(report.findings.is_empty(), "{report}");
    assert!(matches!(report.trusted, TrustedKey::Bundle(_)));
    let text = report.to_string();
    assert!(text.contains("NOT pinned") && text.contains("Result: VERIFIED"), "{text}");
    assert!(text.contains("agent-1: 4 records, seq 1-4"), "{text}");

    let pinned = fleet.signer().verifier_key();
    let report = verify_bundle(&bundle, Some(&pinned)).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.trusted, TrustedKey::Pinned(pinned.to_string()));

    // The command line: exit 0 here, non-zero on a tampered copy.
    let key_file = bundle.with_file_name("log.vkey");
    std::fs::write(&key_file, format!("{pinned}\n")).unwrap();
    let cli = |file: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custos-server"))
            .arg("verify")
            .arg(file)
            .arg("--log-key")
            .arg(&key_file)
            .output()
            .unwrap()
    };
    let ok = cli(&bundle);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("(pinned with --log-key)"));
    let mut files = read_bundle(&bundle);
    set(&mut files, "records/agent-0/1.dsse.json", b"{}".to_vec());
    let bad = bundle.with_file_name("cli-bad.tar.gz");
    write_bundle(&bad, &files);
    let out = cli(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Result: FAILED"));
}

#[test]
fn the_tampering_matrix_fails_with_precise_messages() {
    let fleet = Fleet::new();
    let bundle = fleet.export("matrix.tar.gz");
    let files = read_bundle(&bundle);
    let proof = |name: &str| -> format::ProofFile { serde_json::from_slice(get(&files, name)).unwrap() };
    let size = proof("proofs/records/agent-0/1.json").tree_size;
    let leaf_1_2 = proof("proofs/records/agent-1/2.json").leaf_index;

    // A flipped byte in a record: the manifest catches it; with the manifest
    // redone, the log does.
    let flip = |files: &mut Vec<(String, Vec<u8>)>| {
        let mut bytes = get(files, "records/agent-1/2.dsse.json").to_vec();
        let at = bytes.iter().position(|&b| b == b'"').unwrap() + 20;
        bytes[at] ^= 0x01;
        set(files, "records/agent-1/2.dsse.json", bytes);
    };
    let (_, m) = tampered(&bundle, "flip.tar.gz", flip);
    assert_has(&m, "records/agent-1/2.dsse.json: SHA-256 is ");
    let (report, m) = tampered(&bundle, "flip-resealed.tar.gz", |f| {
        flip(f);
        reseal(f);
    });
    assert_has(&m, &format!("records/agent-1/2.dsse.json: not in the log: leaf {leaf_1_2}: root mismatch"));
    assert_has(&m, "records/agent-1/2.dsse.json: not a valid record: ");
    assert!(report.findings.is_empty(), "a record that is there but broken is no gap: {report}");
    assert_eq!(report.records_verified, AGENTS as u64 * RECORDS - 1);

    // A deleted record.
    let (_, m) =
        tampered(&bundle, "deleted.tar.gz", |f| f.retain(|(n, _)| n != "records/agent-1/2.dsse.json"));
    assert_has(&m, "records/agent-1/2.dsse.json: listed in the manifest but missing from the bundle");
    let (report, m) = tampered(&bundle, "deleted-resealed.tar.gz", |f| {
        f.retain(|(n, _)| n != "records/agent-1/2.dsse.json" && n != "proofs/records/agent-1/2.json");
        reseal(f);
    });
    assert!(
        report.findings.contains(&Finding::Gap { agent: "agent-1".into(), first: 2, last: 2 }),
        "{report}"
    );
    assert!(
        report.to_string().contains("agent agent-1: gap in the chain, seq 2 is not in the bundle"),
        "{report}"
    );
    // The CSV names the record behind agent-1's standing (seq 4), not seq 2:
    // the gap is what fails the bundle.
    assert!(m.iter().all(|x| !x.starts_with("records/")), "{m:?}");

    // Two records swapped.
    let (_, m) = tampered(&bundle, "swapped.tar.gz", |f| {
        let a = get(f, "records/agent-0/2.dsse.json").to_vec();
        let b = get(f, "records/agent-0/3.dsse.json").to_vec();
        set(f, "records/agent-0/2.dsse.json", b);
        set(f, "records/agent-0/3.dsse.json", a);
        reseal(f);
    });
    assert_has(
        &m,
        "records/agent-0/2.dsse.json: the signed statement is agent agent-0 seq 3, the file name says agent agent-0 seq 2",
    );
    assert_has(
        &m,
        "records/agent-0/3.dsse.json: the signed statement is agent agent-0 seq 2, the file name says agent agent-0 seq 3",
    );

    // A record of another agent inserted (with its real proof).
    let (_, m) = tampered(&bundle, "inserted.tar.gz", |f| {
        let rec = get(f, "records/agent-1/2.dsse.json").to_vec();
        let prf = get(f, "proofs/records/agent-1/2.json").to_vec();
        f.push(("records/agent-0/5.dsse.json".into(), rec));
        f.push(("proofs/records/agent-0/5.json".into(), prf));
        reseal(f);
    });
    assert_has(
        &m,
        "records/agent-0/5.dsse.json: the signed statement is agent agent-1 seq 2, the file name says agent agent-0 seq 5",
    );
    assert_has(&m, "records/agent-0/5.dsse.json: signature does not verify: signature key id");

    // A key binding replaced by one for a key the forger holds.
    let key_file = files.iter().map(|(n, _)| n.clone()).find(|n| n.starts_with("keys/agent-1/")).unwrap();
    let key_leaf: u64 =
        key_file.trim_start_matches("keys/agent-1/").trim_end_matches(".json").parse().unwrap();
    let (_, m) = tampered(&bundle, "key.tar.gz", |f| {
        let mut b: serde_json::Value = serde_json::from_slice(get(f, &key_file)).unwrap();
        let forged = SigningKey::from_bytes(&[7; 32]).verifying_key();
        b["evidence_key"] = hex::encode(forged.as_bytes()).into();
        set(f, &key_file, serde_json::to_vec(&b).unwrap());
        reseal(f);
    });
    assert_has(&m, &format!("{key_file}: not in the log: leaf {key_leaf}: root mismatch"));
    assert_has(
        &m,
        "records/agent-1/1.dsse.json: no key binding of agent agent-1 in the bundle precedes its leaf",
    );

    // A forged checkpoint: same origin and root, another key.
    let cp_text = String::from_utf8(get(&files, format::CHECKPOINT).to_vec()).unwrap();
    let body = cp_text.split("\n\n").next().unwrap().to_string() + "\n";
    let real = Checkpoint::parse_body(&body).unwrap();
    let forger = NoteSigner::new(real.origin(), SigningKey::from_bytes(&[9; 32])).unwrap();
    let forged_note = real.sign(&forger).unwrap();
    let (_, m) = tampered(&bundle, "forged.tar.gz", |f| {
        set(f, format::CHECKPOINT, forged_note.clone().into_bytes());
        reseal(f);
    });
    assert_has(&m, "log/checkpoint: not a checkpoint signed by the bundle's log key");
    assert!(m.iter().any(|x| x.contains("no signature by a trusted key")), "{m:?}");
    // With the forger's key in the bundle too, only a pinned key tells.
    let mut files2 = read_bundle(&bundle);
    set(&mut files2, format::CHECKPOINT, forged_note.into_bytes());
    set(&mut files2, format::LOG_KEY, format!("{}\n", forger.verifier_key()).into_bytes());
    reseal(&mut files2);
    let forged = bundle.with_file_name("forged-key.tar.gz");
    write_bundle(&forged, &files2);
    let unpinned = verify_bundle(&forged, None).unwrap();
    assert!(unpinned.ok(), "the bundle is self-consistent: {unpinned}");
    assert_eq!(unpinned.trusted, TrustedKey::Bundle(forger.verifier_key().to_string()));
    let pinned = verify_bundle(&forged, Some(&fleet.signer().verifier_key())).unwrap();
    assert_has(&pinned.failure_messages(), "log/checkpoint: not a checkpoint signed by the pinned log key");

    // A stale checkpoint: an older tree than the proofs.
    let old_cp = fleet.seeded.store.latest_checkpoint().unwrap().unwrap();
    let mut fleet = fleet;
    fleet.ingest(0);
    fleet.sign();
    let newer = fleet.export("newer.tar.gz");
    let new_size = proof_size(&newer);
    assert!(new_size > old_cp.size);
    let (_, m) = tampered(&newer, "stale.tar.gz", |f| {
        set(f, format::CHECKPOINT, old_cp.note.clone().into_bytes());
        reseal(f);
    });
    assert_has(
        &m,
        &format!(
            "proofs/records/agent-0/1.json: proof is for tree size {new_size}, the checkpoint is at size {}",
            old_cp.size
        ),
    );

    // A proof for another tree size (a real proof, from the store).
    let (leaf_hash, other) = fleet.seeded.store.tlog_inclusion(0, size - 1).unwrap().unwrap();
    let _ = leaf_hash;
    let key0 = files.iter().map(|(n, _)| n.clone()).find(|n| n.starts_with("proofs/keys/agent-0/")).unwrap();
    let (_, m) = tampered(&bundle, "other-size.tar.gz", |f| {
        let p = format::ProofFile {
            leaf_index: other.leaf_index,
            tree_size: other.tree_size,
            hashes: other.path.iter().map(|h| base64_encode(h)).collect(),
        };
        set(f, &key0, serde_json::to_vec(&p).unwrap());
        reseal(f);
    });
    assert_has(&m, &format!("{key0}: proof is for tree size {}, the checkpoint is at size {size}", size - 1));

    // The CSV claiming a status the record did not sign.
    let (_, m) = tampered(&bundle, "csv.tar.gz", |f| {
        let text = String::from_utf8(get(f, format::EVIDENCE_CSV).to_vec()).unwrap();
        set(f, format::EVIDENCE_CSV, text.replace("firewall=fail@4", "firewall=pass@4").into_bytes());
        reseal(f);
    });
    assert_has(&m, "evidence.csv line ");
    assert!(
        m.iter()
            .any(|x| x.contains("check firewall is fail in records/agent-1/4.dsse.json, the CSV says pass")),
        "{m:?}"
    );
}

fn base64_encode(h: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

fn proof_size(bundle: &Path) -> u64 {
    let files = read_bundle(bundle);
    let p: format::ProofFile = serde_json::from_slice(get(&files, "proofs/records/agent-0/1.json")).unwrap();
    p.tree_size
}

#[test]
fn broken_archives_are_errors_not_panics() {
    let fleet = Fleet::new();
    let bundle = fleet.export("whole.tar.gz");
    let bytes = std::fs::read(&bundle).unwrap();
    let dir = bundle.parent().unwrap();
    let cases: BTreeMap<&str, Vec<u8>> = BTreeMap::from([
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("garbage", b"this is not a bundle at all".repeat(100)),
        ("cut-at-header", bytes[..10].to_vec()),
    ]);
    for (name, content) in cases {
        let path = dir.join(format!("{name}.tar.gz"));
        std::fs::write(&path, content).unwrap();
        let err = verify_bundle(&path, None).unwrap_err();
        assert!(matches!(err, BundleError::Archive { .. }), "{name}: {err}");
        assert!(err.to_string().contains("is not a readable tar.gz bundle"), "{name}: {err}");
    }
    // A tar.gz without a manifest, and one with a link.
    let no_manifest = dir.join("no-manifest.tar.gz");
    write_bundle(&no_manifest, &[("records/a/1.dsse.json".into(), b"{}".to_vec())]);
    let err = verify_bundle(&no_manifest, None).unwrap_err();
    assert!(err.to_string().ends_with("is not a Custos export bundle: it has no manifest.json"), "{err}");
    let link = dir.join("link.tar.gz");
    {
        let gz =
            flate2::write::GzEncoder::new(std::fs::File::create(&link).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tar.append_link(&mut h, "manifest.json", "/etc/passwd").unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let err = verify_bundle(&link, None).unwrap_err();
    assert!(matches!(err, BundleError::EntryType { .. }), "{err}");
    assert!(
        verify_bundle(&dir.join("absent.tar.gz"), None).unwrap_err().to_string().contains("absent.tar.gz")
    );
}

#[test]
fn a_sample_is_the_same_for_the_same_seed_and_filters_hold() {
    let fleet = Fleet::new();
    let run = |name: &str, seed: &str| {
        let out = fleet.seeded.dir.path().join(name);
        let mut o = fleet.options(&out);
        o.sample = Some((2, seed.into()));
        let done = export(&o).unwrap();
        (out, done.manifest)
    };
    let (a, ma) = run("s1.tar.gz", "audit-2026-q4");
    let (b, mb) = run("s2.tar.gz", "audit-2026-q4");
    let sa = ma.query.sample.clone().unwrap();
    assert_eq!(sa.chosen, mb.query.sample.unwrap().chosen);
    assert_eq!(sa.chosen.len(), 2);
    assert_eq!(sa.population.len(), AGENTS);
    assert_eq!(sa.chosen, custos_server::export::select::sample(&sa.population, 2, "audit-2026-q4"));
    // Same records in both; only the chosen agents' records.
    let names = |p: &Path| {
        read_bundle(p).into_iter().map(|(n, _)| n).filter(|n| n.starts_with("records/")).collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    assert!(names(&a).iter().all(|n| sa.chosen.iter().any(|c| n.starts_with(&format!("records/{c}/")))));
    assert_eq!(ma.counts.records, 2 * RECORDS);
    assert!(verify_bundle(&a, None).unwrap().ok());

    // --host and --control.
    let out = fleet.seeded.dir.path().join("filtered.tar.gz");
    let mut o = fleet.options(&out);
    o.hosts = vec!["agent-2".into()];
    o.controls = vec!["iso27001:2022/A.8.20".into()];
    let m = export(&o).unwrap().manifest;
    assert_eq!((m.counts.records, m.counts.agents, m.counts.csv_rows), (RECORDS, 1, 1));
    let report = verify_bundle(&out, None).unwrap();
    assert!(report.ok(), "{report}");
    o.controls = vec!["nonsense:1/X".into()];
    let err = export(&o).unwrap_err();
    assert!(err.to_string().contains("--control \"nonsense:1/X\" names no control"), "{err}");
    assert!(!out.with_file_name("filtered.tar.gz.partial").exists());

    // A window after the latest checkpoint's leaves makes the export sign one.
    let mut fleet = fleet;
    fleet.ingest(2);
    let out = fleet.seeded.dir.path().join("fresh.tar.gz");
    let m = export(&fleet.options(&out)).unwrap().manifest;
    assert!(m.log.checkpoint_signed_for_export);
    assert_eq!(m.counts.records, AGENTS as u64 * RECORDS + 1);
    assert!(verify_bundle(&out, None).unwrap().ok());
}
