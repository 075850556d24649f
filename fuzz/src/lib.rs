//! What each fuzz target drives and asserts, one public function per target
//! (`fuzz_targets/<name>.rs` only hands libFuzzer's bytes to it).
//!
//! The same file is included by `tests/tests/fuzz_regressions.rs`, which
//! replays `fuzz/seeds/<target>/*` and `fuzz/regressions/<target>/*` through
//! [`run`] in a plain `cargo test` on stable, so a crash once fixed stays
//! fixed. It therefore uses only what that crate depends on too (the four
//! Custos crates, `ed25519-dalek`, `serde_json`) and refers to nothing by
//! `crate::` paths.
//!
//! Inputs that feed several outputs (a collector reads more than one file or
//! command) are split at NUL bytes: part 0, part 1, ... (a missing part is a
//! missing file or command). Text is read as the agent reads it
//! (`String::from_utf8_lossy`). Beyond "no panic", each target asserts the
//! cheap properties its parsers promise: re-serialised values read back the
//! same, formatting never changes a result, a finding that is not `pass`
//! gives a reason and becomes a record the server's strict parser accepts,
//! and an export bundle is VERIFIED only against the pinned key it was
//! signed with, with the same report every time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use custos_agent::collect::{Context, Finding};
use custos_agent::host::{CommandOutput, Host, HostError};
use custos_proto::evidence::{
    CheckStatus, Envelope, EvidencePredicate, HostInfo, MAX_PAYLOAD_BYTES, Statement, StatementRaw,
    StatementSummary, pae, sign_envelope, verify_envelope,
};
use ed25519_dalek::SigningKey;
use serde_json::Value;

// Explicit paths: this file is also included as a module by
// tests/tests/fuzz_regressions.rs, where default module paths would differ.
#[path = "agent.rs"]
mod agent;
#[path = "evidence.rs"]
mod evidence;
#[path = "server.rs"]
mod server;

pub use agent::{firewall_linux, lsblk, pam_stack, sshd_config};
pub use evidence::{dsse_envelope, intoto_statement};
pub use server::{bundle_verify, oscal_import};

/// Every target, as `fuzz_targets/<name>.rs`, `seeds/<name>/` and
/// `regressions/<name>/` name it.
pub const TARGETS: &[(&str, Target)] = &[
    ("dsse_envelope", dsse_envelope),
    ("intoto_statement", intoto_statement),
    ("bundle_verify", bundle_verify),
    ("oscal_import", oscal_import),
    ("firewall_linux", firewall_linux),
    ("sshd_config", sshd_config),
    ("pam_stack", pam_stack),
    ("lsblk", lsblk),
];

/// A fuzz target: the input in, a panic on a property broken.
pub type Target = fn(&[u8]);

/// Runs target `name` on `data`; `false` when there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => {
            f(data);
            true
        }
        None => false,
    }
}

/// The evidence key of the agent that signed the seeds' records
/// (`examples/bundle_seed.rs` enrols `agent-0` with it).
pub const AGENT_KEY: [u8; 32] = [0x42; 32];
/// The log key the seed bundle's checkpoint is signed with, and its name
/// (the default log origin of a server without names).
pub const LOG_KEY: [u8; 32] = [0x17; 32];
pub const LOG_ORIGIN: &str = "localhost/custos-log";
/// A key nothing was ever signed with.
const STRANGER_KEY: [u8; 32] = [0x99; 32];

// ---- shared helpers ----------------------------------------------------------

/// The input split at NUL bytes into at most `n` parts, as text.
fn parts(data: &[u8], n: usize) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> =
        data.splitn(n, |b| *b == 0).map(|p| Some(String::from_utf8_lossy(p).into_owned())).collect();
    out.resize(n, None);
    out
}

/// JSON values equal up to the last bit of a float (serde_json, without its
/// `float_roundtrip` feature, may read a printed float back one ULP off).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The document re-printed (pretty, keys sorted): what a reader that goes
/// by the JSON's meaning reads exactly as the original. `None` when the
/// text is no JSON or does not read back to the same value.
fn reformatted(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    let pretty = serde_json::to_string_pretty(&v).ok()?;
    (serde_json::from_str::<Value>(&pretty).ok()? == v).then_some(pretty)
}

/// Two parses agree: the same value, or both refused (the reasons may name
/// other lines and columns).
fn assert_same<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    a: &Result<T, E>,
    b: &Result<T, E>,
    what: &str,
) {
    match (a, b) {
        (Ok(x), Ok(y)) => assert_eq!(x, y, "{what}"),
        (Err(_), Err(_)) => {}
        _ => panic!("{what}: {a:?} against {b:?}"),
    }
}

/// A collector's finding, checked as the agent and the server rely on it:
/// a status other than `pass` comes with a reason, and the record holding
/// it is one the server's strict parser (`StatementRaw::raw_from_payload`,
/// what ingest runs) accepts.
fn check_finding(id: &str, input_len: usize, f: Finding) {
    assert!(
        f.status == CheckStatus::Pass || f.reason.as_deref().is_some_and(|r| !r.trim().is_empty()),
        "{id}: status {} without a reason: {f:?}",
        f.status
    );
    let predicate = EvidencePredicate {
        agent_id: "fuzz".into(),
        seq: 1,
        prev: None,
        collected_at: "2026-01-01T00:00:00Z".into(),
        agent_version: "0.0.0".into(),
        host: HostInfo { os: "linux".into(), ..HostInfo::default() },
        gap: None,
        checks: vec![f.into_result(id)],
    };
    let payload = Statement::new(predicate, &AGENT_KEY).to_payload();
    if payload.len() > MAX_PAYLOAD_BYTES {
        // Facts many times the size of what was read would make a record
        // the server refuses for good on a host with large outputs.
        assert!(
            input_len * 8 > MAX_PAYLOAD_BYTES,
            "{id}: {input_len} bytes of input gave a {} byte record",
            payload.len()
        );
        return;
    }
    if let Err(e) = StatementRaw::raw_from_payload(&payload) {
        panic!("{id}: the server refuses the agent's record: {e}");
    }
}

/// The parts of an input, each a file's or a command's output.
type Parts = [Option<String>];

/// A host whose commands and files come from the fuzzer's input.
struct FuzzHost {
    parts: Vec<Option<String>>,
    run: fn(&Parts, &str, &[&str]) -> Option<String>,
    file: fn(&Parts, &str) -> Option<String>,
    dir: fn(&Parts, &str) -> Option<Vec<String>>,
}

impl Host for FuzzHost {
    fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput, HostError> {
        match (self.run)(&self.parts, program, args) {
            Some(stdout) => Ok(CommandOutput { code: Some(0), stdout, stderr: String::new() }),
            None => Err(HostError::NotFound { program: program.to_string() }),
        }
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, HostError> {
        (self.file)(&self.parts, path)
            .map(String::into_bytes)
            .ok_or(HostError::NoFile { path: path.to_string() })
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>, HostError> {
        (self.dir)(&self.parts, path).ok_or(HostError::NoFile { path: path.to_string() })
    }
}

fn part(parts: &Parts, i: usize) -> Option<String> {
    parts.get(i).cloned().flatten()
}
