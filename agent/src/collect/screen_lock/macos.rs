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
//! - the display sleep time: `displaysleep` of every power source in `pmset
//!   -g custom` (`Battery Power:`, `AC Power:`, `UPS Power:`; minutes, 0 =
//!   never). The worst source counts: plain `pmset -g` shows only the source
//!   in use at collection time, and a laptop read on battery (display off
//!   after 2 minutes) may never turn its display off on the charger;
//! - an MDM profile, `defaults read "/Library/Managed Preferences/com.apple.screensaver"`
//!   (`idleTime`, `askForPassword`, `askForPasswordDelay`), which overrides
//!   the user's settings.
//!
//! `sysadminctl` and `defaults -currentHost` answer for the user they run
//! as, while the agent normally runs as root (a launchd daemon) and the
//! settings that count are those of the user at the console. So, unless the
//! profile settles both lock and idle time, the agent finds the console user
//! (`stat -f "%Su %u" /dev/console`) and itself (`id -u`): when it is that
//! user it asks as it is; when it is root it asks as the console user with
//! `launchctl asuser UID sudo -u USER ...`; at the login window (console
//! owned by root) only the profile can say, and without one the check is
//! `unknown`. The profile and `pmset` hold for every user. The user name
//! never enters the facts.
//!
//! Status rule: pass when the screen locks (password asked) within
//! `super::MAX_LOCK_DELAY_SECONDS` of the screen saver or display sleep, and
//! the earlier of the two starts after at most `super::MAX_IDLE_SECONDS` of
//! inactivity; fail when the lock is off, the delay is longer, or neither
//! starts in time (or ever); unknown when the lock state cannot be read.

use super::{MAX_IDLE_SECONDS, MAX_LOCK_DELAY_SECONDS};
use crate::collect::macos::{parse_bool, read_domain};
use crate::collect::{Context, Finding, ParseError};
use crate::host::{CommandOutput, Host, HostError};
use crate::privacy::Personal;
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

/// `displaysleep` minutes from `pmset -g` (or one power source of `pmset -g custom`).
pub fn parse_pmset_displaysleep(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("displaysleep")).then(|| words.next()?.parse().ok()).flatten()
    })
}

/// `displaysleep` of each power source in `pmset -g custom` (`AC Power:`
/// heads the settings of that source). A source without a readable value
/// makes the whole reading `None`: the worst case would not be known.
pub fn parse_pmset_custom(text: &str) -> Option<Vec<(String, u64)>> {
    let mut sources: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace)
            && let Some(name) = line.trim().strip_suffix(':')
        {
            sources.push((name.to_string(), String::new()));
        } else if let Some((_, body)) = sources.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if sources.is_empty() {
        return None;
    }
    sources.into_iter().map(|(name, body)| parse_pmset_displaysleep(&body).map(|m| (name, m))).collect()
}

/// The display sleep that holds on every power source: 0 (never) when one
/// source never sleeps, otherwise the longest.
pub fn worst_display_sleep(sources: &[(String, u64)]) -> Option<u64> {
    if sources.iter().any(|(_, m)| *m == 0) {
        return Some(0);
    }
    sources.iter().map(|(_, m)| *m).max()
}

/// Whose screen-saver settings the user-level commands read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsUser {
    /// The agent runs as the console user: the commands as they are.
    Agent,
    /// The agent is root and someone else is at the console.
    Console { name: String, uid: u32 },
    /// Nobody is logged in at the console (the login window owns it).
    Nobody,
}

impl SettingsUser {
    fn fact(&self) -> &'static str {
        match self {
            SettingsUser::Agent => "agent user (at the console)",
            SettingsUser::Console { .. } => "console user",
            SettingsUser::Nobody => "nobody at the console",
        }
    }
}

/// Parses `stat -f "%Su %u" /dev/console` (`alice 501`): the console
/// owner's name and uid. The name is checked, since it goes on to a
/// command line.
pub fn parse_console_owner(text: &str) -> Result<(String, u32), ParseError> {
    let mut words = text.split_whitespace();
    let (Some(name), Some(uid), None) = (words.next(), words.next(), words.next()) else {
        return Err(ParseError::new(format!("printed {:?}, not `user uid`", text.trim())).in_command("stat"));
    };
    let uid = uid.parse::<u32>().map_err(|_| format!("console owner uid {uid:?} is not a number"))?;
    let valid = !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@'));
    if !valid {
        return Err("the console owner's name has characters a user name cannot have".into());
    }
    Ok((name.to_string(), uid))
}

