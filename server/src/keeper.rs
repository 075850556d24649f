//! The keeper: after evidence is committed (and once a minute, since
//! evidence goes stale and grace periods end with time) it takes up a
//! changed policy file, evaluates the fleet, logs every changed standing
//! per host and requirement, and reconciles the risk register. Runs off the
//! ingest hot path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::catalog::Catalog;
use crate::config::{Config, DataDir};
use crate::evaluate::{CheckEvidence, Evaluation, HostEvidence, evaluate, requirement_standings};
use crate::policy::Policy;
use crate::reload::Reloadable;
use crate::risk::lifecycle::{Observation, reconcile};
use crate::risk::profile::profile;
use crate::risk::{RiskPolicy, Transition};
use crate::store::{Store, StoreError};
use crate::views;
use crate::webhook;
use custos_proto::evidence::CheckStatus;

/// The scope of an entry when no host group narrows a requirement.
pub const FLEET: &str = "fleet";

/// What the evaluation says about each requirement of the register's
/// frameworks that some check supports.
pub fn observations(
    catalog: &Catalog,
    hosts: &[HostEvidence],
    evaluation: &Evaluation,
    frameworks: &[String],
    policy: &RiskPolicy,
    fresh: impl Fn(&CheckEvidence) -> bool,
) -> Vec<Observation> {
    // Host → checks it passes with current evidence.
    let passing_checks: BTreeMap<&str, BTreeSet<&str>> = hosts
        .iter()
        .map(|h| {
            let passes = h
                .checks
                .iter()
                .filter(|c| c.status == CheckStatus::Pass && fresh(c))
                .map(|c| c.check_id.as_str())
                .collect();
            (h.agent_id.as_str(), passes)
        })
        .collect();
    let mut failing: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for d in &evaluation.deviations {
        let hosts = failing.entry(d.control_id.as_str()).or_default();
        for h in &d.failing_hosts {
            hosts.entry(h.clone()).or_default().insert(d.check_id.clone());
        }
    }
    evaluation
        .controls
        .iter()
        .filter(|c| !c.checks.is_empty() && frameworks.contains(&c.framework))
        .map(|c| {
            let failing = failing.remove(c.control_id.as_str()).unwrap_or_default();
            let checks: BTreeSet<String> = if failing.is_empty() {
                c.checks.iter().cloned().collect()
            } else {
                failing.values().flatten().cloned().collect()
            };
            let in_scope: BTreeSet<String> = c
                .passing
                .iter()
                .chain(&c.failing)
                .chain(&c.unknown)
                .chain(&c.without_evidence)
                .chain(&c.stale)
                .cloned()
                .collect();
            let passing = in_scope
                .iter()
                .map(|h| {
                    let passes = passing_checks.get(h.as_str());
                    let checks = c
                        .checks
                        .iter()
                        .filter(|chk| passes.is_some_and(|p| p.contains(chk.as_str())))
                        .cloned()
                        .collect();
                    (h.clone(), checks)
                })
                .collect();
            // Each failing host's newest record among the checks it fails.
            let evidence = failing
                .iter()
                .filter_map(|(host, checks)| {
                    let h = hosts.iter().find(|h| h.agent_id == *host)?;
                    let seq = h
                        .checks
                        .iter()
                        .filter(|e| checks.contains(&e.check_id))
                        .map(|e| e.record_seq)
                        .max()?;
                    Some((host.clone(), format!("/api/v1/records/{host}/{seq}")))
                })
                .collect();
            Observation {
                evidence,
                requirement: c.control_id.clone(),
                scope: FLEET.into(),
                in_scope,
                failing,
                passing,
                profile: profile(catalog, &policy.matrix, &c.control_id, &checks),
            }
        })
        .collect()
}

/// What a keeper pass needs besides the store: the catalog, the
/// configuration and the policy in force.
pub struct Keeper {
    pub catalog: Arc<Reloadable<Catalog>>,
    pub config: Config,
    pub policy: Arc<Reloadable<Policy>>,
    pub data_dir: PathBuf,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    pub transitions: Vec<Transition>,
    pub requirement_changes: usize,
}

/// Loads the built-in policy merged with the data dir's `policy.toml`, if any.
pub fn load_policy(data_dir: &std::path::Path) -> Result<Policy, String> {
    let builtin = Policy::builtin().map_err(|e| e.to_string())?;
    let path = DataDir(data_dir.to_path_buf()).policy();
    let text = crate::reload::read_optional(&path).map_err(|e| e.to_string())?;
    Policy::with_optional_override(&builtin, &path, text.as_deref()).map_err(|e| e.to_string())
}

