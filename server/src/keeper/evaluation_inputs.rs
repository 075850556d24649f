//! What an evaluation reads from the store and the configuration: each
//! host's latest (or then-current) results decided under the policy, and
//! the settings it runs under (staleness, exceptions in force, where
//! controls apply). The keeper, the export and the API's views all read
//! through here, so the keeper does not depend on the API.
//!
//! Invariant: every result is decided under the policy before evaluation
//! sees it (`decided::decide`); hosts as of a past time are those enrolled
//! by then.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::compliance::evaluate::{AppliesTo, CheckEvidence, EvaluationSettings, HostEvidence};
use crate::compliance::exception::{Exception, ExceptionState};
use crate::compliance::policy::{HostFacts, Policy};
use crate::config::Config;
use crate::keeper::decided::{check_evidence, decide};
use crate::store::queries::{CheckStateRow, HostRow};
use crate::store::{Store, StoreError};

/// The latest check results, or those in force at `as_of`, of every agent
/// or `only` one, each decided by the policy (its rules over the result's
/// facts) for the host it came from.
pub(crate) fn states(
    store: &Store,
    rules: &Policy,
    hosts: &[HostRow],
    as_of: Option<OffsetDateTime>,
    only: Option<&str>,
) -> Result<Vec<CheckStateRow>, StoreError> {
    let mut rows = match (as_of, only) {
        (Some(t), _) => store.check_states_as_of(t.unix_timestamp(), only)?,
        (None, Some(agent)) => store.check_states_of(agent)?,
        (None, None) => store.check_states()?,
    };
    let facts_of: BTreeMap<&str, HostFacts> = hosts
        .iter()
        .map(|h| (h.agent_id.as_str(), HostFacts { os: h.os.clone(), tags: h.all_tags() }))
        .collect();
    let empty = HostFacts { os: String::new(), tags: Vec::new() };
    for row in &mut rows {
        decide(rules, row, facts_of.get(row.agent_id.as_str()).unwrap_or(&empty));
    }
    Ok(rows)
}

/// The evidence of every active (not revoked) host, for evaluation.
pub fn fleet_evidence(store: &Store, rules: &Policy) -> Result<Vec<HostEvidence>, StoreError> {
    fleet_evidence_at(store, rules, None)
}

/// [`fleet_evidence`] as it stood at `as_of` (`None`: now).
pub fn fleet_evidence_at(
    store: &Store,
    rules: &Policy,
    as_of: Option<OffsetDateTime>,
) -> Result<Vec<HostEvidence>, StoreError> {
    let hosts = store.hosts()?;
    let mut by_agent: BTreeMap<String, Vec<CheckEvidence>> = BTreeMap::new();
    for c in states(store, rules, &hosts, as_of, None)? {
        let agent = c.agent_id.clone();
        by_agent.entry(agent).or_default().push(check_evidence(c)?);
    }
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
            tags: h.all_tags(),
            agent_id: h.agent_id,
            display_name: h.display_name,
        })
        .collect())
}

/// The evaluation settings from the configuration: each check's staleness
/// limit is its collection interval times `evaluation.stale_factor`, at
/// least `evaluation.stale_after_hours`.
pub fn settings(config: &Config) -> EvaluationSettings {
    let secs = |s: u32| time::Duration::seconds(i64::from(s));
    EvaluationSettings {
        default_interval: secs(config.policy.interval_seconds),
        intervals: config.policy.check_interval_seconds.iter().map(|(c, s)| (c.clone(), secs(*s))).collect(),
        stale_factor: config.evaluation.stale_factor,
        stale_floor: time::Duration::hours(config.evaluation.stale_after_hours as i64),
        exceptions: BTreeMap::new(),
        scope: None,
    }
}

/// [`settings`] with the exceptions in force at `at` (as they stood then:
/// recorded by then, not yet expired or withdrawn).
pub fn settings_at(
    config: &Config,
    rules: &Policy,
    exceptions: &[Exception],
    at: OffsetDateTime,
) -> EvaluationSettings {
    let mut p = settings(config);
    if !rules.scopes().is_empty() {
        let rules = rules.clone();
        p.scope =
            Some(AppliesTo(Arc::new(move |control: &str, tags: &[String]| rules.applies(control, tags))));
    }
    let t = at.unix_timestamp();
    for e in exceptions.iter().filter(|e| e.state(t) == ExceptionState::Active) {
        let until = OffsetDateTime::from_unix_timestamp(e.expires_at).unwrap_or(at);
        p.exceptions.insert((e.agent_id.clone(), e.requirement.clone()), until);
    }
    p
}
