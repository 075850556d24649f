//! What the evaluation says about each register requirement, per register
//! scope, in the form the risk lifecycle reads ([`Observation`]).
//!
//! Invariant: a host counts in the scope of its tags only, and passing
//! checks are listed only for the hosts an entry names that could clear
//! something: listing every passing host per requirement cost minutes at
//! fleet scale.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use custos_proto::evidence::CheckStatus;

use crate::compliance::catalog::Catalog;
use crate::compliance::evaluate::{CheckEvidence, ControlEvaluation, Evaluation, HostEvidence, Standings};
use crate::register::RiskPolicy;
use crate::register::lifecycle::Observation;
use crate::register::profile::profile;

/// The hosts each (requirement, scope) register entry names, with the
/// checks the entry has them failing.
pub type Named<'e> = HashMap<(&'e str, &'e str), Vec<(&'e str, &'e BTreeSet<String>)>>;

/// Hosts failing a requirement, each with the checks it fails.
type Failing = BTreeMap<String, BTreeSet<String>>;

/// What the evaluation says about each requirement of the register's
/// frameworks that some check supports, one observation per register scope
/// (`policy.scopes`, then the fleet):
/// - the hosts failing it in that scope, with the checks they fail and
///   their newest record among those;
/// - how many hosts of the scope it applies to;
/// - for the hosts an entry names (`named`), in scope and able to clear
///   something, the checks they pass with fresh evidence;
/// - its risk profile from the checks that fail (all its checks when none
///   does).
#[allow(clippy::too_many_arguments)]
pub fn observations(
    catalog: &Catalog,
    hosts: &[HostEvidence],
    evaluation: &Evaluation,
    standings: &Standings<'_>,
    frameworks: &[String],
    policy: &RiskPolicy,
    named: &Named<'_>,
    fresh: impl Fn(&CheckEvidence) -> bool,
) -> Vec<Observation> {
    let fleet = ScopedHosts::new(hosts, standings, policy);
    let mut failing = failing_by_requirement(evaluation);
    let mut out = Vec::new();
    for c in evaluation.controls.iter().filter(|c| !c.checks.is_empty() && frameworks.contains(&c.framework))
    {
        let mut failing_in = fleet.split_by_scope(failing.remove(c.control_id.as_str()).unwrap_or_default());
        let in_scope_count = fleet.in_scope_counts(&c.control_id);
        for (s, scope) in fleet.scopes.iter().enumerate() {
            let failing = std::mem::take(&mut failing_in[s]);
            let checks: BTreeSet<String> = if failing.is_empty() {
                c.checks.iter().cloned().collect()
            } else {
                failing.values().flatten().cloned().collect()
            };
            let entry_hosts = named.get(&(c.control_id.as_str(), *scope)).map(Vec::as_slice).unwrap_or(&[]);
            out.push(Observation {
                evidence: fleet.evidence(&failing),
                requirement: c.control_id.clone(),
                scope: scope.to_string(),
                in_scope: in_scope_count[s],
                passing: fleet.passing(c, s, &failing, entry_hosts, &fresh),
                failing,
                profile: profile(catalog, &policy.matrix, &c.control_id, &checks),
            });
        }
    }
    out
}

/// Per requirement, the hosts failing it with the checks they fail.
fn failing_by_requirement(evaluation: &Evaluation) -> BTreeMap<&str, Failing> {
    let mut failing: BTreeMap<&str, Failing> = BTreeMap::new();
    for d in &evaluation.deviations {
        let hosts = failing.entry(d.control_id.as_str()).or_default();
        for h in &d.failing_hosts {
            hosts.entry(h.clone()).or_default().insert(d.check_id.clone());
        }
    }
    failing
}

/// The hosts with their register scope and their standings, indexed once
/// per pass.
struct ScopedHosts<'a> {
    /// The register's scopes, the fleet last.
    scopes: Vec<&'a str>,
    /// Each host's scope (an index into `scopes`), by its position in
    /// `hosts` and in `standings`.
    host_scope: Vec<usize>,
    by_agent: HashMap<&'a str, (usize, &'a HostEvidence)>,
    requirement_index: HashMap<&'a str, usize>,
    standings: &'a Standings<'a>,
}

