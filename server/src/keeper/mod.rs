//! The keeper: after evidence is committed (and once a minute, since
//! evidence goes stale and grace periods end with time) it takes up a
//! changed policy file, evaluates the fleet, logs every changed standing
//! per host and requirement, and reconciles the risk register. Runs off the
//! ingest hot path.
//!
//! Register entries are kept per requirement and scope (`[risk] scopes`,
//! host tags; the rest of the fleet is one scope).
//!
//! It keeps what it last logged in memory (compactly) and writes only the
//! pairs whose standing changed; the change log's `at` is the pass's time
//! (never before the log's last row, and a second later when the versions
//! changed within the second: see `store::requirements`), so an as-of
//! answer is what Custos had decided by then, under the versions it names,
//! and never changes afterwards.
//!
//! Beside the loop: `evaluation_inputs` (what an evaluation reads from the
//! store, for the keeper, the export and the API alike), `decided` (a stored
//! result under the policy), `fleet` (those results cached and kept
//! current) and `register_edits` (a person's edits of the register, logged
//! and notified like the keeper's own). They apply the pure rules of
//! `compliance` and `register` to what the store holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::compliance::catalog::Catalog;
use crate::compliance::evaluate::{
    CheckEvidence, HostEvidence, REQUIREMENT_STATES, Standings, evaluate, requirement_state_code,
    standing_detail, standings,
};
use crate::compliance::policy::Policy;
use crate::config::Config;
use crate::datadir::reload::Reloadable;
use crate::datadir::{refresh_catalog, refresh_policy};
use crate::keeper::fleet::Fleet;
use crate::register::Transition;
use crate::register::lifecycle::reconcile;
use crate::store::requirements::{RequirementChangeRow, Requirements};
use crate::store::{Store, StoreError};
use crate::webhook;

pub mod decided;
pub mod evaluation_inputs;
pub mod fleet;
mod observations;
pub mod register_edits;
pub use observations::{Named, observations};

/// What a keeper pass needs besides the store: the catalog, the
/// configuration, the policy in force, the fleet's cached evidence, and
/// what it last logged.
pub struct Keeper {
    pub catalog: Arc<Reloadable<Catalog>>,
    pub config: Config,
    pub policy: Arc<Reloadable<Policy>>,
    pub data_dir: PathBuf,
    pub fleet: Arc<Fleet>,
    /// The standings last logged, read from the store on the first pass.
    logged: Mutex<Option<Logged>>,
}

/// The standings last logged per host and requirement, compactly: the
/// requirement ids interned, each host's (requirement, state code) pairs
/// sorted by requirement. A fleet of 100,000 hosts × 80 requirements fits
/// in tens of MiB this way, where owned string pairs took gigabytes.
#[derive(Default)]
struct Logged {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    by_agent: HashMap<String, Vec<(u32, u8)>>,
}

impl Logged {
    fn id(&mut self, requirement: &str) -> u32 {
        if let Some(&id) = self.ids.get(requirement) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(requirement.to_string());
        self.ids.insert(requirement.to_string(), id);
        id
    }

    fn from_store(store: &Store) -> Result<Logged, StoreError> {
        let mut logged = Logged::default();
        for s in store.requirement_states_at(i64::MAX, Requirements::All, false)? {
            let Some(code) = requirement_state_code(&s.state) else {
                return Err(StoreError::Corrupt(format!(
                    "requirement_changes row {}: unknown state {:?}",
                    s.row, s.state
                )));
            };
            let id = logged.id(&s.requirement);
            logged.by_agent.entry(s.agent_id).or_default().push((id, code));
        }
        for pairs in logged.by_agent.values_mut() {
            pairs.sort_unstable();
        }
        Ok(logged)
    }
}

/// The changes between what was logged and the new standings, and the
/// standings to remember once they are logged.
struct Diff {
    changes: Vec<RequirementChangeRow>,
    next: HashMap<String, Vec<(u32, u8)>>,
}

