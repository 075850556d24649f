//! The Windows backend of the `password_policy` check.
//!
//! Reads the effective account policy of the accounts this machine's
//! security database holds, from `net accounts` (English labels: `Minimum
//! password length:`, `Lockout threshold:` with `Never` for no lockout,
//! `Length of password history maintained:`, `Maximum password age
//! (days):`, `Computer role:`). On a workstation or member server that is
//! the policy of the *local* accounts (local security policy merged with
//! Group Policy; a domain-level password policy reaches local accounts this
//! way too). Domain accounts that log on to the machine follow their
//! domain's policy, which only a domain controller shows: there `net
//! accounts` prints the default domain policy (`Computer role: PRIMARY` or
//! `BACKUP`), and fine-grained password policies (password settings
//! objects) override it for the users and groups they apply to, so the
//! agent reads them too (`Get-ADFineGrainedPasswordPolicy`).
//!
//! Status rule: pass when the minimum length is at least
//! [`MIN_PASSWORD_LENGTH`] and accounts lock after at most
//! [`MAX_FAILED_LOGONS`] failed logons (threshold 1..=limit), on a domain
//! controller also for every fine-grained policy that applies to someone;
//! fail naming each shortfall (`Never` is no lockout); unknown when `net
//! accounts` cannot run or its output lacks the English labels (other
//! display language), or a domain controller's fine-grained policies
//! cannot be read. The scope (`local accounts` or `domain accounts`) is a
//! fact.

use serde_json::json;

use super::{MAX_FAILED_LOGONS, MIN_PASSWORD_LENGTH};
use crate::collect::windows::{Unavailable, console, json_i64, json_items, json_str, powershell};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "net-accounts";

/// The fine-grained password policies of the domain (on a domain
/// controller): name, minimum length, lockout threshold and how many users
/// or groups each applies to (their names are not read).
pub const PSO_SCRIPT: &str = "$ErrorActionPreference='Stop'; ConvertTo-Json -InputObject @(Get-ADFineGrainedPasswordPolicy -Filter * | Select-Object Name,MinPasswordLength,LockoutThreshold,Precedence,@{n='AppliesTo';e={@($_.AppliesTo).Count}})";

/// One fine-grained password policy (password settings object).
#[derive(Debug, Clone, PartialEq)]
pub struct FineGrained {
    pub name: String,
    pub min_length: Option<u32>,
    /// `Some(0)`: no lockout.
    pub lockout_threshold: Option<u32>,
    /// How many users and groups it applies to.
    pub applies_to: Option<u32>,
}

/// Parses the JSON of [`PSO_SCRIPT`].
pub fn parse_fine_grained(text: &str) -> Result<Vec<FineGrained>, ParseError> {
    let num = |v: Option<&serde_json::Value>| json_i64(v).and_then(|n| u32::try_from(n).ok());
    json_items(text)?
        .iter()
        .map(|p| {
            Ok(FineGrained {
                name: json_str(p, "Name")
                    .ok_or_else(|| ParseError::new(format!("policy without Name: {p}")))?
                    .to_string(),
                min_length: num(p.get("MinPasswordLength")),
                lockout_threshold: num(p.get("LockoutThreshold")),
                applies_to: num(p.get("AppliesTo")),
            })
        })
        .collect()
}

impl FineGrained {
    /// Why the policy lets its users have weaker passwords or unlimited
    /// guesses, if it does and applies to anyone.
    fn problem(&self) -> Option<String> {
        if self.applies_to == Some(0) {
            return None;
        }
        let mut weak = Vec::new();
        match self.min_length {
            Some(m) if m >= MIN_PASSWORD_LENGTH => {}
            Some(m) => weak.push(format!("minimum length {m}")),
            None => weak.push("minimum length not shown".into()),
        }
        match self.lockout_threshold {
            Some(t) if (1..=MAX_FAILED_LOGONS).contains(&t) => {}
            Some(0) => weak.push("no lockout".into()),
            Some(t) => weak.push(format!("lockout after {t} failed logons")),
            None => weak.push("lockout threshold not shown".into()),
        }
        (!weak.is_empty()).then(|| {
            format!("fine-grained password policy {:?} overrides it with {}", self.name, weak.join(", "))
        })
    }

    fn to_json(&self) -> serde_json::Value {
        json!({"name": self.name, "min_password_length": self.min_length,
               "lockout_threshold": self.lockout_threshold.filter(|t| *t > 0), "applies_to": self.applies_to})
    }
}

