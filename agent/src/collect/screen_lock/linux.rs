//! The Linux backends of the `screen_lock` check.
//!
//! Which desktops: a display manager binary (`/usr/sbin/gdm3`, `/usr/sbin/gdm`,
//! `/usr/bin/sddm`, `/usr/sbin/lightdm`) and the session files in
//! `/usr/share/xsessions` and `/usr/share/wayland-sessions`. Neither present
//! means no graphical desktop: `not_applicable`. Sessions named `gnome*` or
//! `ubuntu*` are GNOME, `plasma*` KDE Plasma; other desktops are not judged.
//!
//! GNOME: the system dconf databases named by `system-db:` lines in
//! `/etc/dconf/profile/user` (without that profile no system settings apply),
//! read from their keyfile directories `/etc/dconf/db/<db>.d/*` (later files
//! override earlier ones; earlier databases in the profile take precedence) and
//! lock lists `/etc/dconf/db/<db>.d/locks/*`. Keys:
//! `org/gnome/desktop/screensaver` `lock-enabled` (default true), `lock-delay`
//! (default 0 s), `org/gnome/desktop/session` `idle-delay` (default 300 s, 0 =
//! never), and `org/gnome/desktop/lockdown` `disable-lock-screen`. GNOME
//! reads the compiled databases (`/etc/dconf/db/NAME`), not the keyfiles:
//! a compiled database missing or older than its keyfiles (`dconf update`
//! not run since they changed) makes a pass `unknown` ([`stale_databases`]). Per-user values live in each user's
//! binary dconf database, which is not read: only *locked* keys bind users.
//!
//! KDE Plasma: `kscreenlockerrc` `[Daemon]` `Autolock` (default true),
//! `Timeout` (minutes, default 5) and `LockGrace` (seconds, default 5) from
//! `/etc/xdg/kscreenlockerrc` (keys or groups marked `[$i]` are immutable)
//! and each user's `/home/<user>/.config/kscreenlockerrc`.
//!
//! Status rule, per desktop: `fail` when the value in force (locked, system
//! default, or for KDE a user's own) does not lock within
//! [`super::MAX_IDLE_SECONDS`] with at most [`super::MAX_LOCK_DELAY_SECONDS`]
//! grace; `pass` for GNOME only when all keys are compliant and locked, for
//! KDE when every user's effective setting is compliant; `unknown` when
//! compliant but users may override unseen (unlocked GNOME keys), a file
//! cannot be read, or the desktop is not one of these. The host's status is
//! the worst of its desktops.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{MAX_IDLE_SECONDS, MAX_LOCK_DELAY_SECONDS};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// Settings of an INI-like keyfile: (group, key) -> (value, immutable).
pub type KeyFile = BTreeMap<(String, String), (String, bool)>;

/// Parses a dconf keyfile or a KDE config file. `[$i]` after a group name or
/// key marks it immutable (KDE); a `[$i]` line before any group makes the
/// whole file immutable.
pub fn parse_keyfile(text: &str) -> KeyFile {
    let mut out = KeyFile::new();
    let mut group = String::new();
    let mut group_immutable = false;
    let mut file_immutable = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line == "[$i]" && group.is_empty() {
            file_immutable = true;
        } else if let Some(rest) = line.strip_prefix('[') {
            group_immutable = rest.ends_with("[$i]");
            group = rest.trim_end_matches("[$i]").trim_end_matches(']').to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            let immutable = file_immutable || group_immutable || k.ends_with("[$i]");
            let k = k.trim_end_matches("[$i]").trim().to_string();
            out.insert((group.clone(), k), (v.trim().to_string(), immutable));
        }
    }
    out
}

/// Parses a GVariant text number as dconf keyfiles write it (`uint32 300`, `300`).
pub fn gvariant_uint(v: &str) -> Option<u64> {
    v.trim().trim_start_matches("uint32").trim().parse().ok()
}

/// The effective GNOME values and whether each is locked.
#[derive(Debug, Clone, PartialEq)]
pub struct GnomeSettings {
    pub lock_enabled: (bool, bool),
    pub lock_delay: (u64, bool),
    pub idle_delay: (u64, bool),
    pub lock_screen_disabled: bool,
}

