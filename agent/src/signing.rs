//! Signs the record of one collection: the in-toto Statement of its check
//! results in a DSSE envelope, at the agent's chain position.
//!
//! Invariant: a signed payload never exceeds the limit the server enforces
//! (`MAX_PAYLOAD_BYTES`): a record refused for its size would be refused for
//! good and break the chain, so the largest checks give up their facts and
//! become `unknown`, saying why, until it fits.

use custos_proto::evidence::{
    CheckResult, CheckStatus, Envelope, EvidencePredicate, HostInfo, MAX_PAYLOAD_BYTES, Observation,
    Statement, sign_envelope,
};
use ed25519_dalek::SigningKey;

use crate::host_info::AGENT_VERSION;

use crate::spool::ChainTip;

/// Signs one record for the chain position `tip`.
pub fn sign_record(
    key: &SigningKey,
    agent_id: &str,
    tip: &ChainTip,
    collected_at: &str,
    host: HostInfo,
    checks: Vec<CheckResult>,
) -> Envelope {
    let predicate = EvidencePredicate {
        agent_id: agent_id.to_string(),
        seq: tip.seq,
        prev: tip.prev.map(hex::encode),
        collected_at: collected_at.to_string(),
        agent_version: AGENT_VERSION.to_string(),
        host,
        gap: tip.gap.clone(),
        checks,
    };
    let statement = fit(Statement::new(predicate, key.verifying_key().as_bytes()), MAX_PAYLOAD_BYTES);
    sign_envelope(statement.to_payload(), key)
}

/// Drops the facts of the largest checks, one at a time, until the payload
/// is at most `limit` bytes; each such check becomes `unknown`.
fn fit(mut statement: Statement, limit: usize) -> Statement {
    loop {
        let size = statement.to_payload().len();
        if size <= limit {
            return statement;
        }
        let checks = &mut statement.predicate.checks;
        let weight = |c: &CheckResult| serde_json::to_vec(c).map_or(0, |v| v.len());
        let Some(largest) =
            checks.iter().enumerate().filter(|(_, c)| !is_emptied(c)).max_by_key(|(_, c)| weight(c))
        else {
            // Nothing left to shed: the server refuses it and says why.
            return statement;
        };
        let i = largest.0;
        let bytes = weight(&checks[i]);
        tracing::warn!(check = checks[i].id, bytes, "check too large for a record; sent as unknown");
        let c = &mut checks[i];
        c.status = CheckStatus::Unknown;
        c.facts = Default::default();
        c.observation =
            Observation { sha256: std::mem::take(&mut c.observation.sha256), excerpt: String::new() };
        c.reason = Some(format!(
            "its result was {bytes} bytes; a record carries at most {limit} bytes in all, so its facts were left out"
        ));
    }
}

fn is_emptied(c: &CheckResult) -> bool {
    c.status == CheckStatus::Unknown && c.facts.is_empty() && c.observation.excerpt.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, fact_bytes: usize) -> CheckResult {
        let mut facts = serde_json::Map::new();
        facts.insert("packages".into(), "x".repeat(fact_bytes).into());
        CheckResult {
            id: id.into(),
            status: CheckStatus::Pass,
            backend: "test".into(),
            facts,
            observation: Observation { sha256: "ab".repeat(32), excerpt: "y".repeat(100) },
            reason: None,
        }
    }

    #[test]
    fn the_largest_checks_give_up_their_facts_until_the_record_fits() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let tip = ChainTip { seq: 1, prev: None, gap: None };
        let checks =
            vec![check("firewall", 1_000), check("software_inventory", 300_000), check("os_patches", 2_000)];
        let env = sign_record(&key, "a1", &tip, "2026-12-07T10:00:00Z", HostInfo::default(), checks);
        assert!(env.payload.len() <= MAX_PAYLOAD_BYTES, "{} bytes", env.payload.len());
        let st = Statement::from_payload(&env.payload).unwrap();
        let by_id = |id: &str| st.predicate.checks.iter().find(|c| c.id == id).unwrap().clone();
        let inv = by_id("software_inventory");
        assert_eq!(inv.status, CheckStatus::Unknown, "never a pass without its facts");
        assert!(inv.facts.is_empty());
        assert!(inv.reason.unwrap().contains("bytes"));
        assert_eq!(inv.observation.sha256, "ab".repeat(32), "the digest of what was observed stays");
        // The small ones are untouched.
        assert_eq!(by_id("firewall").status, CheckStatus::Pass);
        assert_eq!(by_id("os_patches").facts["packages"].as_str().unwrap().len(), 2_000);
        // A record within the limit is signed as it is.
        let small = vec![check("firewall", 10)];
        let env = sign_record(&key, "a1", &tip, "2026-12-07T10:00:00Z", HostInfo::default(), small.clone());
        assert_eq!(Statement::from_payload(&env.payload).unwrap().predicate.checks, small);
    }
}
