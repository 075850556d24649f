//! The Debian/Ubuntu backend of the `auto_updates` check: unattended-upgrades.
//!
//! Reads `dpkg-query -W -f ${Status} unattended-upgrades` (the package must
//! be `install ok installed`); `apt-config dump`, the merged effective APT
//! configuration (so `/etc/apt/apt.conf.d/20auto-upgrades` and
//! `50unattended-upgrades` with comments and overrides resolved):
//! `APT::Periodic::Enable`, `APT::Periodic::Update-Package-Lists`,
//! `APT::Periodic::Unattended-Upgrade`, the
//! `Unattended-Upgrade::Allowed-Origins` / `Origins-Pattern` entries matched
//! against the archives apt uses (the `Release`/`InRelease` files of
//! `/var/lib/apt/lists`, [`super::apt_origins`]) with `/etc/os-release` for
//! `${distro_id}`/`${distro_codename}`, and the package black- and
//! whitelists; `systemctl is-enabled apt-daily-upgrade.timer` (without
//! systemd the cron job runs it instead, so an unanswered systemctl is not
//! held against it); what runs the job at all: systemd as PID 1
//! (`/proc/1/comm`), or a cron daemon (`pgrep -x cron`) with Debian's
//! `/etc/cron.daily/apt-compat`. A timer reads "enabled" on a host where no
//! systemd runs it.
//!
//! Status rule: `pass` only when unattended-upgrades would install the
//! security archive's updates of the essential packages on a schedule that
//! runs; `unknown` when the archives or the lists cannot be read.

use serde_json::json;

use super::apt_origins::{Distro, Release, allowed_security, legacy_pattern, parse_release};
use super::apt_rules::{ESSENTIAL_PACKAGES, apt_runner, held_back, periodic_days};
use super::linux::parse_is_enabled;
use crate::collect::Finding;
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// The automatic-update settings in `apt-config dump` output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AptPeriodic {
    /// `APT::Periodic::Enable` (unset means enabled).
    pub enable: bool,
    /// Interval in days of `Update-Package-Lists` and `Unattended-Upgrade` (0: off).
    pub update_lists_days: u32,
    pub unattended_upgrade_days: u32,
    /// The origins unattended-upgrades may install from, as configured.
    pub origins: Vec<String>,
    /// The same as unattended-upgrades matches them (`Allowed-Origins`
    /// turned into patterns).
    pub patterns: Vec<String>,
    /// `Unattended-Upgrade::Package-Blacklist` and `-Whitelist` patterns
    /// (regular expressions matched at the start of package names).
    pub blacklist: Vec<String>,
    pub whitelist: Vec<String>,
    /// `Unattended-Upgrade::Package-Whitelist-Strict`: only then does the
    /// whitelist keep other packages back (otherwise it only raises the
    /// whitelisted packages' priority).
    pub whitelist_strict: bool,
}

/// Parses `apt-config dump` (`Key "value";` lines).
pub fn parse_apt_config(text: &str) -> AptPeriodic {
    let mut p = AptPeriodic { enable: true, ..AptPeriodic::default() };
    for line in text.lines() {
        let Some((key, rest)) = line.trim().split_once(' ') else { continue };
        let value = rest.trim().trim_end_matches(';').trim_matches('"');
        match key {
            "APT::Periodic::Enable" => p.enable = periodic_days(value) > 0,
            "APT::Periodic::Update-Package-Lists" => p.update_lists_days = periodic_days(value),
            "APT::Periodic::Unattended-Upgrade" => p.unattended_upgrade_days = periodic_days(value),
            "Unattended-Upgrade::Allowed-Origins::" => {
                p.origins.push(value.to_string());
                p.patterns.push(legacy_pattern(value));
            }
            "Unattended-Upgrade::Origins-Pattern::" => {
                p.origins.push(value.to_string());
                p.patterns.push(value.to_string());
            }
            "Unattended-Upgrade::Package-Blacklist::" => p.blacklist.push(value.to_string()),
            "Unattended-Upgrade::Package-Whitelist::" => p.whitelist.push(value.to_string()),
            // apt's boolean words (`find_b`).
            "Unattended-Upgrade::Package-Whitelist-Strict" => {
                p.whitelist_strict = matches!(
                    value.to_ascii_lowercase().as_str(),
                    "1" | "yes" | "true" | "with" | "on" | "enable"
                )
            }
            _ => {}
        }
    }
    p
}

