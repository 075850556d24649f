//! Evaluating the hosts' latest evidence at a time: each host's standing
//! on each check, then on each control (its worst standing on the control's
//! checks, unless the control is out of its scope or excepted).
//!
//! Checks are indexed densely once per evaluation, so a host's standing on
//! a check is an array read: fleets of 100,000 hosts are evaluated in well
//! under a second.

use std::collections::{HashMap, HashSet};

use custos_proto::evidence::CheckStatus;
use time::OffsetDateTime;

use super::standings::{CODE_EXCEPTED, CODE_NOT_APPLICABLE};
use super::{
    CheckEvidence, ControlEvaluation, Deviation, Evaluation, EvaluationSettings, HostEvidence, Standings,
};
use crate::compliance::catalog::Catalog;

/// A host's standing on one check, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    NotApplicable,
    Pass,
    Stale,
    Missing,
    Unknown,
    Fail,
}

/// A result's standing at `now`: stale evidence is stale whatever it said.
fn standing(e: &CheckEvidence, now: OffsetDateTime, policy: &EvaluationSettings) -> Standing {
    if !policy.is_fresh(e, now) {
        return Standing::Stale;
    }
    match e.status {
        CheckStatus::Pass => Standing::Pass,
        CheckStatus::Fail => Standing::Fail,
        CheckStatus::Unknown | CheckStatus::Error => Standing::Unknown,
        CheckStatus::NotApplicable => Standing::NotApplicable,
    }
}

/// The catalog's mapped checks as dense indices, and each control's checks
/// as indices into them: evaluation then reads a host's standing on a check
/// from an array instead of searching its results by name.
struct CheckIndex<'c> {
    index: HashMap<&'c str, usize>,
    /// Per catalog control (same order), its checks' indices.
    controls: Vec<Vec<usize>>,
}

impl<'c> CheckIndex<'c> {
    fn new(catalog: &'c Catalog) -> Self {
        let mut index: HashMap<&'c str, usize> = HashMap::new();
        let controls = catalog
            .controls()
            .iter()
            .map(|control| {
                catalog
                    .checks_for_control(&control.id)
                    .iter()
                    .map(|check| {
                        let next = index.len();
                        *index.entry(check.as_str()).or_insert(next)
                    })
                    .collect()
            })
            .collect();
        CheckIndex { index, controls }
    }

    /// A host's standing on every indexed check (missing where it sent none;
    /// the first result counts when a check appears twice).
    fn standings(
        &self,
        host: &HostEvidence,
        now: OffsetDateTime,
        policy: &EvaluationSettings,
    ) -> Vec<Standing> {
        let mut out = vec![Standing::Missing; self.index.len()];
        let mut seen = vec![false; self.index.len()];
        for e in &host.checks {
            if let Some(&i) = self.index.get(e.check_id.as_str())
                && !seen[i]
            {
                seen[i] = true;
                out[i] = standing(e, now, policy);
            }
        }
        out
    }
}

/// The hosts of one evaluation with what is decided once for every
/// control: each host's standing on every indexed check, and the
/// exceptions in force.
struct Fleet<'a> {
    hosts: &'a [HostEvidence],
    standings: Vec<Vec<Standing>>,
    /// Exceptions in force now, looked up without building owned keys.
    excepted: HashSet<(&'a str, &'a str)>,
    policy: &'a EvaluationSettings,
}

/// Every catalog control's state from the hosts' latest evidence at `now`:
/// each host placed in one bucket per control, the deviations listed, and
/// each host's standing code kept for [`Standings`].
pub fn evaluate(
    catalog: &Catalog,
    hosts: &[HostEvidence],
    now: OffsetDateTime,
    policy: &EvaluationSettings,
) -> Evaluation {
    let index = CheckIndex::new(catalog);
    let fleet = Fleet {
        hosts,
        standings: hosts.iter().map(|h| index.standings(h, now, policy)).collect(),
        excepted: policy
            .exceptions
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|((agent, control), _)| (agent.as_str(), control.as_str()))
            .collect(),
        policy,
    };
    let mut controls = Vec::with_capacity(catalog.controls().len());
    let mut deviations = Vec::new();
    let supported = index.controls.iter().filter(|c| !c.is_empty()).count();
    let mut codes = vec![vec![Standings::NONE; supported]; hosts.len()];
    let mut r = 0;
    for (control, check_idx) in catalog.controls().iter().zip(&index.controls) {
        let checks = catalog.checks_for_control(&control.id).to_vec();
        let mut ev = ControlEvaluation::empty(control, checks.clone());
        if checks.is_empty() || hosts.is_empty() {
            controls.push(ev);
            continue;
        }
        let failing_by_check = fleet.place(&mut ev, check_idx, &mut codes, r);
        r += 1;
        ev.settle();
        deviations.extend(deviations_of(&control.id, &checks, failing_by_check));
        controls.push(ev);
    }
    Evaluation { controls, deviations, codes }
}

