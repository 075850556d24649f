//! The risk register: entries that follow the fleet's evidence, and entries
//! the CISO records by hand, rated on a configurable matrix.
//!
//! - [`matrix`]: likelihood × impact → level (ISO 27005-style 5×5 or BSI 200-3 4×4).
//! - [`lifecycle`]: what the evidence does to entries (grace, exposure,
//!   escalation, closing, reopening, acceptance expiry) and what people do
//!   to them (create, update, accept). Pure: no I/O, the time is a parameter.
//! - [`profile`]: what an entry for a requirement says (title, threats,
//!   protection goals, inherent rating), from the catalog.
//! - [`export`]: the register as CSV.
//!
//! Invariants: an evidence entry is keyed by (requirement, scope), so the
//! same deviation on many hosts of a scope is one entry; a host belongs to
//! one scope (the first of `[risk] scopes` among its tags, else
//! [`FLEET_SCOPE`]); an entry closes only through clean evidence (its hosts
//! passing again or leaving its scope), never by hand; every change to an
//! entry comes with an event for its history.

pub mod export;
pub mod lifecycle;
pub mod matrix;
pub mod profile;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use matrix::{Level, Matrix, MatrixKind, Rating};

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Opened and closed by the evidence.
    Evidence,
    /// Recorded by a person; no agent can see it.
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A deviation was seen and the grace period runs; not yet in the register.
    Pending,
    Open,
    InTreatment,
    Accepted,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    Mitigate,
    Accept,
    Transfer,
    Avoid,
}

macro_rules! snake_text {
    ($t:ty, $($v:ident => $s:literal),+) => {
        impl $t {
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)+
                    other => Err(format!("{other:?}: use one of {}", [$($s),+].join(", "))),
                }
            }
        }
    };
}
snake_text!(Origin, Evidence => "evidence", Manual => "manual");
snake_text!(Status, Pending => "pending", Open => "open", InTreatment => "in_treatment", Accepted => "accepted", Closed => "closed");
snake_text!(Treatment, Mitigate => "mitigate", Accept => "accept", Transfer => "transfer", Avoid => "avoid");

/// An approved acceptance of a risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acceptance {
    pub approver: String,
    pub justification: String,
    pub accepted_at: i64,
    pub expires_at: i64,
    /// The hosts affected when it was accepted: more hosts void the acceptance.
    pub hosts: BTreeSet<String>,
}

/// One register entry. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskEntry {
    /// 0 until stored.
    pub id: i64,
    pub origin: Origin,
    /// The deviating requirement (edition-qualified control id); `None` for manual entries.
    pub requirement: Option<String>,
    /// The host group the entry covers (`fleet` when no scope narrows it).
    pub scope: String,
    pub title: String,
    pub description: String,
    /// Checks whose failure makes the deviation.
    pub checks: BTreeSet<String>,
    /// Requirements of the other frameworks that the same checks support.
    pub related: Vec<String>,
    /// BSI 200-3 elementary threats.
    pub threats: Vec<String>,
    /// Of [`GOALS`](crate::compliance::catalog::GOALS).
    pub goals: Vec<String>,
    pub affected_hosts: BTreeSet<String>,
    /// For each affected host, the checks it was seen failing and has not
    /// passed since: it leaves when it passes them all.
    #[serde(default)]
    pub host_checks: BTreeMap<String, BTreeSet<String>>,
    /// For each affected host, a link to the signed record that last showed
    /// the failure (`/api/v1/records/{agent}/{seq}`).
    #[serde(default)]
    pub evidence: BTreeMap<String, String>,
    /// Hosts the requirement applies to, for the share affected.
    pub in_scope_hosts: u32,
    /// The rating of the deviation itself.
    pub inherent: Rating,
    /// The rating given the exposure now (share of hosts, duration).
    pub current: Rating,
    /// The rating expected after treatment, as its owner estimates it.
    pub residual: Option<Rating>,
    pub owner: Option<String>,
    pub treatment: Option<Treatment>,
    pub status: Status,
    pub due_at: Option<i64>,
    pub acceptance: Option<Acceptance>,
    /// When a deviation was first seen for a pending or closed entry (grace runs).
    pub pending_since: Option<i64>,
    /// Start of the current open period, for the duration of exposure.
    pub deviating_since: Option<i64>,
    /// Consecutive evaluations without an affected host.
    pub clean_evaluations: u32,
    pub opened_at: Option<i64>,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
}

