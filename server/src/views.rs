//! Assembles what the API and the keeper need from the store and the pure
//! evaluation: hosts with their evidence state, and control evaluations.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::evaluate::{CheckEvidence, Evaluation, EvaluationPolicy, HostEvidence, evaluate};
use crate::store::queries::{CheckStateRow, HostRow};
use crate::store::{Store, StoreError};

/// A host as the API shows it.
#[derive(Debug, Serialize)]
pub struct HostView {
    #[serde(flatten)]
    pub host: HostRow,
    /// `current`, `stale` (older than the configured limit) or `none`.
    pub evidence: &'static str,
    pub checks: Vec<CheckStateRow>,
}

/// The latest check results, or those in force at `as_of`.
fn states(store: &Store, as_of: Option<OffsetDateTime>) -> Result<Vec<CheckStateRow>, StoreError> {
    match as_of {
        Some(t) => store.check_states_as_of(t.unix_timestamp()),
        None => store.check_states(),
    }
}

/// The hosts with their check results, now or as they stood at `as_of`
/// (then only hosts enrolled by that time, with the evidence they had sent).
pub fn hosts(
    store: &Store,
    config: &Config,
    now: OffsetDateTime,
    as_of: Option<OffsetDateTime>,
) -> Result<Vec<HostView>, StoreError> {
    let mut checks: BTreeMap<String, Vec<CheckStateRow>> = BTreeMap::new();
    for c in states(store, as_of)? {
        checks.entry(c.agent_id.clone()).or_default().push(c);
    }
    let at = as_of.unwrap_or(now);
    let stale_before = at.unix_timestamp() - (config.evaluation.stale_after_hours as i64) * 3600;
    let mut views = Vec::new();
    for mut h in store.hosts()?.into_iter().filter(|h| h.enrolled_at <= at.unix_timestamp()) {
        let host_checks = checks.remove(&h.agent_id).unwrap_or_default();
        if as_of.is_some() {
            h.last_collected_at = host_checks.iter().map(|c| c.collected_at).max();
        }
        let evidence = match h.last_collected_at {
            None => "none",
            Some(t) if t < stale_before => "stale",
            Some(_) => "current",
        };
        views.push(HostView { evidence, checks: host_checks, host: h });
    }
    Ok(views)
}

/// The evidence of every active (not revoked) host, for evaluation.
pub fn fleet_evidence(store: &Store) -> Result<Vec<HostEvidence>, StoreError> {
    fleet_evidence_at(store, None)
}

/// [`fleet_evidence`] as it stood at `as_of` (`None`: now).
pub fn fleet_evidence_at(
    store: &Store,
    as_of: Option<OffsetDateTime>,
) -> Result<Vec<HostEvidence>, StoreError> {
    let mut by_agent: BTreeMap<String, Vec<CheckEvidence>> = BTreeMap::new();
    for c in states(store, as_of)? {
        let collected_at = OffsetDateTime::from_unix_timestamp(c.collected_at)
            .map_err(|e| StoreError::Corrupt(format!("collected_at {}: {e}", c.collected_at)))?;
        by_agent.entry(c.agent_id).or_default().push(CheckEvidence {
            check_id: c.check_id,
            status: c.status,
            collected_at,
            reason: c.reason,
        });
    }
    let hosts = store.hosts()?;
    let known: Vec<_> = match as_of {
        // Hosts of that time: enrolled by then and with results then (the
        // query leaves out those revoked by then).
        Some(t) => hosts
            .into_iter()
            .filter(|h| {
                h.enrolled_at <= t.unix_timestamp() && (!h.revoked || by_agent.contains_key(&h.agent_id))
            })
            .collect(),
        None => hosts.into_iter().filter(|h| !h.revoked).collect(),
    };
    Ok(known
        .into_iter()
        .map(|h| HostEvidence {
            checks: by_agent.remove(&h.agent_id).unwrap_or_default(),
            agent_id: h.agent_id,
            display_name: h.display_name,
        })
        .collect())
}

pub fn policy(config: &Config) -> EvaluationPolicy {
    EvaluationPolicy { stale_after: time::Duration::hours(config.evaluation.stale_after_hours as i64) }
}

#[derive(Debug, Serialize)]
pub struct ControlsView {
    pub framework: Option<String>,
    /// The time the evaluation describes: now, or the `as_of` asked for.
    pub evaluated_at: i64,
    pub as_of: bool,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

/// Evaluates the catalog (optionally one framework). `Ok(Err(name))` when
/// the framework is unknown.
pub fn controls(
    store: &Store,
    catalog: &Catalog,
    config: &Config,
    now: OffsetDateTime,
    framework: Option<&str>,
    as_of: Option<OffsetDateTime>,
) -> Result<Result<ControlsView, String>, StoreError> {
    if let Some(fw) = framework
        && !catalog.frameworks().iter().any(|f| f.as_str() == fw)
    {
        return Ok(Err(fw.to_string()));
    }
    let hosts = fleet_evidence_at(store, as_of)?;
    let at = as_of.unwrap_or(now);
    let mut evaluation = evaluate(catalog, &hosts, at, &policy(config));
    if let Some(fw) = framework {
        evaluation.controls.retain(|c| c.framework == fw);
        evaluation.deviations.retain(|d| d.control_id.starts_with(&format!("{fw}/")));
    }
    Ok(Ok(ControlsView {
        framework: framework.map(String::from),
        evaluated_at: at.unix_timestamp(),
        as_of: as_of.is_some(),
        evaluation,
    }))
}

/// One point of a control's effectiveness over time.
#[derive(Debug, Serialize, PartialEq)]
pub struct EffectivenessPoint {
    pub at: i64,
    pub state: crate::evaluate::ControlState,
    pub passing: usize,
    /// Hosts the control applies to (every bucket but not-applicable).
    pub in_scope: usize,
    /// `passing / in_scope`; `None` when no host is in scope.
    pub effectiveness: Option<f64>,
}

/// Most points one effectiveness query may ask for.
pub const MAX_POINTS: u32 = 500;

/// A control's effectiveness at `points` evenly spaced times from `from` to
/// `to` (both included), each evaluated from the records received by then.
/// `Ok(Err(id))` when the control is unknown.
pub fn effectiveness(
    store: &Store,
    catalog: &Catalog,
    config: &Config,
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
    let mut out = Vec::with_capacity(points as usize);
    for i in 0..points {
        let offset = if points == 1 { span } else { span * i64::from(i) / i64::from(points - 1) };
        let at = from + time::Duration::seconds(offset);
        let hosts = fleet_evidence_at(store, Some(at))?;
        let evaluation = evaluate(catalog, &hosts, at, &policy(config));
        let Some(c) = evaluation.controls.into_iter().find(|c| c.control_id == control) else {
            continue;
        };
        let in_scope = c.passing.len() + c.failing.len() + c.unknown.len() + c.without_evidence.len();
        out.push(EffectivenessPoint {
            at: at.unix_timestamp(),
            state: c.state,
            passing: c.passing.len(),
            in_scope,
            effectiveness: (in_scope > 0).then(|| c.passing.len() as f64 / in_scope as f64),
        });
    }
    Ok(Ok(out))
}
