//! The Windows backend of the `os_patches` check: Windows Update.
//!
//! Asks the Windows Update Agent, through its COM API in PowerShell, for the
//! applicable updates that are not installed:
//! `Microsoft.Update.Session` → `CreateUpdateSearcher().Search("IsInstalled=0
//! and Type='Software'")`, each update's `Title`, `MsrcSeverity`, category
//! names, `KBArticleIDs` and `IsHidden` as JSON. Hidden updates are asked
//! for too: Automatic Updates does not offer or install a hidden update
//! (IUpdate::IsHidden), so a security update hidden by a person or a tool
//! stays missing while a search for `IsHidden=0` reports nothing pending.
//! The search uses the update source the machine is configured for
//! (Windows Update, WSUS or Intune); it changes nothing. The newest entry of
//! `Get-HotFix` (`InstalledOn`) gives the date of the last installed update.
//!
//! The search only answers for its source: against a WSUS server it lists
//! what that server approved, and a source that offers nothing (no
//! approvals, a stale catalogue) makes every search come back empty.
//! Microsoft releases security updates monthly, so a host that has
//! installed none for more than [`MAX_PATCH_AGE_DAYS`] is not kept patched,
//! whatever its source says is pending.
//!
//! Status rule: fail when a security update is pending, hidden or not
//! (MsrcSeverity Critical or Important, or category "Security Updates"), or
//! when nothing is pending but the newest installed update is older than
//! [`MAX_PATCH_AGE_DAYS`]; pass when the search succeeded, none is pending
//! and an update was installed within that time; unknown when the search
//! fails (offline, no update source, service disabled, timeout), when the
//! date of the newest installed update cannot be read, or when a pending
//! update is not rated Critical/Important and none of its categories is an
//! English classification name (WUA translates them, so "Security Updates"
//! cannot be recognised). Other pending updates and the last install date
//! are facts.

use serde_json::{Value, json};

use crate::collect::windows::{
    Unavailable, json_bool, json_date, json_items, json_str, powershell, powershell_for,
};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "windows-update";

/// Pending software updates through the Windows Update Agent; any COM error
/// ends the script (exit 1), so a failed search never prints an empty list.
pub const SEARCH_SCRIPT: &str = "$ErrorActionPreference='Stop'; [Console]::OutputEncoding = [Text.Encoding]::UTF8; $s = (New-Object -ComObject Microsoft.Update.Session).CreateUpdateSearcher(); $r = $s.Search('IsInstalled=0 and Type=''Software'''); ConvertTo-Json -Depth 4 -InputObject @($r.Updates | ForEach-Object { [pscustomobject]@{ Title = $_.Title; MsrcSeverity = $_.MsrcSeverity; Categories = @($_.Categories | ForEach-Object { $_.Name }); KBArticleIDs = @($_.KBArticleIDs); IsHidden = $_.IsHidden } })";

/// Longest accepted time since the newest installed update: Microsoft's
/// monthly releases are 28 or 35 days apart (the policy's
/// `max_patch_age_days`, CIS Controls v8 safeguard 7.3).
pub const MAX_PATCH_AGE_DAYS: i64 = 35;

/// The most recently installed hotfix, its date as an ISO date.
pub const HOTFIX_SCRIPT: &str = "$ErrorActionPreference='Stop'; Get-HotFix | Where-Object { $_.InstalledOn } | Sort-Object InstalledOn -Descending | Select-Object -First 1 | ForEach-Object { [pscustomobject]@{ HotFixID = $_.HotFixID; InstalledOn = $_.InstalledOn.ToString('yyyy-MM-dd', [Globalization.CultureInfo]::InvariantCulture) } } | ConvertTo-Json";

/// One pending update.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub title: String,
    pub severity: Option<String>,
    pub categories: Vec<String>,
    pub kbs: Vec<String>,
    /// Hidden from Automatic Updates: never installed by it.
    pub hidden: bool,
}

/// The English names of the Windows Update classifications. Every update
/// has one among its categories; WUA prints category names in the display
/// language, so an update with none of these was not classified here.
const CLASSIFICATIONS: &[&str] = &[
    "Security Updates",
    "Critical Updates",
    "Definition Updates",
    "Updates",
    "Update Rollups",
    "Feature Packs",
    "Service Packs",
    "Tools",
    "Drivers",
    "Driver Sets",
    "Upgrades",
    "Applications",
];

impl Update {
    /// Whether an English classification name is among the categories.
    pub fn is_classified(&self) -> bool {
        self.categories.iter().any(|c| CLASSIFICATIONS.contains(&c.as_str()))
    }

    /// Security relevance as Microsoft classifies it.
    pub fn is_security(&self) -> bool {
        matches!(self.severity.as_deref(), Some("Critical") | Some("Important"))
            || self.categories.iter().any(|c| c == "Security Updates")
    }
    fn to_json(&self) -> Value {
        json!({"title": self.title, "severity": self.severity, "categories": self.categories,
               "kb": self.kbs, "security": self.is_security(), "hidden": self.hidden})
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string).or_else(|| x.as_i64().map(|i| i.to_string())))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// Parses the JSON of [`SEARCH_SCRIPT`].
pub fn parse_pending_updates(text: &str) -> Result<Vec<Update>, ParseError> {
    let items = json_items(text)?;
    items
        .iter()
        .map(|u| {
            let title =
                json_str(u, "Title").ok_or_else(|| ParseError::new(format!("update without Title: {u}")))?;
            Ok(Update {
                title: title.to_string(),
                severity: json_str(u, "MsrcSeverity").filter(|s| !s.is_empty()).map(str::to_string),
                categories: strings(u.get("Categories")),
                kbs: strings(u.get("KBArticleIDs")),
                hidden: json_bool(u.get("IsHidden")).unwrap_or(false),
            })
        })
        .collect()
}

