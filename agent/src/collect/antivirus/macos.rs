//! The macOS backend of the `antivirus` check.
//!
//! Two sources. Microsoft Defender for Endpoint: `/usr/local/bin/mdatp
//! health --output json`, the same JSON as on Linux, read by
//! [`crate::collect::antivirus::linux::parse_mdatp_health`]. XProtect, the
//! anti-malware built into macOS: its version is `CFBundleShortVersionString`
//! of `/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist`
//! (an XML plist), and its last update is the newest `install_date` of the
//! `XProtectPlistConfigData` / `XProtectPayloads` entries in `system_profiler
//! SPInstallHistoryDataType -json`. XProtect is only counted as current when
//! that newest entry installed the version the bundle has now: a bundle
//! newer than every recorded install was updated through a channel the
//! history does not show (macOS 15 can fetch XProtect on its own), so its age
//! is not known.
//!
//! Status rule: pass when Defender is healthy with real-time protection and
//! current definitions, or XProtect is present and was updated within
//! [`MAX_XPROTECT_AGE_DAYS`] (the reason says it is the built-in baseline);
//! fail when neither is true and the state was read (XProtect missing or
//! older than the limit, Defender off); unknown when XProtect's age cannot be
//! established and Defender does not pass.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::collect::antivirus::linux::{Product, parse_mdatp_health};
use crate::collect::macos::parse_plist;
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// Oldest accepted XProtect update, in days. Apple ships XProtect data
/// roughly every two weeks but has left gaps of four to five weeks; 45 days
/// flags a Mac that missed at least two releases without failing between
/// releases. (`super::MAX_SIGNATURE_AGE_HOURS` is for daily-updated engines.)
pub const MAX_XPROTECT_AGE_DAYS: i64 = 45;

const XPROTECT_PLIST: &str = "/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist";
const MDATP: &str = "/usr/local/bin/mdatp";
/// Install-history names of XProtect updates.
const XPROTECT_ENTRIES: &[&str] = &["XProtectPlistConfigData", "XProtectPayloads"];

/// The bundle version from XProtect's `Info.plist`.
pub fn parse_xprotect_version(plist: &str) -> Result<String, String> {
    let doc = parse_plist(plist)?;
    doc.get("CFBundleShortVersionString")
        .or_else(|| doc.get("CFBundleVersion"))
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "Info.plist has no CFBundleShortVersionString".into())
}

/// The newest XProtect install: (version, install date as given, Unix time).
pub fn parse_install_history(json: &str) -> Result<Option<(String, String, i64)>, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("install history is not JSON: {e}"))?;
    let items = doc
        .get("SPInstallHistoryDataType")
        .and_then(Value::as_array)
        .ok_or("install history has no SPInstallHistoryDataType array")?;
    let mut newest: Option<(String, String, i64)> = None;
    for item in items {
        let name = item.get("_name").and_then(Value::as_str).unwrap_or("");
        if !XPROTECT_ENTRIES.contains(&name) {
            continue;
        }
        let Some(date) = item.get("install_date").and_then(Value::as_str) else { continue };
        let Ok(at) = OffsetDateTime::parse(date, &Rfc3339) else { continue };
        let version = item.get("install_version").and_then(Value::as_str).unwrap_or("").to_string();
        let at = at.unix_timestamp();
        if newest.as_ref().is_none_or(|(_, _, t)| at > *t) {
            newest = Some((version, date.to_string(), at));
        }
    }
    Ok(newest)
}

/// What was learned about XProtect.
#[derive(Debug, Clone, PartialEq)]
pub struct XProtect {
    /// Bundle version, or why it is unknown.
    pub version: Result<String, String>,
    /// Newest recorded update (version, date, Unix time), or why unknown.
    pub last_update: Result<Option<(String, String, i64)>, String>,
}

/// XProtect's state: `Ok(age in days)` when current or too old, `Err` with
/// (is a fail, why) when it cannot count.
fn xprotect_age(x: &XProtect, now: i64) -> Result<i64, (bool, String)> {
    let version = match &x.version {
        Ok(v) => v,
        Err(e) if e.contains("no such file") => return Err((true, "XProtect bundle is missing".into())),
        Err(e) => return Err((false, format!("XProtect version unreadable: {e}"))),
    };
    match &x.last_update {
        Err(e) => Err((false, format!("XProtect update history unreadable: {e}"))),
        Ok(None) => Err((false, "the install history records no XProtect update".into())),
        Ok(Some((installed, _, at))) => {
            let newer = match (version.parse::<u64>(), installed.parse::<u64>()) {
                (Ok(v), Ok(i)) => v > i,
                _ => version != installed,
            };
            if newer {
                Err((
                    false,
                    format!(
                        "XProtect {version} is newer than its last recorded install ({installed}); its age is not known"
                    ),
                ))
            } else {
                Ok((now - at).max(0) / 86_400)
            }
        }
    }
}

