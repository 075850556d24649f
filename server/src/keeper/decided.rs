//! A stored check result decided under the policy: the agent's signed
//! status, replaced by the policy's verdict over the signed facts where the
//! policy has a rule (the verdict is `compliance::policy`'s; here it is
//! applied to the store's row). Both the API's views and the fleet cache decide through
//! here, so a result means the same wherever it is read.
//!
//! Invariant: facts that cannot be read make the result unknown with the
//! reason, never a pass.

use time::OffsetDateTime;

use crate::compliance::evaluate::CheckEvidence;
use crate::compliance::policy::{HostFacts, Policy};
use crate::store::StoreError;
use crate::store::queries::CheckStateRow;

/// Applies the policy's verdict on the row's check and facts
/// ([`Policy::decide_stored`]) to the row, keeping the agent's own status
/// beside it when the policy changed it.
pub fn decide(rules: &Policy, row: &mut CheckStateRow, host: &HostFacts) {
    let Some(d) = rules.decide_stored(&row.check_id, row.status, row.facts.as_deref(), host) else {
        return;
    };
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
    use custos_proto::evidence::CheckStatus;

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
