//! Enrolled agents: identity, evidence key, certificate and revocation.

use rusqlite::{OptionalExtension, params};

use super::tokens::{TokenRefusal, consume};
use super::{Store, StoreError};

/// An agent about to be enrolled.
pub struct NewAgent<'a> {
    pub agent_id: &'a str,
    pub display_name: &'a str,
    pub evidence_key: &'a [u8; 32],
    pub cert_serial: &'a str,
    pub cert_not_after: i64,
    pub agent_version: &'a str,
}

/// What the ingest path needs to know about an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    pub agent_id: String,
    pub evidence_key: [u8; 32],
    pub revoked: bool,
}

impl Store {
    /// Consumes one use of the enrollment token and records the agent, in
    /// one transaction: a refused token enrolls nothing.
    pub fn enroll_agent(
        &self,
        token_hash: &[u8; 32],
        agent: &NewAgent<'_>,
        now: i64,
    ) -> Result<Result<(), TokenRefusal>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Err(refusal) = consume(&tx, token_hash, now)? {
            return Ok(Err(refusal));
        }
        tx.execute(
            "INSERT INTO agents (agent_id, display_name, evidence_key, enrolled_at, cert_serial, cert_not_after, agent_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                agent.agent_id,
                agent.display_name,
                agent.evidence_key.as_slice(),
                now,
                agent.cert_serial,
                agent.cert_not_after,
                agent.agent_version
            ],
        )?;
        super::tlog::log_key_binding(&tx, "enrolled", agent.agent_id, agent.evidence_key, now)?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// Records a renewed client certificate; the log notes that the agent's
    /// evidence key still speaks for it.
    pub fn record_renewal(
        &self,
        agent_id: &str,
        serial: &str,
        not_after: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE agents SET cert_serial = ?2, cert_not_after = ?3 WHERE agent_id = ?1",
            params![agent_id, serial, not_after],
        )?;
        let key: Option<Vec<u8>> = tx
            .query_row("SELECT evidence_key FROM agents WHERE agent_id = ?1", [agent_id], |r| r.get(0))
            .optional()?;
        if let Some(key) = key {
            super::tlog::log_key_binding(&tx, "renewed", agent_id, &key, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn revoke_agent(&self, agent_id: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE agents SET revoked_at = ?2 WHERE agent_id = ?1 AND revoked_at IS NULL",
            params![agent_id, now],
        )?;
        if n == 1 {
            let key: Vec<u8> =
                tx.query_row("SELECT evidence_key FROM agents WHERE agent_id = ?1", [agent_id], |r| {
                    r.get(0)
                })?;
            super::tlog::log_key_binding(&tx, "revoked", agent_id, &key, now)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Asks an active agent for a fresh collection; returns the new
    /// generation, or `None` when the agent is unknown or revoked.
    pub fn request_collection(&self, agent_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "UPDATE agents SET collect_generation = collect_generation + 1
                 WHERE agent_id = ?1 AND revoked_at IS NULL RETURNING collect_generation",
                [agent_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|g| g as u64))
    }

    /// The agent's current collect-now generation (0 when never asked).
    pub fn collect_generation(&self, agent_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT collect_generation FROM agents WHERE agent_id = ?1", [agent_id], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64)
    }

    pub fn agent_key(&self, agent_id: &str) -> Result<Option<AgentKey>, StoreError> {
        self.conn()
            .query_row(
                "SELECT agent_id, evidence_key, revoked_at IS NOT NULL FROM agents WHERE agent_id = ?1",
                [agent_id],
                row_to_key,
            )
            .optional()?
            .transpose()
    }

    /// Replaces the server-assigned tags of an agent; `false` when there is no such agent.
    pub fn set_tags(&self, agent_id: &str, tags: &[String]) -> Result<bool, StoreError> {
        let json = serde_json::to_string(tags).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))?;
        let n = self
            .conn()
            .execute("UPDATE agents SET tags = ?2 WHERE agent_id = ?1", params![agent_id, json])?;
        Ok(n == 1)
    }
}

fn row_to_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AgentKey, StoreError>> {
    let agent_id: String = r.get(0)?;
    let key: Vec<u8> = r.get(1)?;
    let revoked: bool = r.get(2)?;
    Ok(match <[u8; 32]>::try_from(key.as_slice()) {
        Ok(evidence_key) => Ok(AgentKey { agent_id, evidence_key, revoked }),
        Err(_) => Err(StoreError::Corrupt(format!("agent {agent_id}: evidence key is not 32 bytes"))),
    })
}
