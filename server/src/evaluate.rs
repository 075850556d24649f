//! Control evaluation: from the latest evidence of every host to the state
//! of every catalog control. Pure: no I/O, the time is a parameter.
//!
//! Invariants: missing or stale evidence is its own bucket, never passing;
//! every catalog control is evaluated, so controls without any technical
//! evidence are visible as `not_assessed`.

use std::collections::BTreeMap;

use custos_proto::evidence::CheckStatus;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::catalog::Catalog;

#[derive(Debug, Clone, PartialEq)]
pub struct CheckEvidence {
    pub check_id: String,
    pub status: CheckStatus,
    pub collected_at: OffsetDateTime,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostEvidence {
    pub agent_id: String,
    pub display_name: String,
    pub checks: Vec<CheckEvidence>,
}

#[derive(Debug, Clone)]
pub struct EvaluationPolicy {
    /// Evidence older than this counts as missing.
    pub stale_after: Duration,
}

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
    pub without_evidence: Vec<String>,
    /// Hosts where every mapped check is `not_applicable`.
    pub not_applicable: Vec<String>,
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
}

/// A host's standing on one check, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    NotApplicable,
    Pass,
    Missing,
    Unknown,
    Fail,
}

fn standing(host: &HostEvidence, check: &str, now: OffsetDateTime, policy: &EvaluationPolicy) -> Standing {
    let Some(e) = host.checks.iter().find(|c| c.check_id == check) else {
        return Standing::Missing;
    };
    if now - e.collected_at > policy.stale_after {
        return Standing::Missing;
    }
    match e.status {
        CheckStatus::Pass => Standing::Pass,
        CheckStatus::Fail => Standing::Fail,
        CheckStatus::Unknown | CheckStatus::Error => Standing::Unknown,
        CheckStatus::NotApplicable => Standing::NotApplicable,
    }
}

pub fn evaluate(
    catalog: &Catalog,
    hosts: &[HostEvidence],
    now: OffsetDateTime,
    policy: &EvaluationPolicy,
) -> Evaluation {
    let mut controls = Vec::with_capacity(catalog.controls().len());
    let mut deviations = Vec::new();
    for control in catalog.controls() {
        let checks = catalog.checks_for_control(&control.id).to_vec();
        let mut ev = ControlEvaluation {
            control_id: control.id.clone(),
            framework: control.framework().to_string(),
            title: control.title.clone(),
            checks: checks.clone(),
            state: ControlState::NotAssessed,
            passing: Vec::new(),
            failing: Vec::new(),
            unknown: Vec::new(),
            without_evidence: Vec::new(),
            not_applicable: Vec::new(),
        };
        if checks.is_empty() || hosts.is_empty() {
            controls.push(ev);
            continue;
        }
        let mut failing_by_check: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for host in hosts {
            let mut worst = Standing::NotApplicable;
            for check in &checks {
                let s = standing(host, check, now, policy);
                if s == Standing::Fail {
                    failing_by_check.entry(check).or_default().push(host.agent_id.clone());
                }
                worst = worst.max(s);
            }
            let bucket = match worst {
                Standing::Pass => &mut ev.passing,
                Standing::Fail => &mut ev.failing,
                Standing::Unknown => &mut ev.unknown,
                Standing::Missing => &mut ev.without_evidence,
                Standing::NotApplicable => &mut ev.not_applicable,
            };
            bucket.push(host.agent_id.clone());
        }
        ev.state = if !ev.failing.is_empty() {
            ControlState::Deviating
        } else if !ev.unknown.is_empty() || !ev.without_evidence.is_empty() {
            ControlState::Unknown
        } else if ev.passing.is_empty() {
            // Every host reports the check as not applicable: nothing was assessed.
            ControlState::NotAssessed
        } else {
            ControlState::Effective
        };
        for (check, failing_hosts) in failing_by_check {
            deviations.push(Deviation {
                control_id: control.id.clone(),
                check_id: check.to_string(),
                failing_hosts,
            });
        }
        controls.push(ev);
    }
    Evaluation { controls, deviations }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

    fn host(id: &str, checks: &[(&str, CheckStatus, i64)]) -> HostEvidence {
        HostEvidence {
            agent_id: id.into(),
            display_name: id.into(),
            checks: checks
                .iter()
                .map(|(c, s, hours_ago)| CheckEvidence {
                    check_id: c.to_string(),
                    status: *s,
                    collected_at: NOW - Duration::hours(*hours_ago),
                    reason: None,
                })
                .collect(),
        }
    }

    fn control<'a>(e: &'a Evaluation, id: &str) -> &'a ControlEvaluation {
        e.controls.iter().find(|c| c.control_id == id).unwrap()
    }

    fn policy() -> EvaluationPolicy {
        EvaluationPolicy { stale_after: Duration::hours(48) }
    }

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
        assert_eq!(a820.without_evidence, ["stale", "silent"]);
        assert_eq!(a820.state, ControlState::Deviating);
        // A.8.20 is supported by the SSH server check too, which no host reported:
        // the host that passes the firewall check lacks part of the evidence.
        let iso820 = control(&e, "iso27001:2022/A.8.20");
        assert_eq!(iso820.without_evidence, ["pass", "stale", "silent"]);
        assert_eq!(iso820.unknown, ["unknown"]);
        assert_eq!(iso820.failing, ["fail"]);
        // A.8.1 needs firewall and disk encryption: worst status counts once per host.
        let a81 = control(&e, "iso27001:2022/A.8.1");
        assert_eq!(a81.failing, ["fail"]);
        assert_eq!(a81.passing.len() + a81.failing.len() + a81.unknown.len() + a81.without_evidence.len(), 5);
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
}
