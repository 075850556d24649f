//! The Linux backends of the `audit_logging` check.
//!
//! Reads two things:
//! - the kernel audit system through auditd's tools: `systemctl is-active
//!   auditd`, `auditctl -s` (`enabled 1`, or `2` when locked; `pid` of the
//!   audit daemon) and `auditctl -l` (the loaded rules, `No rules` when none);
//! - journald persistence: `Storage=` in the `[Journal]` section of
//!   `/etc/systemd/journald.conf` and the drop-ins `*.conf` in
//!   `/usr/lib/systemd/journald.conf.d/`, `/run/systemd/journald.conf.d/` and
//!   `/etc/systemd/journald.conf.d/` (applied in file-name order, the last
//!   setting wins, as systemd does), and whether `/var/log/journal` exists.
//!   Storage `persistent` persists; `auto` (the default) persists only when
//!   `/var/log/journal` exists; `volatile` and `none` do not.
//!
//! Status rule: `pass` when auditd runs, auditing is enabled, at least one
//! loaded rule records (not shadowed by `-a never,task` or an earlier
//! unconditional `-a never,exit`, see [`rule_effect`]), and the journal
//! persists; `fail` when auditd is not
//! installed or not running, auditing is disabled, no rules are loaded
//! (`No rules`), or the journal is volatile; otherwise `unknown` (auditctl
//! needs root; systemd not present so journald's storage cannot be told).

use serde_json::json;

use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// The kernel audit status from `auditctl -s`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditStatus {
    /// `enabled` value: 0 off, 1 on, 2 on and locked.
    pub enabled: u32,
    /// Process id of the audit daemon (0: none registered).
    pub pid: u32,
}

/// Parses `auditctl -s` (`enabled 1` / `pid 789` lines).
pub fn parse_auditctl_status(text: &str) -> Option<AuditStatus> {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            l.trim().strip_prefix(key)?.strip_prefix(' ')?.split_whitespace().next()?.parse().ok()
        })
    };
    Some(AuditStatus { enabled: value("enabled")?, pid: value("pid").unwrap_or(0) })
}

/// Counts the rules in `auditctl -l` output (`No rules` gives 0).
pub fn count_audit_rules(text: &str) -> usize {
    text.lines().map(str::trim).filter(|l| l.starts_with('-')).count()
}

/// What the loaded rules can record: the kernel's audit rules are
/// first-match per list, and a `never` rule ends the evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEffect {
    /// Rules that record (`-w`, `-a always,exit`) and that no earlier
    /// unconditional `never` rule shadows.
    pub effective: usize,
    /// The rule that suppresses the others, if any.
    pub suppressed_by: Option<String>,
}

/// Reads `auditctl -l` for what it records. An unconditional `-a
/// never,task` marks every new task as not audited, so no syscall rule (the
/// watches included) ever fires for them; an unconditional `-a never,exit`
/// (fields limited to the architecture and `-S all`) shadows every exit
/// rule after it.
pub fn rule_effect(text: &str) -> RuleEffect {
    let rules: Vec<&str> = text.lines().map(str::trim).filter(|l| l.starts_with('-')).collect();
    let unconditional = |rest: &str| {
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            match (words[i], words.get(i + 1)) {
                ("-F", Some(f)) if f.starts_with("arch=") => i += 2,
                ("-S", Some(&"all")) => i += 2,
                _ => return false,
            }
        }
        true
    };
    let never = |l: &str, list: &str| {
        [format!("-a never,{list}"), format!("-a {list},never")]
            .iter()
            .find_map(|p| l.strip_prefix(p.as_str()))
            .is_some_and(unconditional)
    };
    if let Some(task) = rules.iter().find(|l| never(l, "task")) {
        return RuleEffect { effective: 0, suppressed_by: Some(task.to_string()) };
    }
    let mut effective = 0;
    for l in &rules {
        if never(l, "exit") {
            return RuleEffect { effective, suppressed_by: Some(l.to_string()) };
        }
        if l.starts_with("-w ") || l.starts_with("-a always,exit") || l.starts_with("-a exit,always") {
            effective += 1;
        }
    }
    RuleEffect { effective, suppressed_by: None }
}

