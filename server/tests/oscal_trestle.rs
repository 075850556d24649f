//! The export bundle read by tools we did not write: its
//! `assessment-results.json` loaded and validated by compliance-trestle (the
//! OSCAL model from PyPI), and its DSSE envelopes verified by
//! securesystemslib's DSSE implementation with the agents' keys from the
//! bundle's key bindings. Also: the document agrees with the records and
//! the CSV, is the same for the same content, and a tampered one fails
//! `verify` with a precise message.
//!
//! The Python tools come from the interpreter in `CUSTOS_TRESTLE_PYTHON` (a
//! venv `.ci/run` creates). Without it the Python halves are skipped with a
//! line saying so, except under CI, where a missing interpreter fails.

#[path = "support/bundle.rs"]
mod bundle;
#[path = "support/seeded.rs"]
mod seeded;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bundle::{get, manifest_of, read_bundle, reseal, write_bundle};
use custos_agent::spool::ChainTip;
use custos_server::app;
use custos_server::datadir::load_policy;
use custos_server::datadir::reload::Reloadable;
use custos_server::export::{ExportOptions, export};
use custos_server::keeper::Keeper;
use custos_server::keeper::fleet::Fleet as FleetCache;
use custos_server::keeper::register_edits::Register;
use custos_server::store::records::AppendOutcome;
use custos_server::store::risks::RiskFilter;
use custos_verify::bundle as format;
use custos_verify::verify_bundle;
use seeded::{Seeded, firewall_checks, signed};
use serde_json::Value;

const AGENTS: usize = 3;
const RECORDS: u64 = 3;

/// A data dir with enrolled agents, signed records, a checkpoint and a risk
/// register the keeper filled from the evidence (one entry accepted).
fn seed() -> Seeded {
    let seeded = Seeded::new(10);
    let now = seeded.now;
    let store = &seeded.store;
    let data = seeded.data.clone();
    let mut writer = store.record_writer().unwrap();
    for i in 0..AGENTS {
        let agent_id = format!("agent-{i}");
        let display = format!("host-{i}.example");
        let key =
            seeded.enroll(&agent_id, &display, &format!("oscal-test-{i}"), now.unix_timestamp() - 3 * 86_400);
        let mut prev = None;
        for seq in 1..=RECORDS {
            // agent-1's firewall fails; everyone's screen lock is unknown.
            let collected = now - time::Duration::hours(5) + time::Duration::hours(seq as i64);
            let tip = ChainTip { seq, prev, gap: None };
            let rec = signed(&key, &agent_id, &tip, collected, firewall_checks(i != 1), now.unix_timestamp());
            prev = Some(rec.digest);
            assert_eq!(writer.append(&[rec], now.unix_timestamp()).unwrap(), [AppendOutcome::Accepted]);
        }
    }
    let config = seeded.config();
    // The keeper fills the register: pending at the first pass, open once
    // the grace period is over.
    let keeper = Keeper::new(
        Arc::new(Reloadable::new(app::load_catalog(&data).unwrap(), Vec::new())),
        config.clone(),
        Arc::new(Reloadable::new(load_policy(&data).unwrap(), Vec::new())),
        data.clone(),
        Arc::new(FleetCache::new()),
    );
    keeper.pass(store, now - time::Duration::hours(1)).unwrap();
    keeper.pass(store, now).unwrap();
    let register = Register::open(&data).unwrap();
    let open = register.list(&RiskFilter::default()).unwrap();
    assert!(open.len() >= 2, "the failing firewall opens entries: {open:?}");
    register
        .accept(open[0].id, "CISO", "compensated by the perimeter", now + time::Duration::days(30), now)
        .unwrap();
    seeded.sign_checkpoint();
    seeded
}

impl seeded::Seeded {
    fn export(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        export(&ExportOptions {
            data_dir: self.data.clone(),
            from: self.now - time::Duration::days(1),
            to: self.now + time::Duration::hours(1),
            controls: Vec::new(),
            hosts: Vec::new(),
            sample: None,
            by: "test auditor".into(),
            out: out.clone(),
            now: self.now,
            progress: false,
        })
        .unwrap();
        out
    }
}

/// Replaces a file and rewrites the manifest's digests, as a forger would.
fn forge(files: &mut [(String, Vec<u8>)], name: &str, bytes: Vec<u8>) {
    files.iter_mut().find(|(n, _)| n == name).unwrap().1 = bytes;
    reseal(files);
}

fn first_result(doc: &mut Value) -> &mut Value {
    &mut doc["assessment-results"]["results"][0]
}

