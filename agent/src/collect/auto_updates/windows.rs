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
//! - the start type of the Windows Update service (`sc qc wuauserv`,
//!   `START_TYPE : 4 DISABLED`; the number is locale-independent).
//!
//! Status rule:
//! - fail: the service is disabled; `NoAutoUpdate` = 1; `AUOptions` 2
//!   (notify before download), 3 (download, then *wait for a person* to
//!   install) or 7 (notify to install); MDM `AllowAutoUpdate` 0 or 5;
//!   updates paused past the collection time;
//! - pass: `AUOptions` 4 (download and install on a schedule), or no
//!   `AUOptions` policy at all: since Windows 10, an unmanaged machine
//!   downloads and installs updates by itself, and that default is what runs
//!   ("no policy: Windows default (automatic)");
//! - unknown: `AUOptions` 5 (the local administrator chooses; that local
//!   choice is not read), an unrecognised value, or the policy key, the
//!   pause, the MDM policy or the service configuration could not be read
//!   (a `PauseUpdatesExpiryTime` that is not a readable date included).

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
    let base = |status| {
        Finding::new(status, BACKEND)
            .fact("policy_configured", policy.is_some())
            .fact("no_auto_update", json!(no_auto))
            .fact("au_options", json!(au_options))
            .fact("service_start_type", json!(start_type))
            .fact("paused_until", json!(paused_until))
            .fact("mdm_allow_auto_update", json!(mdm))
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
}
