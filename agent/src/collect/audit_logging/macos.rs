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
//! Status rule: pass when the auditd job is loaded and `audit_control`
//! records at least logins/logouts (`lo`) and authentication/authorisation
//! (`aa`), successes and failures (a `^-aa` or `^+aa` exclusion counts as
//! not recorded); fail when the job is not loaded, the file is missing, or those
//! classes are not recorded; unknown when the file or the job state cannot
//! be read.

use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

const AUDIT_CONTROL: &str = "/etc/security/audit_control";
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

/// Decides the check. `control` is `Ok(None)` when the file does not exist;
/// `job` is `Ok(Some(pid))` loaded (pid if running), `Ok(None)` not loaded.
pub fn evaluate(
    control: Result<Option<AuditControl>, String>,
    job: Result<Option<Option<u32>>, String>,
    raw: &str,
) -> Finding {
    let ac = control.as_ref().ok().cloned().flatten();
    let f = |status| {
        Finding::new(status, "openbsm")
            .fact("audit_control_present", control.as_ref().ok().map(Option::is_some))
            .fact("flags", ac.as_ref().map(|a| a.flags.clone()))
            .fact("expire_after", ac.as_ref().and_then(|a| a.expire_after.clone()))
            .fact("auditd_loaded", job.as_ref().ok().map(Option::is_some))
            .fact("auditd_pid", job.as_ref().ok().copied().flatten().flatten())
            .with_raw(raw)
    };
    let mut problems = Vec::new();
    let mut unknowns = Vec::new();
    match &job {
        Ok(None) => problems.push("auditd is not loaded (com.apple.auditd)".to_string()),
        Err(e) => unknowns.push(format!("auditd state unreadable: {e}")),
        Ok(Some(_)) => {}
    }
    match &control {
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
    if !problems.is_empty() {
        problems.extend(unknowns);
        return f(CheckStatus::Fail).with_reason(problems.join("; "));
    }
    if !unknowns.is_empty() {
        return f(CheckStatus::Unknown).with_reason(unknowns.join("; "));
    }
    let flags = ac.as_ref().map(|a| a.flags.join(",")).unwrap_or_default();
    f(CheckStatus::Pass).with_reason(format!("auditd loaded; audit flags {flags}"))
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let mut raw = String::new();
    let control = match host.read_text(AUDIT_CONTROL) {
        Ok(text) => {
            raw.push_str(&text);
            Ok(Some(parse_audit_control(&text)))
        }
        Err(HostError::NoFile { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    let job = match host.run("launchctl", &["list", "com.apple.auditd"]) {
        Ok(out) if out.success() => {
            raw.push_str(&out.stdout);
            Ok(Some(parse_launchctl_pid(&out.stdout)))
        }
        Ok(out) if out.stderr.contains("Could not find service") => Ok(None),
        Ok(out) => Err(format!("launchctl list exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    };
    evaluate(control, job, &raw)
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
}
