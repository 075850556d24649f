//! The Windows backend of the `screen_lock` check.
//!
//! Reads policy values with `reg query` (reg.exe text format):
//! - the machine inactivity limit, `InactivityTimeoutSecs` under
//!   `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`
//!   ("Interactive logon: Machine inactivity limit"), which locks every
//!   session;
//! - the screen-saver policy of every loaded user profile (`reg query HKU`
//!   lists them; local `S-1-5-21-*` and Entra ID `S-1-12-1-*` accounts):
//!   `ScreenSaveActive`, `ScreenSaverIsSecure`, `ScreenSaveTimeOut` and
//!   `SCRNSAVE.EXE` under
//!   `HKU\<SID>\Software\Policies\Microsoft\Windows\Control Panel\Desktop`.
//!   `HKCU` is not used: the agent usually runs as a service, whose `HKCU` is
//!   not the user's. A user's own (non-policy) screen-saver choice is not
//!   enforced and does not count;
//! - the screen-saver grace period, `ScreenSaverGracePeriod` under
//!   `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon` (seconds
//!   in which input ends the screen saver without a password; 5 when not
//!   set).
//!
//! The screen-saver policy is only a timeout for a program: "Screen saver
//! timeout" has no effect when neither the "Force specific screen saver"
//! policy (`SCRNSAVE.EXE`) nor the user names a screen saver (its Group
//! Policy explanation), and Windows names none by default. So a
//! screen-saver policy counts only with the program it forces.
//!
//! Status rule: pass when the machine limit is 1..=[`MAX_IDLE_SECONDS`], or
//! when every loaded user profile has a screen-saver policy that is active,
//! password-protected, times out within [`MAX_IDLE_SECONDS`] and forces a
//! screen-saver program, with a grace period of at most
//! [`MAX_LOCK_DELAY_SECONDS`]. Fail when the machine limit is longer (or 0,
//! off) and the screen-saver policy does not make up for it. Unknown when
//! the registry could not be read (the grace period included, where the
//! screen-saver policy is what would pass), or when no machine limit is set
//! and no user profile is loaded to read. Windows Server is judged the same:
//! console and remote desktop sessions on servers need to lock as well.
//! Whether the forced program exists is not checked.

use serde_json::json;

use super::{MAX_IDLE_SECONDS, MAX_LOCK_DELAY_SECONDS};
use crate::collect::windows::{RegValue, Unavailable, reg_query};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "windows-policy";
const SYSTEM_KEY: &str = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System";
const DESKTOP_POLICY: &str = "Software\\Policies\\Microsoft\\Windows\\Control Panel\\Desktop";
const WINLOGON_KEY: &str = "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon";
/// The grace period Windows applies when `ScreenSaverGracePeriod` is not set.
const DEFAULT_GRACE_SECONDS: u64 = 5;

/// The user profiles loaded in `HKEY_USERS`, from `reg query HKU`: SIDs of
/// real accounts only (no service accounts, no `_Classes` hives).
pub fn parse_loaded_users(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("HKEY_USERS\\"))
        .filter(|sid| {
            (sid.starts_with("S-1-5-21-") || sid.starts_with("S-1-12-1-")) && !sid.ends_with("_Classes")
        })
        .map(str::to_string)
        .collect()
}

/// A user's screen-saver policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScreenSaver {
    pub active: Option<bool>,
    pub secure: Option<bool>,
    pub timeout_secs: Option<u64>,
    /// `SCRNSAVE.EXE`: the screen-saver program the policy forces.
    pub program: Option<String>,
}

impl ScreenSaver {
    /// From the values of the Desktop policy key (`None`: key absent).
    pub fn from_values(values: Option<&std::collections::BTreeMap<String, RegValue>>) -> Self {
        let num = |k: &str| values.and_then(|v| v.get(k)).and_then(RegValue::number);
        ScreenSaver {
            active: num("screensaveactive").map(|n| n == 1),
            secure: num("screensaverissecure").map(|n| n == 1),
            timeout_secs: num("screensavetimeout"),
            program: values
                .and_then(|v| v.get("scrnsave.exe"))
                .map(|r| r.data.trim().to_string())
                .filter(|p| !p.is_empty()),
        }
    }

