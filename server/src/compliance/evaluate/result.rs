//! An evaluation: per catalog control its hosts in buckets (each host in
//! exactly one), its state and effectiveness, and the deviations across
//! the fleet.
//!
//! Invariants: missing, stale and excepted hosts are never passing; a
//! control is effective only when every host in scope passes with current
//! evidence.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlState {
    /// Some host fails a mapped check.
    Deviating,
    /// No failures, but some host is unknown or lacks current evidence.
    Unknown,
    /// Every host passes every mapped check with current evidence.
    Effective,
    /// No check maps to the control, or there are no hosts.
    NotAssessed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlEvaluation {
    pub control_id: String,
    pub framework: String,
    pub title: String,
    pub checks: Vec<String>,
    pub state: ControlState,
    /// Agent ids, each host in exactly one bucket: its worst status across
    /// the control's checks (fail > unknown/error > missing/stale > pass).
    pub passing: Vec<String>,
    pub failing: Vec<String>,
    pub unknown: Vec<String>,
    /// No evidence from the host for some mapped check.
    pub without_evidence: Vec<String>,
    /// Evidence older than the check's staleness limit.
    pub stale: Vec<String>,
    /// An approved exception is in force for the host.
    pub excepted: Vec<String>,
    /// Out of the host's scope, or every mapped check is `not_applicable`.
    pub not_applicable: Vec<String>,
    /// Satisfied / in scope (`None`: no host in scope).
    pub effectiveness: Option<f64>,
}

impl ControlEvaluation {
    /// The control with no host in any bucket yet.
    pub(super) fn empty(
        control: &crate::compliance::catalog::Control,
        checks: Vec<String>,
    ) -> ControlEvaluation {
        ControlEvaluation {
            control_id: control.id.clone(),
            framework: control.framework().to_string(),
            title: control.title.clone(),
            checks,
            state: ControlState::NotAssessed,
            passing: Vec::new(),
            failing: Vec::new(),
            unknown: Vec::new(),
            without_evidence: Vec::new(),
            stale: Vec::new(),
            excepted: Vec::new(),
            not_applicable: Vec::new(),
            effectiveness: None,
        }
    }

    /// Sets the state and effectiveness from the filled buckets.
    pub(super) fn settle(&mut self) {
        self.state = if !self.failing.is_empty() {
            ControlState::Deviating
        } else if !self.unknown.is_empty() || !self.without_evidence.is_empty() || !self.stale.is_empty() {
            ControlState::Unknown
        } else if self.passing.is_empty() {
            // Every host reports the check as not applicable: nothing was assessed.
            ControlState::NotAssessed
        } else {
            ControlState::Effective
        };
        self.effectiveness = self.effectiveness();
    }

    /// Hosts the control applies to: every bucket but not-applicable and excepted.
    pub fn in_scope(&self) -> usize {
        self.passing.len()
            + self.failing.len()
            + self.unknown.len()
            + self.without_evidence.len()
            + self.stale.len()
    }

    /// Satisfied / in scope; `None` when no host is in scope.
    pub fn effectiveness(&self) -> Option<f64> {
        let n = self.in_scope();
        (n > 0).then(|| self.passing.len() as f64 / n as f64)
    }
}

/// One deviating (control, check) across the fleet.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Deviation {
    pub control_id: String,
    pub check_id: String,
    pub failing_hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub controls: Vec<ControlEvaluation>,
    pub deviations: Vec<Deviation>,
    /// Per evaluated host (in order), its standing code on each control that
    /// some check supports (in catalog order): what
    /// [`standings`](fn@super::standings) reads, kept while evaluating
    /// because rebuilding it from the buckets by agent id cost seconds at
    /// fleet scale. Empty for evaluations rebuilt from the log.
    #[serde(skip)]
    pub(super) codes: Vec<Vec<u8>>,
}
