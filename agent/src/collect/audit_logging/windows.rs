//! The Windows backend of the `audit_logging` check: the effective advanced
//! audit policy.
//!
//! Runs `auditpol /get /category:* /r` (needs administrator rights), a CSV
//! report with the columns `Machine Name,Policy Target,Subcategory,Subcategory
//! GUID,Inclusion Setting,Exclusion Setting`. Subcategories are matched by
//! GUID, which does not depend on the display language; the inclusion
//! setting is English (`No Auditing`, `Success`, `Failure`, `Success and
//! Failure`).
//!
//! Status rule: pass when every subcategory in [`REQUIRED`] audits at least
//! what it lists (Success, Failure or both), following the Microsoft security
//! baseline for the events an investigation needs first (logons, lockouts,
//! account and group changes, audit policy changes); fail listing each one
//! that audits less; unknown when auditpol cannot run (not elevated:
//! "A required privilege is not held by the client"), a required
//! subcategory is missing, or its setting is not understood. The size and
//! retention of the Security event log are not read.

use serde_json::json;

use crate::collect::windows::console;
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "auditpol";

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
pub fn parse_auditpol_csv(text: &str) -> Result<Vec<Row>, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().ok_or("auditpol printed nothing")?.split(',').collect();
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
        return Err(format!("auditpol printed no subcategory rows (header: {})", header.join(",")));
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

/// Decides the check from the report.
pub fn evaluate(text: &str) -> Finding {
    let rows = match parse_auditpol_csv(text) {
        Ok(r) => r,
        Err(e) => return Finding::unknown(BACKEND, e).with_raw(text),
    };
    let mut missing = Vec::new();
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
        Finding::new(status, BACKEND)
            .fact("subcategories", rows.len())
            .fact("subcategories_audited", audited)
            .fact("required_settings", serde_json::Value::Object(settings.clone()))
            .fact("required_missing", missing.len())
            .with_raw(text)
    };
    if !missing.is_empty() {
        let mut reason = format!("key events are not audited: {}", missing.join("; "));
        if !unclear.is_empty() {
            reason.push_str(&format!("; {}", unclear.join("; ")));
        }
        return base(CheckStatus::Fail).with_reason(reason);
    }
    if !unclear.is_empty() {
        return base(CheckStatus::Unknown).with_reason(unclear.join("; "));
    }
    base(CheckStatus::Pass).with_reason(format!("all {} key subcategories are audited", REQUIRED.len()))
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    match console(host, "auditpol", &["/get", "/category:*", "/r"]) {
        Ok(text) => evaluate(&text),
        Err(e) => e.unknown(BACKEND, "auditpol"),
    }
}
