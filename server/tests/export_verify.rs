//! Export bundles and their offline verification on a real store: agents
//! enrolled with a real token (their key bindings logged), records signed by
//! the agent's code, verified by `verify_record` and appended by the real
//! `RecordWriter`, checkpoints signed by the store's own checkpoint path.
//!
//! A clean bundle is VERIFIED only against the pinned log key (against its
//! own key it is consistent, exit 3); each tampering case fails with its
//! precise message, both ways; every chain is anchored at both edges of the
//! window by its context records; a broken archive is an error, never a
//! panic; a sample is the same for the same seed; the `export` and `verify`
//! commands run as an auditor runs them.

#[path = "support/bundle.rs"]
mod bundle;

#[path = "support/seeded.rs"]
mod seeded;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bundle::{get, manifest_of, read_bundle, reseal, write_bundle};
use custos_agent::spool::ChainTip;
use custos_proto::evidence::Gap;
use custos_server::export::{ExportOptions, export};
use custos_server::store::records::AppendOutcome;
use custos_verify::bundle::{self as format, ContextRecord, ContextRole};
use custos_verify::tlog::{Checkpoint, NoteSigner, VerifierKey};
use custos_verify::{BundleError, ChainEnd, ChainStart, Finding, Outcome, TrustedKey, verify_bundle};
use ed25519_dalek::SigningKey;
use seeded::{Seeded, firewall_checks, signed};
use time::OffsetDateTime;

const AGENTS: usize = 3;
const RECORDS: u64 = 4;

struct Fleet {
    seeded: Seeded,
    keys: Vec<(String, SigningKey)>,
    heads: Vec<(u64, Option<[u8; 32]>)>,
    writer: custos_server::store::records::RecordWriter,
}

impl Fleet {
    /// `AGENTS` agents enrolled three days ago, no records yet.
    fn enrolled() -> Fleet {
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
        Fleet { seeded, keys, heads, writer }
    }

    /// `RECORDS` records per agent, seq n collected at now - 10 h + n h,
    /// and a checkpoint over them.
    fn new() -> Fleet {
        let mut fleet = Fleet::enrolled();
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
        let seq = self.heads[i].0 + 1;
        let collected = self.seeded.now - time::Duration::hours(10) + time::Duration::hours(seq as i64);
        self.ingest_at(i, collected, None);
    }

    /// One more record of agent `i` collected at `collected`, declaring
    /// `gap` (collections its agent skipped) when given.
    fn ingest_at(&mut self, i: usize, collected: OffsetDateTime, gap: Option<Gap>) {
        let (seq, prev) = self.heads[i];
        let seq = seq + 1;
        let now = self.seeded.now;
        let (agent_id, key) = &self.keys[i];
        let tip = ChainTip { seq, prev, gap };
        let rec = signed(key, agent_id, &tip, collected, firewall_checks(i != 1), now.unix_timestamp());
        let digest = rec.digest;
        assert_eq!(self.writer.append(&[rec], now.unix_timestamp()).unwrap(), [AppendOutcome::Accepted]);
        self.heads[i] = (seq, Some(digest));
    }

    /// The log key an auditor pins.
    fn key(&self) -> VerifierKey {
        self.seeded.log_key()
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
        self.export_with(name, |_| {})
    }

    fn export_with(&self, name: &str, edit: impl FnOnce(&mut ExportOptions)) -> PathBuf {
        let out = self.seeded.dir.path().join(name);
        let mut o = self.options(&out);
        edit(&mut o);
        export(&o).unwrap();
        out
    }

    /// A window holding seq 2 and 3 of every agent (seq 1 before it, seq 4
    /// after it).
    fn narrow(&self, o: &mut ExportOptions) {
        o.from = self.seeded.now - time::Duration::minutes(8 * 60 + 30);
        o.to = self.seeded.now - time::Duration::minutes(6 * 60 + 30);
    }
}

fn set(files: &mut [(String, Vec<u8>)], name: &str, bytes: Vec<u8>) {
    files.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not in bundle")).1 = bytes;
}