/// The interpreter with compliance-trestle and securesystemslib, or `None`
/// (skipped) outside CI.
fn python() -> Option<PathBuf> {
    match std::env::var_os("CUSTOS_TRESTLE_PYTHON").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => panic!(
            "CUSTOS_TRESTLE_PYTHON is not set under CI: .ci/run must create the venv with compliance-trestle and securesystemslib and export it"
        ),
        None => {
            eprintln!("skipped: CUSTOS_TRESTLE_PYTHON not set");
            None
        }
    }
}

/// Runs `script` with `args`; returns stdout, panicking with stderr on failure.
fn run_python(python: &Path, script: &str, args: &[&Path]) -> String {
    let out = Command::new(python).arg("-c").arg(script).args(args).output().unwrap_or_else(|e| {
        panic!("{}: {e}", python.display());
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Loads the document with trestle's OSCAL model (pydantic, the OSCAL
/// schema's constraints) and runs trestle's own validators on it: unique
/// UUIDs and resolvable references.
const TRESTLE: &str = r#"
import argparse, pathlib, sys
from trestle.core import oscal_backward_compatibility as compat
from trestle.core.validator_factory import validator_factory
from trestle.oscal.assessment_results import AssessmentResults
path = pathlib.Path(sys.argv[1])
errors = [str(i) for i in compat.check_file(path) if i.severity == "ERROR"]
if errors:
    sys.exit("; ".join(errors))
ar = AssessmentResults.oscal_read(path)
validator = validator_factory.get(argparse.Namespace(mode="all"))
if not validator.model_is_valid(ar, True, None):
    sys.exit(f"trestle rejects {path}: {validator.error_msg()}")
r = ar.results[0]
print("trestle-ok", len(r.observations or []), len(r.findings or []), len(r.risks or []))
"#;

/// Verifies each envelope given on the command line with
/// securesystemslib's DSSE `Envelope.verify` and an ed25519 `SSlibKey`
/// built from the raw public key in the agent's key binding (the key id is
/// Custos's convention, `sha256:` + SHA-256 of the raw key). Prints one
/// line per envelope.
const DSSE: &str = r#"
import hashlib, json, pathlib, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from securesystemslib.exceptions import VerificationError
keys = {}
for binding in sorted(pathlib.Path(sys.argv[1]).glob("*/*.json")):
    b = json.loads(binding.read_text())
    if b["event"] in ("enrolled", "renewed"):
        keyid = "sha256:" + hashlib.sha256(bytes.fromhex(b["evidence_key"])).hexdigest()
        keys[b["agent_id"]] = SSlibKey(keyid, "ed25519", "ed25519", {"public": b["evidence_key"]})
for path in sys.argv[2:]:
    path = pathlib.Path(path)
    env = Envelope.from_dict(json.loads(path.read_text()))
    try:
        env.verify([keys[path.parent.name]], 1)
        print("ok", path.parent.name, path.name)
    except VerificationError as e:
        print("FAIL", path.parent.name, path.name, str(e).replace("\n", " "))
"#;

#[test]
fn assessment_results_agree_with_the_records_and_validate_with_trestle() {
    let seeded = seed();
    let bundle = seeded.export("bundle.tar.gz");
    // Verified against the pinned log key, as an auditor verifies it.
    let report = verify_bundle(&bundle, Some(&seeded.log_key())).unwrap();
    assert!(report.ok(), "{report}");
    let files = read_bundle(&bundle);
    let manifest = manifest_of(&files);
    assert_eq!(manifest.documents.oscal_assessment_results.as_deref(), Some(format::ASSESSMENT_RESULTS));
    let oscal = report.oscal.expect("the verifier read the document");
    assert_eq!(
        (oscal.observations, oscal.findings, oscal.risks),
        (manifest.counts.oscal_observations, manifest.counts.oscal_findings, manifest.counts.oscal_risks)
    );
    // Each host's firewall and screen lock, as signed in its newest record.
    assert_eq!(oscal.observations, AGENTS * 2);
    assert!(report.to_string().contains("assessment-results.json: 6 observations"), "{report}");

    let ar_bytes = get(&files, format::ASSESSMENT_RESULTS).to_vec();
    let doc: Value = serde_json::from_slice(&ar_bytes).unwrap();
    let result = &doc["assessment-results"]["results"][0];
    let finding = |req: &str| {
        result["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["props"].as_array().unwrap().iter().any(|p| p["value"] == req))
            .unwrap_or_else(|| panic!("no finding for {req}"))
            .clone()
    };
    // agent-1's failing firewall: not satisfied, with its fail observation.
    let a820 = finding("iso27001:2022/A.8.20");
    assert_eq!(a820["target"]["status"]["state"], "not-satisfied");
    assert_eq!(a820["target"]["status"]["reason"], "fail");
    let fail_obs = result["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| {
            o["relevant-evidence"][0]["href"] == format!("records/agent-1/{RECORDS}.dsse.json")
                && o["props"][0]["value"] == "firewall"
        })
        .unwrap();
    assert_eq!(fail_obs["types"][0], "finding");
    assert!(
        a820["related-observations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["observation-uuid"] == fail_obs["uuid"])
    );
    // A requirement resting on the unknown screen lock is never satisfied.
    let undecided: Vec<Value> = result["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["props"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["value"].as_str().is_some_and(|v| v.ends_with(" unknown")))
        })
        .cloned()
        .collect();
    assert!(!undecided.is_empty());
    for f in &undecided {
        assert_eq!(f["target"]["status"]["state"], "not-satisfied", "{f}");
    }
    // The register: the accepted entry is an approved deviation.
    let statuses: Vec<&str> =
        result["risks"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert!(statuses.contains(&"deviation-approved") && statuses.contains(&"open"), "{statuses:?}");

    // The same content gives the same document.
    let again = read_bundle(&seeded.export("again.tar.gz"));
    assert_eq!(get(&again, format::ASSESSMENT_RESULTS), ar_bytes.as_slice());

    let Some(python) = python() else { return };
    let path = seeded.dir.path().join(format::ASSESSMENT_RESULTS);
    std::fs::write(&path, &ar_bytes).unwrap();
    let out = run_python(&python, TRESTLE, &[&path]);
    assert_eq!(
        out.trim(),
        format!("trestle-ok {} {} {}", oscal.observations, oscal.findings, oscal.risks),
        "{out}"
    );
    // And trestle refuses what OSCAL forbids, so the pass above means something.
    let mut broken = doc.clone();
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["status"]["state"] = "passed".into();
    std::fs::write(&path, serde_json::to_vec(&broken).unwrap()).unwrap();
    let refused = Command::new(&python).arg("-c").arg(TRESTLE).arg(&path).output().unwrap();
    assert!(!refused.status.success(), "trestle accepted state \"passed\"");
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn a_tampered_assessment_results_document_fails_verification() {
    let seeded = seed();
    let bundle = seeded.export("bundle.tar.gz");
    let files = read_bundle(&bundle);
    let doc: Value = serde_json::from_slice(get(&files, format::ASSESSMENT_RESULTS)).unwrap();
    let file = format::ASSESSMENT_RESULTS;
    let key = seeded.log_key();

    let tampered = |name: &str, edit: &dyn Fn(&mut Value), reseal: bool| -> Vec<String> {
        let mut doc = doc.clone();
        edit(&mut doc);
        let mut files = files.clone();
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        if reseal {
            forge(&mut files, file, bytes);
        } else {
            files.iter_mut().find(|(n, _)| n == file).unwrap().1 = bytes;
        }
        let out = bundle.with_file_name(name);
        write_bundle(&out, &files);
        let report = verify_bundle(&out, Some(&key)).unwrap();
        assert!(!report.consistent(), "{name}: verified:\n{report}");
        report.failure_messages()
    };
    let index_of = |req: &str| {
        doc["assessment-results"]["results"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .position(|f| f["props"][0]["value"] == req)
            .unwrap()
    };
    let a820 = index_of("iso27001:2022/A.8.20");
    let assert_has = |messages: &[String], wanted: &str| {
        assert!(
            messages.iter().any(|m| m.starts_with(wanted)),
            "no failure starting with {wanted:?} in:\n{}",
            messages.join("\n")
        );
    };

    // Edited without touching the manifest: the digest gives it away.
    let m = tampered("digest.tar.gz", &|d| d["assessment-results"]["metadata"]["title"] = "x".into(), false);
    assert_has(&m, &format!("{file}: SHA-256 is "));

    // A false pass, with the manifest resealed.
    let m = tampered(
        "false-pass.tar.gz",
        &|d| {
            let r = first_result(d);
            r["findings"][a820]["target"]["status"]["state"] = "satisfied".into();
        },
        true,
    );
    assert_has(
        &m,
        &format!("{file}: finding for iso27001:2022/A.8.20 is satisfied, but the standings in evidence.csv"),
    );

    // A host's standing changed in the finding.
    let m = tampered(
        "standing.tar.gz",
        &|d| {
            let r = first_result(d);
            for p in r["findings"][a820]["props"].as_array_mut().unwrap() {
                if p["value"] == "agent-1 not_satisfied" {
                    p["value"] = "agent-1 satisfied".into();
                }
            }
        },
        true,
    );
    assert_has(
        &m,
        &format!(
            "{file}: finding for iso27001:2022/A.8.20 says host agent-1 is satisfied, evidence.csv says not_satisfied"
        ),
    );

    // An observation pointing at another record, and one with a wrong status.
    let obs_index = doc["assessment-results"]["results"][0]["observations"]
        .as_array()
        .unwrap()
        .iter()
        .position(|o| o["relevant-evidence"][0]["href"] == format!("records/agent-1/{RECORDS}.dsse.json"))
        .unwrap();
    let m = tampered(
        "evidence.tar.gz",
        &|d| {
            let r = first_result(d);
            r["observations"][obs_index]["relevant-evidence"][0]["href"] =
                "records/agent-1/99.dsse.json".into();
        },
        true,
    );
    assert_has(&m, &format!("{file}: observation "));
    assert!(m.iter().any(|x| x.contains("its evidence is records/agent-1/99.dsse.json")), "{m:?}");
    let m = tampered(
        "status.tar.gz",
        &|d| {
            let r = first_result(d);
            for p in r["observations"][obs_index]["props"].as_array_mut().unwrap() {
                if p["name"] == "signed-status" {
                    p["value"] = "pass".into();
                }
            }
        },
        true,
    );
    assert!(
        m.iter().any(|x| x.starts_with(&format!("{file}: observation "))
            && x.contains("records/agent-1/3.dsse.json signed")),
        "{m:?}"
    );
    // A record digest that is not the record's.
    let m = tampered(
        "record-digest.tar.gz",
        &|d| {
            let r = first_result(d);
            r["observations"][obs_index]["relevant-evidence"][0]["props"][0]["value"] =
                format!("sha256:{}", "00".repeat(32)).into();
        },
        true,
    );
    assert!(
        m.iter().any(|x| x.contains("digest sha256:0000") && x.contains("the record's is sha256:")),
        "{m:?}"
    );
    // A finding dropped.
    let m = tampered(
        "dropped.tar.gz",
        &|d| {
            let r = first_result(d);
            r["findings"].as_array_mut().unwrap().remove(a820);
        },
        true,
    );
    assert_has(
        &m,
        &format!("{file}: has no finding for iso27001:2022/A.8.20, which evidence.csv has rows for"),
    );
    // Not JSON at all: a failure, not a panic.
    let mut broken = files.clone();
    forge(&mut broken, file, b"{ not json".to_vec());
    let out = bundle.with_file_name("not-json.tar.gz");
    write_bundle(&out, &broken);
    let report = verify_bundle(&out, Some(&key)).unwrap();
    assert!(
        report.failure_messages().iter().any(|m| m.starts_with(&format!("{file}: not JSON"))),
        "{report}"
    );
}

#[test]
fn exported_envelopes_verify_with_securesystemslib() {
    let seeded = seed();
    let bundle = seeded.export("bundle.tar.gz");
    let Some(python) = python() else { return };
    let files = read_bundle(&bundle);
    let root = seeded.dir.path().join("unpacked");
    let mut records = Vec::new();
    for (name, bytes) in &files {
        if name.starts_with("records/") || name.starts_with("keys/") {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            if name.starts_with("records/") {
                records.push(path);
            }
        }
    }
    assert_eq!(records.len(), AGENTS * RECORDS as usize);
    // One envelope with a payload byte flipped, as a forger would.
    let victim = root.join("records/agent-2/2.dsse.json");
    let mut env: Value = serde_json::from_slice(&std::fs::read(&victim).unwrap()).unwrap();
    let mut payload = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    payload[10] ^= 0x01;
    env["payload"] = B64.encode(&payload).into();
    let flipped = root.join("records/agent-2/flipped.dsse.json");
    std::fs::write(&flipped, serde_json::to_vec(&env).unwrap()).unwrap();

    let keys = root.join("keys");
    let mut args: Vec<&Path> = vec![&keys];
    args.extend(records.iter().map(PathBuf::as_path));
    args.push(&flipped);
    let out = run_python(&python, DSSE, &args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), records.len() + 1, "{out}");
    for path in &records {
        let agent = path.parent().unwrap().file_name().unwrap().to_str().unwrap();
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(lines.contains(&format!("ok {agent} {file}").as_str()), "{file} of {agent}:\n{out}");
    }
    assert!(lines.iter().any(|l| l.starts_with("FAIL agent-2 flipped.dsse.json")), "{out}");
}
