//! The Windows backend of the `audit_logging` check: the effective advanced
//! audit policy, and whether the Security event log can take the events.
//!
//! Runs `auditpol /get /category:* /r` (needs administrator rights), a CSV
//! report with the columns `Machine Name,Policy Target,Subcategory,Subcategory
//! GUID,Inclusion Setting,Exclusion Setting`. Subcategories are matched by
//! GUID, which does not depend on the display language; the inclusion
//! setting is English (`No Auditing`, `Success`, `Failure`, `Success and
//! Failure`). auditpol shows the system audit policy the Local Security
//! Authority applies now, whatever set it (advanced audit policy, or the
//! legacy category policy where "Audit: Force audit policy subcategory
//! settings" is off).
//!
//! An audited event is only kept if the Security log takes it:
//! `Get-WinEvent -ListLog Security` gives its mode and state. A log set to
//! "Do not overwrite events" (`LogMode` `Retain`) that is full discards new
//! events ("Retention method for security log": events are not written
//! when the maximum size is reached), and a disabled log keeps nothing.
//!
//! Status rule: pass when every subcategory in [`REQUIRED`] audits at least
//! what it lists (Success, Failure or both), following the Microsoft security
//! baseline for the events an investigation needs first (logons, lockouts,
//! account and group changes, audit policy changes), and the Security log is
//! enabled and not full in `Retain` mode; fail listing each subcategory that
//! audits less, or the log that discards events; unknown when auditpol
//! cannot run (not elevated: "A required privilege is not held by the
//! client"), a required subcategory is missing or its setting is not
//! understood, or the Security log's state cannot be read. Per-user audit
//! policy (`auditpol /set /user`, exclusions for accounts outside the local
//! Administrators group) and the log's size are not judged.

use serde_json::json;

use crate::collect::windows::{Unavailable, console, json_bool, json_i64, json_items, json_str, powershell};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "auditpol";

/// The Security event log's state: mode (`Circular`, `AutoBackup`,
/// `Retain`), whether it is enabled and full, sizes.
pub const SECURITY_LOG_SCRIPT: &str = "$ErrorActionPreference='Stop'; Get-WinEvent -ListLog Security | Select-Object LogName,IsEnabled,@{n='LogMode';e={[string]$_.LogMode}},MaximumSizeInBytes,FileSize,IsLogFull,RecordCount | ConvertTo-Json";

/// The Security event log as [`SECURITY_LOG_SCRIPT`] prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityLog {
    pub enabled: Option<bool>,
    /// `Circular`, `AutoBackup` or `Retain`.
    pub mode: String,
    pub full: Option<bool>,
    pub max_bytes: Option<i64>,
}

/// Parses the JSON of [`SECURITY_LOG_SCRIPT`]; the enum may print as its
/// number (0 Circular, 1 AutoBackup, 2 Retain).
pub fn parse_security_log(text: &str) -> Result<SecurityLog, ParseError> {
    let items = json_items(text)?;
    let log =
        items.first().ok_or_else(|| ParseError::new("listed no Security log").in_command("Get-WinEvent"))?;
    let mode = match (json_str(log, "LogMode"), json_i64(log.get("LogMode"))) {
        (Some(m), _) if m.parse::<i64>().is_err() => m.to_string(),
        (_, Some(0)) => "Circular".into(),
        (_, Some(1)) => "AutoBackup".into(),
        (_, Some(2)) => "Retain".into(),
        (_, other) => format!("unknown ({other:?})"),
    };
    Ok(SecurityLog {
        enabled: json_bool(log.get("IsEnabled")),
        mode,
        full: json_bool(log.get("IsLogFull")),
        max_bytes: json_i64(log.get("MaximumSizeInBytes")),
    })
}

/// Why the Security log does not take new events: `Err` certain, `Ok(Some)`
/// not known, `Ok(None)` it does.
fn log_problem(log: &Result<SecurityLog, String>) -> Result<Option<String>, String> {
    let log = match log {
        Ok(l) => l,
        Err(e) => return Ok(Some(format!("the Security event log's state could not be read: {e}"))),
    };
    match (log.enabled, log.mode.as_str(), log.full) {
        (Some(false), _, _) => Err("the Security event log is disabled".into()),
        (None, _, _) => Ok(Some("whether the Security event log is enabled is not shown".into())),
        (_, "Retain", Some(true)) => Err("the Security event log is full and set not to overwrite events \
             (Retain): new events are discarded"
            .into()),
        (_, "Retain", None) => {
            Ok(Some("the Security event log keeps old events and whether it is full is not shown".into()))
        }
        (_, "Circular" | "AutoBackup" | "Retain", _) => Ok(None),
        (_, m, _) => Ok(Some(format!("the Security event log's mode {m} is not understood"))),
    }
}

/// A subcategory that must be audited: (GUID, name, success, failure).
pub const REQUIRED: &[(&str, &str, bool, bool)] = &[
    ("{0CCE923F-69AE-11D9-BED3-505054503030}", "Credential Validation", false, true),
    ("{0CCE9215-69AE-11D9-BED3-505054503030}", "Logon", true, true),
    ("{0CCE9217-69AE-11D9-BED3-505054503030}", "Account Lockout", false, true),
    ("{0CCE921B-69AE-11D9-BED3-505054503030}", "Special Logon", true, false),
    ("{0CCE9235-69AE-11D9-BED3-505054503030}", "User Account Management", true, false),
    ("{0CCE9237-69AE-11D9-BED3-505054503030}", "Security Group Management", true, false),
    ("{0CCE922F-69AE-11D9-BED3-505054503030}", "Audit Policy Change", true, false),
    ("{0CCE9230-69AE-11D9-BED3-505054503030}", "Authentication Policy Change", true, false),
    ("{0CCE9212-69AE-11D9-BED3-505054503030}", "System Integrity", true, false),
];

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub subcategory: String,
    /// Uppercase, with braces.
    pub guid: String,
    pub inclusion: String,
}