const SCREENSAVER: &str = "org/gnome/desktop/screensaver";
const SESSION: &str = "org/gnome/desktop/session";

/// Resolves the GNOME settings from the system databases, in profile order,
/// each with its keyfiles (in file order) and lock lists.
pub fn gnome_settings(dbs: &[(Vec<String>, Vec<String>)]) -> GnomeSettings {
    let mut values: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut locks: Vec<String> = Vec::new();
    // Earlier databases win, so apply them last.
    for (keyfiles, lockfiles) in dbs.iter().rev() {
        for text in keyfiles {
            for (k, (v, _)) in parse_keyfile(text) {
                values.insert(k, v);
            }
        }
        for text in lockfiles {
            locks.extend(
                text.lines()
                    .map(|l| l.trim().trim_matches('/').to_string())
                    .filter(|l| !l.is_empty() && !l.starts_with('#')),
            );
        }
    }
    let get = |g: &str, k: &str| values.get(&(g.to_string(), k.to_string()));
    let locked = |g: &str, k: &str| locks.iter().any(|l| *l == format!("{g}/{k}"));
    GnomeSettings {
        lock_enabled: (
            get(SCREENSAVER, "lock-enabled").is_none_or(|v| v == "true"),
            locked(SCREENSAVER, "lock-enabled"),
        ),
        lock_delay: (
            get(SCREENSAVER, "lock-delay").and_then(|v| gvariant_uint(v)).unwrap_or(0),
            locked(SCREENSAVER, "lock-delay"),
        ),
        idle_delay: (
            get(SESSION, "idle-delay").and_then(|v| gvariant_uint(v)).unwrap_or(300),
            locked(SESSION, "idle-delay"),
        ),
        lock_screen_disabled: get("org/gnome/desktop/lockdown", "disable-lock-screen")
            .is_some_and(|v| v == "true"),
    }
}

/// Problems with lock settings, given enabled, idle seconds (0 = never) and grace seconds.
fn problems(enabled: bool, idle: u64, grace: u64) -> Vec<String> {
    let mut p = Vec::new();
    if !enabled {
        p.push("the screen does not lock".to_string());
    }
    if idle == 0 {
        p.push("the session never goes idle".to_string());
    } else if idle > MAX_IDLE_SECONDS {
        p.push(format!("idle time {idle} s exceeds {MAX_IDLE_SECONDS} s"));
    }
    if grace > MAX_LOCK_DELAY_SECONDS {
        p.push(format!("lock delay {grace} s exceeds {MAX_LOCK_DELAY_SECONDS} s"));
    }
    p
}

/// One desktop's verdict: status, reason, facts.
type Verdict = (CheckStatus, String, Value);

/// Judges GNOME. `profile` is `/etc/dconf/profile/user` when present.
pub fn judge_gnome(profile: Option<&str>, dbs: &[(Vec<String>, Vec<String>)]) -> Verdict {
    let s = gnome_settings(dbs);
    let facts = json!({
        "lock_enabled": s.lock_enabled.0, "lock_delay_seconds": s.lock_delay.0, "idle_delay_seconds": s.idle_delay.0,
        "locked": s.lock_enabled.1 && s.lock_delay.1 && s.idle_delay.1, "system_db_count": dbs.len(),
    });
    let mut p = problems(s.lock_enabled.0, s.idle_delay.0, s.lock_delay.0);
    if s.lock_screen_disabled {
        p.push("lockdown disable-lock-screen is true".into());
    }
    if !p.is_empty() {
        return (CheckStatus::Fail, format!("GNOME: {}", p.join("; ")), facts);
    }
    if profile.is_none() {
        return (
            CheckStatus::Unknown,
            "GNOME: no /etc/dconf/profile/user, so only GNOME's defaults apply and every user may change them"
                .into(),
            facts,
        );
    }
    let unlocked: Vec<&str> =
        [("lock-enabled", s.lock_enabled.1), ("lock-delay", s.lock_delay.1), ("idle-delay", s.idle_delay.1)]
            .iter()
            .filter(|(_, l)| !l)
            .map(|(k, _)| *k)
            .collect();
    if !unlocked.is_empty() {
        return (
            CheckStatus::Unknown,
            format!(
                "GNOME: the system settings comply but {} are not locked; users may override them and per-user settings are not readable",
                unlocked.join(", ")
            ),
            facts,
        );
    }
    (
        CheckStatus::Pass,
        format!(
            "GNOME locks after {} s idle, {} s grace (enforced by dconf locks)",
            s.idle_delay.0, s.lock_delay.0
        ),
        facts,
    )
}