/// What happened to an entry, as its history keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Opened,
    Reopened,
    HostsChanged,
    Escalated,
    Lowered,
    Updated,
    Accepted,
    AcceptanceExpired,
    AcceptanceVoided,
    Closed,
}
snake_text!(Change, Created => "created", Opened => "opened", Reopened => "reopened", HostsChanged => "hosts_changed", Escalated => "escalated", Lowered => "lowered", Updated => "updated", Accepted => "accepted", AcceptanceExpired => "acceptance_expired", AcceptanceVoided => "acceptance_voided", Closed => "closed");

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskEvent {
    pub change: Change,
    pub at: i64,
    /// Who made the change: a person's name for manual actions, `custos` for the evidence.
    pub actor: String,
    pub detail: String,
}

/// The evidence's own actor name in histories.
pub const EVIDENCE_ACTOR: &str = "custos";

/// The scope of hosts that carry none of the register's scope tags (all
/// hosts when `[risk] scopes` is empty).
pub const FLEET_SCOPE: &str = "fleet";

/// The register scope of a host with `tags`: the first of `scopes` (in the
/// configured order) that the host carries, else [`FLEET_SCOPE`].
pub fn scope_of<'a>(tags: &[String], scopes: &'a [String]) -> &'a str {
    scopes.iter().find(|s| tags.contains(s)).map_or(FLEET_SCOPE, String::as_str)
}

/// An entry's new state with the events that led there. `discard` drops a
/// pending entry whose deviation vanished within its grace period.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub entry: RiskEntry,
    pub events: Vec<RiskEvent>,
    pub discard: bool,
}

/// How the register behaves: from `config.toml` `[risk]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskPolicy {
    pub matrix: Matrix,
    /// Seconds a deviation must persist before an entry opens (or reopens).
    pub grace_seconds: i64,
    /// Clean evaluations in a row before an evidence entry closes.
    pub close_after_clean: u32,
    /// Seconds from opening (or escalation) to the due date, per level.
    pub sla_seconds: [i64; 4],
    pub max_acceptance_seconds: i64,
    /// A share of affected hosts at or above this raises the likelihood one step.
    pub wide_share: f64,
    /// A share below this lowers it one step (with at least `narrow_min_hosts` in scope).
    pub narrow_share: f64,
    pub narrow_min_hosts: u32,
    /// A deviation open this long raises the likelihood one step.
    pub long_seconds: i64,
    /// Host tags that each make a register scope of their own, first match
    /// wins; hosts with none of them are in [`FLEET_SCOPE`]. Empty: one
    /// scope, the fleet.
    pub scopes: Vec<String>,
}

impl RiskPolicy {
    pub fn sla(&self, level: Level) -> i64 {
        self.sla_seconds[level as usize]
    }

    /// Whether evidence entries of `scope` are still kept: the fleet, or a
    /// configured scope.
    pub fn has_scope(&self, scope: &str) -> bool {
        scope == FLEET_SCOPE || self.scopes.iter().any(|s| s == scope)
    }
}

impl Default for RiskPolicy {
    fn default() -> Self {
        const DAY: i64 = 86_400;
        RiskPolicy {
            matrix: Matrix::new(MatrixKind::Iso27005),
            grace_seconds: 1800,
            close_after_clean: 3,
            sla_seconds: [180 * DAY, 90 * DAY, 30 * DAY, 7 * DAY],
            max_acceptance_seconds: 365 * DAY,
            wide_share: 0.5,
            narrow_share: 0.1,
            narrow_min_hosts: 10,
            long_seconds: 30 * DAY,
            scopes: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RiskError {
    #[error("{0}")]
    Invalid(String),
    #[error("risk {id} is {status}: {message}")]
    State { id: i64, status: Status, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_in_the_first_configured_scope_it_carries_else_in_the_fleet() {
        let scopes = vec!["server".to_string(), "laptop".to_string()];
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(scope_of(&tags(&["berlin", "laptop"]), &scopes), "laptop");
        assert_eq!(scope_of(&tags(&["laptop", "server"]), &scopes), "server", "configured order wins");
        assert_eq!(scope_of(&tags(&["berlin"]), &scopes), FLEET_SCOPE);
        assert_eq!(scope_of(&tags(&["server"]), &[]), FLEET_SCOPE, "no scopes: one fleet");
        let policy = RiskPolicy { scopes, ..RiskPolicy::default() };
        assert!(policy.has_scope("fleet") && policy.has_scope("laptop") && !policy.has_scope("kiosk"));
    }
}
