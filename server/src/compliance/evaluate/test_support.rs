//! Hosts, a time and settings shared by the evaluation's tests.

use custos_proto::evidence::CheckStatus;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::{CheckEvidence, ControlEvaluation, Evaluation, EvaluationSettings, HostEvidence};

pub(super) const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

pub(super) fn host(id: &str, checks: &[(&str, CheckStatus, i64)]) -> HostEvidence {
    HostEvidence {
        agent_id: id.into(),
        display_name: id.into(),
        tags: Vec::new(),
        checks: checks
            .iter()
            .map(|(c, s, hours_ago)| CheckEvidence {
                check_id: c.to_string(),
                status: *s,
                collected_at: NOW - Duration::hours(*hours_ago),
                reason: None,
                record_seq: 1,
            })
            .collect(),
    }
}

pub(super) fn control<'a>(e: &'a Evaluation, id: &str) -> &'a ControlEvaluation {
    e.controls.iter().find(|c| c.control_id == id).unwrap()
}

pub(super) fn policy() -> EvaluationSettings {
    EvaluationSettings::stale_after(Duration::hours(48))
}
