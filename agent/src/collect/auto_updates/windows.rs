//! The Windows backend of the `auto_updates` check: Windows Update.
//!
//! Reads, with `reg query` (text format of reg.exe) and `sc qc`:
//! - the Group Policy / MDM-mirrored policy key
//!   `HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU`
//!   (`NoAutoUpdate`, `AUOptions`);
//! - the MDM (Intune) policy `AllowAutoUpdate` under
//!   `HKLM\SOFTWARE\Microsoft\PolicyManager\current\device\Update`
//!   (0 notify, 1-4 automatic, 5 off);
//! - a user pause, `PauseUpdatesExpiryTime` under
//!   `HKLM\SOFTWARE\Microsoft\WindowsUpdate\UX\Settings`;
//! - a pause set by Group Policy or MDM ("Select when Quality / Feature
//!   Updates are received"), the values of
//!   `HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate` itself:
//!   `PauseQualityUpdatesStartTime` / `PauseQualityUpdatesEndTime` (the
//!   policy pauses for 35 days from the start date when no end is written),
//!   the same pair for feature updates (a fact: feature updates are not
//!   security fixes), and `SetDisablePauseUXAccess` (a fact);
//! - the start type of the Windows Update service (`sc qc wuauserv`,
//!   `START_TYPE : 4 DISABLED`; the number is locale-independent).
//!
//! Status rule:
//! - fail: the service is disabled; `NoAutoUpdate` = 1; `AUOptions` 2
//!   (notify before download), 3 (download, then *wait for a person* to
//!   install) or 7 (notify to install); MDM `AllowAutoUpdate` 0 or 5;
//!   updates paused past the collection time, by the user or by a
//!   quality-update pause policy in force at the collection time;
//! - pass: `AUOptions` 4 (download and install on a schedule), or no
//!   `AUOptions` policy at all: since Windows 10, an unmanaged machine
//!   downloads and installs updates by itself, and that default is what runs
//!   ("no policy: Windows default (automatic)");
//! - unknown: `AUOptions` 5 (the local administrator chooses; that local
//!   choice is not read), an unrecognised value, or the policy key, the
//!   pause, the pause policy, the MDM policy or the service configuration
//!   could not be read (a pause date that is not a readable date included).

use std::collections::BTreeMap;

use serde_json::json;

use crate::collect::windows::{RegValue, Unavailable, console, parse_iso_date, reg_query};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "windows-update";
const AU_KEY: &str = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU";
const UX_KEY: &str = "HKLM\\SOFTWARE\\Microsoft\\WindowsUpdate\\UX\\Settings";
const MDM_KEY: &str = "HKLM\\SOFTWARE\\Microsoft\\PolicyManager\\current\\device\\Update";
const POLICY_KEY: &str = "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate";
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
}

