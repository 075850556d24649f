//! Evidence collectors, one module per check, one file per check and OS.
//!
//! Each check `<id>` has a module `<id>.rs` (what the check measures, shared
//! thresholds) and one backend file per OS (`<id>/linux.rs`, `<id>/windows.rs`,
//! `<id>/macos.rs`). A backend is split in two:
//! - pure **parsers** from recorded command output or file contents to a
//!   [`Finding`], tested against real recorded output;
//! - a **gather** step `gather(&dyn Host, &Context) -> Finding` that asks the
//!   [`Host`] for that output and hands it to the parsers.
//!
//! Every backend compiles on every OS, so the Windows and macOS ones are
//! tested here through a [`crate::host::FixtureHost`] replaying recorded
//! output (`agent/tests/cases/`). The only `cfg`-gated step is
//! [`Os::current`], which picks the backend that runs on the real machine.
//!
//! Invariants: a collector never reports `pass` unless it measured the
//! effective state; when it cannot tell it reports `unknown` with the reason.
//! A collector that hangs is cut off by [`run_checks`] and reported `unknown`.
//! Personal data (user and host names, addresses) goes into facts only
//! through [`Context::personal`], which applies the deployment's privacy
//! settings before anything is signed.

pub mod antivirus;
pub mod audit_logging;
pub mod auto_updates;
mod context;
pub mod disk_encryption;
pub mod firewall;
pub mod local_admins;
pub mod macos;
pub mod os_patches;
pub mod os_support;
mod parse_error;
pub mod password_policy;
pub mod screen_lock;
pub mod secure_boot;
pub mod software_inventory;
pub mod ssh_server;
pub mod time_sync;
pub mod windows;

pub use context::{Context, Os};
pub use parse_error::{Input, ParseError};

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

/// One OS backend of a check: gathers through the host and evaluates.
pub type Gather = fn(&dyn Host, &Context) -> Finding;

/// A check and its backend per OS.
pub struct Check {
    /// Stable id, the key the server maps onto controls.
    pub id: &'static str,
    pub linux: Gather,
    pub windows: Gather,
    pub macos: Gather,
}

impl Check {
    /// The backend for `os`.
    pub fn gather(&self, os: Os) -> Gather {
        match os {
            Os::Linux => self.linux,
            Os::Windows => self.windows,
            Os::Macos => self.macos,
        }
    }
}

macro_rules! checks {
    ($($id:ident),* $(,)?) => {
        /// Every check the agent knows, by stable id.
        pub const CHECKS: &[Check] = &[$(Check {
            id: stringify!($id),
            linux: $id::linux::gather,
            windows: $id::windows::gather,
            macos: $id::macos::gather,
        }),*];

        // The registry is the list the server and the mappings know, in
        // its order: a check added or renamed here alone does not build.
        const _: () = assert!(
            custos_proto::checks::is_check_list(&[$(stringify!($id)),*]),
            "the agent's checks differ from custos_proto::checks::CHECK_IDS"
        );
    };
}

checks!(
    firewall,
    disk_encryption,
    os_patches,
    auto_updates,
    antivirus,
    screen_lock,
    password_policy,
    secure_boot,
    ssh_server,
    time_sync,
    audit_logging,
    local_admins,
    os_support,
    software_inventory,
);

/// Looks a check up by id.
pub fn check(id: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.id == id)
}

/// Runs the selected checks (all when `only` is empty) for `os`, each on its
/// own thread and bounded by `timeout`; a collector that does not finish in
/// time is reported `unknown` and left to end on its own.
pub fn run_checks(
    host: Arc<dyn Host>,
    ctx: Arc<Context>,
    os: Os,
    only: &[String],
    timeout: Duration,
) -> Vec<CheckResult> {
    let selected: Vec<&Check> =
        CHECKS.iter().filter(|c| only.is_empty() || only.iter().any(|o| o == c.id)).collect();
    let handles: Vec<_> = selected
        .iter()
        .map(|check| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (host, ctx, gather) = (Arc::clone(&host), Arc::clone(&ctx), check.gather(os));
            let spawned =
                std::thread::Builder::new().name(format!("collect-{}", check.id)).spawn(move || {
                    let mut finding = gather(host.as_ref(), &ctx);
                    // The raw excerpt is signed too: it must not carry what the facts withhold.
                    finding.raw = ctx.scrub(&finding.raw);
                    let _ = tx.send(finding);
                });
            (check.id, rx, spawned.is_ok())
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

/// The finding of a backend this agent version does not have yet: `unknown`,
/// never a pass.
pub fn not_collected(check: &str, os: Os) -> Finding {
    Finding::unknown("agent", format!("{check} is not collected on {os} by this agent version"))
}
