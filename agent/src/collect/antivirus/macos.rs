//! The macOS backend of the `antivirus` check.
//!
//! Two sources. Microsoft Defender for Endpoint: `/usr/local/bin/mdatp
//! health --output json`, the same JSON as on Linux, read by
//! [`crate::collect::antivirus::linux::parse_mdatp_health`], and then for
//! what only matters on a Mac or was left out there ([`defender_problem`]):
//! passive mode (`passiveModeEnabled`: Defender detects but neither blocks
//! nor remediates), no event source for real-time protection
//! (`realTimeProtectionSubsystem` `unavailable`: the system extension is not
//! approved), no Full Disk Access (`fullDiskAccessEnabled` false: it cannot
//! see most files), and definitions older than
//! [`super::MAX_SIGNATURE_AGE_HOURS`] (`definitionsUpdatedMinutesAgo`).
//!
//! XProtect, the anti-malware built into macOS, checks code when it is
//! first launched or changed (it is not an on-access scanner of every file
//! in the EDR sense). The bundle it uses: on macOS 15 and later
//! `/var/protected/xprotect/XProtect.bundle` when it exists (updated over
//! iCloud, not through Software Update), otherwise
//! `/Library/Apple/System/Library/CoreServices/XProtect.bundle`, which XProtect
//! falls back to and which Software Update fills. Its version is
//! `CFBundleShortVersionString` of the bundle's `Contents/Info.plist` (an
//! XML plist), and its last update is the newest `install_date` of the
//! `XProtectPlistConfigData` / `XProtectPayloads` entries in `system_profiler
//! SPInstallHistoryDataType -json`. XProtect is only counted as current when
//! that newest entry installed exactly the version in use: a bundle newer
//! than every recorded install was updated through a channel the history
//! does not show (iCloud), and one older than the newest recorded install is
//! not the update the history dates (on macOS 15 the copy in use lags when
//! iCloud is unreachable while Software Update still fills the other one),
//! so in both cases its age is not known.
//!
//! Status rule: pass when Defender is healthy with real-time protection and
//! current definitions and none of the problems above, or XProtect is
//! present and the version in use was installed within
//! [`MAX_XPROTECT_AGE_DAYS`] (the reason says it is the built-in baseline);
//! fail when neither is true and the state was read (XProtect missing or
//! older than the limit, Defender off); unknown when XProtect's age cannot be
//! established and Defender does not pass.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::collect::antivirus::linux::{Product, parse_mdatp_health};
use crate::collect::macos::parse_plist;
use crate::collect::{Context, Finding, ParseError};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// Oldest accepted XProtect update, in days. Apple ships XProtect data
/// roughly every two weeks but has left gaps of four to five weeks; 45 days
/// flags a Mac that missed at least two releases without failing between
/// releases. (`super::MAX_SIGNATURE_AGE_HOURS` is for daily-updated engines.)
pub const MAX_XPROTECT_AGE_DAYS: i64 = 45;

const XPROTECT_PLIST: &str = "/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist";
/// The bundle XProtect prefers on macOS 15 and later.
const XPROTECT_PROTECTED_PLIST: &str = "/var/protected/xprotect/XProtect.bundle/Contents/Info.plist";
const MDATP: &str = "/usr/local/bin/mdatp";
/// Install-history names of XProtect updates.
const XPROTECT_ENTRIES: &[&str] = &["XProtectPlistConfigData", "XProtectPayloads"];

/// The bundle version from XProtect's `Info.plist`.
pub fn parse_xprotect_version(plist: &str) -> Result<String, ParseError> {
    let doc = parse_plist(plist)?;
    doc.get("CFBundleShortVersionString")
        .or_else(|| doc.get("CFBundleVersion"))
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ParseError::new("Info.plist has no CFBundleShortVersionString"))
}

/// The newest XProtect install: (version, install date as given, Unix time).
pub fn parse_install_history(json: &str) -> Result<Option<(String, String, i64)>, ParseError> {
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

/// A field of `mdatp health --output json`, unwrapping `{"value": ...}`.
fn mdatp_value<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    let v = doc.get(key)?;
    Some(v.get("value").unwrap_or(v))
}

