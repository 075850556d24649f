//! The Linux backends of the `auto_updates` check.
//!
//! Reads, per distribution family (chosen by which package tooling answers):
//! - Debian/Ubuntu: unattended-upgrades, see [`super::apt`].
//! - RHEL/Fedora: `systemctl is-enabled` of `dnf-automatic-install.timer`
//!   (always installs), `dnf-automatic.timer` / `dnf5-automatic.timer` (install
//!   only with `apply_updates = yes` in `/etc/dnf/automatic.conf`), and
//!   `upgrade_type` (`default` or `security`; both include security updates).
//! - RHEL/CentOS 7: yum-cron. `/etc/yum/yum-cron.conf` (daily) and
//!   `/etc/yum/yum-cron-hourly.conf`, section `[commands]`: `apply_updates`
//!   (shipped `no`), `download_updates`, `update_cmd` (`default`, `security`
//!   and `minimal-security` include every security update; `minimal` is
//!   bug fixes only and the `*-severity:Critical` forms leave Important ones
//!   out); and the `yum-cron` service, `systemctl is-enabled` and
//!   `is-active`: its cron jobs do nothing unless the service has been
//!   started (they test its lock file).
//! - SUSE: `systemctl is-enabled` of `transactional-update.timer` and
//!   `os-update.timer`, and YaST's automatic online update:
//!   `/etc/sysconfig/automatic_online_update` `AOU_ENABLE_CRONJOB="true"` with
//!   its cron link `/etc/cron.{daily,weekly,monthly}/opensuse.org-online_update`
//!   and `AOU_PATCH_CATEGORIES` empty (all) or containing `security`.
//!
//! Status rule: `pass` only when security updates are *installed*
//! automatically (downloading or notifying is not enough); `fail` when the
//! mechanism is absent, disabled, download-only or excludes security
//! updates; `unknown` when no supported package tooling is found or its
//! configuration cannot be read.

use serde_json::json;

use crate::collect::{Context, Finding, ParseError};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// Whether a systemd unit is enabled: `Ok(Some(true))` enabled,
/// `Ok(Some(false))` installed but disabled or masked, `Ok(None)` no such unit,
/// `Err` when systemd cannot be asked (what `systemctl is-enabled` printed).
pub fn parse_is_enabled(code: Option<i32>, stdout: &str, stderr: &str) -> Result<Option<bool>, ParseError> {
    let state = stdout.lines().next().unwrap_or("").trim();
    match state {
        "enabled" | "enabled-runtime" => Ok(Some(true)),
        "disabled" | "masked" | "masked-runtime" | "static" | "indirect" | "linked" | "linked-runtime" => {
            Ok(Some(false))
        }
        _ if stderr.contains("No such file or directory") || stderr.contains("not found") => Ok(None),
        _ => Err(ParseError::new(format!("exited with {code:?}: {}", stderr.trim()))
            .in_command("systemctl is-enabled")),
    }
}

/// A unit's [`parse_is_enabled`] state, or why systemd could not be asked
/// (not run, or its answer not understood: either leaves it unknown).
fn unit_enabled(host: &dyn Host, unit: &str) -> Result<Option<bool>, String> {
    match host.run("systemctl", &["is-enabled", unit]) {
        Ok(out) => parse_is_enabled(out.code, &out.stdout, &out.stderr).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads `key = value` settings from one section of an INI file (`automatic.conf`).
pub fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
        } else if current == section
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            found = Some(v.trim().to_string());
        }
    }
    found
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "on")
}

/// Reads `KEY="value"` from a sysconfig file.
pub fn sysconfig_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .next_back()
}

/// What a RHEL/Fedora host showed.
#[derive(Debug, Clone, Default)]
pub struct DnfObserved {
    /// `/etc/dnf/automatic.conf`, or why it could not be read (`None`: absent).
    pub config: Option<Result<String, HostError>>,
    /// (timer, state) for the dnf-automatic timers, see [`parse_is_enabled`].
    pub timers: Vec<(String, Result<Option<bool>, String>)>,
}