/// The `Storage=` value of a journald.conf text (in its `[Journal]` section), if set.
pub fn journald_storage(text: &str) -> Option<String> {
    let mut in_journal = false;
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_journal = line == "[Journal]";
        } else if in_journal
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "Storage"
        {
            found = Some(v.trim().to_string());
        }
    }
    found
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `systemctl is-active auditd` state (`active`, `inactive`, `failed`), if systemd answered.
    pub auditd_unit: Option<String>,
    /// `auditctl -s` output, or why it could not be read.
    pub status: Option<Result<String, HostError>>,
    /// `auditctl -l` output, or why it could not be read.
    pub rules: Option<Result<String, HostError>>,
    /// journald configuration files read, in the order systemd applies them.
    pub journald_confs: Vec<(String, String)>,
    /// Whether the journald daemon is present at all (systemd host).
    pub journald_present: bool,
    pub var_log_journal: bool,
    /// Whether systemd-journald runs (`systemctl is-active`); `None` when
    /// it cannot be told.
    pub journald_running: Option<bool>,
}

fn denied(e: &HostError) -> bool {
    matches!(e, HostError::PermissionDenied { .. })
}

/// What keeps the check from passing: failures, and what cannot be told.
#[derive(Default)]
struct Problems {
    fails: Vec<String>,
    unknowns: Vec<String>,
}

/// The kernel audit side as read.
struct Audit {
    status: Option<AuditStatus>,
    rules: Option<usize>,
    effect: Option<RuleEffect>,
    auditd_active: Option<bool>,
}

/// Decides the check from what was observed: auditd, its rules, the
/// journal, then the status from what was found.
pub fn evaluate(o: &Observed) -> Finding {
    let mut p = Problems::default();
    let mut raw = String::new();
    let audit = read_audit(o, &mut raw);
    judge_audit(o, &audit, &mut p);
    let (storage, journal_persistent) = judge_journal(o, &mut raw, &mut p);
    let status = match (p.fails.is_empty(), p.unknowns.is_empty()) {
        (false, _) => CheckStatus::Fail,
        (true, false) => CheckStatus::Unknown,
        (true, true) => CheckStatus::Pass,
    };
    let reason = if status == CheckStatus::Pass {
        format!(
            "auditd runs with {} rules; the journal persists (Storage={storage})",
            audit.rules.unwrap_or(0)
        )
    } else {
        p.fails.iter().chain(&p.unknowns).cloned().collect::<Vec<_>>().join("; ")
    };
    let opt = |v: Option<serde_json::Value>| v.unwrap_or(json!(null));
    Finding::new(status, "auditd+journald")
        .fact("auditd_active", opt(audit.auditd_active.map(|b| json!(b))))
        .fact("audit_enabled", opt(audit.status.as_ref().map(|a| json!(a.enabled))))
        .fact("audit_rules", opt(audit.rules.map(|n| json!(n))))
        .fact("audit_rules_effective", opt(audit.effect.as_ref().map(|e| json!(e.effective))))
        .fact("journal_storage", storage)
        .fact("journal_persistent", opt(journal_persistent.map(|b| json!(b))))
        .fact("journald_running", opt(o.journald_running.map(|b| json!(b))))
        .with_reason(reason)
        .with_raw(raw)
}

/// The audit status, the rules and what they record, and whether auditd runs.
fn read_audit(o: &Observed, raw: &mut String) -> Audit {
    let status = match &o.status {
        Some(Ok(text)) => {
            raw.push_str(text);
            parse_auditctl_status(text)
        }
        _ => None,
    };
    let (rules, effect) = match &o.rules {
        Some(Ok(text)) => {
            raw.push_str(text);
            (Some(count_audit_rules(text)), Some(rule_effect(text)))
        }
        _ => (None, None),
    };
    let auditd_active = match (o.auditd_unit.as_deref(), &status) {
        (Some(state), _) => Some(state == "active"),
        (None, Some(s)) => Some(s.pid != 0),
        (None, None) => None,
    };
    Audit { status, rules, effect, auditd_active }
}

/// auditd installed and running, auditing on, and rules that record.
fn judge_audit(o: &Observed, a: &Audit, p: &mut Problems) {
    let s = match (&o.status, &a.status) {
        (None, _) => return p.fails.push("auditd is not installed (no auditctl)".to_string()),
        (Some(Err(e)), _) if denied(e) => {
            return p
                .unknowns
                .push("auditctl needs root (CAP_AUDIT_CONTROL) to read the audit status".into());
        }
        (Some(Err(e)), _) => return p.unknowns.push(format!("auditctl -s: {e}")),
        (Some(Ok(_)), None) => return p.unknowns.push("auditctl -s printed no audit status".into()),
        (Some(Ok(_)), Some(s)) => s,
    };
    if a.auditd_active == Some(false) {
        p.fails.push("auditd is not running".into());
    }
    if s.enabled == 0 {
        p.fails.push("kernel auditing is disabled (enabled 0)".into());
    }
    match (&o.rules, a.rules, &a.effect) {
        (_, Some(0), _) => p.fails.push("no audit rules are loaded".into()),
        (_, Some(n), Some(e)) if e.effective == 0 => p.fails.push(match &e.suppressed_by {
            Some(rule) => format!("{n} audit rules are loaded but `{rule}` keeps any of them from recording"),
            None => {
                format!("{n} audit rules are loaded but none records events (no watch or always,exit rule)")
            }
        }),
        (Some(Err(e)), ..) if denied(e) => p.unknowns.push("auditctl needs root to list the rules".into()),
        (Some(Err(e)), ..) => p.unknowns.push(format!("auditctl -l: {e}")),
        _ => {}
    }
}

