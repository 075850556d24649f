//! Bulk enrolment for benchmarks and tests: puts many agents into the real
//! `agents` table in one transaction, without an enrollment token or a
//! certificate issued per agent (which costs one committed transaction, and
//! so one fsync, each). Their evidence then goes through the real ingest
//! path ([`super::records::RecordWriter`]) like any agent's.
//!
//! Not used by the server itself: an agent enrolled here has no certificate,
//! so it cannot connect; the certificate serial and expiry are the caller's.

use custos_proto::evidence::statement::is_token;
use ed25519_dalek::VerifyingKey;
use rusqlite::{ErrorCode, params};

use super::{Store, StoreError};

/// One agent to enrol.
#[derive(Debug, Clone)]
pub struct BulkAgent {
    /// As a statement must name it: 1 to 64 of letters, digits, `-`, `_`, `.`.
    pub agent_id: String,
    pub display_name: String,
    /// Ed25519 public key the agent's records are signed with.
    pub evidence_key: [u8; 32],
    pub cert_serial: String,
    pub cert_not_after: i64,
    pub agent_version: String,
    /// Server-assigned host-group tags.
    pub tags: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("agent id {agent_id:?} is not 1 to 64 letters, digits, '-', '_' or '.'")]
    BadAgentId { agent_id: String },
    #[error("agent {agent_id}: evidence key is not a usable Ed25519 public key ({why})")]
    BadKey { agent_id: String, why: &'static str },
    #[error("agent {agent_id} is enrolled already (or twice in the batch)")]
    Duplicate { agent_id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Enrols `agents` at `now` in one transaction: all of them or, on any
    /// error, none. Returns how many were enrolled. Meant for batches of
    /// about 10,000 (the transaction holds the write lock meanwhile).
    pub fn enroll_bulk(&self, agents: &[BulkAgent], now: i64) -> Result<usize, BulkError> {
        // Check everything before writing, so a bad entry names itself
        // rather than surfacing as a later signature failure.
        for a in agents {
            if !is_token(&a.agent_id, 64) {
                return Err(BulkError::BadAgentId { agent_id: a.agent_id.clone() });
            }
            let bad = |why| BulkError::BadKey { agent_id: a.agent_id.clone(), why };
            let key = VerifyingKey::from_bytes(&a.evidence_key).map_err(|_| bad("not a curve point"))?;
            if key.is_weak() {
                return Err(bad("a weak, small-order key"));
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(StoreError::from)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO agents (agent_id, display_name, evidence_key, enrolled_at, cert_serial,
                                         cert_not_after, agent_version, tags)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(StoreError::from)?;
            for a in agents {
                let tags = serde_json::to_string(&a.tags)
                    .map_err(|e| StoreError::Corrupt(format!("tags of {}: {e}", a.agent_id)))?;
                let inserted = insert.execute(params![
                    a.agent_id,
                    a.display_name,
                    a.evidence_key.as_slice(),
                    now,
                    a.cert_serial,
                    a.cert_not_after,
                    a.agent_version,
                    tags
                ]);
                match inserted {
                    Ok(_) => {}
                    // The only constraint an insert here can break is the primary key.
                    Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
                        return Err(BulkError::Duplicate { agent_id: a.agent_id.clone() });
                    }
                    Err(e) => return Err(StoreError::from(e).into()),
                }
            }
        }
        tx.commit().map_err(StoreError::from)?;
        Ok(agents.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::temp_store as store;

    fn agent(i: u8) -> BulkAgent {
        let key = ed25519_dalek::SigningKey::from_bytes(&[i; 32]).verifying_key().to_bytes();
        BulkAgent {
            agent_id: format!("agent-{i:03}"),
            display_name: format!("host {i}"),
            evidence_key: key,
            cert_serial: format!("{i:02x}"),
            cert_not_after: 2_000_000_000,
            agent_version: "0.1.0".into(),
            tags: if i.is_multiple_of(2) { vec!["server".into()] } else { Vec::new() },
        }
    }

    #[test]
    fn enrolled_agents_are_hosts_with_their_keys_and_tags() {
        let (_d, s) = store();
        let agents: Vec<_> = (1..=3).map(agent).collect();
        assert_eq!(s.enroll_bulk(&agents, 1_700_000_000).unwrap(), 3);
        let hosts = s.hosts().unwrap();
        assert_eq!(hosts.len(), 3);
        let h2 = hosts.iter().find(|h| h.agent_id == "agent-002").unwrap();
        assert_eq!((h2.display_name.as_str(), h2.enrolled_at), ("host 2", 1_700_000_000));
        assert_eq!(h2.tags, ["server"]);
        assert!(!h2.revoked && h2.head_seq == 0 && h2.last_collected_at.is_none());
        let key = s.agent_key("agent-003").unwrap().unwrap();
        assert_eq!(key.evidence_key, agents[2].evidence_key);
        assert_eq!(s.enroll_bulk(&[], 0).unwrap(), 0);
    }

    #[test]
    fn a_duplicate_enrols_nothing_of_its_batch() {
        let (_d, s) = store();
        s.enroll_bulk(&[agent(1)], 0).unwrap();
        let err = s.enroll_bulk(&[agent(2), agent(1)], 0).unwrap_err();
        assert!(matches!(&err, BulkError::Duplicate { agent_id } if agent_id == "agent-001"), "{err}");
        let err = s.enroll_bulk(&[agent(3), agent(3)], 0).unwrap_err();
        assert!(matches!(&err, BulkError::Duplicate { agent_id } if agent_id == "agent-003"), "{err}");
        let ids: Vec<_> = s.hosts().unwrap().into_iter().map(|h| h.agent_id).collect();
        assert_eq!(ids, ["agent-001"], "the failed batches left nothing behind");
    }

    #[test]
    fn bad_ids_and_keys_are_refused_before_anything_is_written() {
        let (_d, s) = store();
        for id in ["", "a b", "../x", &"x".repeat(65)] {
            let mut a = agent(1);
            a.agent_id = id.to_string();
            let err = s.enroll_bulk(&[agent(2), a], 0).unwrap_err();
            assert!(matches!(err, BulkError::BadAgentId { .. }), "{id:?}: {err}");
        }
        // The identity point has small order: a weak key.
        let mut weak = agent(1);
        weak.evidence_key = [0; 32];
        weak.evidence_key[0] = 1;
        let err = s.enroll_bulk(&[weak], 0).unwrap_err();
        assert!(matches!(&err, BulkError::BadKey { agent_id, .. } if agent_id == "agent-001"), "{err}");
        // Not a point on the curve (y = 2 has no x).
        let mut off = agent(1);
        off.evidence_key = [0; 32];
        off.evidence_key[0] = 2;
        let err = s.enroll_bulk(&[off], 0).unwrap_err();
        assert!(matches!(err, BulkError::BadKey { .. }), "{err}");
        assert!(s.hosts().unwrap().is_empty());
    }
}