/// [`Diff`] of `standings` against `logged`; only changed pairs get their
/// detail worked out.
fn diff(logged: &mut Logged, hosts: &[HostEvidence], standings: &Standings<'_>) -> Diff {
    let ids: Vec<u32> = standings.requirements.iter().map(|r| logged.id(r)).collect();
    let mut changes = Vec::new();
    let mut next: HashMap<String, Vec<(u32, u8)>> = HashMap::with_capacity(hosts.len());
    for (h, host) in hosts.iter().enumerate() {
        let mut now: Vec<(u32, u8, usize)> = standings.codes[h]
            .iter()
            .enumerate()
            .filter(|(_, code)| **code != Standings::NONE)
            .map(|(r, code)| (ids[r], *code, r))
            .collect();
        now.sort_unstable();
        let before = logged.by_agent.get(&host.agent_id).map_or(&[][..], Vec::as_slice);
        let (mut i, mut j) = (0, 0);
        while i < before.len() || j < now.len() {
            let old = before.get(i).copied();
            let new = now.get(j).copied();
            match (old, new) {
                (Some((oid, ocode)), Some((nid, ncode, r))) if oid == nid => {
                    if ocode != ncode {
                        changes.push(change(host, standings, r, Some(ocode), ncode));
                    }
                    i += 1;
                    j += 1;
                }
                (Some((oid, ocode)), Some((nid, _, _))) if oid < nid => {
                    changes.push(removed(&host.agent_id, &logged.names[oid as usize], ocode));
                    i += 1;
                }
                (Some((oid, ocode)), None) => {
                    changes.push(removed(&host.agent_id, &logged.names[oid as usize], ocode));
                    i += 1;
                }
                (_, Some((_, ncode, r))) => {
                    changes.push(change(host, standings, r, None, ncode));
                    j += 1;
                }
                (None, None) => break,
            }
        }
        next.insert(host.agent_id.clone(), now.into_iter().map(|(id, code, _)| (id, code)).collect());
    }
    // Hosts no longer evaluated (revoked): every pair removed.
    let present: HashSet<&str> = hosts.iter().map(|h| h.agent_id.as_str()).collect();
    let mut gone: Vec<(&String, &Vec<(u32, u8)>)> =
        logged.by_agent.iter().filter(|(a, _)| !present.contains(a.as_str())).collect();
    gone.sort();
    for (agent, pairs) in gone {
        for &(id, code) in pairs {
            changes.push(removed(agent, &logged.names[id as usize], code));
        }
    }
    // In agent order, each agent's in requirement order: the change log's
    // indexes ((agent, at) and (requirement, agent, ...)) then take the rows
    // at a few advancing positions instead of all over, which keeps large
    // first passes from turning into random page writes.
    changes.sort_by(|a, b| (&a.agent_id, &a.requirement).cmp(&(&b.agent_id, &b.requirement)));
    Diff { changes, next }
}

fn change(
    host: &HostEvidence,
    s: &Standings<'_>,
    r: usize,
    from: Option<u8>,
    to: u8,
) -> RequirementChangeRow {
    let detail = standing_detail(host, s.checks[r], REQUIREMENT_STATES[to as usize]);
    RequirementChangeRow {
        agent_id: host.agent_id.clone(),
        requirement: s.requirements[r].to_string(),
        from: from.map(|c| REQUIREMENT_STATES[c as usize]),
        to: detail.state,
        record_seq: detail.record_seq,
        checks: detail.checks,
    }
}

fn removed(agent: &str, requirement: &str, from: u8) -> RequirementChangeRow {
    RequirementChangeRow {
        agent_id: agent.to_string(),
        requirement: requirement.to_string(),
        from: Some(REQUIREMENT_STATES[from as usize]),
        to: "removed",
        record_seq: None,
        checks: BTreeMap::new(),
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    pub transitions: Vec<Transition>,
    pub requirement_changes: usize,
}

impl Keeper {
    pub fn new(
        catalog: Arc<Reloadable<Catalog>>,
        config: Config,
        policy: Arc<Reloadable<Policy>>,
        data_dir: PathBuf,
        fleet: Arc<Fleet>,
    ) -> Keeper {
        Keeper { catalog, config, policy, data_dir, fleet, logged: Mutex::new(None) }
    }

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
        let hosts = self.fleet.evidence(store, &rules)?;
        let eval_policy =
            crate::keeper::evaluation_inputs::settings_at(&self.config, &rules, &store.exceptions()?, now);
        let evaluation = evaluate(&catalog, &hosts, now, &eval_policy);
        let standings = standings(&evaluation, &hosts);
        let requirement_changes = {
            let mut guard = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
            let mut logged = match guard.take() {
                Some(l) => l,
                None => Logged::from_store(store)?,
            };
            let Diff { changes, next } = diff(&mut logged, &hosts, &standings);
            // Only what the store took is remembered: on failure the next
            // pass starts again from the store.
            store.log_requirement_changes(
                &changes,
                now.unix_timestamp(),
                rules.version(),
                catalog.mapping_version(),
            )?;
            logged.by_agent = next;
            *guard = Some(logged);
            changes.len()
        };
        let policy = self.config.risk.policy();
        let fresh = |c: &CheckEvidence| eval_policy.is_fresh(c, now);
        let frameworks = &self.config.risk.frameworks;
        let hooks = &self.config.webhooks;
        let transitions = store.reconcile_risks(
            |entries| {
                let mut named: Named<'_> = HashMap::new();
                for e in entries {
                    if let Some(req) = &e.requirement {
                        let failed = |h: &String| e.host_checks.get(h).unwrap_or(&e.checks);
                        let hosts = e.affected_hosts.iter().map(|h| (h.as_str(), failed(h)));
                        named.entry((req.as_str(), e.scope.as_str())).or_default().extend(hosts);
                    }
                }
                let observations = observations(
                    &catalog,
                    &hosts,
                    &evaluation,
                    &standings,
                    frameworks,
                    &policy,
                    &named,
                    fresh,
                );
                reconcile(entries, &observations, &policy, now)
            },
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
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    })
}