impl Fleet<'_> {
    /// Puts each host in one bucket of `ev` (out of scope, excepted, or its
    /// worst standing on the control's checks `check_idx`) and its code in
    /// column `r` of `codes`; returns, per check, the hosts failing it.
    fn place(
        &self,
        ev: &mut ControlEvaluation,
        check_idx: &[usize],
        codes: &mut [Vec<u8>],
        r: usize,
    ) -> Vec<Vec<String>> {
        let mut failing_by_check: Vec<Vec<String>> = vec![Vec::new(); check_idx.len()];
        for (h, (host, host_standings)) in self.hosts.iter().zip(&self.standings).enumerate() {
            if !self.policy.applies(&ev.control_id, &host.tags) {
                ev.not_applicable.push(host.agent_id.clone());
                codes[h][r] = CODE_NOT_APPLICABLE;
                continue;
            }
            if !self.excepted.is_empty()
                && self.excepted.contains(&(host.agent_id.as_str(), ev.control_id.as_str()))
            {
                ev.excepted.push(host.agent_id.clone());
                codes[h][r] = CODE_EXCEPTED;
                continue;
            }
            let mut worst = Standing::NotApplicable;
            for (k, &i) in check_idx.iter().enumerate() {
                let s = host_standings[i];
                if s == Standing::Fail {
                    failing_by_check[k].push(host.agent_id.clone());
                }
                worst = worst.max(s);
            }
            let (bucket, code) = match worst {
                Standing::Pass => (&mut ev.passing, 0),
                Standing::Fail => (&mut ev.failing, 1),
                Standing::Unknown => (&mut ev.unknown, 2),
                Standing::Missing => (&mut ev.without_evidence, 3),
                Standing::Stale => (&mut ev.stale, 4),
                Standing::NotApplicable => (&mut ev.not_applicable, CODE_NOT_APPLICABLE),
            };
            bucket.push(host.agent_id.clone());
            codes[h][r] = code;
        }
        failing_by_check
    }
}

