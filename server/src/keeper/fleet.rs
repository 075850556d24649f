//! The fleet's evidence as evaluation reads it, kept in memory and brought
//! up to date incrementally: each host's latest check results, decided by
//! the policy in force. Deciding is the costly part (CEL over each result's
//! facts), so a result is decided once, when its record arrives, when its
//! host's facts (OS, tags) change, or when the policy changes, and not on
//! every query.
//!
//! Invariants: what [`Fleet::evidence`] returns equals
//! `evaluation_inputs::fleet_evidence` over the same store and policy (tested); a
//! refresh reads the records' high-water mark before the states, so a
//! record committed during a refresh is read again on the next one, never
//! missed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::compliance::evaluate::{CheckEvidence, HostEvidence};
use crate::compliance::policy::{HostFacts, Policy};
use crate::keeper::decided;
use crate::store::queries::CheckStateRow;
use crate::store::{Store, StoreError};

/// The cached evidence; see the module comment.
#[derive(Default)]
pub struct Fleet {
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    /// The policy the results were decided by (identity, not version text:
    /// a reloaded file is a new policy even under the same version).
    policy: Arc<Policy>,
    /// The highest `records.id` whose results are in.
    mark: i64,
    /// Active hosts in the store's order (display name, agent id).
    hosts: Arc<Vec<HostEvidence>>,
    /// The facts each host's results were decided with.
    facts: HashMap<String, HostFacts>,
}

/// What a refresh did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Everything was read and decided again.
    pub full: bool,
    /// Hosts whose results were read and decided again.
    pub hosts_decided: usize,
}

impl Fleet {
    pub fn new() -> Fleet {
        Fleet::default()
    }

    /// The evidence of every active (not revoked) host under `policy`,
    /// brought up to date with the store first.
    pub fn evidence(
        &self,
        store: &Store,
        policy: &Arc<Policy>,
    ) -> Result<Arc<Vec<HostEvidence>>, StoreError> {
        Ok(self.refresh(store, policy)?.0)
    }

    /// Brings the cache up to date and returns the evidence with what the
    /// refresh did.
    pub fn refresh(
        &self,
        store: &Store,
        policy: &Arc<Policy>,
    ) -> Result<(Arc<Vec<HostEvidence>>, Refresh), StoreError> {
        let mut guard = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        // The mark first: a record committed after this is read next time.
        let mark = store.records_high_water()?;
        let rows = store.hosts()?;
        let active: Vec<_> = rows.into_iter().filter(|h| !h.revoked).collect();
        let facts: HashMap<String, HostFacts> = active
            .iter()
            .map(|h| (h.agent_id.clone(), HostFacts { os: h.os.clone(), tags: h.all_tags() }))
            .collect();
        let previous = guard.take().filter(|c| Arc::ptr_eq(&c.policy, policy));
        let (mut checks, report) = match previous {
            None => {
                let mut by_agent: HashMap<String, Vec<CheckEvidence>> = HashMap::new();
                for row in store.check_states_all()? {
                    let Some(f) = facts.get(&row.agent_id) else { continue };
                    let agent = row.agent_id.clone();
                    by_agent.entry(agent).or_default().push(decided(policy, row, f)?);
                }
                (by_agent, Refresh { full: true, hosts_decided: active.len() })
            }
            Some(c) => {
                let mut again: BTreeSet<String> =
                    store.agents_with_records_after(c.mark)?.into_iter().collect();
                again.extend(
                    active
                        .iter()
                        .filter(|h| c.facts.get(&h.agent_id) != facts.get(&h.agent_id))
                        .map(|h| h.agent_id.clone()),
                );
                let same_hosts = c.hosts.len() == active.len()
                    && c.hosts.iter().zip(&active).all(|(e, h)| {
                        e.agent_id == h.agent_id && e.display_name == h.display_name && e.tags == h.all_tags()
                    });
                if again.is_empty() && same_hosts {
                    let hosts = Arc::clone(&c.hosts);
                    *guard = Some(Cached { mark, ..c });
                    return Ok((hosts, Refresh::default()));
                }
                // Reuse the decided results (moved, not copied, unless a
                // reader still holds the last list).
                let old = Arc::try_unwrap(c.hosts).unwrap_or_else(|shared| (*shared).clone());
                let mut by_agent: HashMap<String, Vec<CheckEvidence>> =
                    old.into_iter().map(|h| (h.agent_id, h.checks)).collect();
                let mut decided_hosts = 0;
                for agent in &again {
                    let Some(f) = facts.get(agent) else { continue };
                    let checks = store
                        .check_states_of(agent)?
                        .into_iter()
                        .map(|row| decided(policy, row, f))
                        .collect::<Result<Vec<_>, _>>()?;
                    by_agent.insert(agent.clone(), checks);
                    decided_hosts += 1;
                }
                (by_agent, Refresh { full: false, hosts_decided: decided_hosts })
            }
        };
        let hosts: Vec<HostEvidence> = active
            .into_iter()
            .map(|h| HostEvidence {
                checks: checks.remove(&h.agent_id).unwrap_or_default(),
                tags: h.all_tags(),
                agent_id: h.agent_id,
                display_name: h.display_name,
            })
            .collect();
        let hosts = Arc::new(hosts);
        *guard = Some(Cached { policy: Arc::clone(policy), mark, hosts: Arc::clone(&hosts), facts });
        Ok((hosts, report))
    }
}

/// A stored result as evaluation reads it, decided by the policy.
fn decided(policy: &Policy, mut row: CheckStateRow, facts: &HostFacts) -> Result<CheckEvidence, StoreError> {
    decided::decide(policy, &mut row, facts);
    decided::check_evidence(row)
}