/// Tampers with a copy of `bundle` (genuine: its own log key is the real
/// one) and returns the unpinned verification and its failure messages,
/// after checking that it fails both unpinned and against the pinned key.
fn tampered(
    bundle: &Path,
    name: &str,
    tamper: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> (custos_verify::Report, Vec<String>) {
    let mut files = read_bundle(bundle);
    let genuine =
        VerifierKey::parse(std::str::from_utf8(get(&files, format::LOG_KEY)).unwrap().trim()).unwrap();
    tamper(&mut files);
    let out = bundle.with_file_name(name);
    write_bundle(&out, &files);
    let report = verify_bundle(&out, None).unwrap();
    assert_eq!(report.outcome(), Outcome::Failed, "{name}: tampered bundle is consistent:\n{report}");
    assert!(!report.consistent() && !report.ok());
    let pinned = verify_bundle(&out, Some(&genuine)).unwrap();
    assert_eq!(pinned.outcome(), Outcome::Failed, "{name}: tampered bundle verified:\n{pinned}");
    let messages = report.failure_messages();
    (report, messages)
}

/// Removes records (and their proofs) from the bundle and rewrites the
/// manifest's file list, as a forger would.
fn without(files: &mut Vec<(String, Vec<u8>)>, records: &[(&str, u64)]) {
    for (agent, seq) in records {
        let (rec, proof) = (format::record_path(agent, *seq), format::record_proof_path(agent, *seq));
        assert!(files.iter().any(|(n, _)| *n == rec), "{rec} not in the bundle");
        files.retain(|(n, _)| *n != rec && *n != proof);
    }
    reseal(files);
}

/// `custos-server` with `args`.
fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos-server")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
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

    // Every chain starts at seq 1 inside the window: no context records.
    assert!(m.context.is_empty(), "{:?}", m.context);
    assert_eq!((m.counts.predecessors, m.counts.successors), (0, 0));

    // Against its own key the bundle is consistent, not verified.
    let report = verify_bundle(&bundle, None).unwrap();
    assert!(report.consistent(), "{report}");
    assert!(!report.ok());
    assert_eq!(report.outcome(), Outcome::Unpinned);
    assert_eq!((report.records, report.records_verified), (AGENTS as u64 * RECORDS, AGENTS as u64 * RECORDS));
    assert_eq!(report.in_window(), AGENTS as u64 * RECORDS);
    assert_eq!(report.key_bindings, AGENTS);
    assert!(report.findings.is_empty(), "{report}");
    let pinned = fleet.key();
    assert_eq!(report.trusted, TrustedKey::Bundle(pinned.to_string()));
    let text = report.to_string();
    let key_id = format!("key ID {:08x}", pinned.key_id());
    assert!(
        text.contains("NOT pinned")
            && text.contains("Result: CONSISTENT, NOT VERIFIED: the bundle is consistent, but its log key is not pinned (name ")
            && text.contains(&key_id)
            && !text.contains("Result: VERIFIED"),
        "{text}"
    );
    assert!(
        text.contains("agent-1: 4 records in the window, seq 1-4, ")
            && text.contains("chain starts at seq 1, no successor in the bundle"),
        "{text}"
    );
    // No successor: a note, not a failure.
    assert!(report.agents.values().all(|a| a.start == ChainStart::ChainStart && a.end == ChainEnd::Open));
    assert_eq!(report.open_ends(), ["agent-0", "agent-1", "agent-2"]);
    assert!(
        text.contains(
            "3 of 3 agents have no record after the window in the bundle (agent-0, agent-1, agent-2)"
        ),
        "{text}"
    );

    let report = verify_bundle(&bundle, Some(&pinned)).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.outcome(), Outcome::Verified);
    assert_eq!(report.trusted, TrustedKey::Pinned(pinned.to_string()));
    assert!(report.to_string().ends_with("Result: VERIFIED\n"), "{report}");

    // The command line: 0 with the pinned key (a file or the key itself),
    // 2 without it, 1 on a tampered copy.
    let key_file = bundle.with_file_name("log.vkey");
    std::fs::write(&key_file, format!("{pinned}\n")).unwrap();
    let file = bundle.to_str().unwrap();
    let ok = cli(&["verify", file, "--log-key", key_file.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("(pinned with --log-key)"));
    assert!(stdout(&ok).ends_with("Result: VERIFIED\n"), "{}", stdout(&ok));
    let ok = cli(&["verify", file, "--log-key", &pinned.to_string()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let unpinned = cli(&["verify", file]);
    assert_eq!(unpinned.status.code(), Some(3), "{}", stdout(&unpinned));
    assert!(
        stdout(&unpinned).contains("Result: CONSISTENT, NOT VERIFIED") && stdout(&unpinned).contains(&key_id)
    );
    let wrong = cli(&["verify", file, "--log-key", "no-such-file"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("neither a file"), "{wrong:?}");
    let mut files = read_bundle(&bundle);
    set(&mut files, "records/agent-0/1.dsse.json", b"{}".to_vec());
    let bad = bundle.with_file_name("cli-bad.tar.gz");
    write_bundle(&bad, &files);
    for args in [
        &["verify", bad.to_str().unwrap(), "--log-key", key_file.to_str().unwrap()][..],
        &["verify", bad.to_str().unwrap()],
    ] {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stdout(&out).ends_with("Result: FAILED\n"), "{}", stdout(&out));
    }
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
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
    assert!(unpinned.consistent(), "the bundle is self-consistent: {unpinned}");
    // ... which is no pass: the result names the forger's key to compare.
    assert!(!unpinned.ok());
    assert_eq!(unpinned.outcome(), Outcome::Unpinned);
    assert_eq!(unpinned.outcome().exit_code(), 3);
    assert_eq!(unpinned.trusted, TrustedKey::Bundle(forger.verifier_key().to_string()));
    let text = unpinned.to_string();
    assert!(
        text.contains(&format!(
            "its log key is not pinned (name {}, key ID {:08x}",
            forger.name(),
            forger.key_id()
        )),
        "{text}"
    );
    let pinned = verify_bundle(&forged, Some(&fleet.key())).unwrap();
    assert_eq!(pinned.outcome(), Outcome::Failed);
    assert_has(&pinned.failure_messages(), "log/checkpoint: not a checkpoint signed by the pinned log key");
    let out = cli(&["verify", forged.to_str().unwrap(), "--log-key", &fleet.key().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // The first record of a chain deleted: nothing shows where it starts.
    let (_, m) = tampered(&bundle, "first-deleted.tar.gz", |f| without(f, &[("agent-0", 1)]));
    assert_has(&m, "agent agent-0: chain not anchored: first record seq 2 has no predecessor in the bundle");
    assert!(m.iter().all(|x| !x.starts_with("agent agent-1") && !x.starts_with("agent agent-2")), "{m:?}");
    // ... and the first two.
    let (_, m) =
        tampered(&bundle, "first-two-deleted.tar.gz", |f| without(f, &[("agent-2", 1), ("agent-2", 2)]));
    assert_has(&m, "agent agent-2: chain not anchored: first record seq 3 has no predecessor in the bundle");

    // The same at the window's edges: seq 2 and 3 in it, 1 before, 4 after.
    let narrow = fleet.export_with("matrix-narrow.tar.gz", |o| fleet.narrow(o));
    assert!(verify_bundle(&narrow, Some(&fleet.key())).unwrap().ok());
    // The predecessor removed: the start of the window is loose.
    let (_, m) = tampered(&narrow, "no-predecessor.tar.gz", |f| without(f, &[("agent-0", 1)]));
    assert_has(&m, "agent agent-0: chain not anchored: first record seq 2 has no predecessor in the bundle");
    assert_has(&m, "manifest.json: context lists records/agent-0/1.dsse.json as agent agent-0's predecessor");
    // ... and the manifest's context edited too: still loose.
    let (_, m) = tampered(&narrow, "no-predecessor-listed.tar.gz", |f| {
        let mut man = manifest_of(f);
        man.context.retain(|c| !(c.agent == "agent-0" && c.seq == 1));
        set(f, format::MANIFEST, serde_json::to_vec_pretty(&man).unwrap());
        without(f, &[("agent-0", 1)]);
    });
    assert_eq!(m, ["agent agent-0: chain not anchored: first record seq 2 has no predecessor in the bundle"]);
    // The first record in the window deleted, its predecessor kept.
    let (_, m) = tampered(&narrow, "first-in-window-deleted.tar.gz", |f| without(f, &[("agent-1", 2)]));
    assert_has(&m, "agent agent-1: chain not anchored: first record seq 3 has no predecessor in the bundle");
    // The last record in the window deleted while its successor is there.
    let (_, m) = tampered(&narrow, "last-deleted.tar.gz", |f| without(f, &[("agent-1", 3)]));
    assert_has(
        &m,
        "agent agent-1: chain cut at the end of the window: seq 3, after last record seq 2, is not in the bundle, but seq 4 is",
    );

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

#[test]
fn chains_are_anchored_at_both_edges_of_the_window() {
    let fleet = Fleet::new();
    let key = fleet.key();
    // Seq 2 and 3 in the window; seq 1 before it, seq 4 after it.
    let bundle = fleet.export_with("narrow.tar.gz", |o| fleet.narrow(o));
    let files = read_bundle(&bundle);
    let m = manifest_of(&files);
    let expected: Vec<ContextRecord> = (0..AGENTS)
        .flat_map(|i| {
            let agent = format!("agent-{i}");
            [
                ContextRecord { agent: agent.clone(), seq: 1, role: ContextRole::Predecessor },
                ContextRecord { agent, seq: 4, role: ContextRole::Successor },
            ]
        })
        .collect();
    assert_eq!(m.context, expected);
    assert_eq!(
        (m.counts.records, m.counts.records_in_window, m.counts.predecessors, m.counts.successors),
        (AGENTS as u64 * 4, AGENTS as u64 * 2, AGENTS as u64, AGENTS as u64)
    );
    // Context is no evidence: the CSV and the OSCAL document name only seq 3
    // (the newest record at the window's end).
    let csv_text = String::from_utf8(get(&files, format::EVIDENCE_CSV).to_vec()).unwrap();
    assert!(csv_text.contains("@3") && !csv_text.contains("@1") && !csv_text.contains("@4"), "{csv_text}");
    let oscal = String::from_utf8(get(&files, format::ASSESSMENT_RESULTS).to_vec()).unwrap();
    for agent in ["agent-0", "agent-1", "agent-2"] {
        assert!(
            !oscal.contains(&format!("records/{agent}/1")) && !oscal.contains(&format!("records/{agent}/4"))
        );
    }
    let report = verify_bundle(&bundle, Some(&key)).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!((report.in_window(), report.predecessors(), report.successors()), (6, 3, 3));
    let a0 = &report.agents["agent-0"];
    assert_eq!((a0.records, a0.first_seq, a0.last_seq), (2, 2, 3));
    assert_eq!((a0.start, a0.end), (ChainStart::Predecessor(1), ChainEnd::Successor(4)));
    assert!(report.open_ends().is_empty());
    let text = report.to_string();
    assert!(
        text.contains("agent-0: 2 records in the window, seq 2-3, ")
            && text.contains("follows seq 1 (before the window), followed by seq 4 (after the window)")
            && !text.contains("Notes:"),
        "{text}"
    );

    // The successor removed (and unlisted): no failure can be had, the end is
    // open, and the summary says so.
    let mut files2 = read_bundle(&bundle);
    let mut man = manifest_of(&files2);
    man.context.retain(|c| !(c.agent == "agent-2" && c.role == ContextRole::Successor));
    set(&mut files2, format::MANIFEST, serde_json::to_vec_pretty(&man).unwrap());
    without(&mut files2, &[("agent-2", 4)]);
    let open = bundle.with_file_name("no-successor.tar.gz");
    write_bundle(&open, &files2);
    let report = verify_bundle(&open, Some(&key)).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.open_ends(), ["agent-2"]);
    assert!(
        report.to_string().contains("1 of 3 agents have no record after the window in the bundle (agent-2)")
    );

    // A window with no record of anyone: each chain shows it by a
    // predecessor (seq 1) and a successor (seq 2) that follow each other.
    let empty = fleet.export_with("empty-window.tar.gz", |o| {
        o.from = fleet.seeded.now - time::Duration::minutes(8 * 60 + 50);
        o.to = fleet.seeded.now - time::Duration::minutes(8 * 60 + 10);
    });
    let report = verify_bundle(&empty, Some(&key)).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.in_window(), 0);
    let a1 = &report.agents["agent-1"];
    assert_eq!((a1.records, a1.start, a1.end), (0, ChainStart::Predecessor(1), ChainEnd::Successor(2)));
    // Records deleted from it and the predecessor with them: caught by the
    // successor.
    let (_, m) = tampered(&empty, "empty-no-predecessor.tar.gz", |f| without(f, &[("agent-1", 1)]));
    assert_has(
        &m,
        "agent agent-1: chain not anchored: first record after the window (none in it) seq 2 has no predecessor in the bundle",
    );

    // A sample anchors each sampled host's chain, and drops none of them.
    let sampled = fleet.export_with("narrow-sample.tar.gz", |o| {
        fleet.narrow(o);
        o.sample = Some((2, "audit-2026-q4".into()));
    });
    let files = read_bundle(&sampled);
    let m = manifest_of(&files);
    let chosen = m.query.sample.as_ref().unwrap().chosen.clone();
    assert_eq!(m.context.len(), 2 * chosen.len());
    assert!(m.context.iter().all(|c| chosen.contains(&c.agent)));
    let report = verify_bundle(&sampled, Some(&key)).unwrap();
    assert!(report.ok(), "{report}");
    let dropped = chosen[0].clone();
    let (_, m) = tampered(&sampled, "sample-host-dropped.tar.gz", |f| {
        let prefixes = [
            format!("records/{dropped}/"),
            format!("keys/{dropped}/"),
            format!("proofs/records/{dropped}/"),
            format!("proofs/keys/{dropped}/"),
        ];
        f.retain(|(n, _)| !prefixes.iter().any(|p| n.starts_with(p.as_str())));
        let mut man = manifest_of(f);
        man.context.retain(|c| c.agent != dropped);
        set(f, format::MANIFEST, serde_json::to_vec_pretty(&man).unwrap());
        reseal(f);
    });
    assert_has(
        &m,
        &format!("manifest.json: host {dropped} was selected, but the bundle holds nothing of it"),
    );
}

#[test]
fn gaps_the_agent_declared_are_reported_with_their_seqs() {
    let mut fleet = Fleet::new();
    // agent-2's spool was full: two collections skipped, declared in seq 5.
    let now = fleet.seeded.now;
    let gap = Gap {
        missed_collections: 2,
        first_missed_at: "2026-01-01T01:00:00Z".into(),
        last_missed_at: "2026-01-01T02:00:00Z".into(),
        reason: "spool full".into(),
    };
    fleet.ingest_at(2, now - time::Duration::hours(5), Some(gap));
    fleet.ingest(2);
    fleet.sign();
    let declared = Finding::DeclaredGap {
        agent: "agent-2".into(),
        after: 4,
        seq: 5,
        missed: 2,
        first_missed_at: "2026-01-01T01:00:00Z".into(),
        last_missed_at: "2026-01-01T02:00:00Z".into(),
        reason: "spool full".into(),
    };
    let text = "agent agent-2: the agent declared 2 missed collections between seq 4 and 5 (2026-01-01T01:00:00Z to 2026-01-01T02:00:00Z: spool full)";
    // In the window: a finding, no failure and no seq gap.
    let bundle = fleet.export("declared.tar.gz");
    let report = verify_bundle(&bundle, Some(&fleet.key())).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.findings, std::slice::from_ref(&declared));
    assert!(report.to_string().contains(text), "{report}");
    // In the successor just after the window: the missed collections may
    // lie inside it, so they are reported too.
    let bundle =
        fleet.export_with("declared-after.tar.gz", |o| o.to = now - time::Duration::minutes(5 * 60 + 30));
    let report = verify_bundle(&bundle, Some(&fleet.key())).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.agents["agent-2"].end, ChainEnd::Successor(5));
    assert_eq!(report.findings, [declared]);
    // Alongside a deleted record: both, each with its seqs.
    let (report, _) = tampered(&bundle, "declared-and-deleted.tar.gz", |f| without(f, &[("agent-2", 2)]));
    assert!(
        report.findings.contains(&Finding::Gap { agent: "agent-2".into(), first: 2, last: 2 }),
        "{report}"
    );
    assert!(report.to_string().contains(text), "{report}");
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
    assert_eq!(sa.chosen, custos_verify::sample::sample(&sa.population, 2, "audit-2026-q4"));
    // Same records in both; only the chosen agents' records.
    let names = |p: &Path| {
        read_bundle(p).into_iter().map(|(n, _)| n).filter(|n| n.starts_with("records/")).collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    assert!(names(&a).iter().all(|n| sa.chosen.iter().any(|c| n.starts_with(&format!("records/{c}/")))));
    assert_eq!(ma.counts.records, 2 * RECORDS);
    let key = fleet.key();
    assert!(verify_bundle(&a, Some(&key)).unwrap().ok());
    // A sample the seed does not draw is refused (the forger swapped a host).
    let (_, m) = tampered(&a, "other-sample.tar.gz", |f| {
        let mut man = manifest_of(f);
        let s = man.query.sample.as_mut().unwrap();
        let left_out = s.population.iter().find(|p| !s.chosen.contains(p)).unwrap().clone();
        s.chosen[0] = left_out;
        s.chosen.sort();
        set(f, format::MANIFEST, serde_json::to_vec_pretty(&man).unwrap());
    });
    assert!(
        m.iter().any(|x| x.starts_with("manifest.json: the sample chose ")
            && x.contains(&format!("but seed \"audit-2026-q4\" draws {}", sa.chosen.join(", ")))),
        "{m:?}"
    );

    // --host and --control.
    let out = fleet.seeded.dir.path().join("filtered.tar.gz");
    let mut o = fleet.options(&out);
    o.hosts = vec!["agent-2".into()];
    o.controls = vec!["iso27001:2022/A.8.20".into()];
    let m = export(&o).unwrap().manifest;
    assert_eq!((m.counts.records, m.counts.agents, m.counts.csv_rows), (RECORDS, 1, 1));
    let report = verify_bundle(&out, Some(&key)).unwrap();
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
    assert!(verify_bundle(&out, Some(&key)).unwrap().ok());
}

#[test]
fn the_export_and_verify_commands_run_as_an_auditor_runs_them() {
    let mut fleet = Fleet::enrolled();
    let day = (fleet.seeded.now - time::Duration::days(2)).date();
    let at = |d: time::Date, h, m, s| d.with_hms(h, m, s).unwrap().assume_utc();
    let (before, after) = (day.previous_day().unwrap(), day.next_day().unwrap());
    // agent-0: one record the day before, the first and last second of the
    // day, and the first second of the next; agent-1 one at noon; agent-2
    // none.
    for t in [at(before, 12, 0, 0), at(day, 0, 0, 0), at(day, 23, 59, 59), at(after, 0, 0, 0)] {
        fleet.ingest_at(0, t, None);
    }
    fleet.ingest_at(1, at(day, 12, 0, 0), None);
    fleet.sign();
    let data = fleet.seeded.data.to_str().unwrap().to_string();
    let out = fleet.seeded.dir.path().join("cli.tar.gz");
    let (out_s, day_s) = (out.to_str().unwrap(), day.to_string());

    let done = cli(&[
        "export",
        "--data-dir",
        &data,
        "--from",
        &day_s,
        "--to",
        &day_s,
        "--out",
        out_s,
        "--by",
        "auditor",
    ]);
    assert_eq!(done.status.code(), Some(0), "{}{}", stdout(&done), String::from_utf8_lossy(&done.stderr));
    assert!(stdout(&done).starts_with(&format!("wrote {out_s} (")), "{}", stdout(&done));
    let files = read_bundle(&out);
    let m = manifest_of(&files);
    // A date-only --to is the whole of that day.
    assert_eq!(
        (m.query.from.as_str(), m.query.to.as_str()),
        (&*format!("{day_s}T00:00:00Z"), &*format!("{day_s}T23:59:59Z"))
    );
    assert_eq!(m.counts.records_in_window, 3);
    assert!(files.iter().any(|(n, _)| n == "records/agent-0/3.dsse.json"), "the day's last second is in");
    assert_eq!(
        m.context,
        [
            ContextRecord { agent: "agent-0".into(), seq: 1, role: ContextRole::Predecessor },
            ContextRecord { agent: "agent-0".into(), seq: 4, role: ContextRole::Successor },
        ]
    );

    let key_file = fleet.seeded.dir.path().join("log.vkey");
    std::fs::write(&key_file, format!("{}\n", fleet.key())).unwrap();
    let verified = cli(&["verify", out_s, "--log-key", key_file.to_str().unwrap()]);
    let text = stdout(&verified);
    assert_eq!(verified.status.code(), Some(0), "{text}");
    assert!(
        text.contains("agent-0: 2 records in the window, seq 2-3, ")
            && text.contains("follows seq 1 (before the window), followed by seq 4 (after the window)")
            && text.contains("agent-2: no records in the window; 1 key bindings; no records in the bundle, no successor in the bundle")
            && text.ends_with("Result: VERIFIED\n"),
        "{text}"
    );
    let unpinned = cli(&["verify", out_s]);
    assert_eq!(unpinned.status.code(), Some(3), "{}", stdout(&unpinned));

    // A sample needs its seed, said before anything is written.
    let sample_out = fleet.seeded.dir.path().join("sample.tar.gz");
    let refused = cli(&[
        "export",
        "--data-dir",
        &data,
        "--from",
        &day_s,
        "--to",
        &day_s,
        "--sample",
        "2",
        "--out",
        sample_out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the following required arguments were not provided") && err.contains("--seed <SEED>"),
        "{err}"
    );
    assert!(!sample_out.exists());
}