/// One control's deviations: each check some host fails, with those hosts.
fn deviations_of(control_id: &str, checks: &[String], failing_by_check: Vec<Vec<String>>) -> Vec<Deviation> {
    // Checks in name order, as the deviations have always been listed.
    let mut by_check: Vec<(&String, Vec<String>)> =
        checks.iter().zip(failing_by_check).filter(|(_, h)| !h.is_empty()).collect();
    by_check.sort_by(|a, b| a.0.cmp(b.0));
    by_check
        .into_iter()
        .map(|(check, failing_hosts)| Deviation {
            control_id: control_id.to_string(),
            check_id: check.clone(),
            failing_hosts,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::Duration;

    use super::*;
    use crate::compliance::evaluate::test_support::{NOW, control, host, policy};
    use crate::compliance::evaluate::{AppliesTo, ControlState};

    #[test]
    fn mixed_fleet_buckets_and_states() {
        use CheckStatus::*;
        let cat = Catalog::builtin().unwrap();
        let hosts = vec![
            host("pass", &[("firewall", Pass, 1), ("disk_encryption", Pass, 1)]),
            host("fail", &[("firewall", Fail, 1), ("disk_encryption", Pass, 1)]),
            host("unknown", &[("firewall", Unknown, 1), ("disk_encryption", Pass, 1)]),
            host("stale", &[("firewall", Pass, 100), ("disk_encryption", Pass, 100)]),
            host("silent", &[]),
        ];
        let e = evaluate(&cat, &hosts, NOW, &policy());
        // Supported by the firewall check alone.
        let a820 = control(&e, "bsi-grundschutz:2023/SYS.1.1.A19");
        assert_eq!(a820.passing, ["pass"]);
        assert_eq!(a820.failing, ["fail"]);
        assert_eq!(a820.unknown, ["unknown"]);
        assert_eq!(a820.without_evidence, ["silent"]);
        assert_eq!(a820.stale, ["stale"]);
        assert_eq!(a820.state, ControlState::Deviating);
        // A.8.20 is supported by the SSH server check too, which no host reported:
        // the host that passes the firewall check lacks part of the evidence.
        let iso820 = control(&e, "iso27001:2022/A.8.20");
        assert_eq!(
            iso820.without_evidence,
            ["pass", "stale", "silent"],
            "missing SSH evidence is worse than stale"
        );
        assert_eq!(iso820.unknown, ["unknown"]);
        assert_eq!(iso820.failing, ["fail"]);
        // A.8.1 needs firewall and disk encryption: worst status counts once per host.
        let a81 = control(&e, "iso27001:2022/A.8.1");
        assert_eq!(a81.failing, ["fail"]);
        assert_eq!(a81.in_scope(), 5);
        // No check maps to A.6.3.
        assert_eq!(control(&e, "iso27001:2022/A.6.3").state, ControlState::NotAssessed);
        assert_eq!(e.controls.len(), cat.controls().len());
        assert!(e.deviations.contains(&Deviation {
            control_id: "iso27001:2022/A.8.20".into(),
            check_id: "firewall".into(),
            failing_hosts: vec!["fail".into()],
        }));
    }

    #[test]
    fn stale_and_missing_evidence_is_never_effective() {
        use CheckStatus::*;
        let cat = Catalog::builtin().unwrap();
        let e = evaluate(&cat, &[host("a", &[("antivirus", Pass, 49)])], NOW, &policy());
        assert_eq!(control(&e, "iso27001:2022/A.8.7").state, ControlState::Unknown);
        let e = evaluate(&cat, &[host("a", &[("antivirus", Pass, 47)])], NOW, &policy());
        assert_eq!(control(&e, "iso27001:2022/A.8.7").state, ControlState::Effective);
        let e = evaluate(&cat, &[], NOW, &policy());
        assert_eq!(control(&e, "iso27001:2022/A.8.7").state, ControlState::NotAssessed);
        let e = evaluate(&cat, &[host("a", &[("antivirus", NotApplicable, 1)])], NOW, &policy());
        let a87 = control(&e, "iso27001:2022/A.8.7");
        assert_eq!((a87.state, a87.not_applicable.len()), (ControlState::NotAssessed, 1));
    }

    #[test]
    fn exceptions_and_scopes_take_hosts_out_of_the_count_but_never_pass_them() {
        use CheckStatus::*;
        let cat = Catalog::builtin().unwrap();
        let id = "bsi-grundschutz:2023/SYS.1.1.A19";
        let mut p = policy();
        p.exceptions.insert(("a".into(), id.into()), NOW + Duration::days(1));
        p.exceptions.insert(("b".into(), id.into()), NOW - Duration::seconds(1));
        let hosts = [
            host("a", &[("firewall", Fail, 1)]),
            host("b", &[("firewall", Fail, 1)]),
            host("c", &[("firewall", Pass, 1)]),
        ];
        let e = evaluate(&cat, &hosts, NOW, &p);
        let c = control(&e, id);
        assert_eq!(c.excepted, ["a"]);
        assert_eq!(c.failing, ["b"], "an expired exception no longer counts");
        assert_eq!((c.in_scope(), c.effectiveness()), (2, Some(0.5)));
        assert!(
            !e.deviations.iter().any(|d| d.control_id == id && d.failing_hosts.contains(&"a".to_string()))
        );
        // A scope: SYS.1.1 (servers) applies only to hosts tagged server.
        p.exceptions.clear();
        p.scope = Some(AppliesTo(Arc::new(|control: &str, tags: &[String]| {
            !control.starts_with("bsi-grundschutz:2023/SYS.1.1") || tags.iter().any(|t| t == "server")
        })));
        let mut server = host("s", &[("firewall", Fail, 1)]);
        server.tags = vec!["server".into()];
        let e = evaluate(&cat, &[server, host("laptop", &[("firewall", Fail, 1)])], NOW, &p);
        let c = control(&e, id);
        assert_eq!(
            (c.failing.as_slice(), c.not_applicable.as_slice()),
            (["s".to_string()].as_slice(), ["laptop".to_string()].as_slice())
        );
        // Other controls still apply to the laptop.
        assert!(control(&e, "iso27001:2022/A.8.20").failing.contains(&"laptop".to_string()));
    }
}