/// Decides the check for a RHEL/Fedora host.
pub fn evaluate_dnf(o: &DnfObserved) -> Finding {
    let raw = o.config.as_ref().and_then(|c| c.as_ref().ok()).cloned().unwrap_or_default();
    let apply = ini_value(&raw, "commands", "apply_updates").is_some_and(|v| truthy(&v));
    let upgrade_type = ini_value(&raw, "commands", "upgrade_type").unwrap_or_else(|| "default".into());
    let enabled = |t: &str| o.timers.iter().any(|(n, s)| n == t && *s == Ok(Some(true)));
    let timers: serde_json::Map<String, serde_json::Value> =
        o.timers.iter().map(|(n, s)| (n.clone(), s.as_ref().map_or(json!(null), |v| json!(v)))).collect();
    let f = |status| {
        Finding::new(status, "dnf-automatic")
            .fact("mechanism", "dnf-automatic")
            .fact("apply_updates", apply)
            .fact("upgrade_type", upgrade_type.clone())
            .fact("timers", serde_json::Value::Object(timers.clone()))
            .with_raw(raw.clone())
    };
    if let Some(Err(e)) = &o.config {
        return f(CheckStatus::Unknown)
            .with_reason(format!("/etc/dnf/automatic.conf could not be read: {e}"));
    }
    let installs = enabled("dnf-automatic-install.timer")
        || (apply && (enabled("dnf-automatic.timer") || enabled("dnf5-automatic.timer")));
    // "default" installs all updates and "security" only security ones: both include security.
    let covers_security = matches!(upgrade_type.as_str(), "default" | "security");
    if installs && covers_security {
        return f(CheckStatus::Pass)
            .with_reason(format!("dnf-automatic installs updates (upgrade_type = {upgrade_type})"));
    }
    if installs {
        return f(CheckStatus::Fail).with_reason(format!(
            "dnf-automatic upgrade_type = {upgrade_type} is not recognised as including security updates"
        ));
    }
    let unanswered: Vec<&String> = o.timers.iter().filter_map(|(_, s)| s.as_ref().err()).collect();
    if !unanswered.is_empty() && o.timers.iter().all(|(_, s)| s.is_err()) {
        return f(CheckStatus::Unknown).with_reason(format!(
            "whether the dnf-automatic timers are enabled could not be read: {}",
            unanswered[0]
        ));
    }
    let reason = if enabled("dnf-automatic.timer") || enabled("dnf5-automatic.timer") {
        "dnf-automatic.timer is enabled but apply_updates is not yes: updates are only downloaded or reported"
    } else if o.config.is_none() && o.timers.iter().all(|(_, s)| *s == Ok(None)) {
        "dnf-automatic is not installed"
    } else {
        "no dnf-automatic timer is enabled"
    };
    f(CheckStatus::Fail).with_reason(reason)
}

/// Whether a systemd unit is active now, from `systemctl is-active`:
/// `Ok(true)` active, `Ok(false)` inactive or failed, `Err` when systemd
/// cannot be asked or prints something else.
pub fn parse_is_active(code: Option<i32>, stdout: &str, stderr: &str) -> Result<bool, ParseError> {
    match stdout.lines().next().unwrap_or("").trim() {
        "active" | "reloading" | "refreshing" => Ok(true),
        "inactive" | "failed" | "deactivating" | "dead" => Ok(false),
        other => Err(ParseError::new(format!("exited with {code:?}: {} {}", other, stderr.trim()))
            .in_command("systemctl is-active")),
    }
}