/// Decides the check. `defender` is `None` when mdatp is not installed.
pub fn evaluate(x: &XProtect, defender: Option<&Product>, now: i64, raw: String) -> Finding {
    let age = xprotect_age(x, now);
    let mut f = Finding::pass("XProtect")
        .fact("xprotect_version", x.version.as_ref().ok().cloned())
        .fact(
            "xprotect_updated",
            x.last_update.as_ref().ok().and_then(|u| u.as_ref().map(|(_, d, _)| d.clone())),
        )
        .fact("xprotect_age_days", age.as_ref().ok().copied())
        .fact("defender_present", defender.is_some())
        .with_raw(raw);
    if let Some(d) = defender {
        f = f
            .fact("defender_version", d.version.clone())
            .fact("defender_active", d.active)
            .fact("defender_problem", d.problem.clone());
    }
    let defender_ok = defender.is_some_and(|d| d.problem.is_none());
    let defender_note = defender
        .and_then(|d| d.problem.as_ref())
        .map(|p| format!("{}: {p}", "Microsoft Defender for Endpoint"));
    if defender_ok {
        f.backend = "Microsoft Defender for Endpoint".into();
        return f.with_reason("Microsoft Defender for Endpoint is active");
    }
    let version = x.version.as_deref().unwrap_or("?");
    let mut reason = match &age {
        Ok(days) if *days <= MAX_XPROTECT_AGE_DAYS => {
            format!("XProtect {version} (the macOS built-in baseline) updated {days} days ago")
        }
        Ok(days) => {
            f.status = CheckStatus::Fail;
            format!(
                "XProtect {version} was last updated {days} days ago (limit {MAX_XPROTECT_AGE_DAYS} days)"
            )
        }
        Err((is_fail, why)) => {
            f.status = if *is_fail { CheckStatus::Fail } else { CheckStatus::Unknown };
            why.clone()
        }
    };
    if let Some(note) = defender_note {
        reason.push_str("; ");
        reason.push_str(&note);
        // Defender present but its state unreadable cannot turn a fail into a known fail.
        if f.status == CheckStatus::Fail && defender.is_some_and(|d| d.active.is_none()) {
            f.status = CheckStatus::Unknown;
        }
    }
    f.with_reason(reason)
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let mut raw = String::new();
    let version = match host.read_text(XPROTECT_PLIST) {
        Ok(text) if text.starts_with("bplist") => {
            // A binary plist: let `defaults` read the one key.
            let domain = XPROTECT_PLIST.trim_end_matches(".plist");
            match host.run("defaults", &["read", domain, "CFBundleShortVersionString"]) {
                Ok(out) if out.success() && !out.stdout.trim().is_empty() => {
                    raw.push_str(&out.stdout);
                    Ok(out.stdout.trim().to_string())
                }
                Ok(out) => Err(format!("defaults read exited with {:?}: {}", out.code, out.stderr.trim())),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(text) => {
            raw.push_str(&text);
            parse_xprotect_version(&text)
        }
        Err(e) => Err(e.to_string()),
    };
    let last_update = match host.run("system_profiler", &["SPInstallHistoryDataType", "-json"]) {
        Ok(out) if out.success() => {
            let found = parse_install_history(&out.stdout);
            // Keep only the XProtect entries' worth of evidence, not the whole history.
            if let Ok(Some((v, d, _))) = &found {
                raw.push_str(&format!("\nXProtect install history: {v} at {d}\n"));
            }
            found
        }
        Ok(out) => Err(format!("system_profiler exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    };
    let defender = match host.run(MDATP, &["health", "--output", "json"]) {
        Ok(out) => {
            raw.push_str(&out.stdout);
            Some(parse_mdatp_health(&out.stdout))
        }
        Err(HostError::NotFound { .. }) => None,
        Err(e) => Some(Product {
            problem: Some(format!("unreadable: {e}")),
            ..Product::named("Microsoft Defender for Endpoint")
        }),
    };
    evaluate(&XProtect { version, last_update }, defender.as_ref(), ctx.now, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_xprotect_entry_wins_and_others_are_ignored() {
        let json = r#"{"SPInstallHistoryDataType":[
            {"_name":"XProtectPlistConfigData","install_date":"2026-10-01T10:00:00Z","install_version":"5280"},
            {"_name":"Safari","install_date":"2026-11-20T10:00:00Z","install_version":"18.1"},
            {"_name":"XProtectPayloads","install_date":"2026-11-02T09:00:00Z","install_version":"146"},
            {"_name":"XProtectPlistConfigData","install_date":"2026-11-12T08:30:00Z","install_version":"5284"}]}"#;
        let (v, d, _) = parse_install_history(json).unwrap().unwrap();
        assert_eq!((v.as_str(), d.as_str()), ("5284", "2026-11-12T08:30:00Z"));
        assert!(parse_install_history("{}").is_err());
    }

    #[test]
    fn a_bundle_newer_than_its_history_has_no_known_age() {
        let x =
            XProtect { version: Ok("5290".into()), last_update: Ok(Some(("5284".into(), String::new(), 0))) };
        assert_eq!(evaluate(&x, None, 86_400, String::new()).status, CheckStatus::Unknown);
    }
}
