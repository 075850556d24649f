//! Assembles what the API and the keeper need from the store and the pure
//! evaluation: hosts with their evidence state, and control evaluations.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use crate::compliance::catalog::Catalog;
use crate::compliance::evaluate::{Evaluation, HostEvidence, LoggedStanding, evaluate, evaluation_from_log};
use crate::compliance::policy::Policy;
use crate::config::Config;
use crate::keeper::evaluation_inputs::{settings, settings_at, states};
use crate::keeper::fleet::Fleet;
use crate::store::queries::{CheckStateRow, HostRow};
use crate::store::requirements::{HostStanding, LoggedVersions, Requirements, StateAt};
use crate::store::{Store, StoreError};

/// A host as the API shows it.
#[derive(Debug, Serialize)]
pub struct HostView {
    #[serde(flatten)]
    pub host: HostRow,
    /// `current`, `stale` (older than the configured limit) or `none`.
    pub evidence: &'static str,
    pub checks: Vec<CheckStateRow>,
    /// One host asked for: its standing on every requirement as the change
    /// log had it then (decided then, under the versions then; the checks
    /// above are re-decided under today's policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Vec<HostStanding>>,
}

/// The hosts (every one, or `only` one) with their check results, now or
/// as they stood at `as_of` (then only hosts enrolled by that time, with the
/// evidence they had sent).
pub fn hosts(
    store: &Store,
    config: &Config,
    rules: &Policy,
    now: OffsetDateTime,
    as_of: Option<OffsetDateTime>,
    only: Option<&str>,
) -> Result<Vec<HostView>, StoreError> {
    let all_hosts = match only {
        Some(agent) => store.host(agent)?.into_iter().collect(),
        None => store.hosts()?,
    };
    let mut checks: BTreeMap<String, Vec<CheckStateRow>> = BTreeMap::new();
    for c in states(store, rules, &all_hosts, as_of, only)? {
        checks.entry(c.agent_id.clone()).or_default().push(c);
    }
    let at = as_of.unwrap_or(now);
    // A host is stale when even its default collection is overdue.
    let stale_before = at.unix_timestamp() - settings(config).stale_limit("").whole_seconds();
    let mut views = Vec::new();
    for mut h in all_hosts.into_iter().filter(|h| h.enrolled_at <= at.unix_timestamp()) {
        let host_checks = checks.remove(&h.agent_id).unwrap_or_default();
        if as_of.is_some() {
            h.last_collected_at = host_checks.iter().map(|c| c.collected_at).max();
        }
        let evidence = match h.last_collected_at {
            None => "none",
            Some(t) if t < stale_before => "stale",
            Some(_) => "current",
        };
        views.push(HostView { evidence, checks: host_checks, host: h, requirements: None });
    }
    Ok(views)
}

/// What an evaluation reads: the evidence (the store, and the fleet's
/// decided evidence kept from it), the catalog with its mappings, the
/// configuration and the policy in force.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub store: &'a Store,
    pub fleet: &'a Fleet,
    pub catalog: &'a Catalog,
    pub config: &'a Config,
    pub rules: &'a Arc<Policy>,
}

/// A framework's (or the whole catalog's) standing at a glance.
#[derive(Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Controls with at least one host in scope.
    pub controls_assessed: usize,
    pub effective: usize,
    pub deviating: usize,
    pub unknown: usize,
    pub not_assessed: usize,
    /// Satisfied / in scope over every (host, control) pair assessed.
    pub effectiveness: Option<f64>,
}

pub fn summary(controls: &[crate::compliance::evaluate::ControlEvaluation]) -> Summary {
    use crate::compliance::evaluate::ControlState::*;
    let count = |s| controls.iter().filter(|c| c.state == s).count();
    let (passing, in_scope) =
        controls.iter().fold((0, 0), |(p, n), c| (p + c.passing.len(), n + c.in_scope()));
    Summary {
        controls_assessed: controls.iter().filter(|c| c.in_scope() > 0).count(),
        effective: count(Effective),
        deviating: count(Deviating),
        unknown: count(Unknown),
        not_assessed: count(NotAssessed),
        effectiveness: (in_scope > 0).then(|| passing as f64 / in_scope as f64),
    }
}

