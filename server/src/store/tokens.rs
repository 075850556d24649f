//! Enrollment and API tokens, kept as hashes only.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
pub use custos_verify::leaf::AuditEntry;
use custos_verify::leaf::{AUDIT_TYPE, AuditLeaf};

/// Why an enrollment token was refused (logged on the server; the agent
/// only learns that the token was not accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Expired,
    UsedUp,
}

impl std::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenRefusal::Unknown => "unknown token",
            TokenRefusal::Expired => "token expired",
            TokenRefusal::UsedUp => "token has no uses left",
        })
    }
}

/// Role of an HTTP API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Everything, writes included.
    Admin,
    /// Read-only, optionally limited to a window of evidence time and a set
    /// of controls; every request is kept in the audit trail.
    Auditor,
    /// Read-only.
    Viewer,
}

impl ApiRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Admin => "admin",
            ApiRole::Auditor => "auditor",
            ApiRole::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for ApiRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(ApiRole::Admin),
            "auditor" => Ok(ApiRole::Auditor),
            "viewer" => Ok(ApiRole::Viewer),
            other => Err(format!("role {other:?}: use admin, auditor or viewer")),
        }
    }
}

/// A new API token's properties.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub role: ApiRole,
    pub name: String,
    pub expires_at: Option<i64>,
    /// Auditors: the evidence time they may see.
    pub window: Option<(i64, i64)>,
    /// Auditors: control ids or prefixes they may see (empty: all).
    pub controls: Vec<String>,
}

impl NewApiToken {
    pub fn new(role: ApiRole, name: &str) -> NewApiToken {
        NewApiToken { role, name: name.into(), expires_at: None, window: None, controls: Vec::new() }
    }
}

/// Who is calling the API, as their token says.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Caller {
    pub token_id: i64,
    pub name: String,
    pub role: ApiRole,
    pub window: Option<(i64, i64)>,
    pub controls: Vec<String>,
}

impl Caller {
    /// Whether the caller may see control `id` (an exact id, or one under a prefix).
    pub fn may_see_control(&self, id: &str) -> bool {
        self.controls.is_empty()
            || self.controls.iter().any(|p| {
                id == p
                    || (id.starts_with(p.as_str()) && matches!(id.as_bytes().get(p.len()), Some(b'.' | b'/')))
            })
    }
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrailRow {
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Its leaf in the transparency log (rows from before version 8 have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_index: Option<u64>,
}

impl Store {
    pub fn create_enrollment_token(
        &self,
        hash: &[u8; 32],
        uses: u32,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO enrollment_tokens (token_hash, uses_left, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash.as_slice(), uses, expires_at, now],
        )?;
        Ok(())
    }

    pub fn create_api_token(&self, hash: &[u8; 32], t: &NewApiToken, now: i64) -> Result<(), StoreError> {
        let controls = serde_json::to_string(&t.controls).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().execute(
            "INSERT INTO api_tokens (token_hash, role, name, created_at, expires_at, window_from, window_to, controls)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                hash.as_slice(),
                t.role.as_str(),
                t.name,
                now,
                t.expires_at,
                t.window.map(|w| w.0),
                t.window.map(|w| w.1),
                controls
            ],
        )?;
        Ok(())
    }

    /// The caller a token stands for; `None` when unknown or expired at `now`.
    pub fn api_caller(&self, hash: &[u8; 32], now: i64) -> Result<Option<Caller>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, role, name, expires_at, window_from, window_to, controls FROM api_tokens WHERE token_hash = ?1",
                [hash.as_slice()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some((token_id, role, name, expires_at, from, to, controls)) = row else { return Ok(None) };
        if expires_at.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        let role = role.parse().map_err(StoreError::Corrupt)?;
        let controls = serde_json::from_str(&controls)
            .map_err(|e| StoreError::Corrupt(format!("token controls: {e}")))?;
        let window = match (from, to) {
            (Some(f), Some(t)) => Some((f, t)),
            _ => None,
        };
        Ok(Some(Caller { token_id, name, role, window, controls }))
    }

    /// Keeps an audit-trail row and appends it to the transparency log, in
    /// one transaction. Returns its leaf index.
    pub fn record_audit(&self, row: &AuditEntry) -> Result<u64, StoreError> {
        let leaf = AuditLeaf { type_: AUDIT_TYPE, entry: row };
        let data = serde_json::to_vec(&leaf).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let index =
            super::tlog::LogAppender::open(&tx)?.append(&tx, super::tlog::LeafKind::Audit, &data, row.at)?;
        tx.execute(
            "INSERT INTO audit_trail (at, token_id, name, action, target, status, leaf_index) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![row.at, row.token_id, row.name, row.action, row.target, row.status, index as i64],
        )?;
        tx.commit()?;
        Ok(index)
    }

    /// The audit trail, newest first.
    pub fn audit_trail(&self, limit: u32) -> Result<Vec<TrailRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT at, token_id, name, action, target, status, leaf_index FROM audit_trail ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(TrailRow {
                entry: AuditEntry {
                    at: r.get(0)?,
                    token_id: r.get(1)?,
                    name: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    status: r.get(5)?,
                },
                leaf_index: r.get::<_, Option<i64>>(6)?.map(|i| i as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Consumes one use of a token inside the caller's transaction.
pub(super) fn consume(
    tx: &rusqlite::Transaction<'_>,
    hash: &[u8; 32],
    now: i64,
) -> Result<Result<(), TokenRefusal>, StoreError> {
    let row: Option<(i64, i64, i64)> = tx
        .query_row(
            "SELECT id, uses_left, expires_at FROM enrollment_tokens WHERE token_hash = ?1",
            [hash.as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((id, uses_left, expires_at)) = row else {
        return Ok(Err(TokenRefusal::Unknown));
    };
    if expires_at <= now {
        return Ok(Err(TokenRefusal::Expired));
    }
    if uses_left <= 0 {
        return Ok(Err(TokenRefusal::UsedUp));
    }
    tx.execute("UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = ?1", [id])?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_limits_match_ids_and_prefixes_at_a_boundary() {
        let c = Caller {
            token_id: 1,
            name: "a".into(),
            role: ApiRole::Auditor,
            window: None,
            controls: vec!["iso27001:2022/A.8".into(), "bsi-grundschutz:2023/SYS.2.1".into()],
        };
        assert!(c.may_see_control("iso27001:2022/A.8.24"));
        assert!(c.may_see_control("iso27001:2022/A.8"));
        assert!(!c.may_see_control("iso27001:2022/A.80"));
        assert!(!c.may_see_control("iso27001:2022/A.5.1"));
        assert!(c.may_see_control("bsi-grundschutz:2023/SYS.2.1.A31"));
        assert!(!c.may_see_control("bsi-grundschutz:2023/SYS.2.10.A1"));
        let all = Caller { controls: Vec::new(), ..c };
        assert!(all.may_see_control("anything"));
        assert_eq!("auditor".parse::<ApiRole>(), Ok(ApiRole::Auditor));
        assert!("read".parse::<ApiRole>().unwrap_err().contains("viewer"));
    }
}