/// Decides whose settings can be read, from the console owner and the
/// agent's own uid (`id -u`).
pub fn settings_user(
    console: Result<(String, u32), String>,
    agent_uid: Result<u32, String>,
) -> Result<SettingsUser, String> {
    let (name, uid) = console.map_err(|e| format!("the console user could not be determined: {e}"))?;
    if uid == 0 {
        // The login window owns the console as root.
        return Ok(SettingsUser::Nobody);
    }
    match agent_uid.map_err(|e| format!("the agent's own uid could not be determined: {e}"))? {
        a if a == uid => Ok(SettingsUser::Agent),
        0 => Ok(SettingsUser::Console { name, uid }),
        a => Err(format!(
            "the agent runs as uid {a}, neither root nor the console user (uid {uid}), so the console user's settings cannot be read"
        )),
    }
}

fn console_owner(host: &dyn Host) -> Result<(String, u32), String> {
    match host.run("stat", &["-f", "%Su %u", "/dev/console"]) {
        Ok(out) if out.success() => parse_console_owner(&out.stdout).map_err(|e| e.to_string()),
        Ok(out) => Err(format!("stat /dev/console exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    }
}

fn agent_uid(host: &dyn Host) -> Result<u32, String> {
    match host.run("id", &["-u"]) {
        Ok(out) if out.success() => {
            out.stdout.trim().parse().map_err(|_| format!("id -u printed {:?}", out.stdout.trim()))
        }
        Ok(out) => Err(format!("id -u exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs a user-level command for `who`: as it is, or in the console user's
/// session through `launchctl asuser UID sudo -u USER`.
fn run_as(
    host: &dyn Host,
    who: &SettingsUser,
    program: &str,
    args: &[&str],
) -> Result<CommandOutput, HostError> {
    match who {
        SettingsUser::Console { name, uid } => {
            let uid = uid.to_string();
            let mut full = vec!["asuser", uid.as_str(), "sudo", "-u", name.as_str(), program];
            full.extend_from_slice(args);
            host.run("launchctl", &full)
        }
        _ => host.run(program, args),
    }
}

/// What was read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Lock delay: `Ok(None)` off, `Ok(Some(s))` on, `Err` unreadable.
    pub lock: Option<Result<Option<u64>, String>>,
    /// Screen saver idle time in seconds, and whether it came from the default.
    pub idle: Option<(u64, &'static str)>,
    /// Display sleep in minutes on the worst power source (0: never on one).
    pub display_sleep_minutes: Option<u64>,
    /// Display sleep per power source, as `pmset -g custom` lists them.
    pub display_sleep_sources: Vec<(String, u64)>,
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
        .fact(
            "display_sleep_by_source",
            o.display_sleep_sources
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
                .collect::<serde_json::Map<_, _>>(),
        )
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
        None => problems
            .push(format!("neither the screen saver nor display sleep ever starts{}", worst_source(o))),
        Some(s) if s > MAX_IDLE_SECONDS => problems.push(format!(
            "the screen locks after {s} s of inactivity (limit {MAX_IDLE_SECONDS} s){}",
            worst_source(o)
        )),
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

/// Names the power source the worst display sleep comes from, when the
/// sources differ (a laptop judged on the charger, not on battery).
fn worst_source(o: &Observed) -> String {
    let s = &o.display_sleep_sources;
    if s.windows(2).all(|w| w[0].1 == w[1].1) {
        return String::new();
    }
    match o.display_sleep_minutes {
        Some(0) => {
            let never: Vec<&str> = s.iter().filter(|(_, m)| *m == 0).map(|(n, _)| n.as_str()).collect();
            format!(" (the display never sleeps on {})", never.join(", "))
        }
        Some(m) => match s.iter().find(|(_, v)| *v == m) {
            Some((name, _)) => format!(" (display sleep {m} min on {name})"),
            None => String::new(),
        },
        None => String::new(),
    }
}

/// The screen saver idle time `who` set (`defaults -currentHost`), or the
/// macOS default when none is set.
fn user_idle(host: &dyn Host, who: &SettingsUser, raw: &mut String) -> Option<(u64, &'static str)> {
    match run_as(host, who, "defaults", &["-currentHost", "read", "com.apple.screensaver", "idleTime"]) {
        Ok(out) if out.success() => {
            raw.push_str(&out.stdout);
            out.stdout.trim().parse::<u64>().ok().map(|s| (s, "user"))
        }
        Ok(out) if out.stderr.contains("does not exist") => Some((DEFAULT_IDLE_SECONDS, "default")),
        _ => None,
    }
}

/// Display sleep of every power source (`pmset -g custom`) and the worst.
fn read_display_sleep(host: &dyn Host, o: &mut Observed, raw: &mut String) {
    if let Ok(out) = host.run("pmset", &["-g", "custom"])
        && out.success()
    {
        raw.push_str(&out.stdout);
        o.display_sleep_sources = parse_pmset_custom(&out.stdout).unwrap_or_default();
        o.display_sleep_minutes = worst_display_sleep(&o.display_sleep_sources);
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
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
    let managed_idle = managed.get("idleTime").and_then(|v| v.trim().parse::<u64>().ok());
    // Whose settings the rest reads: asked only when the profile leaves something open.
    let who = if o.lock.is_none() || managed_idle.is_none() {
        let who = settings_user(console_owner(host), agent_uid(host));
        if let Ok(SettingsUser::Console { name, .. }) = &who {
            // Scrubbed from the raw excerpt like any user name; never a fact.
            ctx.register(Personal::UserName, name);
        }
        Some(who)
    } else {
        None
    };
    let who = match who {
        Some(Ok(w)) => Some(w),
        Some(Err(why)) => {
            // A profile that turns the lock off turns it off for everyone.
            if o.lock != Some(Ok(None)) {
                o.lock = Some(Err(why));
            }
            let mut f = evaluate(&o, &raw);
            f.facts.insert("settings_of".into(), serde_json::Value::Null);
            return f;
        }
        None => None,
    };
    if o.lock.is_none()
        && let Some(SettingsUser::Nobody) = &who
    {
        o.lock = Some(Err(
            "nobody is logged in at the console and no managed profile sets askForPassword and askForPasswordDelay"
                .into(),
        ));
    }
    let user = who.clone().unwrap_or(SettingsUser::Agent);
    if o.lock.is_none() {
        o.lock = Some(match run_as(host, &user, "sysadminctl", &["-screenLock", "status"]) {
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

    o.idle = match managed_idle {
        Some(s) => Some((s, "managed")),
        // At the login window there is no user whose idle time counts.
        None if who == Some(SettingsUser::Nobody) => None,
        None => user_idle(host, &user, &mut raw),
    };
    read_display_sleep(host, &mut o, &mut raw);
    if who == Some(SettingsUser::Nobody)
        && o.idle.is_none()
        && matches!(o.lock, Some(Ok(Some(_))))
        && !o.display_sleep_minutes.is_some_and(|m| m > 0 && m * 60 <= MAX_IDLE_SECONDS)
    {
        // The next user's own idle time is unknown; only a display sleep within the limit settles it.
        o.lock = Some(Err(
            "nobody is logged in at the console, no managed profile sets idleTime, and display sleep alone does not lock in time"
                .into(),
        ));
    }
    let mut f = evaluate(&o, &raw);
    f.facts.insert("settings_of".into(), who.as_ref().map_or(serde_json::Value::Null, |w| w.fact().into()));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_user_decides_whose_settings_count() {
        assert_eq!(parse_console_owner("alice 501\n"), Ok(("alice".into(), 501)));
        assert!(parse_console_owner("-u 501\n").is_err(), "would be read as a sudo option");
        assert!(parse_console_owner("alice\n").is_err());
        assert!(parse_console_owner("al ice 501\n").is_err());
        let alice = || Ok(("alice".to_string(), 501));
        assert_eq!(settings_user(alice(), Ok(501)), Ok(SettingsUser::Agent));
        assert_eq!(
            settings_user(alice(), Ok(0)),
            Ok(SettingsUser::Console { name: "alice".into(), uid: 501 })
        );
        assert_eq!(settings_user(Ok(("root".into(), 0)), Ok(0)), Ok(SettingsUser::Nobody));
        assert!(settings_user(alice(), Ok(502)).unwrap_err().contains("neither root nor the console user"));
        assert!(settings_user(Err("stat: not installed".into()), Ok(0)).is_err());
    }

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

    #[test]
    fn the_worst_power_source_decides_display_sleep() {
        let laptop = "Battery Power:\n Sleep On Power Button 1\n lowpowermode         0\n displaysleep         2\n \
                      sleep                1\nAC Power:\n Sleep On Power Button 1\n displaysleep         0\n sleep                0\n";
        let sources = parse_pmset_custom(laptop).unwrap();
        assert_eq!(sources, vec![("Battery Power".to_string(), 2), ("AC Power".to_string(), 0)]);
        assert_eq!(worst_display_sleep(&sources), Some(0));
        let both = parse_pmset_custom(
            "Battery Power:\n displaysleep         2\nAC Power:\n displaysleep         10\n",
        );
        assert_eq!(worst_display_sleep(&both.unwrap()), Some(10));
        assert_eq!(parse_pmset_custom("Battery Power:\n sleep 1\nAC Power:\n displaysleep 10\n"), None);
        assert_eq!(parse_pmset_custom(""), None);
    }
}
