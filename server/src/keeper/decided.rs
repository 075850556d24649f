//! A stored check result decided under the policy: the agent's signed
//! status, replaced by the policy's rule over the signed facts where the
//! policy has one. Both the API's views and the fleet cache decide through
//! here, so a result means the same wherever it is read.
//!
//! Invariant: facts that cannot be read make the result unknown with the
//! reason, never a pass.

use custos_proto::evidence::CheckStatus;
use custos_proto::evidence::statement::Facts;
use time::OffsetDateTime;

use crate::compliance::evaluate::CheckEvidence;
use crate::compliance::policy::{HostFacts, Policy};
use crate::store::StoreError;
use crate::store::queries::CheckStateRow;

/// Applies the policy's rule for the row's check to its facts. Facts that
/// are missing or not an object leave the rule nothing to read: unknown
/// when a rule exists, never a pass.
pub fn decide(rules: &Policy, row: &mut CheckStateRow, host: &HostFacts) {
    if rules.rule(&row.check_id).is_none() {
        return;
    }
    let facts: Facts = match row.facts.as_deref().map(serde_json::from_str::<Facts>) {
        Some(Ok(f)) => f,
        // Say so rather than judge an empty map: "no such key" would blame
        // a fact that is there.
        Some(Err(e)) => {
            row.by_policy = true;
            if row.status != CheckStatus::Unknown {
                row.agent_status = Some(row.status);
                row.status = CheckStatus::Unknown;
            }
            row.reason = Some(format!("the stored facts of {} cannot be read: {e}", row.check_id));
            return;
        }
        None => Facts::new(),
    };
    let d = rules.decide(&row.check_id, row.status, &facts, host);
    row.by_policy = d.by_rule;
    if d.status != row.status {
        row.agent_status = Some(row.status);
        row.status = d.status;
    }
    if let Some(reason) = d.reason {
        row.reason = Some(reason);
    }
}

/// A decided result as evaluation reads it.
pub fn check_evidence(c: CheckStateRow) -> Result<CheckEvidence, StoreError> {
    let collected_at = OffsetDateTime::from_unix_timestamp(c.collected_at)
        .map_err(|e| StoreError::Corrupt(format!("collected_at {}: {e}", c.collected_at)))?;
    Ok(CheckEvidence {
        check_id: c.check_id,
        status: c.status,
        collected_at,
        reason: c.reason,
        record_seq: c.record_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_the_policy_cannot_read_give_unknown_saying_so() {
        let rules = Policy::builtin().unwrap();
        let deep = format!("{{\"secure_boot\": true, \"uefi\": {}true{}}}", "[".repeat(200), "]".repeat(200));
        let mut row = CheckStateRow {
            agent_id: "a1".into(),
            check_id: "secure_boot".into(),
            status: CheckStatus::Pass,
            backend: "efivars".into(),
            reason: None,
            collected_at: 0,
            record_seq: 1,
            since: 0,
            facts: Some(deep),
            agent_status: None,
            by_policy: false,
        };
        decide(&rules, &mut row, &HostFacts::default());
        assert_eq!((row.status, row.agent_status), (CheckStatus::Unknown, Some(CheckStatus::Pass)));
        let reason = row.reason.unwrap();
        assert!(reason.contains("cannot be read") && reason.contains("recursion limit"), "{reason}");
        assert!(!reason.contains("No such key"), "{reason}");
    }
}