/// Judges KDE Plasma from the system file and (user label, user file or read error).
pub fn judge_kde(system: Option<&str>, users: &[(String, Result<Option<String>, HostError>)]) -> Verdict {
    let sys = system.map(parse_keyfile).unwrap_or_default();
    let key = |k: &str| ("Daemon".to_string(), k.to_string());
    let mut bad = Vec::new();
    let mut unreadable = Vec::new();
    let mut checked = 0;
    let mut effective = |user: Option<&KeyFile>, who: &str| {
        let pick = |k: &str, default: &str| -> String {
            match (sys.get(&key(k)), user.and_then(|u| u.get(&key(k)))) {
                (Some((v, true)), _) => v.clone(),
                (_, Some((v, _))) => v.clone(),
                (Some((v, _)), None) => v.clone(),
                (None, None) => default.to_string(),
            }
        };
        let enabled = pick("Autolock", "true") == "true";
        let idle = pick("Timeout", "5").parse::<u64>().map_or(u64::MAX, |m| m * 60);
        let grace = pick("LockGrace", "5").parse::<u64>().unwrap_or(u64::MAX);
        let p = problems(enabled, idle, grace);
        if !p.is_empty() {
            bad.push(format!("{who}: {}", p.join(", ")));
        }
        (enabled, idle, grace)
    };
    let (enabled, idle, grace) = effective(None, "system default");
    for (label, file) in users {
        match file {
            Ok(text) => {
                checked += 1;
                let parsed = text.as_deref().map(parse_keyfile);
                effective(parsed.as_ref(), &format!("user {label}"));
            }
            // The error names the file, whose path names the user: only its cause goes in.
            Err(e) => unreadable.push(format!("user {label}: kscreenlockerrc {}", e.cause())),
        }
    }
    let facts = json!({"autolock": enabled, "timeout_seconds": idle, "lock_grace_seconds": grace,
                       "users_checked": checked});
    if !bad.is_empty() {
        return (CheckStatus::Fail, format!("KDE: {}", bad.join("; ")), facts);
    }
    if !unreadable.is_empty() {
        return (
            CheckStatus::Unknown,
            format!("KDE: settings not readable ({})", unreadable.join("; ")),
            facts,
        );
    }
    (
        CheckStatus::Pass,
        format!("KDE locks after {idle} s idle, {grace} s grace (system and {checked} users under /home)"),
        facts,
    )
}

const DISPLAY_MANAGERS: &[&str] = &["/usr/sbin/gdm3", "/usr/sbin/gdm", "/usr/bin/sddm", "/usr/sbin/lightdm"];
const SESSION_DIRS: &[&str] = &["/usr/share/xsessions", "/usr/share/wayland-sessions"];

fn read_all(host: &dyn Host, dir: &str) -> Vec<String> {
    host.read_dir(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| host.read_text(&format!("{dir}/{n}")).ok())
        .collect()
}

