//! The enrolled agents as the running server knows them: each agent's
//! evidence key and whether it is revoked, cached in memory in front of the
//! store. Shared by the gRPC services (every call and every stream batch
//! consults it) and the HTTP API (which revokes).
//!
//! Invariant: a revocation is written to the store before the cache entry is
//! dropped, so no call after `revoke` returns can see the agent as active.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::store::agents::AgentKey;
use crate::store::{Store, StoreError};

pub struct AgentRegistry {
    store: Arc<Store>,
    cache: RwLock<HashMap<String, AgentKey>>,
}

impl std::fmt::Debug for AgentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentRegistry")
    }
}

impl AgentRegistry {
    pub fn new(store: Arc<Store>) -> Self {
        AgentRegistry { store, cache: RwLock::new(HashMap::new()) }
    }

    /// The agent's key and revocation state; `None` when not enrolled.
    pub fn get(&self, agent_id: &str) -> Result<Option<AgentKey>, StoreError> {
        if let Some(a) = self.cache.read().ok().and_then(|m| m.get(agent_id).cloned()) {
            return Ok(Some(a));
        }
        let found = self.store.agent_key(agent_id)?;
        if let (Some(a), Ok(mut m)) = (&found, self.cache.write()) {
            m.insert(agent_id.to_string(), a.clone());
        }
        Ok(found)
    }

    /// Revokes an agent; `Ok(false)` when it was unknown or already revoked.
    pub fn revoke(&self, agent_id: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self.store.revoke_agent(agent_id, now)?;
        if let Ok(mut m) = self.cache.write() {
            m.remove(agent_id);
        }
        Ok(changed)
    }
}