/// What a Debian/Ubuntu host showed.
#[derive(Debug, Clone)]
pub struct AptObserved {
    /// `dpkg-query` status of unattended-upgrades (`None`: not known to dpkg).
    pub package_status: Option<String>,
    pub apt_config: String,
    /// `apt-daily-upgrade.timer` state, see [`parse_is_enabled`].
    pub timer: Result<Option<bool>, String>,
    /// What runs the daily job, when it can be told: `Ok(name)` (`systemd`
    /// as PID 1, or `cron` running Debian's `/etc/cron.daily/apt-compat`),
    /// `Err(why nothing does)`; `None` when PID 1 cannot be read.
    pub runner: Option<Result<&'static str, String>>,
    /// The archives apt uses (its lists' `Release` files), or why they
    /// could not be read.
    pub releases: Result<Vec<Release>, HostError>,
    pub distro: Distro,
}

/// Decides the check for a Debian/Ubuntu host.
pub fn evaluate_apt(o: &AptObserved) -> Finding {
    let p = parse_apt_config(&o.apt_config);
    let installed = o.package_status.as_deref().is_some_and(|s| s.trim() == "install ok installed");
    let security = match &o.releases {
        Ok(releases) => allowed_security(&p.patterns, releases, &o.distro).map_err(|e| e.to_string()),
        Err(e) => Err(format!("the archives apt uses could not be read: {e}")),
    };
    let allowed: Vec<String> =
        security.as_ref().map_or(Vec::new(), |a| a.iter().map(|r| r.suite.clone()).collect());
    let timer = match &o.timer {
        Ok(Some(b)) => json!(b),
        _ => json!(null),
    };
    let f = |status| {
        Finding::new(status, "unattended-upgrades")
            .fact("mechanism", "unattended-upgrades")
            .fact("package_installed", installed)
            .fact("periodic_enabled", p.enable)
            .fact("update_package_lists_days", p.update_lists_days)
            .fact("unattended_upgrade_days", p.unattended_upgrade_days)
            .fact("security_origin", !allowed.is_empty())
            .fact("security_archives_allowed", allowed.clone())
            .fact("origins", p.origins.clone())
            .fact("package_blacklist", p.blacklist.clone())
            .fact("package_whitelist", p.whitelist.clone())
            .fact("essential_held_back", held_back(&p).unwrap_or_default())
            .fact("all_essential_held_back", held_back(&p).is_ok_and(|h| h.len() == ESSENTIAL_PACKAGES.len()))
            .fact("timer_enabled", timer.clone())
            .fact(
                "runner",
                match &o.runner {
                    Some(Ok(r)) => json!(r),
                    Some(Err(_)) => json!("none"),
                    None => json!(null),
                },
            )
            .with_raw(format!(
                "dpkg-query unattended-upgrades: {}\n{}",
                o.package_status.as_deref().unwrap_or("not installed"),
                o.apt_config
            ))
    };
    let mut problems = Vec::new();
    if !installed {
        problems.push("the unattended-upgrades package is not installed".to_string());
    }
    if !p.enable {
        problems.push("APT::Periodic::Enable is 0".to_string());
    }
    if p.update_lists_days == 0 {
        problems.push("APT::Periodic::Update-Package-Lists is off".to_string());
    }
    if p.unattended_upgrade_days == 0 {
        problems.push("APT::Periodic::Unattended-Upgrade is off".to_string());
    }
    if installed && let Some(problem) = origin_problem(&security, &o.releases, &p) {
        problems.push(problem);
    }
    if o.timer == Ok(Some(false)) {
        problems.push("apt-daily-upgrade.timer is disabled".to_string());
    }
    if let Some(Err(why)) = &o.runner {
        problems.push(format!("nothing runs the daily apt job: {why}"));
    }
    if let Err(e) = &security
        && installed
        && problems.is_empty()
    {
        return f(CheckStatus::Unknown).with_reason(e.clone());
    }
    match held_back(&p) {
        Ok(held) if held.len() == ESSENTIAL_PACKAGES.len() => problems
            .push(format!("the Package-Blacklist/-Whitelist hold back every package ({})", held.join(", "))),
        Ok(_) => {}
        Err(e) if problems.is_empty() => {
            return f(CheckStatus::Unknown)
                .with_reason(format!("unattended-upgrades' package lists cannot be read: {e}"));
        }
        Err(_) => {}
    }
    if problems.is_empty() {
        let days = p.unattended_upgrade_days;
        f(CheckStatus::Pass)
            .with_reason(format!("unattended-upgrades installs security updates every {days} day(s)"))
    } else {
        f(CheckStatus::Fail).with_reason(problems.join("; "))
    }
}