/// The compiled system databases (`/etc/dconf/db/NAME`, what GNOME reads)
/// that are missing or older than a keyfile, lock file or directory they
/// are compiled from, by `stat` modification times. Nothing when `stat`
/// cannot be run (it then cannot be told, and the keyfiles stand).
pub fn stale_databases(host: &dyn Host, names: &[String]) -> Vec<String> {
    let mut stale = Vec::new();
    for name in names {
        let db = format!("/etc/dconf/db/{name}");
        let dir = format!("{db}.d");
        let locks = format!("{dir}/locks");
        let mut paths = vec![db.clone(), dir.clone()];
        for d in [&dir, &locks] {
            if let Ok(entries) = host.read_dir(d) {
                if d == &locks {
                    paths.push(locks.clone());
                }
                paths.extend(entries.into_iter().filter(|e| e != "locks").map(|e| format!("{d}/{e}")));
            }
        }
        // Nanoseconds: `dconf update` right after an edit is the common case.
        let mut args = vec!["-c", "%.9Y %n"];
        args.extend(paths.iter().map(String::as_str));
        let Ok(out) = host.run("stat", &args) else { continue };
        let times: Vec<(f64, &str)> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once(' ').and_then(|(t, p)| Some((t.parse().ok()?, p))))
            .collect();
        let compiled = times.iter().find(|(_, p)| *p == db).map(|(t, _)| *t);
        let newest_source = times.iter().filter(|(_, p)| *p != db).map(|(t, _)| *t).reduce(f64::max);
        match (compiled, newest_source) {
            (None, Some(_)) => stale.push(db),
            // File times tick with the kernel's coarse clock: equal times
            // mean a write within the same few milliseconds as the compile,
            // which cannot be ordered, so they count as stale.
            (Some(c), Some(n)) if n >= c => stale.push(db),
            _ => {}
        }
    }
    stale
}

/// GNOME: the system databases named by the profile, their keyfiles and
/// locks, and whether the compiled databases are as new as those.
fn gather_gnome(host: &dyn Host, raw: &mut String) -> Verdict {
    let profile = host.read_text("/etc/dconf/profile/user").ok();
    let names: Vec<String> = profile
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("system-db:").map(|n| n.trim().to_string()))
        .collect();
    let mut dbs = Vec::new();
    for name in &names {
        let dir = format!("/etc/dconf/db/{name}.d");
        let keyfiles = read_all(host, &dir);
        for k in &keyfiles {
            raw.push_str(k);
            raw.push('\n');
        }
        dbs.push((keyfiles, read_all(host, &format!("{dir}/locks"))));
    }
    let mut verdict = judge_gnome(profile.as_deref(), &dbs);
    let stale = stale_databases(host, &names);
    if !stale.is_empty() && verdict.0 == CheckStatus::Pass {
        verdict.0 = CheckStatus::Unknown;
        verdict.1 = format!(
            "GNOME: the keyfiles comply, but GNOME reads the compiled databases, and {} older than \
             its keyfiles (`dconf update` has not run since they changed)",
            stale.join(", ") + if stale.len() == 1 { " is" } else { " are" }
        );
    }
    verdict
}

/// KDE Plasma: the system file and each user's, labelled by position.
fn gather_kde(host: &dyn Host, raw: &mut String) -> Verdict {
    let system = host.read_text("/etc/xdg/kscreenlockerrc").ok();
    let users: Vec<(String, Result<Option<String>, HostError>)> = host
        .read_dir("/home")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            // Users are labelled by position, not name: the reason is signed and names are personal.
            let file = match host.read_text(&format!("/home/{u}/.config/kscreenlockerrc")) {
                Ok(t) => Ok(Some(t)),
                Err(HostError::NoFile { .. }) => Ok(None),
                Err(e) => Err(e),
            };
            (format!("#{}", i + 1), file)
        })
        .collect();
    if let Some(s) = &system {
        raw.push_str(s);
    }
    judge_kde(system.as_deref(), &users)
}