/// journald runs and keeps the journal on disk: `Storage=` (the last value
/// read wins, as systemd reads them) and `/var/log/journal` for `auto`.
fn judge_journal(o: &Observed, raw: &mut String, p: &mut Problems) -> (String, Option<bool>) {
    let mut storage = "auto".to_string();
    for (path, text) in &o.journald_confs {
        raw.push_str(&format!("\n# {path}\n{text}"));
        if let Some(s) = journald_storage(text) {
            storage = s;
        }
    }
    let persistent = match (o.journald_running, o.journald_present, storage.as_str()) {
        (Some(false), ..) => {
            p.fails.push(
                "systemd-journald is not running, so nothing is written to the journal, persistent or not"
                    .into(),
            );
            Some(false)
        }
        (_, false, _) => {
            p.unknowns.push("journald is not present, so whether logs persist is not known".into());
            None
        }
        (_, true, "persistent") => Some(true),
        (_, true, "auto") if o.var_log_journal => Some(true),
        (_, true, "auto") => {
            p.fails.push("the journal is kept in memory only (Storage=auto and no /var/log/journal)".into());
            Some(false)
        }
        (_, true, other) => {
            p.fails.push(format!("the journal is not persistent (Storage={other})"));
            Some(false)
        }
    };
    (storage, persistent)
}

fn auditctl(host: &dyn Host, arg: &str) -> Option<Result<String, HostError>> {
    match host.run("auditctl", &[arg]) {
        Ok(out) if out.success() => Some(Ok(out.stdout)),
        Ok(out) => {
            let msg = format!("{} {}", out.stdout.trim(), out.stderr.trim()).trim().to_string();
            // auditctl says so in words when not run as root or without CAP_AUDIT_CONTROL.
            if msg.contains("must be root") || msg.contains("Operation not permitted") {
                Some(Err(HostError::PermissionDenied { what: format!("auditctl {arg}") }))
            } else {
                Some(Err(HostError::Io { what: format!("auditctl {arg}"), message: msg }))
            }
        }
        Err(HostError::NotFound { .. }) => None,
        Err(e) => Some(Err(e)),
    }
}

/// journald.conf and its drop-ins, read in the order systemd applies them.
fn journald_files(host: &dyn Host) -> Vec<(String, String)> {
    let mut journald_confs = Vec::new();
    // The main file: the first of /etc, /run, /usr/lib (newer systemd ships it only in /usr/lib).
    for path in ["/etc/systemd/journald.conf", "/run/systemd/journald.conf", "/usr/lib/systemd/journald.conf"]
    {
        if let Ok(t) = host.read_text(path) {
            journald_confs.push((path.to_string(), t));
            break;
        }
    }
    // Drop-ins from all directories, ordered by file name; a same-named file in a
    // later directory (/etc) masks the earlier ones.
    let mut dropins: Vec<(String, &str)> = Vec::new();
    for dir in
        ["/usr/lib/systemd/journald.conf.d", "/run/systemd/journald.conf.d", "/etc/systemd/journald.conf.d"]
    {
        for name in host.read_dir(dir).unwrap_or_default().into_iter().filter(|n| n.ends_with(".conf")) {
            dropins.retain(|(n, _)| *n != name);
            dropins.push((name, dir));
        }
    }
    dropins.sort();
    for (name, dir) in dropins {
        let path = format!("{dir}/{name}");
        if let Ok(t) = host.read_text(&path) {
            journald_confs.push((path, t));
        }
    }
    journald_confs
}

