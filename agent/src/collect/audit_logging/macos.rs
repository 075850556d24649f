//! The macOS backend of the `audit_logging` check.
//!
//! macOS has two logs. The unified log (`log`) always runs, but keeps
//! security events for days only, drops them under load and is not
//! configured for audit; it is not counted. The audit trail is OpenBSM:
//! `auditd` (launchd job `com.apple.auditd`, state from `launchctl list
//! com.apple.auditd`: a dictionary with `"PID"` while it runs, or `Could not
//! find service` when the job is not loaded) configured by
//! `/etc/security/audit_control` (`flags:lo,aa,...` what is recorded,
//! `expire-after:` retention). Apple deprecated OpenBSM in macOS 14 and no
//! longer ships `audit_control` (only `audit_control.example`), so on
//! macOS 14 and later it must be enabled on purpose; it still works.
//!
//! Loaded is not auditing: under launchd (`auditd -l`) auditd starts
//! auditing only when triggered (`audit -i`), and `audit -t` stops it while
//! the job stays loaded with its PID. While auditing runs, auditd keeps the
//! symbolic link `/var/audit/current` to the trail the kernel writes
//! (`YYYYMMDDhhmmss.not_terminated`, opened at that UTC time) and removes it
//! when it closes the trail. So the link is read (`readlink`, root) and the
//! trail must have been opened since the last boot (`sysctl -n
//! kern.boottime`): a link left by a crash names a trail from before it.
//!
//! `/etc/security/audit_user` can exempt single accounts: its third field
//! (never-audit flags) removes classes for that user whatever
//! `audit_control` says; an account exempted from `lo` or `aa` (or `all`,
//! in part or whole) fails the check (fact `audit_user_exclusions`).
//!
//! Status rule: pass when the auditd job is loaded, a trail opened since
//! boot is being written, `audit_control` records at least logins/logouts
//! (`lo`) and authentication/authorisation (`aa`), successes and failures
//! (a `^-aa` or `^+aa` exclusion counts as not recorded), and no account is
//! exempted from them; fail when one of these is not so; unknown when the
//! file, the job state or the trail cannot be read.

use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

const AUDIT_CONTROL: &str = "/etc/security/audit_control";
const AUDIT_USER: &str = "/etc/security/audit_user";
/// The link auditd keeps to the trail being written (OpenBSM `AUDIT_CURRENT_LINK`).
const CURRENT_LINK: &str = "/var/audit/current";
/// Event classes that must be recorded: login/logout, authentication and authorisation.
const REQUIRED_CLASSES: &[(&str, &str)] = &[("lo", "login/logout"), ("aa", "authentication/authorisation")];

/// The settings of `audit_control` that matter here.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditControl {
    pub flags: Vec<String>,
    pub naflags: Vec<String>,
    pub expire_after: Option<String>,
}

/// Parses `audit_control` (`key:value` lines, `#` comments).
pub fn parse_audit_control(text: &str) -> AuditControl {
    let mut ac = AuditControl::default();
    let list = |v: &str| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some((k, v)) = line.split_once(':') else { continue };
        match k.trim() {
            "flags" => ac.flags = list(v),
            "naflags" => ac.naflags = list(v),
            "expire-after" => ac.expire_after = Some(v.trim().to_string()),
            _ => {}
        }
    }
    ac
}

/// Whether a class is recorded for success and failure: `lo`, `all`, or
/// `+lo` and `-lo` together; `^lo` removes it, `^+lo` / `^-lo` remove its
/// successes / failures.
fn records(flags: &[String], class: &str) -> bool {
    let has = |f: &str| flags.iter().any(|x| x == f);
    !["^", "^+", "^-"].iter().any(|p| has(&format!("{p}{class}")))
        && (has(class) || has("all") || (has(&format!("+{class}")) && has(&format!("-{class}"))))
}

/// The PID from `launchctl list <label>` output, if it runs.
pub fn parse_launchctl_pid(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("\"PID\" = ")?;
        rest.trim_end_matches(';').trim().parse().ok()
    })
}

/// The UTC start of a trail from its file name (`20261123064012.not_terminated`),
/// when it is the active trail (`not_terminated`).
pub fn parse_trail_start(target: &str) -> Option<i64> {
    let name = target.rsplit('/').next()?;
    let stamp = name.strip_suffix(".not_terminated")?;
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    time::PrimitiveDateTime::parse(stamp, format).ok().map(|t| t.assume_utc().unix_timestamp())
}

/// The boot time from `sysctl -n kern.boottime` (`{ sec = 1795387212, usec = 0 } ...`).
pub fn parse_boottime(text: &str) -> Option<i64> {
    let rest = text.split("sec =").nth(1)?;
    rest.split(',').next()?.trim().parse().ok()
}

