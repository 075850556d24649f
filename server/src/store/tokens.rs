//! Enrollment and API tokens, kept as hashes only.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRole {
    Admin,
    Read,
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

    pub fn create_api_token(&self, hash: &[u8; 32], role: ApiRole, now: i64) -> Result<(), StoreError> {
        let role = match role {
            ApiRole::Admin => "admin",
            ApiRole::Read => "read",
        };
        self.conn().execute(
            "INSERT INTO api_tokens (token_hash, role, created_at) VALUES (?1, ?2, ?3)",
            params![hash.as_slice(), role, now],
        )?;
        Ok(())
    }

    pub fn api_token_role(&self, hash: &[u8; 32]) -> Result<Option<ApiRole>, StoreError> {
        let role: Option<String> = self
            .conn()
            .query_row("SELECT role FROM api_tokens WHERE token_hash = ?1", [hash.as_slice()], |r| r.get(0))
            .optional()?;
        Ok(role.map(|r| if r == "admin" { ApiRole::Admin } else { ApiRole::Read }))
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