/// What keeps a Defender that reports itself healthy from protecting a Mac:
/// passive mode, no event source or no Full Disk Access for real-time
/// protection, definitions older than the limit. `None` when none applies
/// (or the output is not JSON, which the shared reader already reports).
pub fn defender_problem(json: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(json).ok()?;
    let mut problems = Vec::new();
    if mdatp_value(&doc, "passiveModeEnabled").and_then(Value::as_bool) == Some(true) {
        problems
            .push("passive mode is on (threats are detected but neither blocked nor remediated)".to_string());
    }
    if mdatp_value(&doc, "realTimeProtectionSubsystem").and_then(Value::as_str) == Some("unavailable") {
        problems.push(
            "real-time protection has no event source (realTimeProtectionSubsystem unavailable: system extension not approved)"
                .to_string(),
        );
    }
    if mdatp_value(&doc, "fullDiskAccessEnabled").and_then(Value::as_bool) == Some(false) {
        problems.push(
            "Full Disk Access is not granted, so real-time protection cannot see most files".to_string(),
        );
    }
    match mdatp_value(&doc, "definitionsUpdatedMinutesAgo").and_then(Value::as_i64) {
        Some(m) if m > super::MAX_SIGNATURE_AGE_HOURS * 60 => problems.push(format!(
            "definitions are {} h old (limit {} h)",
            m / 60,
            super::MAX_SIGNATURE_AGE_HOURS
        )),
        Some(_) => {}
        None => problems.push("mdatp health does not say how old the definitions are".to_string()),
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// What was learned about XProtect.
#[derive(Debug, Clone, PartialEq)]
pub struct XProtect {
    /// Version of the bundle XProtect uses, or why it is unknown.
    pub version: Result<String, String>,
    /// Where that bundle is.
    pub bundle: &'static str,
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
            let order = match (version.parse::<u64>(), installed.parse::<u64>()) {
                (Ok(v), Ok(i)) => v.cmp(&i),
                // Versions that are not numbers: only the same one is dated.
                _ if version == installed => std::cmp::Ordering::Equal,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Equal => Ok((now - at).max(0) / 86_400),
                std::cmp::Ordering::Greater => Err((
                    false,
                    format!(
                        "XProtect {version} is newer than its last recorded install ({installed}); its age is not known"
                    ),
                )),
                std::cmp::Ordering::Less => Err((
                    false,
                    format!(
                        "XProtect in use ({version}, {}) is older than its last recorded install ({installed}), which it does not use; its age is not known",
                        x.bundle
                    ),
                )),
            }
        }
    }
}

/// Decides the check. `defender` is `None` when mdatp is not installed.
pub fn evaluate(x: &XProtect, defender: Option<&Product>, now: i64, raw: String) -> Finding {
    let age = xprotect_age(x, now);
    let mut f = Finding::pass("XProtect")
        .fact("xprotect_version", x.version.as_ref().ok().cloned())
        .fact("xprotect_bundle", x.bundle)
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

/// Why a bundle's version could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum BundleError {
    /// The bundle is not there (its `Info.plist` does not exist).
    #[error("{0}: no such file")]
    Missing(String),
    #[error("{0}")]
    Unreadable(String),
}