/// Reads the audit and journal state through the host. Changes nothing.
pub fn observe(host: &dyn Host) -> Observed {
    let auditd_unit = host.run("systemctl", &["is-active", "auditd"]).ok().and_then(|out| {
        let state = out.stdout.lines().next().unwrap_or("").trim().to_string();
        // Without systemd, systemctl prints nothing on stdout and an error on stderr.
        (!state.is_empty()).then_some(state)
    });
    // systemd's own merge of the main file and its drop-ins, where it can
    // be asked; the files in systemd's order otherwise.
    let journald_confs = match host.run("systemd-analyze", &["cat-config", "systemd/journald.conf"]) {
        Ok(out) if out.success() && !out.stdout.trim().is_empty() => {
            vec![("systemd-analyze cat-config systemd/journald.conf".to_string(), out.stdout)]
        }
        _ => journald_files(host),
    };
    let journald_present = !journald_confs.is_empty()
        || host.exists("/usr/lib/systemd/systemd-journald")
        || host.exists("/lib/systemd/systemd-journald");
    let journald_running = host.run("systemctl", &["is-active", "systemd-journald"]).ok().and_then(|out| {
        match out.stdout.lines().next().unwrap_or("").trim() {
            "active" | "reloading" => Some(true),
            "inactive" | "failed" => Some(false),
            // No systemd as PID 1: nothing starts journald.
            "" if out.stderr.contains("not been booted with systemd") => Some(false),
            _ => None,
        }
    });
    Observed {
        journald_running,
        auditd_unit,
        status: auditctl(host, "-s"),
        rules: auditctl(host, "-l"),
        journald_confs,
        journald_present,
        var_log_journal: host.read_dir("/var/log/journal").is_ok(),
    }
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    evaluate(&observe(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_read_from_the_journal_section_only() {
        assert_eq!(journald_storage("[Journal]\n#Storage=auto\n"), None);
        assert_eq!(journald_storage("[Journal]\nStorage=persistent\n").as_deref(), Some("persistent"));
        assert_eq!(journald_storage("[Other]\nStorage=volatile\n"), None);
    }

    #[test]
    fn systemd_merges_the_journal_configuration_where_it_can_be_asked() {
        let merged = "# /etc/systemd/journald.conf\n[Journal]\nStorage=persistent\n\n\
            # /etc/systemd/journald.conf.d/50-volatile.conf\n[Journal]\nStorage=volatile\n";
        let host = crate::host::FixtureHost::new()
            .command("systemd-analyze cat-config systemd/journald.conf", merged)
            .file("/etc/systemd/journald.conf", "[Journal]\nStorage=persistent\n");
        let o = observe(&host);
        assert_eq!(o.journald_confs.len(), 1, "systemd's merge, not the files");
        let storage = o.journald_confs.iter().filter_map(|(_, t)| journald_storage(t)).next_back();
        assert_eq!(storage.as_deref(), Some("volatile"), "the drop-in read last wins");
    }

    #[test]
    fn rules_are_counted() {
        assert_eq!(count_audit_rules("No rules\n"), 0);
        assert_eq!(
            count_audit_rules("-w /etc/passwd -p wa -k identity\n-a always,exit -F arch=b64 -S execve\n"),
            2
        );
    }

    #[test]
    fn never_rules_keep_the_others_from_recording() {
        let watches = "-w /etc/passwd -p wa -k identity\n-a always,exit -F arch=b64 -S execve -F key=exec\n";
        assert_eq!(rule_effect(watches), RuleEffect { effective: 2, suppressed_by: None });
        // Debian's packaged audit.rules starts with this line.
        let task = format!("-a never,task\n{watches}");
        assert_eq!(rule_effect(&task).effective, 0);
        assert_eq!(rule_effect(&task).suppressed_by.as_deref(), Some("-a never,task"));
        let exit_first = format!("-a never,exit -F arch=b64 -S all\n{watches}");
        assert_eq!(rule_effect(&exit_first).effective, 0);
        let exit_last = format!("{watches}-a never,exit -F arch=b64 -S all\n");
        assert_eq!(rule_effect(&exit_last).effective, 2);
        // A conditional never rule only narrows.
        let narrow = format!(
            "-a never,task -F uid=33\n-a never,exit -F arch=b64 -S all -F auid=4294967295\n{watches}"
        );
        assert_eq!(rule_effect(&narrow).effective, 2);
        let o = Observed {
            status: Some(Ok("enabled 1\npid 42\n".into())),
            rules: Some(Ok(task)),
            auditd_unit: Some("active".into()),
            journald_present: true,
            var_log_journal: true,
            ..Observed::default()
        };
        let f = evaluate(&o);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("`-a never,task` keeps any of them from recording"));
    }
}