/// The accounts `audit_user` exempts from a required class: `name:always:never`
/// lines whose never-audit flags name the class or `all`, in part or whole.
pub fn audit_user_exclusions(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut fields = line.split(':');
        let (Some(name), Some(_always), Some(never)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let excluded: Vec<String> = REQUIRED_CLASSES
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| {
                never
                    .split(',')
                    .map(|f| f.trim().trim_start_matches(['+', '-']))
                    .any(|f| f == *c || f == "all")
            })
            .map(str::to_string)
            .collect();
        if !excluded.is_empty() {
            out.push((name.trim().to_string(), excluded));
        }
    }
    out
}

/// What was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `Ok(None)` when `audit_control` does not exist.
    pub control: Result<Option<AuditControl>, HostError>,
    /// `Ok(Some(pid))` loaded (pid if running), `Ok(None)` not loaded.
    pub job: Result<Option<Option<u32>>, String>,
    /// The target of `/var/audit/current`, `Ok(None)` when there is none.
    pub current: Result<Option<String>, String>,
    pub boot_time: Result<i64, String>,
    /// Accounts exempted from a required class (no `audit_user`: none).
    pub exclusions: Result<Vec<(String, Vec<String>)>, HostError>,
}

/// Whether auditing writes a trail opened since boot: `Ok(Some(start))`
/// yes, `Ok(None)` no (with the problem pushed), `Err` cannot tell.
fn trail_state(o: &Observed, problems: &mut Vec<String>) -> Result<Option<i64>, String> {
    let target = match &o.current {
        Ok(None) => {
            problems.push(
                "no audit trail is open (/var/audit/current does not exist): auditing is not running".into(),
            );
            return Ok(None);
        }
        Ok(Some(t)) => t,
        Err(e) => return Err(format!("the current audit trail could not be read: {e}")),
    };
    let Some(start) = parse_trail_start(target) else {
        problems.push(format!("/var/audit/current points to {target}, not a trail being written"));
        return Ok(None);
    };
    let boot = o.boot_time.as_ref().map_err(|e| format!("the boot time could not be read: {e}"))?;
    if start < *boot {
        problems.push(format!(
            "the current audit trail ({target}) was opened before the last boot: auditing has not started since"
        ));
        return Ok(None);
    }
    Ok(Some(start))
}

