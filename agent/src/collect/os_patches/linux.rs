//! The Linux backends of the `os_patches` check.

use serde_json::json;

use super::MAX_LIST_AGE_DAYS;
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// A pending upgrade.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub package: String,
    pub security: bool,
}

/// Parses `apt-get -s dist-upgrade` output: one `Inst` line per upgrade.
pub fn parse_apt_simulation(text: &str) -> Vec<Pending> {
    text.lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|rest| {
            let package = rest.split_whitespace().next()?.to_string();
            // The origin list is in the last parenthesised group: "(ver Origin:suite, ... [arch])".
            let origin = rest.rfind('(').map(|i| &rest[i..]).unwrap_or("");
            let security = origin.to_ascii_lowercase().contains("-security")
                || origin.contains("Debian-Security")
                || origin.contains("Ubuntu:") && origin.contains("security");
            Some(Pending { package, security })
        })
        .collect()
}

/// Parses `dnf -q updateinfo list --security`: `ADVISORY  SEVERITY/Sec.  PACKAGE` lines.
pub fn parse_dnf_security(text: &str) -> Vec<Pending> {
    text.lines()
        .filter(|l| {
            l.contains("/Sec.")
                || l.contains(" Sec. ")
                || l.split_whitespace().nth(1).is_some_and(|s| s.ends_with("Sec."))
        })
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|p| Pending { package: p.to_string(), security: true })
        .collect()
}

/// Orders kernel release strings numerically (`6.1.0-28-amd64` > `6.1.0-9-amd64`).
pub fn kernel_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The newest kernel among `/boot` entries named `vmlinuz-<release>`.
pub fn newest_kernel(boot_entries: &[String]) -> Option<String> {
    boot_entries
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .max_by_key(|r| kernel_key(r))
        .map(str::to_string)
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `apt` or `dnf`, with the simulation output, or why it failed.
    pub manager: Option<(String, Result<String, String>)>,
    /// Unix time the package lists were last refreshed.
    pub lists_updated_at: Option<i64>,
    pub running_kernel: Option<String>,
    pub boot_entries: Vec<String>,
    pub reboot_required: bool,
}

/// Decides the check; `now` is Unix seconds.
pub fn evaluate(o: &Observed, now: i64) -> Finding {
    let Some((manager, output)) = &o.manager else {
        return Finding::unknown("none", "no supported package manager (apt, dnf) found");
    };
    let text = match output {
        Ok(t) => t,
        Err(e) => return Finding::unknown(manager, format!("{manager} could not list pending updates: {e}")),
    };
    let pending = if manager == "apt" { parse_apt_simulation(text) } else { parse_dnf_security(text) };
    let security: Vec<&str> = pending.iter().filter(|p| p.security).map(|p| p.package.as_str()).collect();
    let age_days = o.lists_updated_at.map(|t| (now - t).max(0) / 86_400);
    let newest = newest_kernel(&o.boot_entries);
    let kernel_outdated = match (&o.running_kernel, &newest) {
        (Some(run), Some(new)) => kernel_key(new) > kernel_key(run),
        _ => false,
    };
    let f = |status| {
        Finding::new(status, manager)
            .fact("package_manager", manager.as_str())
            .fact("pending_upgrades", pending.len())
            .fact("pending_security_upgrades", security.len())
            .fact("security_packages", security.iter().take(20).copied().collect::<Vec<_>>())
            .fact("lists_age_days", age_days.map_or(json!(null), |d| json!(d)))
            .fact("running_kernel", o.running_kernel.clone().map_or(json!(null), |k| json!(k)))
            .fact("newest_kernel", newest.clone().map_or(json!(null), |k| json!(k)))
            .fact("reboot_required", o.reboot_required)
            .with_raw(text.clone())
    };
    let mut problems = Vec::new();
    if !security.is_empty() {
        let names = security.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = if security.len() > 5 { ", ..." } else { "" };
        problems.push(format!("{} security updates pending ({names}{more})", security.len()));
    }
    if kernel_outdated || o.reboot_required {
        problems.push(match (&o.running_kernel, &newest) {
            (Some(r), Some(n)) if kernel_outdated => {
                format!("running kernel {r} is older than installed {n}; reboot required")
            }
            _ => "a reboot is required to complete updates".to_string(),
        });
    }
    if manager == "apt" {
        match age_days {
            Some(d) if d > MAX_LIST_AGE_DAYS => problems.push(format!(
                "package lists are {d} days old (limit {MAX_LIST_AGE_DAYS}); pending updates are not known"
            )),
            Some(_) => {}
            None if problems.is_empty() => {
                return f(CheckStatus::Unknown)
                    .with_reason("the age of the package lists is unknown, so \"no pending updates\" cannot be vouched for");
            }
            None => {}
        }
    }
    if problems.is_empty() {
        f(CheckStatus::Pass)
            .with_reason(format!("no security updates pending; {} other upgrades", pending.len()))
    } else {
        f(CheckStatus::Fail).with_reason(problems.join("; "))
    }
}

/// Reads the package state through the host. Changes nothing.
pub fn observe(host: &dyn Host) -> Observed {
    let manager = match host.run("apt-get", &["-s", "-o", "Debug::NoLocking=1", "dist-upgrade"]) {
        Ok(out) if out.success() => Some(("apt".to_string(), Ok(out.stdout))),
        Ok(out) => Some(("apt".to_string(), Err(format!("exit {:?}: {}", out.code, out.stderr.trim())))),
        // dnf, or yum on older RHEL; both print the same updateinfo listing.
        Err(HostError::NotFound { .. }) => ["dnf", "yum"].iter().find_map(|pm| {
            match host.run(pm, &["-q", "updateinfo", "list", "--security"]) {
                Ok(out) if out.success() => Some((pm.to_string(), Ok(out.stdout))),
                Ok(out) => Some((pm.to_string(), Err(format!("exit {:?}: {}", out.code, out.stderr.trim())))),
                Err(HostError::NotFound { .. }) => None,
                Err(e) => Some((pm.to_string(), Err(e.to_string()))),
            }
        }),
        Err(e) => Some(("apt".to_string(), Err(e.to_string()))),
    };
    let lists_updated_at = host
        .run("stat", &["-c", "%Y", "/var/lib/apt/periodic/update-success-stamp", "/var/lib/apt/lists"])
        .ok()
        .and_then(|out| out.stdout.lines().filter_map(|l| l.trim().parse::<i64>().ok()).max());
    Observed {
        manager,
        lists_updated_at,
        running_kernel: host.read_text("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_string()),
        boot_entries: host.read_dir("/boot").unwrap_or_default(),
        reboot_required: host.read_file("/var/run/reboot-required").is_ok(),
    }
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    evaluate(&observe(host), ctx.now)
}
