//! The Windows backend of the `auto_updates` check: Windows Update.
//!
//! Reads, with `reg query` (text format of reg.exe), `sc qc` and PowerShell:
//! - the Group Policy / MDM-mirrored policy key
//!   `HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU`
//!   (`NoAutoUpdate`, `AUOptions`; `UseWUServer`, a WSUS server, is a fact);
//! - the MDM (Intune) policy `AllowAutoUpdate` under
//!   `HKLM\SOFTWARE\Microsoft\PolicyManager\current\device\Update`
//!   (0 notify, 1-4 automatic, 5 off; the values the Update CSP defines);
//! - a user pause, `PauseUpdatesExpiryTime` under
//!   `HKLM\SOFTWARE\Microsoft\WindowsUpdate\UX\Settings`;
//! - a pause set by Group Policy or MDM ("Select when Quality / Feature
//!   Updates are received"), the values of
//!   `HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate` itself:
//!   `PauseQualityUpdatesStartTime` / `PauseQualityUpdatesEndTime` (the
//!   policy pauses for 35 days from the start date when no end is written),
//!   the same pair for feature updates (a fact: feature updates are not
//!   security fixes), `SetDisablePauseUXAccess` and the quality-update
//!   deferral (`DeferQualityUpdatesPeriodInDays`; facts);
//! - the start type of the Windows Update service (`sc qc wuauserv`,
//!   `START_TYPE : 4 DISABLED`; the number is locale-independent);
//! - the product type (`ProductType` under
//!   `HKLM\SYSTEM\CurrentControlSet\Control\ProductOptions`: `WinNT` a
//!   workstation, `ServerNT` / `LanmanNT` a server or domain controller);
//! - the date of the newest installed update (`Get-HotFix`, the same
//!   command as `os_patches`).
//!
//! A policy says what Windows Update is meant to do, not that updates get
//! installed. Windows without a policy installs updates by itself on client
//! editions only: on Windows Server "Download only ... is the default option"
//! (Microsoft Learn, "Configure a Server Core installation of Windows Server
//! with SConfig"), which waits for a person to install. And whatever the
//! settings, updates that are not installed for more than
//! [`MAX_PATCH_AGE_DAYS`] (Microsoft releases monthly) are not being
//! installed automatically: a WSUS server that approves nothing, an update
//! source that cannot be reached, a client that fails to install.
//!
//! Status rule:
//! - fail: the service is disabled; `NoAutoUpdate` = 1; `AUOptions` 2
//!   (notify before download), 3 (download, then *wait for a person* to
//!   install) or 7 (notify to install); MDM `AllowAutoUpdate` 0 or 5;
//!   updates paused past the collection time, by the user or by a
//!   quality-update pause policy in force at the collection time; the
//!   newest installed update older than [`MAX_PATCH_AGE_DAYS`];
//! - pass: `AUOptions` 4 (download and install on a schedule), or no
//!   `AUOptions` policy at all on a client edition: since Windows 10, an
//!   unmanaged client downloads and installs updates by itself ("no
//!   policy: Windows default (automatic)"); in both cases with an update
//!   installed within [`MAX_PATCH_AGE_DAYS`];
//! - unknown: `AUOptions` 5 (the local administrator chooses; that local
//!   choice is not read), an unrecognised `AUOptions` or `AllowAutoUpdate`
//!   value, no `AUOptions` policy on Windows Server (its local setting is not
//!   read), or the policy key, the pause, the pause policy, the MDM policy,
//!   the service configuration, the product type or the date of the newest
//!   installed update could not be read (a pause date that is not a
//!   readable date included).

use std::collections::BTreeMap;

use serde_json::json;

use crate::collect::os_patches::windows::{HOTFIX_SCRIPT, MAX_PATCH_AGE_DAYS, parse_last_hotfix};
use crate::collect::windows::{RegValue, Unavailable, console, parse_iso_date, powershell, reg_query};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "windows-update";
const AU_KEY: &str = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU";
const UX_KEY: &str = "HKLM\\SOFTWARE\\Microsoft\\WindowsUpdate\\UX\\Settings";
const MDM_KEY: &str = "HKLM\\SOFTWARE\\Microsoft\\PolicyManager\\current\\device\\Update";
const POLICY_KEY: &str = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate";
const PRODUCT_KEY: &str = "HKLM\\SYSTEM\\CurrentControlSet\\Control\\ProductOptions";
/// How long a pause policy with only a start date lasts.
const POLICY_PAUSE_DAYS: i64 = 35;