/// Why unattended-upgrades installs no security update for lack of an
/// allowed security archive, if it does not.
fn origin_problem(
    allowed: &Result<Vec<&Release>, String>,
    releases: &Result<Vec<Release>, HostError>,
    p: &AptPeriodic,
) -> Option<String> {
    let archives = releases.as_deref().unwrap_or_default();
    let security: Vec<&str> = archives.iter().filter(|r| r.is_security()).map(|r| r.suite.as_str()).collect();
    match allowed {
        Ok(_) if security.is_empty() => Some(
            "apt uses no security archive (no Release file in /var/lib/apt/lists is one), \
             so there is nothing for unattended-upgrades to install security updates from"
                .to_string(),
        ),
        Ok(a) if a.is_empty() => Some(format!(
            "no security archive is allowed for unattended-upgrades: its origins ({}) match none of {}",
            p.origins.join("; "),
            security.join(", ")
        )),
        Ok(_) | Err(_) => None,
    }
}

/// Where apt keeps the lists it fetched, with each archive's `Release`.
const LISTS: &str = "/var/lib/apt/lists";

/// The archives apt uses: every `*_Release` / `*_InRelease` of its lists.
pub fn releases(host: &dyn Host) -> Result<Vec<Release>, HostError> {
    let names = host.read_dir(LISTS)?;
    let mut out = Vec::new();
    for name in names.iter().filter(|n| n.ends_with("_InRelease") || n.ends_with("_Release")) {
        let text = host.read_text(&format!("{LISTS}/{name}"))?;
        out.extend(parse_release(name, &text));
    }
    Ok(out)
}

/// Gathers and evaluates on a Debian/Ubuntu host, given its `apt-config dump`.
pub fn gather(host: &dyn Host, apt_config: String) -> Finding {
    let package_status = match host.run("dpkg-query", &["-W", "-f", "${Status}", "unattended-upgrades"]) {
        Ok(p) if p.success() => Some(p.stdout),
        _ => None,
    };
    let timer = match host.run("systemctl", &["is-enabled", "apt-daily-upgrade.timer"]) {
        Ok(out) => parse_is_enabled(out.code, &out.stdout, &out.stderr).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let pid1 = host.read_text("/proc/1/comm").ok();
    let cron = host.run("pgrep", &["-x", "cron"]).ok().map(|o| o.success());
    let runner = apt_runner(pid1.as_deref(), cron, host.exists("/etc/cron.daily/apt-compat"));
    let distro = Distro::from_os_release(&host.read_text("/etc/os-release").unwrap_or_default());
    evaluate_apt(&AptObserved { package_status, apt_config, timer, runner, releases: releases(host), distro })
}