/// The version of the XProtect bundle whose `Info.plist` is at `plist`.
fn bundle_version(host: &dyn Host, plist: &str, raw: &mut String) -> Result<String, BundleError> {
    match host.read_text(plist) {
        Ok(text) if text.starts_with("bplist") => {
            // A binary plist: let `defaults` read the one key.
            let domain = plist.trim_end_matches(".plist");
            match host.run("defaults", &["read", domain, "CFBundleShortVersionString"]) {
                Ok(out) if out.success() && !out.stdout.trim().is_empty() => {
                    raw.push_str(&out.stdout);
                    Ok(out.stdout.trim().to_string())
                }
                Ok(out) => Err(BundleError::Unreadable(format!(
                    "defaults read exited with {:?}: {}",
                    out.code,
                    out.stderr.trim()
                ))),
                Err(e) => Err(BundleError::Unreadable(e.to_string())),
            }
        }
        Ok(text) => {
            raw.push_str(&text);
            parse_xprotect_version(&text).map_err(|e| BundleError::Unreadable(e.to_string()))
        }
        Err(HostError::NoFile { path }) => Err(BundleError::Missing(path)),
        Err(e) => Err(BundleError::Unreadable(e.to_string())),
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let mut raw = String::new();
    // macOS 15 and later use the protected copy when there is one.
    let (bundle, version) = match bundle_version(host, XPROTECT_PROTECTED_PLIST, &mut raw) {
        Err(BundleError::Missing(_)) => {
            (XPROTECT_PLIST, bundle_version(host, XPROTECT_PLIST, &mut raw).map_err(|e| e.to_string()))
        }
        other => (XPROTECT_PROTECTED_PLIST, other.map_err(|e| e.to_string())),
    };
    let last_update = match host.run("system_profiler", &["SPInstallHistoryDataType", "-json"]) {
        Ok(out) if out.success() => {
            let found = parse_install_history(&out.stdout).map_err(|e| e.to_string());
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
            let mut product = parse_mdatp_health(&out.stdout);
            if product.problem.is_none() {
                product.problem = defender_problem(&out.stdout);
            }
            Some(product)
        }
        Err(HostError::NotFound { .. }) => None,
        Err(e) => Some(Product {
            problem: Some(format!("unreadable: {e}")),
            ..Product::named("Microsoft Defender for Endpoint")
        }),
    };
    let bundle = bundle.trim_end_matches("/Contents/Info.plist");
    evaluate(&XProtect { version, bundle, last_update }, defender.as_ref(), ctx.now, raw)
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
        let x = XProtect {
            version: Ok("5290".into()),
            bundle: "",
            last_update: Ok(Some(("5284".into(), String::new(), 0))),
        };
        assert_eq!(evaluate(&x, None, 86_400, String::new()).status, CheckStatus::Unknown);
    }

    #[test]
    fn a_healthy_defender_in_passive_mode_or_without_disk_access_does_not_protect() {
        let ok = r#"{"healthy":true,"realTimeProtectionEnabled":{"value":true,"scope":"managed"},
            "passiveModeEnabled":false,"realTimeProtectionSubsystem":"endpoint_security_extension",
            "fullDiskAccessEnabled":true,"definitionsUpdatedMinutesAgo":290,"definitionsStatus":{"$type":"upToDate"}}"#;
        assert_eq!(defender_problem(ok), None);
        let passive = ok.replace(r#""passiveModeEnabled":false"#, r#""passiveModeEnabled":{"value":true}"#);
        assert!(defender_problem(&passive).unwrap().contains("passive mode"));
        let no_fda = ok.replace(r#""fullDiskAccessEnabled":true"#, r#""fullDiskAccessEnabled":false"#);
        assert!(defender_problem(&no_fda).unwrap().contains("Full Disk Access"));
        let no_source = ok.replace("endpoint_security_extension", "unavailable");
        assert!(defender_problem(&no_source).unwrap().contains("no event source"));
        let old =
            ok.replace(r#""definitionsUpdatedMinutesAgo":290"#, r#""definitionsUpdatedMinutesAgo":8640"#);
        assert_eq!(defender_problem(&old).unwrap(), "definitions are 144 h old (limit 72 h)");
    }

    #[test]
    fn xprotect_older_than_its_recorded_install_has_no_known_age() {
        let x = XProtect {
            version: Ok("5272".into()),
            bundle: XPROTECT_PROTECTED_PLIST,
            last_update: Ok(Some(("5284".into(), String::new(), 0))),
        };
        let f = evaluate(&x, None, 86_400, String::new());
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("is older than its last recorded install (5284)"));
    }
}
