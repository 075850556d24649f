//! Evidence collectors, one file per check.
//!
//! Each collector is split in two:
//! - a pure **parser** (`parse_*` functions) from recorded command output or
//!   file contents to a [`Finding`]: compiled on every OS and tested against
//!   real recorded output under `agent/tests/fixtures/`;
//! - a thin **gather** step that asks the [`Host`] for that output; only the
//!   gather step is `cfg`-gated per OS.
//!
//! Invariants: a collector never reports `pass` unless it measured the
//! effective state; when it cannot tell it reports `unknown` with the reason.
//! A collector that hangs is cut off by [`run_checks`] and reported `unknown`.

pub mod antivirus;
pub mod disk_encryption;
pub mod firewall;
pub mod os_patches;

use std::sync::Arc;
use std::time::Duration;

use custos_proto::evidence::statement::excerpt;
use custos_proto::evidence::{CheckResult, CheckStatus, Observation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::host::Host;

/// What a parser concluded, before it becomes a signed [`CheckResult`].
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub status: CheckStatus,
    /// Which tool or source the conclusion rests on (`nftables`, `apt`, ...).
    pub backend: String,
    pub facts: Map<String, Value>,
    /// Why the status is not `pass` (or a short note when it is).
    pub reason: Option<String>,
    /// The raw observation (command output, file contents) the facts came from.
    pub raw: String,
}

impl Finding {
    pub fn new(status: CheckStatus, backend: &str) -> Self {
        Finding { status, backend: backend.to_string(), facts: Map::new(), reason: None, raw: String::new() }
    }

    pub fn pass(backend: &str) -> Self {
        Self::new(CheckStatus::Pass, backend)
    }

    pub fn fail(backend: &str, reason: impl Into<String>) -> Self {
        Self::new(CheckStatus::Fail, backend).with_reason(reason)
    }

    pub fn unknown(backend: &str, reason: impl Into<String>) -> Self {
        Self::new(CheckStatus::Unknown, backend).with_reason(reason)
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_raw(mut self, raw: impl Into<String>) -> Self {
        self.raw = raw.into();
        self
    }

    /// Adds a typed fact.
    pub fn fact(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.facts.insert(key.to_string(), value.into());
        self
    }

    /// Turns the finding into the record form, digesting the raw observation.
    pub fn into_result(self, id: &str) -> CheckResult {
        let reason = match (self.status, self.reason) {
            (CheckStatus::Pass, r) => r,
            (_, Some(r)) if !r.is_empty() => Some(r),
            (s, _) => Some(format!("{s} without a stated reason")),
        };
        CheckResult {
            id: id.to_string(),
            status: self.status,
            backend: self.backend,
            facts: self.facts,
            observation: Observation {
                sha256: hex::encode(Sha256::digest(self.raw.as_bytes())),
                excerpt: excerpt(&self.raw),
            },
            reason,
        }
    }
}

/// A collector: gathers through the host and returns its finding.
pub type Collector = fn(&dyn Host) -> Finding;

/// Every check the agent knows, by stable id.
pub const CHECKS: &[(&str, Collector)] = &[
    ("firewall", firewall::collect),
    ("disk_encryption", disk_encryption::collect),
    ("os_patches", os_patches::collect),
    ("antivirus", antivirus::collect),
];

/// Runs the selected checks (all when `only` is empty), each on its own thread
/// and bounded by `timeout`; a collector that does not finish in time is
/// reported `unknown` and left to end on its own.
pub fn run_checks(host: Arc<dyn Host>, only: &[String], timeout: Duration) -> Vec<CheckResult> {
    let selected: Vec<&(&str, Collector)> =
        CHECKS.iter().filter(|(id, _)| only.is_empty() || only.iter().any(|o| o == id)).collect();
    let handles: Vec<_> = selected
        .iter()
        .map(|&&(id, collect)| {
            let (tx, rx) = std::sync::mpsc::channel();
            let host = Arc::clone(&host);
            let spawned = std::thread::Builder::new().name(format!("collect-{id}")).spawn(move || {
                let _ = tx.send(collect(host.as_ref()));
            });
            (id, rx, spawned.is_ok())
        })
        .collect();
    handles
        .into_iter()
        .map(|(id, rx, spawned)| {
            let finding = if !spawned {
                Finding::new(CheckStatus::Error, "agent").with_reason("could not start collector thread")
            } else {
                match rx.recv_timeout(timeout) {
                    Ok(f) => f,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Finding::unknown(
                        "agent",
                        format!("collector did not finish within {} s", timeout.as_secs()),
                    ),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        Finding::new(CheckStatus::Error, "agent").with_reason("collector panicked")
                    }
                }
            };
            finding.into_result(id)
        })
        .collect()
}

/// The reason text for a check that has no implementation on this OS yet.
pub fn unsupported_os(check: &str) -> Finding {
    Finding::unknown(
        "agent",
        format!("{check} is not collected on {} by this agent version", std::env::consts::OS),
    )
}
