//! Control evaluation: from the latest evidence of every host to the state
//! of every catalog control. Pure: no I/O, the time is a parameter.
//!
//! Per host and requirement the standing is one of: satisfied (`passing`),
//! not satisfied (`failing`), unknown (the agent could not tell), no
//! evidence, stale (evidence older than the check's interval times a
//! factor), excepted (an approved exception in force), or not applicable
//! (out of the host's scope, or every check reports not applicable).
//!
//! Invariants: missing or stale evidence is its own bucket, never passing;
//! an exception is listed as such, never as passing; every catalog control
//! is evaluated, so controls without any technical evidence are visible as
//! `not_assessed`.
//!
//! One file per concept: `settings.rs` (staleness, exceptions and scopes an
//! evaluation runs under), `result.rs` (an evaluation: each control's
//! buckets, state and deviations), `from_evidence.rs` (evaluating the
//! hosts' latest evidence), `standings.rs` (each host's standing on each
//! requirement, for the change log), `from_log.rs` (an evaluation rebuilt
//! from the change log).

mod from_evidence;
mod from_log;
mod result;
mod settings;
mod standings;
#[cfg(test)]
mod test_support;

use custos_proto::evidence::CheckStatus;
use time::OffsetDateTime;

pub use from_evidence::evaluate;
pub use from_log::{LoggedStanding, evaluation_from_log};
pub use result::{ControlEvaluation, ControlState, Deviation, Evaluation};
pub use settings::{AppliesFn, AppliesTo, EvaluationSettings};
pub use standings::{
    REQUIREMENT_STATES, RequirementStanding, Standings, requirement_standings, requirement_state_code,
    standing_detail, standings,
};

#[derive(Debug, Clone, PartialEq)]
pub struct CheckEvidence {
    pub check_id: String,
    pub status: CheckStatus,
    pub collected_at: OffsetDateTime,
    pub reason: Option<String>,
    /// The agent's record that carried this result.
    pub record_seq: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostEvidence {
    pub agent_id: String,
    pub display_name: String,
    /// Host-group tags (assigned by the server), for scopes.
    pub tags: Vec<String>,
    pub checks: Vec<CheckEvidence>,
}
