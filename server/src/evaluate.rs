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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

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

/// Decides whether a control applies to a host with these tags.
#[derive(Clone)]
pub struct Scope(pub Arc<AppliesFn>);

/// `(control id, host tags) → applies`.
pub type AppliesFn = dyn Fn(&str, &[String]) -> bool + Send + Sync;

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scope(..)")
    }
}

#[derive(Debug, Clone)]
pub struct EvaluationPolicy {
    /// Collection interval of checks without one of their own.
    pub default_interval: Duration,
    /// Per-check collection intervals.
    pub intervals: BTreeMap<String, Duration>,
    /// Evidence older than interval × factor is stale...
    pub stale_factor: f64,
    /// ...but never before this age (laptops sleep).
    pub stale_floor: Duration,
    /// Exceptions: (agent id, control id) → when the exception ends.
    pub exceptions: BTreeMap<(String, String), OffsetDateTime>,
    /// `None`: every control applies to every host.
    pub scope: Option<Scope>,
}

impl EvaluationPolicy {
    /// A policy where evidence is stale after `after` for every check, with
    /// no exceptions and no scopes.
    pub fn stale_after(after: Duration) -> EvaluationPolicy {
        EvaluationPolicy {
            default_interval: after,
            intervals: BTreeMap::new(),
            stale_factor: 1.0,
            stale_floor: Duration::ZERO,
            exceptions: BTreeMap::new(),
            scope: None,
        }
    }

    /// How old evidence of `check` may be before it is stale.
    pub fn stale_limit(&self, check: &str) -> Duration {
        let interval = self.intervals.get(check).copied().unwrap_or(self.default_interval);
        (interval * self.stale_factor).max(self.stale_floor)
    }

    pub fn is_fresh(&self, e: &CheckEvidence, now: OffsetDateTime) -> bool {
        now - e.collected_at <= self.stale_limit(&e.check_id)
    }