    /// Why the policy does not lock in time, or `None` when it does.
    pub fn problem(&self) -> Option<String> {
        match (self.active, self.secure, self.timeout_secs) {
            (None, None, None) => Some("no screen-saver policy".into()),
            (Some(false), _, _) => Some("screen saver disabled by policy".into()),
            (_, Some(false), _) => Some("screen saver does not ask for the password".into()),
            (_, None, _) => Some("ScreenSaverIsSecure not set by policy".into()),
            (_, _, None) => Some("ScreenSaveTimeOut not set by policy".into()),
            (_, _, Some(t)) if t == 0 || t > MAX_IDLE_SECONDS => {
                Some(format!("screen-saver timeout {t} s (limit {MAX_IDLE_SECONDS} s)"))
            }
            // "Screen saver timeout" has no effect without a screen-saver program.
            _ if self.program.is_none() => {
                Some("no screen-saver program set by policy (SCRNSAVE.EXE)".into())
            }
            _ => None,
        }
    }
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `InactivityTimeoutSecs`, `Ok(None)` when not set.
    pub machine_limit: Result<Option<u64>, Unavailable>,
    /// Loaded user profiles and their screen-saver policy (or why it could not be read).
    pub users: Result<Vec<Result<ScreenSaver, Unavailable>>, Unavailable>,
    /// `ScreenSaverGracePeriod` in seconds, `Ok(None)` when not set (5 s).
    pub grace: Result<Option<u64>, Unavailable>,
}

/// The grace period in force (5 s when not set) and why it keeps any
/// screen-saver policy from counting, if it does: it applies to every screen
/// saver, so one too long (or not read) does.
fn grace(read: &Result<Option<u64>, Unavailable>) -> (Option<u64>, Option<String>) {
    let grace = read.as_ref().ok().map(|g| g.unwrap_or(DEFAULT_GRACE_SECONDS));
    let problem = match (read, grace) {
        (_, Some(g)) if g > MAX_LOCK_DELAY_SECONDS => Some(format!(
            "the screen saver can be dismissed without a password for {g} s (ScreenSaverGracePeriod, \
             limit {MAX_LOCK_DELAY_SECONDS} s)"
        )),
        (Err(e), _) => Some(format!("ScreenSaverGracePeriod could not be read: {}", e.message())),
        _ => None,
    };
    (grace, problem)
}

/// The raw observation: the values as read, one line per source.
fn raw_text(limit: Option<u64>, users: &[Result<ScreenSaver, Unavailable>]) -> String {
    let mut raw =
        format!("InactivityTimeoutSecs: {}\n", limit.map_or("not set".to_string(), |l| l.to_string()));
    for (i, u) in users.iter().enumerate() {
        raw.push_str(&match u {
            Ok(s) => format!(
                "user {}: ScreenSaveActive {:?} ScreenSaverIsSecure {:?} ScreenSaveTimeOut {:?} SCRNSAVE.EXE set {}\n",
                i + 1,
                s.active,
                s.secure,
                s.timeout_secs,
                // Whether, not what: a path could name a user.
                s.program.is_some()
            ),
            Err(e) => format!("user {}: {}\n", i + 1, e.message()),
        });
    }
    raw
}

/// Decides the check.
pub fn evaluate(o: &Observed) -> Finding {
    let limit = match &o.machine_limit {
        Ok(l) => *l,
        Err(e) => return e.unknown(BACKEND, "the machine inactivity limit could not be read"),
    };
    let users: Vec<Result<ScreenSaver, Unavailable>> = o.users.clone().unwrap_or_default();
    let (grace, grace_problem) = grace(&o.grace);
    let compliant = if grace_problem.is_some() {
        0
    } else {
        users.iter().filter(|u| u.as_ref().is_ok_and(|s| s.problem().is_none())).count()
    };
    let raw = raw_text(limit, &users);
    let base = |status| {
        Finding::new(status, BACKEND)
            .fact("inactivity_timeout_secs", json!(limit))
            .fact("users_checked", users.len())
            .fact("users_with_screen_saver_policy", compliant)
            .fact("screen_saver_grace_seconds", json!(grace))
            .with_raw(raw.clone())
    };
    if let Some(l) = limit.filter(|l| (1..=MAX_IDLE_SECONDS).contains(l)) {
        return base(CheckStatus::Pass)
            .with_reason(format!("machine inactivity limit locks sessions after {l} s"));
    }
    let machine = match limit {
        None | Some(0) => "no machine inactivity limit".to_string(),
        Some(l) => format!("machine inactivity limit is {l} s (limit {MAX_IDLE_SECONDS} s)"),
    };
    let problems: Vec<String> = users
        .iter()
        .filter_map(|u| match u {
            Ok(s) => s.problem(),
            Err(e) => Some(format!("unreadable: {}", e.message())),
        })
        .collect();
    if let Err(e) = &o.users {
        return base(CheckStatus::Unknown).with_reason(format!(
            "{machine}; the loaded user profiles could not be listed: {}",
            e.message()
        ));
    }
    if users.is_empty() {
        return base(CheckStatus::Unknown).with_reason(format!(
            "{machine}, and no user is logged on whose screen-saver policy could be read"
        ));
    }
    if problems.is_empty() {
        // Only the grace period stands between these users' policies and a pass.
        if let Some(g) = &grace_problem {
            let status = if o.grace.is_err() { CheckStatus::Unknown } else { CheckStatus::Fail };
            return base(status).with_reason(format!("{machine}; {g}"));
        }
        return base(CheckStatus::Pass).with_reason(format!(
            "{machine}, but the screen-saver policy locks all {} logged-on users within {MAX_IDLE_SECONDS} s",
            users.len()
        ));
    }
    let unreadable = users.iter().any(Result::is_err);
    let mut unique = problems.clone();
    unique.sort();
    unique.dedup();
    let mut reason = format!(
        "{machine}; screen-saver policy missing or weak for {} of {} logged-on users ({})",
        problems.len(),
        users.len(),
        unique.join(", ")
    );
    if let Some(g) = &grace_problem {
        reason.push_str(&format!("; {g}"));
    }
    // A user whose policy could not be read may be the only one failing.
    let status = if unreadable && users.iter().all(|u| u.as_ref().map_or(true, |s| s.problem().is_none())) {
        CheckStatus::Unknown
    } else {
        CheckStatus::Fail
    };
    base(status).with_reason(reason)
}