#[derive(Debug, Serialize)]
pub struct ControlsView {
    pub framework: Option<String>,
    /// The host group (tag) the evaluation is limited to.
    pub group: Option<String>,
    pub summary: Summary,
    /// The policy and mapping versions that produced this evaluation: those
    /// in force now, or for an as-of answer those recorded on the newest
    /// change log row it rests on (`None` when the log had nothing by then).
    pub policy_version: Option<String>,
    pub mapping_version: Option<String>,
    /// Every version pair the answer rests on: the one in force now, or for
    /// an as-of answer each pair recorded on a change log row that decided
    /// one of its standings, in the order they last decided one (the last
    /// is the newest).
    pub versions: Vec<LoggedVersions>,
    /// The time the evaluation describes: now, or the `as_of` asked for.
    pub evaluated_at: i64,
    pub as_of: bool,
    /// For an as-of answer: which of its parts the change log holds as of
    /// then and which are today's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// What an as-of answer takes from the change log and what from today.
#[derive(Debug, Serialize, PartialEq)]
pub struct Provenance {
    pub from_change_log: [&'static str; 3],
    pub current: [&'static str; 3],
}

/// The one provenance every as-of answer has.
pub const AS_OF_PROVENANCE: Provenance = Provenance {
    from_change_log: [
        "each host's standing on each requirement (passing, failing, unknown, no evidence, stale, excepted, not applicable)",
        "the failing checks of each deviation",
        "the policy and mapping versions (versions)",
    ],
    current: [
        "the hosts and their order; group= selects hosts by today's tags",
        "the catalog: controls, titles and frameworks",
        "each control's checks (today's mappings)",
    ],
};

/// Evaluates the catalog (optionally one framework) now, or answers as the
/// change log had it at `as_of`. `Ok(Err(name))` when the framework is
/// unknown.
pub fn controls(
    Sources { store, fleet, catalog, config, rules }: Sources<'_>,
    now: OffsetDateTime,
    framework: Option<&str>,
    group: Option<&str>,
    as_of: Option<OffsetDateTime>,
) -> Result<Result<ControlsView, String>, StoreError> {
    if let Some(fw) = framework
        && !catalog.frameworks().iter().any(|f| f.as_str() == fw)
    {
        return Ok(Err(fw.to_string()));
    }
    let at = as_of.unwrap_or(now);
    let current = || {
        vec![LoggedVersions {
            policy_version: rules.version().into(),
            mapping_version: catalog.mapping_version().into(),
        }]
    };
    let (mut evaluation, versions) = match as_of {
        Some(t) => {
            let only = framework.map_or(Only::All, Only::Framework);
            logged_evaluation(store, catalog, &host_positions(store, group)?, t.unix_timestamp(), only)?
        }
        None => {
            let all = fleet.evidence(store, rules)?;
            let policy = settings_at(config, rules, &store.exceptions()?, at);
            let evaluation = match group {
                Some(g) => {
                    let hosts: Vec<HostEvidence> =
                        all.iter().filter(|h| h.tags.iter().any(|t| t == g)).cloned().collect();
                    evaluate(catalog, &hosts, at, &policy)
                }
                None => evaluate(catalog, &all, at, &policy),
            };
            (evaluation, current())
        }
    };
    if let Some(fw) = framework {
        evaluation.controls.retain(|c| c.framework == fw);
        evaluation.deviations.retain(|d| d.control_id.starts_with(&format!("{fw}/")));
    }
    let newest = versions.last();
    Ok(Ok(ControlsView {
        framework: framework.map(String::from),
        group: group.map(String::from),
        summary: summary(&evaluation.controls),
        policy_version: newest.map(|v| v.policy_version.clone()),
        mapping_version: newest.map(|v| v.mapping_version.clone()),
        versions,
        evaluated_at: at.unix_timestamp(),
        as_of: as_of.is_some(),
        provenance: as_of.map(|_| AS_OF_PROVENANCE),
        evaluation,
    }))
}

/// Positions of the hosts of `group` (current tags), or of all, in the
/// store's order (display name, agent id).
fn host_positions(store: &Store, group: Option<&str>) -> Result<HashMap<String, usize>, StoreError> {
    Ok(store
        .hosts()?
        .into_iter()
        .filter(|h| group.is_none_or(|g| h.all_tags().iter().any(|t| t == g)))
        .enumerate()
        .map(|(i, h)| (h.agent_id, i))
        .collect())
}

/// Which controls a logged evaluation answers for.
#[derive(Clone, Copy)]
enum Only<'a> {
    All,
    Framework(&'a str),
    /// One control; its counts only (no deviations).
    Control(&'a str),
}

impl<'a> Only<'a> {
    fn requirements(self) -> Requirements<'a> {
        match self {
            Only::All => Requirements::All,
            Only::Framework(fw) => Requirements::Framework(fw),
            Only::Control(id) => Requirements::One(id),
        }
    }

    fn control(self) -> Option<&'a str> {
        match self {
            Only::Control(id) => Some(id),
            _ => None,
        }
    }
}

/// The evaluation as the change log had it at `at` (Unix seconds), for the
/// hosts `position` knows, with the versions recorded on the rows that
/// decided it (each distinct pair once, the newest last).
fn logged_evaluation(
    store: &Store,
    catalog: &Catalog,
    position: &HashMap<String, usize>,
    at: i64,
    only: Only<'_>,
) -> Result<(Evaluation, Vec<LoggedVersions>), StoreError> {
    // Deviations name failing checks: not needed for one control's counts.
    let with_checks = matches!(only, Only::Framework(_) | Only::All);
    // The versions of the rows behind the answer: those of hosts it lists
    // and requirements of today's catalog. One row per logged time is
    // enough (the log's invariant).
    let known: std::collections::HashSet<&str> = catalog.controls().iter().map(|c| c.id.as_str()).collect();
    let mut row_of_time: HashMap<i64, i64> = HashMap::new();
    let mut logged: Vec<LoggedStanding> = Vec::new();
    let mut last_known: Option<(String, bool)> = None;
    for StateAt { agent_id, requirement, state, checks, at: logged_at, row } in
        store.requirement_states_at(at, only.requirements(), with_checks)?
    {
        if !position.contains_key(&agent_id) {
            continue;
        }
        // Rows come grouped by requirement: look each one up once.
        let in_catalog = match &last_known {
            Some((r, k)) if *r == requirement => *k,
            _ => {
                let k = known.contains(requirement.as_str());
                last_known = Some((requirement.clone(), k));
                k
            }
        };
        if !in_catalog {
            continue;
        }
        row_of_time.entry(logged_at).or_insert(row);
        let failing_checks = checks
            .and_then(|c| serde_json::from_str::<BTreeMap<String, String>>(&c).ok())
            .map(|m| m.into_iter().filter(|(_, s)| s == "fail").map(|(c, _)| c).collect())
            .unwrap_or_default();
        logged.push(LoggedStanding { agent_id, requirement, state, failing_checks });
    }
    let mut times: Vec<(i64, i64)> = row_of_time.into_iter().collect();
    times.sort_unstable();
    let rows: Vec<i64> = times.iter().map(|(_, row)| *row).collect();
    let mut versions: Vec<LoggedVersions> = Vec::new();
    for v in store.logged_versions(&rows)? {
        // Oldest first, each pair once, at its newest use: the last is the newest.
        versions.retain(|seen| *seen != v);
        versions.push(v);
    }
    Ok((evaluation_from_log(catalog, &logged, |a| position.get(a).copied(), only.control()), versions))
}

/// One point of a control's effectiveness over time, as the change log had
/// it then (the hosts of a group by today's tags).
#[derive(Debug, Serialize, PartialEq)]
pub struct EffectivenessPoint {
    pub at: i64,
    pub state: crate::compliance::evaluate::ControlState,
    pub passing: usize,
    /// Hosts the control applies to (every bucket but not-applicable).
    pub in_scope: usize,
    /// `passing / in_scope`; `None` when no host is in scope.
    pub effectiveness: Option<f64>,
    /// The policy and mapping versions recorded on the change log rows
    /// behind this point (each pair once, the newest last).
    pub versions: Vec<LoggedVersions>,
}

/// Most points one effectiveness query may ask for.
pub const MAX_POINTS: u32 = 500;

/// A control's effectiveness at `points` evenly spaced times from `from` to
/// `to` (both included), each as the change log had it then.
/// `Ok(Err(id))` when the control is unknown.
pub fn effectiveness(
    Sources { store, catalog, .. }: Sources<'_>,
    group: Option<&str>,
    control: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
    points: u32,
) -> Result<Result<Vec<EffectivenessPoint>, String>, StoreError> {
    if catalog.control(control).is_none() {
        return Ok(Err(control.to_string()));
    }
    let points = points.clamp(1, MAX_POINTS);
    let span = (to - from).whole_seconds().max(0);
    let position = host_positions(store, group)?;
    let mut out = Vec::with_capacity(points as usize);
    for i in 0..points {
        let offset = if points == 1 { span } else { span * i64::from(i) / i64::from(points - 1) };
        let at = from + time::Duration::seconds(offset);
        let (evaluation, versions) =
            logged_evaluation(store, catalog, &position, at.unix_timestamp(), Only::Control(control))?;
        let Some(c) = evaluation.controls.into_iter().next() else {
            continue;
        };
        out.push(EffectivenessPoint {
            at: at.unix_timestamp(),
            state: c.state,
            passing: c.passing.len(),
            in_scope: c.in_scope(),
            effectiveness: c.effectiveness(),
            versions,
        });
    }
    Ok(Ok(out))
}
