//! Each host's standing on each requirement, for the change log: the
//! compact codes an evaluation keeps while it runs (or rebuilds from its
//! buckets), and a standing's detail (the newest record behind it, each
//! check's status).

use std::collections::{BTreeMap, HashMap};

use super::{ControlEvaluation, Evaluation, HostEvidence};

/// A host's standing on one requirement, for the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementStanding {
    pub state: &'static str,
    /// The newest record behind the requirement's checks on this host.
    pub record_seq: Option<u64>,
    /// Each of the requirement's checks with its status on this host
    /// (`missing` when the host never reported it).
    pub checks: BTreeMap<String, &'static str>,
}

/// The standings a host can have on a requirement, by code.
pub const REQUIREMENT_STATES: [&str; 7] =
    ["satisfied", "not_satisfied", "unknown", "no_evidence", "stale", "excepted", "not_applicable"];
pub(super) const CODE_EXCEPTED: u8 = 5;
pub(super) const CODE_NOT_APPLICABLE: u8 = 6;

/// The code of a standing named in [`REQUIREMENT_STATES`].
pub fn requirement_state_code(state: &str) -> Option<u8> {
    REQUIREMENT_STATES.iter().position(|s| *s == state).map(|p| p as u8)
}

/// Every host's standing on every requirement that some check supports, in
/// compact form: `codes[h][r]` is the index into [`REQUIREMENT_STATES`] of
/// host `h` (in the order of the evaluated hosts) on `requirements[r]`.
#[derive(Debug)]
pub struct Standings<'e> {
    pub requirements: Vec<&'e str>,
    /// Per requirement, its checks (the evaluation's own lists).
    pub checks: Vec<&'e [String]>,
    pub codes: Vec<Vec<u8>>,
}

impl Standings<'_> {
    /// No standing: the host was not in the evaluation of that requirement.
    pub const NONE: u8 = u8::MAX;
}

/// [`Standings`] of `hosts` from their evaluation (the hosts it evaluated,
/// in the same order).
pub fn standings<'e>(evaluation: &'e Evaluation, hosts: &[HostEvidence]) -> Standings<'e> {
    let supported: Vec<&ControlEvaluation> =
        evaluation.controls.iter().filter(|c| !c.checks.is_empty()).collect();
    // The codes kept while evaluating, unless the controls were filtered
    // since (other columns) or the hosts differ in number.
    let kept = evaluation.codes.len() == hosts.len()
        && evaluation.codes.first().is_none_or(|c| c.len() == supported.len());
    let codes = if kept {
        evaluation.codes.clone()
    } else {
        // Rebuilt from the buckets by agent id.
        let position: HashMap<&str, usize> =
            hosts.iter().enumerate().map(|(i, h)| (h.agent_id.as_str(), i)).collect();
        let mut codes = vec![vec![Standings::NONE; supported.len()]; hosts.len()];
        for (r, c) in supported.iter().enumerate() {
            let buckets: [&Vec<String>; 7] = [
                &c.passing,
                &c.failing,
                &c.unknown,
                &c.without_evidence,
                &c.stale,
                &c.excepted,
                &c.not_applicable,
            ];
            for (code, agents) in buckets.into_iter().enumerate() {
                for agent in agents {
                    if let Some(&h) = position.get(agent.as_str()) {
                        codes[h][r] = code as u8;
                    }
                }
            }
        }
        codes
    };
    Standings {
        requirements: supported.iter().map(|c| c.control_id.as_str()).collect(),
        checks: supported.iter().map(|c| c.checks.as_slice()).collect(),
        codes,
    }
}

/// What a host's evidence says on a requirement's checks: the newest record
/// behind them and each check's status (`missing` when never reported).
pub fn standing_detail(host: &HostEvidence, checks: &[String], state: &'static str) -> RequirementStanding {
    let record_seq = host.checks.iter().filter(|e| checks.contains(&e.check_id)).map(|e| e.record_seq).max();
    let checks = checks
        .iter()
        .map(|check| {
            let status =
                host.checks.iter().find(|e| e.check_id == *check).map_or("missing", |e| e.status.as_str());
            (check.clone(), status)
        })
        .collect();
    RequirementStanding { state, record_seq, checks }
}

/// Every host's standing on every requirement that some check supports,
/// keyed by (agent id, control id), with its detail. Meant for tests and
/// small fleets: the keeper diffs the compact [`Standings`] instead.
pub fn requirement_standings(
    evaluation: &Evaluation,
    hosts: &[HostEvidence],
) -> BTreeMap<(String, String), RequirementStanding> {
    let s = standings(evaluation, hosts);
    let mut out = BTreeMap::new();
    for (h, host) in hosts.iter().enumerate() {
        for (r, &code) in s.codes[h].iter().enumerate() {
            if code == Standings::NONE {
                continue;
            }
            let detail = standing_detail(host, s.checks[r], REQUIREMENT_STATES[code as usize]);
            out.insert((host.agent_id.clone(), s.requirements[r].to_string()), detail);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use custos_proto::evidence::CheckStatus;
    use time::Duration;

    use super::*;
    use crate::compliance::catalog::Catalog;
    use crate::compliance::evaluate::test_support::{NOW, host, policy};
    use crate::compliance::evaluate::{AppliesTo, evaluate};

    #[test]
    fn standings_kept_while_evaluating_equal_those_rebuilt_from_the_buckets() {
        use CheckStatus::*;
        let cat = Catalog::builtin().unwrap();
        let mut p = policy();
        p.exceptions.insert(("b".into(), "iso27001:2022/A.8.20".into()), NOW + Duration::days(1));
        p.scope = Some(AppliesTo(Arc::new(|control: &str, tags: &[String]| {
            !control.starts_with("bsi-grundschutz:2023/SYS.1.1") || tags.iter().any(|t| t == "server")
        })));
        let mut server = host("s", &[("firewall", Pass, 1), ("ssh_server", Fail, 1)]);
        server.tags = vec!["server".into()];
        let hosts = vec![
            host("a", &[("firewall", Fail, 1), ("antivirus", NotApplicable, 1)]),
            host("b", &[("firewall", Pass, 100), ("disk_encryption", Unknown, 1)]),
            host("c", &[]),
            server,
        ];
        let e = evaluate(&cat, &hosts, NOW, &p);
        let kept = standings(&e, &hosts);
        assert_eq!(kept.codes.len(), 4);
        let mut rebuilt = e.clone();
        rebuilt.codes.clear();
        assert_eq!(kept.codes, standings(&rebuilt, &hosts).codes);
        assert!(kept.codes.iter().flatten().all(|c| (*c as usize) < REQUIREMENT_STATES.len()));
        // Filtered controls: the kept codes no longer fit and are not used.
        let mut filtered = e.clone();
        filtered.controls.retain(|c| c.framework == "iso27001:2022");
        let s = standings(&filtered, &hosts);
        assert_eq!(s.requirements.len(), s.codes[0].len());
    }
}
