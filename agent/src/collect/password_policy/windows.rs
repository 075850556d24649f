//! The Windows backend of the `password_policy` check.
//!
//! Reads the effective local account policy (local security policy merged
//! with Group Policy) from `net accounts` (English labels: `Minimum password
//! length:`, `Lockout threshold:` with `Never` for no lockout, `Length of
//! password history maintained:`, `Maximum password age (days):`,
//! `Computer role:`).
//!
//! Status rule: pass when the minimum length is at least
//! [`MIN_PASSWORD_LENGTH`] and accounts lock after at most
//! [`MAX_FAILED_LOGONS`] failed logons (threshold 1..=limit); fail naming
//! each shortfall (`Never` is no lockout); unknown when `net accounts`
//! cannot run or its output lacks the English labels (other display
//! language).

use serde_json::json;

use super::{MAX_FAILED_LOGONS, MIN_PASSWORD_LENGTH};
use crate::collect::windows::console;
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "net-accounts";

/// The policy as `net accounts` prints it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    pub min_length: Option<u32>,
    /// `Some(0)` for `Never` (no lockout).
    pub lockout_threshold: Option<u32>,
    pub history: Option<u32>,
    /// `None` for `Unlimited`.
    pub max_age_days: Option<u32>,
    pub lockout_duration_minutes: Option<u32>,
    pub role: Option<String>,
}

/// A number, with `Never` / `None` / `Unlimited` as 0.
fn count(value: &str) -> Option<u32> {
    match value {
        "Never" | "None" | "Unlimited" => Some(0),
        v => v.parse().ok(),
    }
}

/// Parses `net accounts` output; `Err` when the English labels are missing.
pub fn parse_net_accounts(text: &str) -> Result<Policy, String> {
    let mut p = Policy::default();
    let mut seen = false;
    for line in text.lines() {
        // Labels end with a colon, the value follows after padding; the first
        // label itself contains "?:" so split at the last colon.
        let Some((label, value)) = line.rsplit_once(':') else { continue };
        let value = value.trim();
        match label.trim() {
            "Minimum password length" => {
                p.min_length = count(value);
                seen = true;
            }
            "Lockout threshold" => p.lockout_threshold = count(value),
            "Length of password history maintained" => p.history = count(value),
            "Maximum password age (days)" => {
                p.max_age_days = if value == "Unlimited" { None } else { count(value) }
            }
            "Lockout duration (minutes)" => p.lockout_duration_minutes = count(value),
            "Computer role" => p.role = Some(value.to_string()),
            _ => {}
        }
    }
    if !seen || p.min_length.is_none() || p.lockout_threshold.is_none() {
        return Err("net accounts output lacks \"Minimum password length\" / \"Lockout threshold\" (non-English output?)".into());
    }
    Ok(p)
}

/// Decides the check from `net accounts` output.
pub fn evaluate(text: &str) -> Finding {
    let p = match parse_net_accounts(text) {
        Ok(p) => p,
        Err(e) => return Finding::unknown(BACKEND, e).with_raw(text),
    };
    let (min, threshold) = (p.min_length.unwrap_or(0), p.lockout_threshold.unwrap_or(0));
    let mut problems = Vec::new();
    if min < MIN_PASSWORD_LENGTH {
        problems.push(format!("minimum password length is {min} (at least {MIN_PASSWORD_LENGTH} required)"));
    }
    if threshold == 0 {
        problems.push("accounts are never locked out after failed logons".to_string());
    } else if threshold > MAX_FAILED_LOGONS {
        problems.push(format!("accounts lock after {threshold} failed logons (at most {MAX_FAILED_LOGONS})"));
    }
    let status = if problems.is_empty() { CheckStatus::Pass } else { CheckStatus::Fail };
    let reason = if problems.is_empty() {
        format!("minimum length {min}, lockout after {threshold} failed logons")
    } else {
        problems.join("; ")
    };
    Finding::new(status, BACKEND)
        .with_reason(reason)
        .fact("min_password_length", min)
        .fact("lockout_threshold", if threshold == 0 { json!(null) } else { json!(threshold) })
        .fact("password_history", json!(p.history))
        .fact("max_password_age_days", json!(p.max_age_days))
        .fact("lockout_duration_minutes", json!(p.lockout_duration_minutes))
        .fact("computer_role", json!(p.role))
        .with_raw(text)
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    match console(host, "net", &["accounts"]) {
        Ok(text) => evaluate(&text),
        Err(e) => e.unknown(BACKEND, "net accounts"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_threshold_fails_and_crlf_parses() {
        let text = "Minimum password length:                              12\r\n\
                    Lockout threshold:                                    50\r\n";
        let f = evaluate(text);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("lock after 50 failed logons"));
        let ok = text.replace("50", "10");
        assert_eq!(evaluate(&ok).status, CheckStatus::Pass);
    }
}