/// Parses the CSV of `auditpol /get /category:* /r` (columns found by the
/// header; names never contain commas).
pub fn parse_auditpol_csv(text: &str) -> Result<Vec<Row>, ParseError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let printed = |what: String| ParseError::new(what).in_command("auditpol");
    let header: Vec<&str> =
        lines.next().ok_or_else(|| printed("printed nothing".into()))?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    // Translated headers fall back to the documented column order.
    let (sub, guid, incl) = (
        col("Subcategory").unwrap_or(2),
        col("Subcategory GUID").unwrap_or(3),
        col("Inclusion Setting").unwrap_or(4),
    );
    let rows: Vec<Row> = lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let g = f.get(guid)?.trim();
            if !g.starts_with('{') {
                return None;
            }
            Some(Row {
                subcategory: f.get(sub)?.trim().to_string(),
                guid: g.to_ascii_uppercase(),
                inclusion: f.get(incl)?.trim().to_string(),
            })
        })
        .collect();
    if rows.is_empty() {
        return Err(printed(format!("printed no subcategory rows (header: {})", header.join(","))));
    }
    Ok(rows)
}

/// (success, failure) audited, `None` for a setting that is not understood.
fn setting(inclusion: &str) -> Option<(bool, bool)> {
    match inclusion {
        "No Auditing" => Some((false, false)),
        "Success" => Some((true, false)),
        "Failure" => Some((false, true)),
        "Success and Failure" => Some((true, true)),
        _ => None,
    }
}

/// Decides the check from the report and the Security log's state (or why
/// it could not be read).
pub fn evaluate(text: &str, log: &Result<SecurityLog, String>) -> Finding {
    let rows = match parse_auditpol_csv(text) {
        Ok(r) => r,
        Err(e) => return Finding::unknown(BACKEND, e.to_string()).with_raw(text),
    };
    let mut missing = Vec::new();
    let mut missing_log = Vec::new();
    let mut unclear = Vec::new();
    let mut settings = serde_json::Map::new();
    for (guid, name, want_s, want_f) in REQUIRED {
        let Some(row) = rows.iter().find(|r| r.guid == *guid) else {
            unclear.push(format!("{name} not listed"));
            continue;
        };
        settings.insert(name.to_string(), json!(row.inclusion));
        match setting(&row.inclusion) {
            None => unclear.push(format!("{name}: setting {:?} not understood", row.inclusion)),
            Some((s, f)) if (*want_s && !s) || (*want_f && !f) => {
                let want = match (want_s, want_f) {
                    (true, true) => "Success and Failure",
                    (true, false) => "Success",
                    _ => "Failure",
                };
                missing.push(format!("{name} ({}, needs {want})", row.inclusion));
            }
            Some(_) => {}
        }
    }
    let audited = rows.iter().filter(|r| setting(&r.inclusion).is_some_and(|(s, f)| s || f)).count();
    let base = |status| {
        let mut f = Finding::new(status, BACKEND)
            .fact("subcategories", rows.len())
            .fact("subcategories_audited", audited)
            .fact("required_settings", serde_json::Value::Object(settings.clone()))
            .fact("required_missing", missing.len())
            .with_raw(text);
        if let Ok(l) = log {
            f = f
                .fact("security_log_enabled", json!(l.enabled))
                .fact("security_log_mode", json!(l.mode))
                .fact("security_log_full", json!(l.full))
                .fact("security_log_max_bytes", json!(l.max_bytes));
        }
        f
    };
    match log_problem(log) {
        Err(p) => missing_log.push(p),
        Ok(Some(p)) => unclear.push(p),
        Ok(None) => {}
    }
    if !missing.is_empty() || !missing_log.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("key events are not audited: {}", missing.join("; ")));
        }
        parts.extend(missing_log);
        parts.extend(unclear);
        return base(CheckStatus::Fail).with_reason(parts.join("; "));
    }
    if !unclear.is_empty() {
        return base(CheckStatus::Unknown).with_reason(unclear.join("; "));
    }
    base(CheckStatus::Pass).with_reason(format!("all {} key subcategories are audited", REQUIRED.len()))
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    match console(host, "auditpol", &["/get", "/category:*", "/r"]) {
        Ok(text) => {
            let log = powershell(host, SECURITY_LOG_SCRIPT)
                .map_err(|e: Unavailable| e.message().to_string())
                .and_then(|t| parse_security_log(&t).map_err(|e| e.to_string()));
            evaluate(&text, &log)
        }
        Err(e) => e.unknown(BACKEND, "auditpol"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_security_log_that_keeps_old_events_records_nothing() {
        let log = |mode: &str, full: bool| {
            parse_security_log(&format!(
                "{{\"LogName\": \"Security\", \"IsEnabled\": true, \"LogMode\": \"{mode}\", \
                 \"MaximumSizeInBytes\": 20971520, \"IsLogFull\": {full}}}"
            ))
            .map_err(|e| e.to_string())
        };
        assert_eq!(log_problem(&log("Circular", true)), Ok(None));
        assert_eq!(log_problem(&log("Retain", false)), Ok(None));
        assert!(log_problem(&log("Retain", true)).is_err());
        assert_eq!(
            parse_security_log("{\"IsEnabled\": true, \"LogMode\": 2}").map(|l| l.mode),
            Ok("Retain".into())
        );
        assert!(matches!(log_problem(&Err("timeout".into())), Ok(Some(_))));
    }
}