impl<'a> ScopedHosts<'a> {
    fn new(hosts: &'a [HostEvidence], standings: &'a Standings<'a>, policy: &'a RiskPolicy) -> Self {
        let scopes: Vec<&str> =
            policy.scopes.iter().map(String::as_str).chain([crate::register::FLEET_SCOPE]).collect();
        let index_of = |scope: &str| scopes.iter().position(|s| *s == scope).unwrap_or(scopes.len() - 1);
        let host_scope =
            hosts.iter().map(|h| index_of(crate::register::scope_of(&h.tags, &policy.scopes))).collect();
        ScopedHosts {
            host_scope,
            by_agent: hosts.iter().enumerate().map(|(i, h)| (h.agent_id.as_str(), (i, h))).collect(),
            requirement_index: standings.requirements.iter().enumerate().map(|(r, id)| (*id, r)).collect(),
            standings,
            scopes,
        }
    }

    /// The fleet's scope: where a host not (or no longer) known counts.
    fn fleet(&self) -> usize {
        self.scopes.len() - 1
    }

    /// Whether the requirement applies to the host: satisfied, not
    /// satisfied, unknown, no evidence or stale (codes 0 to 4).
    fn in_scope(&self, host: usize, requirement: &str) -> bool {
        self.requirement_index
            .get(requirement)
            .and_then(|r| self.standings.codes.get(host).map(|c| c[*r]))
            .is_some_and(|code| code <= 4)
    }

    /// `failing` split by the failing hosts' scopes.
    fn split_by_scope(&self, failing: Failing) -> Vec<Failing> {
        let mut by_scope = vec![Failing::new(); self.scopes.len()];
        for (host, checks) in failing {
            let s = self.by_agent.get(host.as_str()).map_or(self.fleet(), |(i, _)| self.host_scope[*i]);
            by_scope[s].insert(host, checks);
        }
        by_scope
    }

    /// Per scope, the hosts the requirement applies to.
    fn in_scope_counts(&self, requirement: &str) -> Vec<u32> {
        let mut counts = vec![0u32; self.scopes.len()];
        if let Some(&r) = self.requirement_index.get(requirement) {
            for (h, codes) in self.standings.codes.iter().enumerate() {
                if codes.get(r).is_some_and(|code| *code <= 4) {
                    counts[self.host_scope[h]] += 1;
                }
            }
        }
        counts
    }

    /// For the hosts an entry names (`entry_hosts`) still in scope `s` and
    /// able to clear something (not failing every check the entry has them
    /// failing), the requirement's checks each passes with fresh evidence.
    fn passing(
        &self,
        c: &ControlEvaluation,
        s: usize,
        failing: &Failing,
        entry_hosts: &[(&str, &BTreeSet<String>)],
        fresh: &impl Fn(&CheckEvidence) -> bool,
    ) -> BTreeMap<String, BTreeSet<String>> {
        entry_hosts
            .iter()
            .filter_map(|(h, entry_checks)| {
                let (i, host) = self.by_agent.get(h)?;
                // A host now in another scope has left this entry's.
                if self.host_scope[*i] != s || !self.in_scope(*i, &c.control_id) {
                    return None;
                }
                if failing.get(*h).is_some_and(|now| entry_checks.iter().all(|chk| now.contains(chk))) {
                    return None;
                }
                let passes = |chk: &&String| {
                    host.checks
                        .iter()
                        .any(|e| e.check_id == **chk && e.status == CheckStatus::Pass && fresh(e))
                };
                Some((h.to_string(), c.checks.iter().filter(passes).cloned().collect()))
            })
            .collect()
    }

    /// Each failing host's newest record among the checks it fails, as the
    /// API path of its signed record.
    fn evidence(&self, failing: &Failing) -> BTreeMap<String, String> {
        failing
            .iter()
            .filter_map(|(host, checks)| {
                let (_, h) = self.by_agent.get(host.as_str())?;
                let seq =
                    h.checks.iter().filter(|e| checks.contains(&e.check_id)).map(|e| e.record_seq).max()?;
                Some((host.clone(), format!("/api/v1/records/{host}/{seq}")))
            })
            .collect()
    }
}