/// Reads the policies through the host.
pub fn observe(host: &dyn Host) -> Observed {
    let machine_limit = reg_query(host, &[SYSTEM_KEY, "/v", "InactivityTimeoutSecs"])
        .map(|v| v.and_then(|v| v.get("inactivitytimeoutsecs").and_then(RegValue::number)));
    let users = match host.run("reg", &["query", "HKU"]) {
        Ok(out) if out.success() => Ok(parse_loaded_users(&out.stdout)
            .into_iter()
            .map(|sid| {
                let key = format!("HKU\\{sid}\\{DESKTOP_POLICY}");
                reg_query(host, &[&key]).map(|v| ScreenSaver::from_values(v.as_ref()))
            })
            .collect()),
        Ok(out) => Err(Unavailable::Failed(format!("reg query HKU exited with {:?}", out.code))),
        Err(e) => Err(crate::collect::windows::host_error(&e)),
    };
    let grace = reg_query(host, &[WINLOGON_KEY, "/v", "ScreenSaverGracePeriod"]).and_then(|v| {
        match v.as_ref().and_then(|v| v.get("screensavergraceperiod")) {
            None => Ok(None),
            Some(r) => r.number().map(Some).ok_or_else(|| {
                Unavailable::Failed(format!("ScreenSaverGracePeriod is not a number: {:?}", r.data))
            }),
        }
    });
    Observed { machine_limit, users, grace }
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    evaluate(&observe(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_users_skip_services_and_classes() {
        let text = "\r\nHKEY_USERS\\.DEFAULT\r\nHKEY_USERS\\S-1-5-19\r\nHKEY_USERS\\S-1-5-21-1-2-3-1001\r\nHKEY_USERS\\S-1-5-21-1-2-3-1001_Classes\r\nHKEY_USERS\\S-1-12-1-9-8-7-6\r\nHKEY_USERS\\S-1-5-18\r\n";
        assert_eq!(parse_loaded_users(text), vec!["S-1-5-21-1-2-3-1001", "S-1-12-1-9-8-7-6"]);
    }

    fn users(policies: &[&str]) -> Observed {
        let parse =
            |text: &str| ScreenSaver::from_values(Some(&crate::collect::windows::parse_reg_query(text)));
        Observed {
            machine_limit: Ok(None),
            users: Ok(policies.iter().map(|t| Ok(parse(t))).collect()),
            grace: Ok(None),
        }
    }

    #[test]
    fn a_screen_saver_policy_needs_a_program_and_a_short_grace() {
        let key = "HKEY_USERS\\S-1-5-21-1-2-3-1001\\Software\\Policies\\Microsoft\\Windows\\Control Panel\\Desktop\r\n";
        let with = format!(
            "{key}    ScreenSaveActive    REG_SZ    1\r\n    ScreenSaverIsSecure    REG_SZ    1\r\n    ScreenSaveTimeOut    REG_SZ    600\r\n    SCRNSAVE.EXE    REG_SZ    scrnsave.scr\r\n"
        );
        assert_eq!(evaluate(&users(&[&with])).status, CheckStatus::Pass);
        // The timeout alone starts nothing: Windows has no screen saver by default.
        let without = with.replace("    SCRNSAVE.EXE    REG_SZ    scrnsave.scr\r\n", "");
        let f = evaluate(&users(&[&without]));
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("no screen-saver program set by policy"));
        let long_grace = Observed { grace: Ok(Some(60)), ..users(&[&with]) };
        let f = evaluate(&long_grace);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("for 60 s (ScreenSaverGracePeriod"));
        let unread =
            Observed { grace: Err(Unavailable::Denied("Access is denied.".into())), ..users(&[&with]) };
        assert_eq!(evaluate(&unread).status, CheckStatus::Unknown);
        // The machine inactivity limit locks without the screen saver.
        let machine = Observed { machine_limit: Ok(Some(900)), grace: Ok(Some(60)), ..users(&[&without]) };
        assert_eq!(evaluate(&machine).status, CheckStatus::Pass);
    }
}
