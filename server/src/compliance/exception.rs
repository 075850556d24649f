//! Per-host exceptions: an approved decision that a requirement does not
//! apply to one host until a date. While in force the host is listed as
//! `excepted` for that requirement, never as passing; expired and
//! withdrawn exceptions stay listed. Pure: validation and state take the
//! time as a parameter.

use serde::{Deserialize, Serialize};

use crate::compliance::catalog::Catalog;

/// A requested exception, as a person submits it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewException {
    pub agent_id: String,
    pub requirement: String,
    pub approver: String,
    pub justification: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Who records it.
    pub actor: String,
}

/// A stored exception.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Exception {
    pub id: i64,
    pub agent_id: String,
    pub requirement: String,
    pub approver: String,
    pub justification: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub withdrawn_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionState {
    Active,
    Expired,
    Withdrawn,
    /// Recorded after the time asked about.
    NotYet,
}

impl Exception {
    /// The exception's state at `at` (Unix seconds).
    pub fn state(&self, at: i64) -> ExceptionState {
        if at < self.created_at {
            ExceptionState::NotYet
        } else if self.withdrawn_at.is_some_and(|w| w <= at) {
            ExceptionState::Withdrawn
        } else if at >= self.expires_at {
            ExceptionState::Expired
        } else {
            ExceptionState::Active
        }
    }
}

fn text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.chars().count() > max || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("{field} must be at most {max} characters of text"));
    }
    Ok(())
}

impl NewException {
    /// Checks the request against the catalog and the time; the error says
    /// what is wrong. Whether the host exists is the store's to check.
    pub fn validate(&self, catalog: &Catalog, now: i64, max_days: u32) -> Result<(), String> {
        text("approver", &self.approver, 200)?;
        text("justification", &self.justification, 4000)?;
        text("actor", &self.actor, 200)?;
        if catalog.control(&self.requirement).is_none() {
            return Err(format!("requirement {:?} is not in the catalog", self.requirement));
        }
        if self.expires_at <= now {
            return Err("the exception must expire in the future".into());
        }
        if self.expires_at - now > i64::from(max_days) * 86_400 {
            return Err(format!("an exception may last at most {max_days} days"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> NewException {
        NewException {
            agent_id: "a".into(),
            requirement: "iso27001:2022/A.8.24".into(),
            approver: "ciso".into(),
            justification: "kiosk without user data".into(),
            expires_at: 1_000 + 86_400,
            actor: "it".into(),
        }
    }

    #[test]
    fn requests_are_checked_and_states_follow_the_clock() {
        let cat = Catalog::builtin().unwrap();
        assert_eq!(request().validate(&cat, 1_000, 365), Ok(()));
        let mut r = request();
        r.requirement = "iso27001:2013/A.99.1.1".into();
        assert!(r.validate(&cat, 1_000, 365).unwrap_err().contains("not in the catalog"));
        let mut r = request();
        r.approver = "  ".into();
        assert!(r.validate(&cat, 1_000, 365).unwrap_err().contains("approver"));
        assert!(request().validate(&cat, 1_000 + 86_400, 365).unwrap_err().contains("future"));
        let mut r = request();
        r.expires_at = 1_000 + 400 * 86_400;
        assert!(r.validate(&cat, 1_000, 365).unwrap_err().contains("365 days"));

        let e = Exception {
            id: 1,
            agent_id: "a".into(),
            requirement: "r".into(),
            approver: "c".into(),
            justification: "j".into(),
            created_by: "it".into(),
            created_at: 100,
            expires_at: 200,
            withdrawn_at: Some(150),
        };
        assert_eq!(e.state(99), ExceptionState::NotYet);
        assert_eq!(e.state(120), ExceptionState::Active);
        assert_eq!(e.state(150), ExceptionState::Withdrawn);
        let e = Exception { withdrawn_at: None, ..e };
        assert_eq!(e.state(199), ExceptionState::Active);
        assert_eq!(e.state(200), ExceptionState::Expired);
    }
}
