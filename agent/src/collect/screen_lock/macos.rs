//! The macOS backend of the `screen_lock` check.
//!
//! A Mac locks when the screen saver starts or the display sleeps, and then
//! asks for the password after the lock delay. Read here:
//! - the lock delay: `sysadminctl -screenLock status` (macOS 13+; prints on
//!   stderr `... sysadminctl[123:456] screenLock delay is immediate`, `...
//!   is 5 seconds` or `screenLock is off`);
//! - the screen saver idle time: `defaults -currentHost read
//!   com.apple.screensaver idleTime` (seconds, 0 = never; absent means the
//!   macOS default of 20 minutes);
//! - the display sleep time: `displaysleep` of `pmset -g` (minutes, 0 = never);
//! - an MDM profile, `defaults read "/Library/Managed Preferences/com.apple.screensaver"`
//!   (`idleTime`, `askForPassword`, `askForPasswordDelay`), which overrides
//!   the user's settings.
//!
//! `sysadminctl` and `defaults -currentHost` answer for the user the agent
//! runs as; the profile and `pmset` hold for every user.
//!
//! Status rule: pass when the screen locks (password asked) within
//! `super::MAX_LOCK_DELAY_SECONDS` of the screen saver or display sleep, and
//! the earlier of the two starts after at most `super::MAX_IDLE_SECONDS` of
//! inactivity; fail when the lock is off, the delay is longer, or neither
//! starts in time (or ever); unknown when the lock state cannot be read.

use super::{MAX_IDLE_SECONDS, MAX_LOCK_DELAY_SECONDS};
use crate::collect::macos::{parse_bool, read_domain};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

/// macOS default screen saver idle time when `idleTime` is not set.
pub const DEFAULT_IDLE_SECONDS: u64 = 1200;
const MANAGED_DOMAIN: &str = "/Library/Managed Preferences/com.apple.screensaver";

/// The lock delay from `sysadminctl -screenLock status`: `Some(None)` off,
/// `Some(Some(seconds))` on, `None` not understood.
pub fn parse_screenlock_status(text: &str) -> Option<Option<u64>> {
    let line = text.lines().find(|l| l.contains("screenLock"))?;
    let after = &line[line.find("screenLock")?..];
    if after.contains("is off") {
        return Some(None);
    }
    if after.contains("immediate") {
        return Some(Some(0));
    }
    let words: Vec<&str> = after.split_whitespace().collect();
    for pair in words.windows(2) {
        if let Ok(n) = pair[0].parse::<u64>() {
            let unit = pair[1].to_ascii_lowercase();
            if unit.starts_with("second") {
                return Some(Some(n));
            }
            if unit.starts_with("minute") {
                return Some(Some(n * 60));
            }
        }
    }
    None
}

/// `displaysleep` minutes from `pmset -g`.
pub fn parse_pmset_displaysleep(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("displaysleep")).then(|| words.next()?.parse().ok()).flatten()
    })
}

/// What was read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Lock delay: `Ok(None)` off, `Ok(Some(s))` on, `Err` unreadable.
    pub lock: Option<Result<Option<u64>, String>>,
    /// Screen saver idle time in seconds, and whether it came from the default.
    pub idle: Option<(u64, &'static str)>,
    /// Display sleep in minutes.
    pub display_sleep_minutes: Option<u64>,
}