/// Takes up a changed policy file. A bad one is logged and recorded as a
/// security event, and the last good policy stays in force. `Ok(true)`: a
/// new policy is in force; `Ok(false)`: nothing changed.
pub fn refresh_policy(
    policy: &Reloadable<Policy>,
    data_dir: &std::path::Path,
    store: &Store,
    now: OffsetDateTime,
) -> Result<bool, String> {
    match policy.refresh(|| load_policy(data_dir)) {
        Ok(true) => {
            tracing::info!(version = policy.current().version(), "policy reloaded");
            Ok(true)
        }
        Ok(false) => Ok(false),
        Err(e) => {
            tracing::error!(error = %e, "policy file rejected; the last good policy stays in force");
            let detail = format!("policy file rejected, kept version {}: {e}", policy.current().version());
            if let Err(e) =
                store.record_security_event(now.unix_timestamp(), None, "policy_rejected", &detail)
            {
                tracing::error!(error = %e, "could not record the rejected policy");
            }
            Err(e)
        }
    }
}

/// Takes up changed mapping files like [`refresh_policy`] does the policy:
/// a bad one is logged and recorded, the last good catalog stays.
pub fn refresh_catalog(
    catalog: &Reloadable<Catalog>,
    data_dir: &std::path::Path,
    store: &Store,
    now: OffsetDateTime,
) -> Result<bool, String> {
    match catalog.refresh(|| crate::app::load_catalog(data_dir).map_err(|e| e.to_string())) {
        Ok(true) => {
            tracing::info!(version = catalog.current().mapping_version(), "mappings reloaded");
            Ok(true)
        }
        Ok(false) => Ok(false),
        Err(e) => {
            tracing::error!(error = %e, "mapping file rejected; the last good mappings stay in force");
            let detail = format!("mappings rejected, kept {}: {e}", catalog.current().mapping_version());
            if let Err(e) =
                store.record_security_event(now.unix_timestamp(), None, "mappings_rejected", &detail)
            {
                tracing::error!(error = %e, "could not record the rejected mappings");
            }
            Err(e)
        }
    }
}

impl Keeper {
    /// Takes up changed policy and mapping files (see [`refresh_policy`],
    /// [`refresh_catalog`]).
    pub fn refresh(&self, store: &Store, now: OffsetDateTime) {
        let _ = refresh_policy(&self.policy, &self.data_dir, store, now);
        let _ = refresh_catalog(&self.catalog, &self.data_dir, store, now);
    }

    /// One pass: evaluate the fleet under the policy in force, log every
    /// changed standing per host and requirement, reconcile the register and
    /// queue its notifications, each in its own transaction.
    pub fn pass(&self, store: &Store, now: OffsetDateTime) -> Result<Pass, StoreError> {
        let rules = self.policy.current();
        let catalog = self.catalog.current();
        let hosts = views::fleet_evidence(store, &rules)?;
        let eval_policy = views::policy_at(&self.config, &rules, &store.exceptions()?, now);
        let evaluation = evaluate(&catalog, &hosts, now, &eval_policy);
        let standings = requirement_standings(&evaluation, &hosts);
        let requirement_changes = store.log_requirement_standings(
            &standings,
            now.unix_timestamp(),
            rules.version(),
            catalog.mapping_version(),
        )?;
        let policy = self.config.risk.policy();
        let fresh = |c: &CheckEvidence| eval_policy.is_fresh(c, now);
        let observations =
            observations(&catalog, &hosts, &evaluation, &self.config.risk.frameworks, &policy, fresh);
        let hooks = &self.config.webhooks;
        let transitions = store.reconcile_risks(
            |entries| reconcile(entries, &observations, &policy, now),
            |ts| webhook::deliveries_for_transitions(hooks, ts, now.unix_timestamp()),
        )?;
        Ok(Pass { transitions, requirement_changes })
    }
}

/// Runs the keeper until `shutdown` turns true.
pub fn spawn(
    store: Arc<Store>,
    keeper: Keeper,
    changed: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let keeper = Arc::new(keeper);
    tokio::spawn(async move {
        loop {
            let (store, keeper) = (Arc::clone(&store), Arc::clone(&keeper));
            let started = std::time::Instant::now();
            let pass = tokio::task::spawn_blocking(move || {
                let now = OffsetDateTime::now_utc();
                keeper.refresh(&store, now);
                keeper.pass(&store, now)
            })
            .await;
            match pass {
                Ok(Ok(p)) => {
                    let events: usize = p.transitions.iter().map(|t| t.events.len()).sum();
                    if events > 0 || p.requirement_changes > 0 {
                        tracing::info!(
                            entries = p.transitions.len(),
                            events,
                            requirement_changes = p.requirement_changes,
                            "evaluation recorded"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "evaluation pass failed"),
                Err(e) => tracing::error!(error = %e, "evaluation pass panicked"),
            }
            // Under a stream of commits, passes take at most a third of the
            // time: a large fleet's evaluation must not crowd out ingest.
            let settle = (started.elapsed() * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
            tokio::select! {
                _ = changed.notified() => {
                    // Let a burst of commits settle into one pass.
                    tokio::time::sleep(settle).await;
                }
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = crate::app::stopped(&mut shutdown) => return,
            }
        }
    })
}
