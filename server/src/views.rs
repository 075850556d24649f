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

pub fn hosts(store: &Store, config: &Config, now: OffsetDateTime) -> Result<Vec<HostView>, StoreError> {
    let mut checks: BTreeMap<String, Vec<CheckStateRow>> = BTreeMap::new();
    for c in store.check_states()? {
        checks.entry(c.agent_id.clone()).or_default().push(c);
    }
    let stale_before = now.unix_timestamp() - (config.evaluation.stale_after_hours as i64) * 3600;
    Ok(store
        .hosts()?
        .into_iter()
        .map(|h| HostView {
            evidence: match h.last_collected_at {
                None => "none",
                Some(t) if t < stale_before => "stale",
                Some(_) => "current",
            },
            checks: checks.remove(&h.agent_id).unwrap_or_default(),
            host: h,
        })
        .collect())
}

/// The evidence of every active (not revoked) host, for evaluation.
pub fn fleet_evidence(store: &Store) -> Result<Vec<HostEvidence>, StoreError> {
    let mut by_agent: BTreeMap<String, Vec<CheckEvidence>> = BTreeMap::new();
    for c in store.check_states()? {
        let collected_at = OffsetDateTime::from_unix_timestamp(c.collected_at)
            .map_err(|e| StoreError::Corrupt(format!("collected_at {}: {e}", c.collected_at)))?;
        by_agent.entry(c.agent_id).or_default().push(CheckEvidence {
            check_id: c.check_id,
            status: c.status,
            collected_at,
            reason: c.reason,
        });
    }
    Ok(store
        .hosts()?
        .into_iter()
        .filter(|h| !h.revoked)
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
    pub evaluated_at: i64,
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
) -> Result<Result<ControlsView, String>, StoreError> {
    if let Some(fw) = framework
        && !catalog.frameworks().iter().any(|f| f.as_str() == fw)
    {
        return Ok(Err(fw.to_string()));
    }
    let hosts = fleet_evidence(store)?;
    let mut evaluation = evaluate(catalog, &hosts, now, &policy(config));
    if let Some(fw) = framework {
        evaluation.controls.retain(|c| c.framework == fw);
        evaluation.deviations.retain(|d| d.control_id.starts_with(&format!("{fw}/")));
    }
    Ok(Ok(ControlsView {
        framework: framework.map(String::from),
        evaluated_at: now.unix_timestamp(),
        evaluation,
    }))
}