/// Decides the check from what was read.
pub fn evaluate(o: &Observed, raw: &str) -> Finding {
    let lock = o.lock.clone().unwrap_or_else(|| Err("not read".into()));
    let mut f = Finding::pass("sysadminctl")
        .fact("lock_enabled", lock.as_ref().ok().map(Option::is_some))
        .fact("lock_delay_seconds", lock.as_ref().ok().copied().flatten())
        .fact("screensaver_idle_seconds", o.idle.map(|(s, _)| s))
        .fact("screensaver_idle_source", o.idle.map(|(_, src)| src))
        .fact("display_sleep_minutes", o.display_sleep_minutes)
        .with_raw(raw);
    let delay = match lock {
        Err(why) => {
            f.status = CheckStatus::Unknown;
            return f.with_reason(format!("screen lock state unreadable: {why}"));
        }
        Ok(None) => {
            f.status = CheckStatus::Fail;
            return f.with_reason("the screen lock is off (no password after screen saver or sleep)");
        }
        Ok(Some(d)) => d,
    };
    // The earlier of screen saver and display sleep triggers the lock; 0 is never.
    let candidates: Vec<u64> = [o.idle.map(|(s, _)| s), o.display_sleep_minutes.map(|m| m * 60)]
        .into_iter()
        .flatten()
        .filter(|s| *s > 0)
        .collect();
    let idle = candidates.iter().min().copied();
    f = f.fact("effective_idle_seconds", idle);
    let mut problems = Vec::new();
    if delay > MAX_LOCK_DELAY_SECONDS {
        problems.push(format!(
            "the password is asked {delay} s after the screen saver (limit {MAX_LOCK_DELAY_SECONDS} s)"
        ));
    }
    match idle {
        None if o.idle.is_none() && o.display_sleep_minutes.is_none() => {
            f.status = CheckStatus::Unknown;
            return f.with_reason("neither the screen saver idle time nor display sleep could be read");
        }
        None => problems.push("neither the screen saver nor display sleep ever starts".into()),
        Some(s) if s > MAX_IDLE_SECONDS => {
            problems.push(format!("the screen locks after {s} s of inactivity (limit {MAX_IDLE_SECONDS} s)"))
        }
        Some(_) => {}
    }
    if problems.is_empty() {
        let when = if delay == 0 { "immediately".to_string() } else { format!("{delay} s") };
        f.with_reason(format!("locks after {} s of inactivity, password asked {when}", idle.unwrap_or(0)))
    } else {
        f.status = CheckStatus::Fail;
        f.with_reason(problems.join("; "))
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let mut raw = String::new();
    let managed = read_domain(host, MANAGED_DOMAIN, &mut raw).ok().flatten().unwrap_or_default();
    let mut o = Observed::default();

    let managed_ask = managed.get("askForPassword").and_then(|v| parse_bool(v));
    let managed_delay = managed.get("askForPasswordDelay").and_then(|v| v.trim().parse::<f64>().ok());
    o.lock = match (managed_ask, managed_delay) {
        (Some(false), _) => Some(Ok(None)),
        (Some(true), Some(d)) => Some(Ok(Some(d.max(0.0) as u64))),
        _ => None,
    };
    if o.lock.is_none() {
        o.lock = Some(match host.run("sysadminctl", &["-screenLock", "status"]) {
            Ok(out) => {
                // The answer is a log line on stderr.
                let text = format!("{}{}", out.stderr, out.stdout);
                raw.push_str(&text);
                match parse_screenlock_status(&text) {
                    Some(lock) => Ok(lock),
                    None => Err(format!("sysadminctl -screenLock status said: {}", text.trim())),
                }
            }
            Err(e) => Err(e.to_string()),
        });
    }

    o.idle = match managed.get("idleTime").and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(s) => Some((s, "managed")),
        None => match host.run("defaults", &["-currentHost", "read", "com.apple.screensaver", "idleTime"]) {
            Ok(out) if out.success() => {
                raw.push_str(&out.stdout);
                out.stdout.trim().parse::<u64>().ok().map(|s| (s, "user"))
            }
            Ok(out) if out.stderr.contains("does not exist") => Some((DEFAULT_IDLE_SECONDS, "default")),
            _ => None,
        },
    };

    o.display_sleep_minutes = match host.run("pmset", &["-g"]) {
        Ok(out) if out.success() => {
            raw.push_str(&out.stdout);
            parse_pmset_displaysleep(&out.stdout)
        }
        _ => None,
    };
    evaluate(&o, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screenlock_wordings() {
        let p = |s: &str| parse_screenlock_status(s);
        assert_eq!(
            p("2026-11-23 10:00:01.234 sysadminctl[2913:41022] screenLock delay is immediate\n"),
            Some(Some(0))
        );
        assert_eq!(
            p("2026-11-23 10:00:01.234 sysadminctl[2913:41022] screenLock delay is 300 seconds\n"),
            Some(Some(300))
        );
        assert_eq!(
            p("2026-11-23 10:00:01.234 sysadminctl[2913:41022] screenLock delay is 5 minutes\n"),
            Some(Some(300))
        );
        assert_eq!(p("2026-11-23 10:00:01.234 sysadminctl[2913:41022] screenLock is off\n"), Some(None));
        assert_eq!(p("sysadminctl: unrecognized option\n"), None);
        assert_eq!(
            parse_pmset_displaysleep(" displaysleep         10 (display sleep prevented by zoom.us)\n"),
            Some(10)
        );
    }
}