/// Decides the check; `now` is Unix seconds.
pub fn evaluate(o: &Observed, now: i64) -> Finding {
    let policy = match &o.policy {
        Ok(p) => p.clone(),
        Err(e) => return e.unknown(BACKEND, "the Windows Update policy key could not be read"),
    };
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
    let no_auto = num("noautoupdate");
    let au_options = num("auoptions");
    let start_type = match &o.service {
        Ok(text) => {
            raw.push_str(text);
            parse_sc_start_type(text)
        }
        Err(_) => None,
    };
    let paused_until = o.paused_until.as_ref().ok().cloned().flatten();
    let mdm = o.mdm_allow_auto_update.as_ref().ok().copied().flatten();
    let paused_at = paused_until.as_deref().and_then(parse_iso_date);
    let pause_values = o.policy_pause.as_ref().ok().cloned().flatten().unwrap_or_default();
    let quality_pause = policy_pause(&pause_values, "quality");
    let feature_pause = policy_pause(&pause_values, "feature");
    let pause_fact = |p: &Result<Option<PolicyPause>, String>| match p {
        Ok(Some(p)) => json!(p.until_text()),
        _ => json!(null),
    };
    let disable_pause_ux = pause_values.get("setdisablepauseuxaccess").and_then(RegValue::number);
    let base = |status| {
        Finding::new(status, BACKEND)
            .fact("policy_configured", policy.is_some())
            .fact("no_auto_update", json!(no_auto))
            .fact("au_options", json!(au_options))
            .fact("service_start_type", json!(start_type))
            .fact("paused_until", json!(paused_until))
            .fact("mdm_allow_auto_update", json!(mdm))
            .fact("policy_quality_paused_until", pause_fact(&quality_pause))
            .fact("policy_feature_paused_until", pause_fact(&feature_pause))
            .fact("policy_feature_pause_in_force", matches!(&feature_pause, Ok(Some(p)) if p.in_force(now)))
            .fact("disable_pause_ux_access", json!(disable_pause_ux))
            .with_raw(raw.clone())
    };
    let mut problems = Vec::new();
    if start_type == Some(4) {
        problems.push("the Windows Update service (wuauserv) is disabled".to_string());
    }
    if no_auto == Some(1) {
        problems.push("automatic updates are turned off by policy (NoAutoUpdate = 1)".to_string());
    }
    let options_verdict = match au_options {
        None => Ok("no policy: Windows default (automatic)"),
        Some(4) => Ok("policy installs updates automatically on a schedule (AUOptions = 4)"),
        Some(2) => Err("policy only notifies before downloading updates (AUOptions = 2)"),
        Some(3) => Err("policy downloads updates but waits for a person to install them (AUOptions = 3)"),
        Some(7) => Err("policy waits for a person to install updates (AUOptions = 7)"),
        Some(5) => {
            Ok("unknown: AUOptions = 5 lets the local administrator choose, and that choice is not read")
        }
        Some(_) => Ok("unknown: unrecognised AUOptions value"),
    };
    match options_verdict {
        Err(e) if no_auto != Some(1) => problems.push(e.to_string()),
        _ => {}
    }
    // MDM: 0 notify before download, 1-4 install automatically, 5 off. Either
    // policy channel turning updates off is enough to fail.
    match mdm {
        Some(0) => {
            problems.push("MDM policy only notifies before downloading updates (AllowAutoUpdate = 0)".into())
        }
        Some(5) => problems.push("MDM policy turns automatic updates off (AllowAutoUpdate = 5)".into()),
        _ => {}
    }
    if paused_at.is_some_and(|t| t > now) {
        problems.push(format!("updates are paused until {}", paused_until.as_deref().unwrap_or("?")));
    }
    if let Ok(Some(p)) = &quality_pause
        && p.in_force(now)
    {
        problems.push(format!("quality updates are paused by policy until {}", p.until_text()));
    }
    if !problems.is_empty() {
        return base(CheckStatus::Fail).with_reason(problems.join("; "));
    }
    let verdict = options_verdict.unwrap_or("");
    if let Some(why) = verdict.strip_prefix("unknown: ") {
        return base(CheckStatus::Unknown).with_reason(why.to_string());
    }
    // A pause or an MDM policy that cannot be read may be what turns updates off.
    let mut unread = Vec::new();
    match (&o.paused_until, &paused_until) {
        (Err(e), _) => unread.push(format!("the update pause could not be read: {}", e.message())),
        (_, Some(p)) if paused_at.is_none() => {
            unread.push(format!("PauseUpdatesExpiryTime {p:?} is not a date that could be read"))
        }
        _ => {}
    }
    match &o.policy_pause {
        Err(e) => unread.push(format!("the Windows Update pause policy could not be read: {}", e.message())),
        Ok(_) => {
            if let Err(e) = &quality_pause {
                unread.push(e.clone());
            }
        }
    }
    if let Err(e) = &o.mdm_allow_auto_update {
        unread.push(format!("the MDM AllowAutoUpdate policy could not be read: {}", e.message()));
    }
    if !unread.is_empty() {
        return base(CheckStatus::Unknown).with_reason(unread.join("; "));
    }
    match (&o.service, start_type) {
        (Err(e), _) => base(CheckStatus::Unknown).with_reason(format!(
            "the Windows Update service configuration could not be read: {}",
            e.message()
        )),
        (Ok(_), None) => base(CheckStatus::Unknown).with_reason("sc qc wuauserv printed no START_TYPE"),
        (Ok(_), Some(_)) => base(CheckStatus::Pass).with_reason(verdict.to_string()),
    }
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
    Observed {
        policy: reg_query(host, &[AU_KEY]),
        paused_until,
        policy_pause: reg_query(host, &[POLICY_KEY]),
        mdm_allow_auto_update,
        service: console(host, "sc", &["qc", "wuauserv"]),
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
}