/// Whether `net accounts` speaks for domain accounts: on a domain
/// controller (`Computer role: PRIMARY` or `BACKUP`) it shows the domain's
/// default policy.
fn is_domain_controller(p: &Policy) -> bool {
    matches!(p.role.as_deref(), Some("PRIMARY") | Some("BACKUP"))
}

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
pub fn parse_net_accounts(text: &str) -> Result<Policy, ParseError> {
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
        let why = "output lacks \"Minimum password length\" / \"Lockout threshold\" (non-English output?)";
        return Err(ParseError::new(why).in_command("net accounts"));
    }
    Ok(p)
}

/// Decides the check from `net accounts` output and, on a domain
/// controller, the fine-grained password policies (`None` elsewhere).
pub fn evaluate(text: &str, fine_grained: Option<Result<Vec<FineGrained>, String>>) -> Finding {
    let p = match parse_net_accounts(text) {
        Ok(p) => p,
        Err(e) => return Finding::unknown(BACKEND, e.to_string()).with_raw(text),
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
    let dc = is_domain_controller(&p);
    let fine = if dc { fine_grained } else { None };
    let mut unclear = None;
    match &fine {
        Some(Ok(list)) => problems.extend(list.iter().filter_map(FineGrained::problem)),
        Some(Err(e)) => unclear = Some(format!("the fine-grained password policies could not be read: {e}")),
        None if dc => unclear = Some("the fine-grained password policies were not read".to_string()),
        None => {}
    }
    let scope = if dc { "domain accounts (default domain policy)" } else { "local accounts" };
    let status = match (&unclear, problems.is_empty()) {
        (_, false) => CheckStatus::Fail,
        (Some(_), true) => CheckStatus::Unknown,
        (None, true) => CheckStatus::Pass,
    };
    let reason = match (status, &unclear) {
        (CheckStatus::Pass, _) => {
            format!("minimum length {min}, lockout after {threshold} failed logons ({scope})")
        }
        (CheckStatus::Unknown, Some(u)) => {
            format!("minimum length {min}, lockout after {threshold} failed logons ({scope}), but {u}")
        }
        _ => problems.join("; "),
    };
    let mut f = Finding::new(status, BACKEND).with_reason(reason);
    if let Some(Ok(list)) = &fine {
        f = f.fact("fine_grained_policies", list.iter().map(FineGrained::to_json).collect::<Vec<_>>());
    }
    f.fact("policy_scope", scope)
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
        Ok(text) => {
            // Only a domain controller's policy is overridden per user here.
            let dc = parse_net_accounts(&text).is_ok_and(|p| is_domain_controller(&p));
            let fine = dc.then(|| {
                powershell(host, PSO_SCRIPT)
                    .map_err(|e: Unavailable| e.message().to_string())
                    .and_then(|t| parse_fine_grained(&t).map_err(|e| e.to_string()))
            });
            evaluate(&text, fine)
        }
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
        let f = evaluate(text, None);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("lock after 50 failed logons"));
        let ok = text.replace("50", "10");
        assert_eq!(evaluate(&ok, None).status, CheckStatus::Pass);
    }

    #[test]
    fn a_domain_controller_needs_its_fine_grained_policies() {
        let text = "Minimum password length:                              14\r\n\
                    Lockout threshold:                                    5\r\n\
                    Computer role:                                        PRIMARY\r\n";
        assert_eq!(evaluate(text, Some(Err("no AD module".into()))).status, CheckStatus::Unknown);
        let psos = parse_fine_grained(
            "[{\"Name\": \"Service Accounts\", \"MinPasswordLength\": 8, \"LockoutThreshold\": 0, \"AppliesTo\": 1},\
              {\"Name\": \"Unused\", \"MinPasswordLength\": 1, \"LockoutThreshold\": 0, \"AppliesTo\": 0}]",
        );
        let f = evaluate(text, Some(psos.map_err(|e| e.to_string())));
        assert_eq!(f.status, CheckStatus::Fail);
        let r = f.reason.unwrap();
        assert!(r.contains("\"Service Accounts\" overrides it with minimum length 8, no lockout"), "{r}");
        assert!(!r.contains("Unused"));
        assert_eq!(evaluate(text, Some(Ok(Vec::new()))).status, CheckStatus::Pass);
        // A member's `net accounts` is its local policy: nothing more is read.
        assert_eq!(evaluate(&text.replace("PRIMARY", "WORKSTATION"), None).status, CheckStatus::Pass);
    }
}