/// Parses the JSON of [`HOTFIX_SCRIPT`]: (hotfix id, installed at as Unix seconds, date as printed).
pub fn parse_last_hotfix(text: &str) -> Option<(String, i64, String)> {
    let items = json_items(text).ok()?;
    let h = items.first()?;
    let date = json_str(h, "InstalledOn")?.to_string();
    let at = json_date(h.get("InstalledOn"))?;
    Some((json_str(h, "HotFixID").unwrap_or("").to_string(), at, date))
}

/// Decides the check from the search result and the last hotfix.
pub fn evaluate(
    search: Result<String, Unavailable>,
    hotfix: Option<(String, i64, String)>,
    now: i64,
) -> Finding {
    let last_at = hotfix.as_ref().map_or(json!(null), |(_, _, d)| json!(d));
    let last_age = hotfix.as_ref().map_or(json!(null), |(_, at, _)| json!((now - at).max(0) / 86_400));
    let last_id = hotfix.as_ref().map_or(json!(null), |(id, _, _)| json!(id));
    let text = match search {
        Ok(t) => t,
        Err(e) => {
            return Finding::unknown(BACKEND, format!("Windows Update search failed: {}", e.message()))
                .fact("last_installed_at", last_at)
                .fact("last_installed_kb", last_id);
        }
    };
    // The script always prints a JSON array (`[]` when nothing is pending).
    let parsed =
        if text.trim().is_empty() { Err(ParseError::new("no output")) } else { parse_pending_updates(&text) };
    let updates = match parsed {
        Ok(u) => u,
        Err(e) => {
            return Finding::unknown(BACKEND, format!("Windows Update search output unreadable: {e}"))
                .fact("last_installed_at", last_at)
                .with_raw(text);
        }
    };
    let security: Vec<&Update> = updates.iter().filter(|u| u.is_security()).collect();
    let f = |status| {
        Finding::new(status, BACKEND)
            .fact("pending_updates", updates.len())
            .fact("pending_security_updates", security.len())
            .fact("updates", updates.iter().take(30).map(Update::to_json).collect::<Vec<_>>())
            .fact("last_installed_at", last_at.clone())
            .fact("last_installed_age_days", last_age.clone())
            .fact("last_installed_kb", last_id.clone())
            .with_raw(text.clone())
    };
    // Not rated Critical/Important and no classification understood (other
    // display language): a security update cannot be ruled out.
    let unclassified: Vec<&Update> =
        updates.iter().filter(|u| !u.is_security() && !u.is_classified()).collect();
    if security.is_empty() && !unclassified.is_empty() {
        let names: Vec<String> = unclassified.iter().take(5).map(|u| u.categories.join("/")).collect();
        return f(CheckStatus::Unknown).with_reason(format!(
            "{} pending updates have no recognised classification (categories {}; non-English display language?)",
            unclassified.len(),
            names.join(", ")
        ));
    }
    if security.is_empty() {
        return match hotfix.as_ref().map(|(_, at, _)| (now - at).max(0) / 86_400) {
            None => f(CheckStatus::Unknown).with_reason(format!(
                "no security updates pending, but the date of the newest installed update could not be \
                 read, so whether the update source offers updates is not known; {} other updates",
                updates.len()
            )),
            Some(age) if age > MAX_PATCH_AGE_DAYS => f(CheckStatus::Fail).with_reason(format!(
                "no security updates pending, but the newest installed update is {age} days old (limit \
                 {MAX_PATCH_AGE_DAYS}): the update source offers nothing (WSUS approvals, a stale \
                 catalogue) and the host is not being patched"
            )),
            Some(age) => f(CheckStatus::Pass).with_reason(format!(
                "no security updates pending, an update installed {age} days ago; {} other updates",
                updates.len()
            )),
        };
    }
    let names: Vec<String> = security
        .iter()
        .take(5)
        .map(|u| u.kbs.first().map_or_else(|| u.title.clone(), |kb| format!("KB{kb}")))
        .collect();
    let more = if security.len() > 5 { ", ..." } else { "" };
    let hidden = match security.iter().filter(|u| u.hidden).count() {
        0 => String::new(),
        n => format!("; {n} of them hidden, which Automatic Updates never installs"),
    };
    f(CheckStatus::Fail).with_reason(format!(
        "{} security updates pending ({}{more}){hidden}",
        security.len(),
        names.join(", ")
    ))
}

/// Time limit of the Windows Update search (the collector limit of the
/// policy must leave room for it).
pub const SEARCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(110);

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    // A Windows Update search often takes longer than other commands.
    let search = powershell_for(host, SEARCH_SCRIPT, Some(SEARCH_LIMIT));
    let hotfix = powershell(host, HOTFIX_SCRIPT).ok().and_then(|t| parse_last_hotfix(&t));
    evaluate(search, hotfix, ctx.now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_update_and_empty_list() {
        let one = r#"{"Title":"Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.421.1234.0)","MsrcSeverity":null,"Categories":["Definition Updates","Microsoft Defender Antivirus"],"KBArticleIDs":["2267602"]}"#;
        let u = parse_pending_updates(one).unwrap();
        assert_eq!(u.len(), 1);
        assert!(!u[0].is_security());
        assert_eq!(parse_pending_updates("[]").unwrap(), vec![]);
        assert_eq!(parse_pending_updates("").unwrap(), vec![]);
        assert!(parse_pending_updates("Exception calling").is_err());
    }
}