/// Decides the check from what was read.
pub fn evaluate(o: &Observed, raw: &str) -> Finding {
    let ac = o.control.as_ref().ok().cloned().flatten();
    let mut problems = Vec::new();
    let mut unknowns = Vec::new();
    let trail = trail_state(o, &mut problems);
    let f = |status| {
        Finding::new(status, "openbsm")
            .fact("audit_control_present", o.control.as_ref().ok().map(Option::is_some))
            .fact("flags", ac.as_ref().map(|a| a.flags.clone()))
            .fact("expire_after", ac.as_ref().and_then(|a| a.expire_after.clone()))
            .fact("auditd_loaded", o.job.as_ref().ok().map(Option::is_some))
            .fact("auditd_pid", o.job.as_ref().ok().copied().flatten().flatten())
            .fact("trail_open", trail.as_ref().ok().map(Option::is_some))
            .fact("audit_user_exclusions", o.exclusions.as_ref().ok().map(Vec::len))
            .with_raw(raw)
    };
    if let Err(e) = &trail {
        unknowns.push(e.clone());
    }
    match &o.job {
        Ok(None) => problems.push("auditd is not loaded (com.apple.auditd)".to_string()),
        Err(e) => unknowns.push(format!("auditd state unreadable: {e}")),
        Ok(Some(_)) => {}
    }
    match &o.control {
        Ok(None) => problems
            .push(format!("{AUDIT_CONTROL} does not exist (OpenBSM is off by default since macOS 14)")),
        Err(e) => unknowns.push(format!("{AUDIT_CONTROL} unreadable: {e}")),
        Ok(Some(ac)) => {
            let missing: Vec<String> = REQUIRED_CLASSES
                .iter()
                .filter(|(c, _)| !records(&ac.flags, c))
                .map(|(c, what)| format!("{what} ({c})"))
                .collect();
            if !missing.is_empty() {
                problems.push(format!("audit flags do not record {}", missing.join(", ")));
            }
        }
    }
    match &o.exclusions {
        Ok(x) if !x.is_empty() => {
            let classes: std::collections::BTreeSet<&str> =
                x.iter().flat_map(|(_, c)| c.iter().map(String::as_str)).collect();
            problems.push(format!(
                "{AUDIT_USER} exempts {} account(s) from {}",
                x.len(),
                classes.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(_) => {}
        Err(e) => unknowns.push(format!("{AUDIT_USER} unreadable: {e}")),
    }
    if !problems.is_empty() {
        problems.extend(unknowns);
        return f(CheckStatus::Fail).with_reason(problems.join("; "));
    }
    if !unknowns.is_empty() {
        return f(CheckStatus::Unknown).with_reason(unknowns.join("; "));
    }
    let flags = ac.as_ref().map(|a| a.flags.join(",")).unwrap_or_default();
    f(CheckStatus::Pass)
        .with_reason(format!("auditd loaded; audit flags {flags}; writing a trail opened since boot"))
}

/// Reads a file: `Ok(None)` when it does not exist.
fn read_optional(host: &dyn Host, path: &str, raw: &mut String) -> Result<Option<String>, HostError> {
    match host.read_text(path) {
        Ok(text) => {
            raw.push_str(&text);
            Ok(Some(text))
        }
        Err(HostError::NoFile { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The target of `/var/audit/current`: `readlink` prints it, or nothing and
/// exits 1 when there is no such link.
fn current_trail(host: &dyn Host, raw: &mut String) -> Result<Option<String>, String> {
    match host.run("readlink", &[CURRENT_LINK]) {
        Ok(out) if out.success() && !out.stdout.trim().is_empty() => {
            raw.push_str(&format!("\n{CURRENT_LINK} -> {}", out.stdout));
            Ok(Some(out.stdout.trim().to_string()))
        }
        Ok(out) if out.stderr.trim().is_empty() => Ok(None),
        Ok(out) => Err(format!("readlink {CURRENT_LINK}: {}", out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let mut raw = String::new();
    let control = read_optional(host, AUDIT_CONTROL, &mut raw).map(|t| t.as_deref().map(parse_audit_control));
    let job = match host.run("launchctl", &["list", "com.apple.auditd"]) {
        Ok(out) if out.success() => {
            raw.push_str(&out.stdout);
            Ok(Some(parse_launchctl_pid(&out.stdout)))
        }
        Ok(out) if out.stderr.contains("Could not find service") => Ok(None),
        Ok(out) => Err(format!("launchctl list exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    };
    let current = current_trail(host, &mut raw);
    let boot_time = match host.run("sysctl", &["-n", "kern.boottime"]) {
        Ok(out) if out.success() => {
            parse_boottime(&out.stdout).ok_or_else(|| format!("sysctl printed {:?}", out.stdout.trim()))
        }
        Ok(out) => Err(format!("sysctl exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    };
    let mut user_raw = String::new();
    let exclusions = read_optional(host, AUDIT_USER, &mut user_raw)
        .map(|t| t.as_deref().map(audit_user_exclusions).unwrap_or_default());
    // The names in audit_user are user names: they reach the record only scrubbed.
    for (name, _) in exclusions.as_ref().map(Vec::as_slice).unwrap_or_default() {
        ctx.register(Personal::UserName, name);
    }
    raw.push_str(&user_raw);
    let o = Observed { control, job, current, boot_time, exclusions };
    evaluate(&o, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_prefixes() {
        let f = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert!(records(&f("lo,aa"), "lo"));
        assert!(!records(&f("-lo,aa"), "lo"));
        assert!(records(&f("+lo,-lo"), "lo"));
        assert!(!records(&f("all,^lo"), "lo"));
        assert!(!records(&f("lo,aa,^-aa"), "aa"));
        assert!(!records(&f("all,^+lo"), "lo"));
        assert!(records(&f("all"), "aa"));
        assert_eq!(parse_launchctl_pid("{\n\t\"PID\" = 412;\n};\n"), Some(412));
    }

    #[test]
    fn trails_boot_time_and_exempted_accounts() {
        assert_eq!(parse_trail_start("/var/audit/20261123064012.not_terminated"), Some(1_795_416_012));
        assert_eq!(parse_trail_start("/var/audit/20261120090000.20261123064012"), None, "closed trail");
        assert_eq!(
            parse_boottime("{ sec = 1795415900, usec = 812345 } Mon Nov 23 06:38:20 2026\n"),
            Some(1_795_415_900)
        );
        let x = audit_user_exclusions("# comment\nroot:lo:no\nsvc_backup::lo,fd\nkiosk:lo:-aa\nops:aa:all\n");
        let got: Vec<(&str, String)> = x.iter().map(|(n, c)| (n.as_str(), c.join(","))).collect();
        assert_eq!(got, vec![("svc_backup", "lo".into()), ("kiosk", "aa".into()), ("ops", "lo,aa".into())]);
    }
}