/// A pause window from policy values: start and end as written (either may
/// be absent), and the end in Unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyPause {
    pub start: Option<String>,
    pub end: Option<String>,
    /// When the pause ends: the end date, else 35 days after the start.
    pub until: i64,
    pub from: Option<i64>,
}

impl PolicyPause {
    /// The end as a date, for a reason (the written end, or the computed one).
    pub fn until_text(&self) -> String {
        match &self.end {
            Some(e) => e.clone(),
            None => time::OffsetDateTime::from_unix_timestamp(self.until)
                .map(|t| t.date().to_string())
                .unwrap_or_else(|_| self.until.to_string()),
        }
    }

    pub fn in_force(&self, now: i64) -> bool {
        self.from.is_none_or(|f| f <= now) && now < self.until
    }
}

/// Reads one pause (`Pause<kind>UpdatesStartTime` / `...EndTime`) from the
/// policy key's values: `Ok(None)` when neither is set, `Err` with the
/// value when a date cannot be read.
pub fn policy_pause(values: &BTreeMap<String, RegValue>, kind: &str) -> Result<Option<PolicyPause>, String> {
    let get = |suffix: &str| {
        let name = format!("pause{kind}updates{suffix}");
        values.get(&name).map(|v| v.data.trim().to_string()).filter(|d| !d.is_empty())
    };
    let (start, end) = (get("starttime"), get("endtime"));
    let date = |name: &str, v: &Option<String>| match v {
        None => Ok(None),
        Some(text) => parse_iso_date(text).map(Some).ok_or_else(|| {
            format!("policy Pause{}Updates{name} {text:?} is not a date that could be read", capitalise(kind))
        }),
    };
    let from = date("StartTime", &start)?;
    let to = date("EndTime", &end)?;
    let until = match (from, to) {
        (_, Some(t)) => t,
        (Some(f), None) => f + POLICY_PAUSE_DAYS * 86_400,
        (None, None) => return Ok(None),
    };
    Ok(Some(PolicyPause { start, end, until, from }))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

/// Parses `sc qc <service>`: the `START_TYPE` number (2 auto, 3 demand, 4 disabled).
pub fn parse_sc_start_type(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        if key.trim() != "START_TYPE" {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The AU policy values; `Ok(None)` when the key does not exist.
    pub policy: Result<Option<BTreeMap<String, RegValue>>, Unavailable>,
    /// `PauseUpdatesExpiryTime` as printed, `Ok(None)` when not set.
    pub paused_until: Result<Option<String>, Unavailable>,
    /// The values of the WindowsUpdate policy key (pause policies);
    /// `Ok(None)` when the key does not exist.
    pub policy_pause: Result<Option<BTreeMap<String, RegValue>>, Unavailable>,
    /// The MDM (Intune) `Update/AllowAutoUpdate` policy, `Ok(None)` when not set.
    pub mdm_allow_auto_update: Result<Option<u64>, Unavailable>,
    /// `sc qc wuauserv` output, or why it could not be read.
    pub service: Result<String, Unavailable>,
    /// `ProductType` (`WinNT`, `ServerNT`, `LanmanNT`), or why it could not be read.
    pub product_type: Result<String, Unavailable>,
    /// The newest installed update (hotfix id, Unix seconds, date as
    /// printed), or why it could not be read.
    pub last_installed: Result<(String, i64, String), String>,
}

/// The values [`evaluate`] works from, read out of [`Observed`].
struct Values {
    policy: Option<BTreeMap<String, RegValue>>,
    no_auto: Option<u64>,
    au_options: Option<u64>,
    start_type: Option<u32>,
    paused_until: Option<String>,
    paused_at: Option<i64>,
    mdm: Option<u64>,
    pause_values: BTreeMap<String, RegValue>,
    quality_pause: Result<Option<PolicyPause>, String>,
    feature_pause: Result<Option<PolicyPause>, String>,
    /// Days since the newest installed update.
    last_age: Option<i64>,
    raw: String,
}

impl Values {
    fn read(o: &Observed, policy: Option<BTreeMap<String, RegValue>>, now: i64) -> Values {
        // The raw observation: the policy values as reg printed them, then sc's answer.
        let mut raw = format!("{AU_KEY}\n");
        for (name, v) in policy.iter().flatten() {
            raw.push_str(&format!("    {name}    {}    {}\n", v.kind, v.data));
        }
        if let Ok(Some(values)) = &o.policy_pause {
            raw.push_str(&format!("{POLICY_KEY}\n"));
            for (name, v) in values {
                raw.push_str(&format!("    {name}    {}    {}\n", v.kind, v.data));
            }
        }
        let num = |name: &str| policy.as_ref().and_then(|p| p.get(name)).and_then(RegValue::number);
        let start_type = match &o.service {
            Ok(text) => {
                raw.push_str(text);
                parse_sc_start_type(text)
            }
            Err(_) => None,
        };
        let paused_until = o.paused_until.as_ref().ok().cloned().flatten();
        let pause_values = o.policy_pause.as_ref().ok().cloned().flatten().unwrap_or_default();
        Values {
            no_auto: num("noautoupdate"),
            au_options: num("auoptions"),
            start_type,
            paused_at: paused_until.as_deref().and_then(parse_iso_date),
            paused_until,
            mdm: o.mdm_allow_auto_update.as_ref().ok().copied().flatten(),
            quality_pause: policy_pause(&pause_values, "quality"),
            feature_pause: policy_pause(&pause_values, "feature"),
            pause_values,
            last_age: o.last_installed.as_ref().ok().map(|(_, at, _)| (now - at).max(0) / 86_400),
            policy,
            raw,
        }
    }

    fn finding(&self, o: &Observed, status: CheckStatus, now: i64) -> Finding {
        let pause_fact = |p: &Result<Option<PolicyPause>, String>| match p {
            Ok(Some(p)) => json!(p.until_text()),
            _ => json!(null),
        };
        let pause_num = |k: &str| self.pause_values.get(k).and_then(RegValue::number);
        let deferral = (pause_num("deferqualityupdates") == Some(1))
            .then(|| pause_num("deferqualityupdatesperiodindays"))
            .flatten();
        let use_wsus = self.policy.as_ref().and_then(|p| p.get("usewuserver")).and_then(RegValue::number);
        Finding::new(status, BACKEND)
            .fact("policy_configured", self.policy.is_some())
            .fact("no_auto_update", json!(self.no_auto))
            .fact("au_options", json!(self.au_options))
            .fact("service_start_type", json!(self.start_type))
            .fact("paused_until", json!(self.paused_until))
            .fact("mdm_allow_auto_update", json!(self.mdm))
            .fact("policy_quality_paused_until", pause_fact(&self.quality_pause))
            .fact("policy_feature_paused_until", pause_fact(&self.feature_pause))
            .fact(
                "policy_feature_pause_in_force",
                matches!(&self.feature_pause, Ok(Some(p)) if p.in_force(now)),
            )
            .fact("disable_pause_ux_access", json!(pause_num("setdisablepauseuxaccess")))
            .fact("quality_deferral_days", json!(deferral))
            .fact("use_wsus", json!(use_wsus.map(|n| n == 1)))
            .fact("product_type", json!(o.product_type.as_ref().ok()))
            .fact("last_installed_at", json!(o.last_installed.as_ref().ok().map(|(_, _, d)| d)))
            .fact("last_installed_age_days", json!(self.last_age))
            .with_raw(self.raw.clone())
    }
}

/// What `AUOptions` says: `Ok` a reason to pass (or, prefixed `unknown: `,
/// why it cannot be told), `Err` why it fails.
fn options_verdict(au_options: Option<u64>) -> Result<&'static str, &'static str> {
    match au_options {
        None => Ok("no policy: Windows default (automatic)"),
        Some(4) => Ok("policy installs updates automatically on a schedule (AUOptions = 4)"),
        Some(2) => Err("policy only notifies before downloading updates (AUOptions = 2)"),
        Some(3) => Err("policy downloads updates but waits for a person to install them (AUOptions = 3)"),
        Some(7) => Err("policy waits for a person to install updates (AUOptions = 7)"),
        Some(5) => {
            Ok("unknown: AUOptions = 5 lets the local administrator choose, and that choice is not read")
        }
        Some(_) => Ok("unknown: unrecognised AUOptions value"),
    }
}

/// What certainly keeps updates from being installed automatically.
fn problems(v: &Values, now: i64) -> Vec<String> {
    let mut problems = Vec::new();
    if v.start_type == Some(4) {
        problems.push("the Windows Update service (wuauserv) is disabled".to_string());
    }
    if v.no_auto == Some(1) {
        problems.push("automatic updates are turned off by policy (NoAutoUpdate = 1)".to_string());
    }
    if let Err(e) = options_verdict(v.au_options)
        && v.no_auto != Some(1)
    {
        problems.push(e.to_string());
    }
    // MDM: 0 notify before download, 1-4 install automatically, 5 off. Either
    // policy channel turning updates off is enough to fail.
    match v.mdm {
        Some(0) => {
            problems.push("MDM policy only notifies before downloading updates (AllowAutoUpdate = 0)".into())
        }
        Some(5) => problems.push("MDM policy turns automatic updates off (AllowAutoUpdate = 5)".into()),
        _ => {}
    }
    if v.paused_at.is_some_and(|t| t > now) {
        problems.push(format!("updates are paused until {}", v.paused_until.as_deref().unwrap_or("?")));
    }
    if let Ok(Some(p)) = &v.quality_pause
        && p.in_force(now)
    {
        problems.push(format!("quality updates are paused by policy until {}", p.until_text()));
    }
    if let Some(age) = v.last_age.filter(|a| *a > MAX_PATCH_AGE_DAYS) {
        problems.push(format!(
            "the newest installed update is {age} days old (limit {MAX_PATCH_AGE_DAYS}): updates are not \
             being installed"
        ));
    }
    problems
}

/// What could not be read or understood and might keep updates from being
/// installed.
fn unread(o: &Observed, v: &Values) -> Vec<String> {
    let mut unread = Vec::new();
    match (&o.paused_until, &v.paused_until) {
        (Err(e), _) => unread.push(format!("the update pause could not be read: {}", e.message())),
        (_, Some(p)) if v.paused_at.is_none() => {
            unread.push(format!("PauseUpdatesExpiryTime {p:?} is not a date that could be read"))
        }
        _ => {}
    }
    match &o.policy_pause {
        Err(e) => unread.push(format!("the Windows Update pause policy could not be read: {}", e.message())),
        Ok(_) => {
            if let Err(e) = &v.quality_pause {
                unread.push(e.clone());
            }
        }
    }
    match (&o.mdm_allow_auto_update, v.mdm) {
        (Err(e), _) => {
            unread.push(format!("the MDM AllowAutoUpdate policy could not be read: {}", e.message()))
        }
        (_, Some(n)) if n > 5 => unread.push(format!("unrecognised MDM AllowAutoUpdate value {n}")),
        _ => {}
    }
    if v.au_options.is_none() {
        match &o.product_type {
            Ok(t) if t.eq_ignore_ascii_case("WinNT") => {}
            Ok(t) => unread.push(format!(
                "no update policy on Windows Server (ProductType {t}), whose default is to download \
                 updates only (SConfig 'Download only'); the local setting is not read"
            )),
            Err(e) => unread.push(format!(
                "no update policy, and whether this is a client edition (which installs by default) \
                 could not be read: {}",
                e.message()
            )),
        }
    }
    match &v.start_type {
        Some(_) => {}
        None => unread.push(match &o.service {
            Err(e) => format!("the Windows Update service configuration could not be read: {}", e.message()),
            Ok(_) => "sc qc wuauserv printed no START_TYPE".to_string(),
        }),
    }
    if let Err(e) = &o.last_installed {
        unread.push(format!(
            "the date of the newest installed update could not be read ({e}), so whether updates get \
             installed is not shown"
        ));
    }
    unread
}

/// Decides the check; `now` is Unix seconds.
pub fn evaluate(o: &Observed, now: i64) -> Finding {
    let policy = match &o.policy {
        Ok(p) => p.clone(),
        Err(e) => return e.unknown(BACKEND, "the Windows Update policy key could not be read"),
    };
    let v = Values::read(o, policy, now);
    let problems = problems(&v, now);
    if !problems.is_empty() {
        return v.finding(o, CheckStatus::Fail, now).with_reason(problems.join("; "));
    }
    let verdict = options_verdict(v.au_options).unwrap_or("");
    if let Some(why) = verdict.strip_prefix("unknown: ") {
        return v.finding(o, CheckStatus::Unknown, now).with_reason(why.to_string());
    }
    // A pause, a policy or a state that cannot be read may be what keeps updates out.
    let unread = unread(o, &v);
    if !unread.is_empty() {
        return v.finding(o, CheckStatus::Unknown, now).with_reason(unread.join("; "));
    }
    let age = v.last_age.map_or(String::new(), |a| format!("; the newest installed update is {a} days old"));
    v.finding(o, CheckStatus::Pass, now).with_reason(format!("{verdict}{age}"))
}

/// Reads the policy, pause and service state through the host.
pub fn observe(host: &dyn Host) -> Observed {
    let paused_until = reg_query(host, &[UX_KEY, "/v", "PauseUpdatesExpiryTime"]).map(|v| {
        v.and_then(|v| v.get("pauseupdatesexpirytime").map(|r| r.data.trim().to_string()))
            .filter(|s| !s.is_empty())
    });
    let mdm_allow_auto_update = reg_query(host, &[MDM_KEY, "/v", "AllowAutoUpdate"]).and_then(|v| match v {
        None => Ok(None),
        Some(v) => match v.get("allowautoupdate") {
            None => Ok(None),
            Some(r) => r
                .number()
                .map(Some)
                .ok_or_else(|| Unavailable::Failed(format!("AllowAutoUpdate is not a number: {:?}", r.data))),
        },
    });
    let product_type = reg_query(host, &[PRODUCT_KEY, "/v", "ProductType"]).and_then(|v| {
        v.and_then(|v| v.get("producttype").map(|r| r.data.trim().to_string()))
            .ok_or_else(|| Unavailable::Failed("ProductType is not set".into()))
    });
    let last_installed = powershell(host, HOTFIX_SCRIPT)
        .map_err(|e| e.message().to_string())
        .and_then(|t| parse_last_hotfix(&t).ok_or_else(|| "Get-HotFix listed no dated update".to_string()));
    Observed {
        policy: reg_query(host, &[AU_KEY]),
        paused_until,
        policy_pause: reg_query(host, &[POLICY_KEY]),
        mdm_allow_auto_update,
        service: console(host, "sc", &["qc", "wuauserv"]),
        product_type,
        last_installed,
    }
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    evaluate(&observe(host), ctx.now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(values: &[(&str, u64)]) -> Observed {
        let map = values
            .iter()
            .map(|(k, v)| (k.to_string(), RegValue { kind: "REG_DWORD".into(), data: format!("{v:#x}") }))
            .collect();
        Observed {
            policy: Ok(Some(map)),
            paused_until: Ok(None),
            policy_pause: Ok(None),
            mdm_allow_auto_update: Ok(None),
            service: Ok("        START_TYPE         : 3   DEMAND_START\r\n".into()),
            product_type: Ok("WinNT".into()),
            // 2026-11-18, five days before the collection time the tests use.
            last_installed: Ok(("KB5068861".into(), 1_795_000_000, "2026-11-18".into())),
        }
    }

    #[test]
    fn au_options_that_wait_for_a_person_fail() {
        assert_eq!(evaluate(&observed(&[("auoptions", 3)]), 0).status, CheckStatus::Fail);
        assert_eq!(evaluate(&observed(&[("auoptions", 4)]), 0).status, CheckStatus::Pass);
        assert_eq!(
            evaluate(&observed(&[("noautoupdate", 1), ("auoptions", 4)]), 0).status,
            CheckStatus::Fail
        );
        let mut unreadable = observed(&[]);
        unreadable.service = Err(Unavailable::Failed("timeout".into()));
        assert_eq!(evaluate(&unreadable, 0).status, CheckStatus::Unknown);
    }

    fn pause_policy(values: &[(&str, &str)]) -> Observed {
        let map = values
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), RegValue { kind: "REG_SZ".into(), data: v.to_string() }))
            .collect();
        Observed { policy_pause: Ok(Some(map)), ..observed(&[("auoptions", 4)]) }
    }

    #[test]
    fn a_quality_pause_policy_in_force_fails_with_its_end() {
        // 2026-11-23 10:00 UTC.
        let now = 1_795_428_000;
        let f = evaluate(&pause_policy(&[("PauseQualityUpdatesStartTime", "2026-11-20")]), now);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("paused by policy until 2026-12-25"));
        let f = evaluate(&pause_policy(&[("PauseQualityUpdatesStartTime", "2026-10-01")]), now);
        assert_eq!(f.status, CheckStatus::Pass, "35 days are over");
        let f = evaluate(
            &pause_policy(&[
                ("PauseQualityUpdatesStartTime", "2026-11-20T08:00:00Z"),
                ("PauseQualityUpdatesEndTime", "2026-11-27T08:00:00Z"),
            ]),
            now,
        );
        assert!(f.reason.unwrap().contains("until 2026-11-27T08:00:00Z"));
        let f = evaluate(&pause_policy(&[("PauseQualityUpdatesStartTime", "2026-12-01")]), now);
        assert_eq!(f.status, CheckStatus::Pass, "a pause that starts later is not in force");
        // A feature pause is a fact, not a failure.
        let f = evaluate(&pause_policy(&[("PauseFeatureUpdatesStartTime", "2026-11-20")]), now);
        assert_eq!(f.status, CheckStatus::Pass);
        assert_eq!(f.facts["policy_feature_pause_in_force"], serde_json::json!(true));
        let f = evaluate(&pause_policy(&[("PauseQualityUpdatesStartTime", "20.11.2026")]), now);
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("PauseQualityUpdatesStartTime \"20.11.2026\" is not a date"));
        let denied = Observed {
            policy_pause: Err(Unavailable::Denied("Access is denied.".into())),
            ..observed(&[("auoptions", 4)])
        };
        assert_eq!(evaluate(&denied, now).status, CheckStatus::Unknown);
    }

    #[test]
    fn what_the_policy_cannot_show_is_not_taken_for_granted() {
        let now = 1_795_428_000;
        // No policy on Windows Server: it downloads only by default.
        let server = Observed { product_type: Ok("ServerNT".into()), ..observed(&[]) };
        let f = evaluate(&Observed { policy: Ok(None), ..server }, now);
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("SConfig 'Download only'"));
        let client = Observed { policy: Ok(None), ..observed(&[]) };
        assert_eq!(evaluate(&client, now).status, CheckStatus::Pass);
        // Set to install, but nothing installed for two months.
        let stale = Observed {
            last_installed: Ok(("KB5065429".into(), 1_789_603_200, "2026-09-17".into())),
            ..observed(&[("auoptions", 4)])
        };
        let f = evaluate(&stale, now);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("newest installed update is 67 days old (limit 35)"));
        let unread = Observed { last_installed: Err("timeout".into()), ..observed(&[("auoptions", 4)]) };
        assert_eq!(evaluate(&unread, now).status, CheckStatus::Unknown);
        // An AllowAutoUpdate value the Update CSP does not define.
        let mdm = Observed { mdm_allow_auto_update: Ok(Some(6)), ..observed(&[("auoptions", 4)]) };
        assert_eq!(evaluate(&mdm, now).status, CheckStatus::Unknown);
    }
}