/// Gathers and evaluates on a Linux host: which desktops, each one's
/// verdict, then the worst of them.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let dms: Vec<&str> = DISPLAY_MANAGERS.iter().copied().filter(|p| host.exists(p)).collect();
    let sessions: Vec<String> = SESSION_DIRS
        .iter()
        .flat_map(|d| host.read_dir(d).unwrap_or_default())
        .filter(|n| n.ends_with(".desktop"))
        .collect();
    if dms.is_empty() && sessions.is_empty() {
        return Finding::new(CheckStatus::NotApplicable, "none")
            .with_reason("no graphical desktop: no display manager and no desktop sessions installed")
            .fact("desktops", Vec::<String>::new());
    }
    let gnome = sessions.iter().any(|s| s.starts_with("gnome") || s.starts_with("ubuntu"));
    let kde = sessions.iter().any(|s| s.starts_with("plasma"));
    let others: Vec<&String> = sessions
        .iter()
        .filter(|s| !(s.starts_with("gnome") || s.starts_with("ubuntu") || s.starts_with("plasma")))
        .collect();
    let mut verdicts: Vec<(&str, Verdict)> = Vec::new();
    let mut raw = format!("display managers: {dms:?}\nsessions: {sessions:?}\n");
    if gnome {
        verdicts.push(("gnome", gather_gnome(host, &mut raw)));
    }
    if kde {
        verdicts.push(("kde", gather_kde(host, &mut raw)));
    }
    if !others.is_empty() || verdicts.is_empty() {
        let what = if others.is_empty() {
            "a display manager without session files".to_string()
        } else {
            others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        };
        verdicts.push((
            "other",
            (CheckStatus::Unknown, format!("the screen lock of {what} is not assessed"), json!(null)),
        ));
    }
    combine(verdicts, raw)
}

/// The host's finding from each desktop's verdict: the worst status, the
/// reasons that explain it, each desktop's facts.
fn combine(verdicts: Vec<(&str, Verdict)>, raw: String) -> Finding {
    let worst = if verdicts.iter().any(|(_, v)| v.0 == CheckStatus::Fail) {
        CheckStatus::Fail
    } else if verdicts.iter().any(|(_, v)| v.0 == CheckStatus::Unknown) {
        CheckStatus::Unknown
    } else {
        CheckStatus::Pass
    };
    let backend = verdicts.iter().map(|(n, _)| *n).filter(|n| *n != "other").collect::<Vec<_>>().join("+");
    let backend = if backend.is_empty() { "none".to_string() } else { backend };
    let reason = verdicts
        .iter()
        .filter(|(_, v)| worst == CheckStatus::Pass || v.0 != CheckStatus::Pass)
        .map(|(_, v)| v.1.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let mut f = Finding::new(worst, &backend)
        .with_reason(reason)
        .fact("desktops", verdicts.iter().map(|(n, _)| *n).collect::<Vec<_>>())
        .with_raw(raw);
    for (name, v) in &verdicts {
        if !v.2.is_null() {
            f = f.fact(name, v.2.clone());
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kde_immutability_markers() {
        let k = parse_keyfile("[Daemon][$i]\nAutolock=true\n[Other]\nTimeout[$i]=3\nLockGrace=9\n");
        assert_eq!(k[&("Daemon".into(), "Autolock".into())], ("true".into(), true));
        assert_eq!(k[&("Other".into(), "Timeout".into())], ("3".into(), true));
        assert_eq!(k[&("Other".into(), "LockGrace".into())], ("9".into(), false));
    }

    #[test]
    fn an_unreadable_user_file_is_unknown_without_naming_the_user() {
        let denied = HostError::PermissionDenied { what: "/home/alice/.config/kscreenlockerrc".into() };
        let users = vec![("#1".to_string(), Ok(None)), ("#2".to_string(), Err(denied))];
        let (status, reason, _) = judge_kde(Some("[Daemon]\nTimeout=5\n"), &users);
        assert_eq!(status, CheckStatus::Unknown);
        assert!(reason.contains("user #2: kscreenlockerrc permission denied"), "{reason}");
        assert!(!reason.contains("alice"), "a user's name is in the signed reason: {reason}");
    }

    #[test]
    fn gnome_earlier_database_wins() {
        let high = (vec!["[org/gnome/desktop/session]\nidle-delay=uint32 600\n".to_string()], vec![]);
        let low = (vec!["[org/gnome/desktop/session]\nidle-delay=uint32 0\n".to_string()], vec![]);
        assert_eq!(gnome_settings(&[high, low]).idle_delay.0, 600);
    }
}
