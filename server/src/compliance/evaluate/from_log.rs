//! An evaluation rebuilt from the change log: what was decided at some
//! time under the policy and mappings of then, each host in the bucket of
//! its logged standing, not evaluated again.

use std::collections::{BTreeMap, HashMap};

use super::{ControlEvaluation, Deviation, Evaluation};
use crate::compliance::catalog::Catalog;

/// The change log's latest word on one host and requirement at some time.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedStanding {
    pub agent_id: String,
    pub requirement: String,
    /// One of [`REQUIREMENT_STATES`](super::REQUIREMENT_STATES).
    pub state: String,
    /// For `not_satisfied`: the checks the host failed then.
    pub failing_checks: Vec<String>,
}

/// The evaluation as the change log had it: every catalog control (or only
/// `only`), each host in the bucket of its logged standing. `position`
/// orders the hosts and leaves out those it does not know (`None`), e.g.
/// hosts outside a host group. Pure, like [`evaluate`](fn@super::evaluate):
/// what was decided then under the policy and mappings of then, not
/// evaluated again.
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