    fn applies(&self, control: &str, tags: &[String]) -> bool {
        self.scope.as_ref().is_none_or(|s| (s.0)(control, tags))
    }
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
    fn empty(control: &crate::catalog::Control, checks: Vec<String>) -> ControlEvaluation {
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
    fn settle(&mut self) {
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
    /// some check supports (in catalog order): what [`standings`] reads, kept
    /// while evaluating because rebuilding it from the buckets by agent id
    /// cost seconds at fleet scale. Empty for evaluations rebuilt from the log.
    #[serde(skip)]
    codes: Vec<Vec<u8>>,
}

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
fn standing(e: &CheckEvidence, now: OffsetDateTime, policy: &EvaluationPolicy) -> Standing {
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
        policy: &EvaluationPolicy,
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

pub fn evaluate(
    catalog: &Catalog,
    hosts: &[HostEvidence],
    now: OffsetDateTime,
    policy: &EvaluationPolicy,
) -> Evaluation {
    let index = CheckIndex::new(catalog);
    let standings: Vec<Vec<Standing>> = hosts.iter().map(|h| index.standings(h, now, policy)).collect();
    // Exceptions in force now, looked up without building owned keys.
    let excepted: HashSet<(&str, &str)> = policy
        .exceptions
        .iter()
        .filter(|(_, until)| now < **until)
        .map(|((agent, control), _)| (agent.as_str(), control.as_str()))
        .collect();
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
        let mut failing_by_check: Vec<Vec<String>> = vec![Vec::new(); checks.len()];
        for (h, (host, host_standings)) in hosts.iter().zip(&standings).enumerate() {
            if !policy.applies(&control.id, &host.tags) {
                ev.not_applicable.push(host.agent_id.clone());
                codes[h][r] = CODE_NOT_APPLICABLE;
                continue;
            }
            if !excepted.is_empty() && excepted.contains(&(host.agent_id.as_str(), control.id.as_str())) {
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
        r += 1;
        ev.settle();
        // Checks in name order, as the deviations have always been listed.
        let mut by_check: Vec<(&String, Vec<String>)> =
            checks.iter().zip(failing_by_check).filter(|(_, h)| !h.is_empty()).collect();
        by_check.sort_by(|a, b| a.0.cmp(b.0));
        for (check, failing_hosts) in by_check {
            deviations.push(Deviation {
                control_id: control.id.clone(),
                check_id: check.clone(),
                failing_hosts,
            });
        }
        controls.push(ev);
    }
    Evaluation { controls, deviations, codes }
}

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
const CODE_EXCEPTED: u8 = 5;
const CODE_NOT_APPLICABLE: u8 = 6;

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

/// The change log's latest word on one host and requirement at some time.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedStanding {
    pub agent_id: String,
    pub requirement: String,
    /// One of [`REQUIREMENT_STATES`].
    pub state: String,
    /// For `not_satisfied`: the checks the host failed then.
    pub failing_checks: Vec<String>,
}

/// The evaluation as the change log had it: every catalog control (or only
/// `only`), each host in the bucket of its logged standing. `position`
/// orders the hosts and leaves out those it does not know (`None`), e.g.
/// hosts outside a host group. Pure, like [`evaluate`]: what was decided
/// then under the policy and mappings of then, not evaluated again.
pub fn evaluation_from_log(
    catalog: &Catalog,
    logged: &[LoggedStanding],
    position: impl Fn(&str) -> Option<usize>,
    only: Option<&str>,
) -> Evaluation {
    let mut by_requirement: HashMap<&str, Vec<(usize, &LoggedStanding)>> = HashMap::new();
    for l in logged {
        if let Some(p) = position(&l.agent_id) {
            by_requirement.entry(l.requirement.as_str()).or_default().push((p, l));
        }
    }
    let mut controls = Vec::new();
    let mut deviations = Vec::new();
    for control in catalog.controls().iter().filter(|c| only.is_none_or(|o| o == c.id)) {
        let checks = catalog.checks_for_control(&control.id).to_vec();
        let mut ev = ControlEvaluation::empty(control, checks);
        let mut rows = by_requirement.remove(control.id.as_str()).unwrap_or_default();
        rows.sort_by_key(|(p, _)| *p);
        let mut failing_by_check: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (_, l) in rows {
            let bucket = match l.state.as_str() {
                "satisfied" => &mut ev.passing,
                "not_satisfied" => {
                    for c in &l.failing_checks {
                        failing_by_check.entry(c.as_str()).or_default().push(l.agent_id.clone());
                    }
                    &mut ev.failing
                }
                "unknown" => &mut ev.unknown,
                "no_evidence" => &mut ev.without_evidence,
                "stale" => &mut ev.stale,
                "excepted" => &mut ev.excepted,
                "not_applicable" => &mut ev.not_applicable,
                // `removed` and anything unknown: the host was not evaluated then.
                _ => continue,
            };
            bucket.push(l.agent_id.clone());
        }
        ev.settle();
        for (check, failing_hosts) in failing_by_check {
            deviations.push(Deviation {
                control_id: control.id.clone(),
                check_id: check.to_string(),
                failing_hosts,
            });
        }
        controls.push(ev);
    }
    Evaluation { controls, deviations, codes: Vec::new() }
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

    fn control<'a>(e: &'a Evaluation, id: &str) -> &'a ControlEvaluation {
        e.controls.iter().find(|c| c.control_id == id).unwrap()
    }

    fn policy() -> EvaluationPolicy {
        EvaluationPolicy::stale_after(Duration::hours(48))
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
    fn staleness_follows_each_checks_interval_times_the_factor_with_a_floor() {
        use CheckStatus::*;
        let cat = Catalog::builtin().unwrap();
        let mut p = EvaluationPolicy::stale_after(Duration::hours(1));
        p.stale_factor = 3.0;
        p.intervals.insert("software_inventory".into(), Duration::hours(24));
        assert_eq!(p.stale_limit("firewall"), Duration::hours(3));
        assert_eq!(p.stale_limit("software_inventory"), Duration::hours(72));
        // Firewall evidence 4 hours old is stale; 2 hours old is current.
        let e = evaluate(&cat, &[host("a", &[("firewall", Pass, 4)])], NOW, &p);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").stale, ["a"]);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").state, ControlState::Unknown);
        let e = evaluate(&cat, &[host("a", &[("firewall", Pass, 2)])], NOW, &p);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").passing, ["a"]);
        // The floor keeps a sleeping laptop's evidence current for longer.
        p.stale_floor = Duration::hours(12);
        assert_eq!(p.stale_limit("firewall"), Duration::hours(12));
        let e = evaluate(&cat, &[host("a", &[("firewall", Pass, 4)])], NOW, &p);
        assert_eq!(control(&e, "bsi-grundschutz:2023/SYS.1.1.A19").passing, ["a"]);
    }

    #[test]
    fn standings_kept_while_evaluating_equal_those_rebuilt_from_the_buckets() {
        use CheckStatus::*;
        let cat = Catalog::builtin().unwrap();
        let mut p = policy();
        p.exceptions.insert(("b".into(), "iso27001:2022/A.8.20".into()), NOW + Duration::days(1));
        p.scope = Some(Scope(Arc::new(|control: &str, tags: &[String]| {
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
        p.scope = Some(Scope(Arc::new(|control: &str, tags: &[String]| {
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