/// A unit's [`parse_is_active`] state, or why systemd could not be asked.
fn unit_active(host: &dyn Host, unit: &str) -> Result<bool, String> {
    match host.run("systemctl", &["is-active", unit]) {
        Ok(out) => parse_is_active(out.code, &out.stdout, &out.stderr).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What a RHEL/CentOS 7 host showed of yum-cron.
#[derive(Debug, Clone)]
pub struct YumCronObserved {
    /// `/etc/yum/yum-cron.conf`, or why it could not be read (`None`: absent).
    pub daily: Option<Result<String, HostError>>,
    /// `/etc/yum/yum-cron-hourly.conf`, likewise.
    pub hourly: Option<Result<String, HostError>>,
    /// `systemctl is-enabled yum-cron.service`, see [`parse_is_enabled`].
    pub enabled: Result<Option<bool>, String>,
    /// `systemctl is-active yum-cron.service`, see [`parse_is_active`].
    pub active: Result<bool, String>,
}

/// The `[commands]` settings of one yum-cron configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct YumCronCommands {
    pub apply_updates: bool,
    pub download_updates: bool,
    pub update_cmd: String,
}

/// Reads `[commands]` of a yum-cron configuration, with yum-cron's own
/// defaults for what is not set (`update_cmd = default`, nothing applied
/// or downloaded).
pub fn parse_yum_cron(text: &str) -> YumCronCommands {
    let flag = |key: &str| ini_value(text, "commands", key).is_some_and(|v| truthy(&v));
    YumCronCommands {
        apply_updates: flag("apply_updates"),
        download_updates: flag("download_updates"),
        update_cmd: ini_value(text, "commands", "update_cmd").unwrap_or_else(|| "default".into()),
    }
}

/// Whether a yum-cron `update_cmd` installs every security update:
/// `default` (all updates), `security`, `minimal-security`. `minimal` takes
/// bug-fix advisories only and the `-severity:Critical` forms only Critical
/// ones.
pub fn yum_cmd_covers_security(cmd: &str) -> bool {
    matches!(cmd.trim(), "default" | "security" | "minimal-security")
}

/// Decides the check for a yum-cron host.
pub fn evaluate_yum_cron(o: &YumCronObserved) -> Finding {
    let read = |c: &Option<Result<String, HostError>>| {
        c.as_ref().and_then(|r| r.as_ref().ok()).map(|t| parse_yum_cron(t))
    };
    let (daily, hourly) = (read(&o.daily), read(&o.hourly));
    let raw: String = [&o.daily, &o.hourly]
        .iter()
        .filter_map(|c| c.as_ref().and_then(|r| r.as_ref().ok()).cloned())
        .collect::<Vec<_>>()
        .join("\n");
    let commands_fact = |c: &Option<YumCronCommands>| match c {
        Some(c) => json!({"apply_updates": c.apply_updates, "download_updates": c.download_updates,
                          "update_cmd": c.update_cmd}),
        None => json!(null),
    };
    let f = |status| {
        Finding::new(status, "yum-cron")
            .fact("mechanism", "yum-cron")
            .fact("daily", commands_fact(&daily))
            .fact("hourly", commands_fact(&hourly))
            .fact("service_enabled", o.enabled.clone().ok().flatten())
            .fact("service_active", o.active.clone().ok())
            .with_raw(raw.clone())
    };
    for (path, c) in [("/etc/yum/yum-cron.conf", &o.daily), ("/etc/yum/yum-cron-hourly.conf", &o.hourly)] {
        if let Some(Err(e)) = c {
            return f(CheckStatus::Unknown).with_reason(format!("{path} could not be read: {e}"));
        }
    }
    if daily.is_none() && hourly.is_none() {
        return f(CheckStatus::Fail).with_reason("no automatic update mechanism: yum-cron is not installed");
    }
    let runs = [("yum-cron.conf", &daily), ("yum-cron-hourly.conf", &hourly)];
    let installing: Vec<(&str, &YumCronCommands)> =
        runs.iter().filter_map(|(n, c)| c.as_ref().filter(|c| c.apply_updates).map(|c| (*n, c))).collect();
    if installing.is_empty() {
        let downloads = runs.iter().any(|(_, c)| c.as_ref().is_some_and(|c| c.download_updates));
        return f(CheckStatus::Fail).with_reason(if downloads {
            "yum-cron only downloads updates (apply_updates = no): a person must install them"
        } else {
            "yum-cron only checks for updates (apply_updates = no, download_updates = no)"
        });
    }
    let Some((file, cmd)) = installing.iter().find(|(_, c)| yum_cmd_covers_security(&c.update_cmd)) else {
        let (file, c) = installing[0];
        return f(CheckStatus::Fail).with_reason(format!(
            "{file} installs updates with update_cmd = {}, which leaves security updates out",
            c.update_cmd
        ));
    };
    // The cron jobs exit at once unless the service has been started.
    match (&o.enabled, &o.active) {
        (Ok(Some(true)), Ok(true)) => f(CheckStatus::Pass).with_reason(format!(
            "yum-cron installs updates (update_cmd = {} in {file}) and its service is enabled and active",
            cmd.update_cmd
        )),
        (Ok(Some(false)), _) | (Ok(None), _) => f(CheckStatus::Fail)
            .with_reason("yum-cron is configured to install updates, but the yum-cron service is disabled"),
        (Ok(Some(true)), Ok(false)) => f(CheckStatus::Fail).with_reason(
            "the yum-cron service is enabled but not started: its cron jobs install nothing until it runs",
        ),
        (Err(e), _) | (_, Err(e)) => f(CheckStatus::Unknown).with_reason(format!(
            "whether the yum-cron service is enabled and active could not be read: {e}"
        )),
    }
}

/// What a SUSE host showed.
#[derive(Debug, Clone)]
pub struct ZypperObserved {
    pub transactional_update_timer: Result<Option<bool>, String>,
    pub os_update_timer: Result<Option<bool>, String>,
    /// `/etc/sysconfig/automatic_online_update`, if present.
    pub aou: Option<String>,
    /// Which cron directory holds the YaST online-update link, if any.
    pub aou_cron: Option<String>,
}

/// Decides the check for a SUSE host.
pub fn evaluate_zypper(o: &ZypperObserved) -> Finding {
    let aou = o.aou.clone().unwrap_or_default();
    let aou_enabled = sysconfig_value(&aou, "AOU_ENABLE_CRONJOB").is_some_and(|v| truthy(&v));
    let categories = sysconfig_value(&aou, "AOU_PATCH_CATEGORIES").unwrap_or_default();
    let f = |status, backend: &str| {
        Finding::new(status, backend)
            .fact("mechanism", backend)
            .fact("transactional_update_timer", o.transactional_update_timer.clone().ok().flatten())
            .fact("os_update_timer", o.os_update_timer.clone().ok().flatten())
            .fact("aou_enabled", aou_enabled)
            .fact("aou_patch_categories", categories.clone())
            .fact("aou_cron", o.aou_cron.clone())
            .with_raw(aou.clone())
    };
    if o.transactional_update_timer == Ok(Some(true)) {
        return f(CheckStatus::Pass, "transactional-update").with_reason(
            "transactional-update.timer installs updates into a new snapshot, active after the next reboot",
        );
    }
    if o.os_update_timer == Ok(Some(true)) {
        return f(CheckStatus::Pass, "os-update").with_reason("os-update.timer installs updates daily");
    }
    if aou_enabled {
        let security = categories.trim().is_empty() || categories.split_whitespace().any(|c| c == "security");
        return match (&o.aou_cron, security) {
            (Some(dir), true) => f(CheckStatus::Pass, "yast-online-update")
                .with_reason(format!("YaST automatic online update runs from /etc/{dir}")),
            (None, _) => f(CheckStatus::Fail, "yast-online-update")
                .with_reason("AOU_ENABLE_CRONJOB is true but no online-update cron job is installed"),
            (Some(_), false) => f(CheckStatus::Fail, "yast-online-update").with_reason(format!(
                "automatic online update excludes security patches (categories: {categories})"
            )),
        };
    }
    if let (Err(e), Err(_)) = (&o.transactional_update_timer, &o.os_update_timer) {
        return f(CheckStatus::Unknown, "zypper").with_reason(format!(
            "no automatic online update configured and the timers could not be read: {e}"
        ));
    }
    f(CheckStatus::Fail, "zypper").with_reason(
        "no automatic update mechanism is enabled (transactional-update.timer, os-update.timer, YaST online update)",
    )
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    match host.run("apt-config", &["dump"]) {
        Ok(out) if out.success() => return super::apt::gather(host, out.stdout),
        Ok(out) => {
            return Finding::unknown(
                "unattended-upgrades",
                format!("apt-config dump exited with {:?}: {}", out.code, out.stderr.trim()),
            );
        }
        Err(HostError::NotFound { .. }) => {}
        Err(e) => return Finding::unknown("unattended-upgrades", format!("apt-config dump: {e}")),
    }
    let read_optional = |path: &str| match host.read_text(path) {
        Ok(t) => Some(Ok(t)),
        Err(HostError::NoFile { .. }) => None,
        Err(e) => Some(Err(e)),
    };
    let yum_cron = |daily, hourly| {
        evaluate_yum_cron(&YumCronObserved {
            daily,
            hourly,
            enabled: unit_enabled(host, "yum-cron.service"),
            active: unit_active(host, "yum-cron.service"),
        })
    };
    // RHEL/CentOS 7: yum-cron, unless dnf-automatic is configured as well.
    let (daily, hourly) =
        (read_optional("/etc/yum/yum-cron.conf"), read_optional("/etc/yum/yum-cron-hourly.conf"));
    if (daily.is_some() || hourly.is_some()) && !host.exists("/etc/dnf/automatic.conf") {
        return yum_cron(daily, hourly);
    }
    if host.exists("/etc/dnf") {
        let config = read_optional("/etc/dnf/automatic.conf");
        let timers = ["dnf-automatic-install.timer", "dnf-automatic.timer", "dnf5-automatic.timer"]
            .iter()
            .map(|t| (t.to_string(), unit_enabled(host, t)))
            .collect();
        return evaluate_dnf(&DnfObserved { config, timers });
    }
    if host.exists("/etc/yum.conf") || host.exists("/etc/yum") {
        // yum without dnf and without yum-cron: nothing installs updates.
        return yum_cron(None, None);
    }
    if host.exists("/etc/zypp") {
        let aou_cron = ["cron.daily", "cron.weekly", "cron.monthly"]
            .iter()
            .find(|d| host.exists(&format!("/etc/{d}/opensuse.org-online_update")))
            .map(|d| d.to_string());
        return evaluate_zypper(&ZypperObserved {
            transactional_update_timer: unit_enabled(host, "transactional-update.timer"),
            os_update_timer: unit_enabled(host, "os-update.timer"),
            aou: host.read_text("/etc/sysconfig/automatic_online_update").ok(),
            aou_cron,
        });
    }
    Finding::unknown("none", "no supported package tooling found (apt, dnf, yum, zypper)")
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
