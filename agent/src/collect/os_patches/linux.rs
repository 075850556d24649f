//! The Linux backends of the `os_patches` check.
//!
//! apt: `apt list --upgradable`, every installed package whose candidate
//! version (after pinning) is newer, held and kept-back packages included,
//! with the archives that offer it; a package is a security update when one
//! of them is a security archive (its name ends in `-security`, or the
//! lists' `Release` file of that suite says so, as Debian's
//! `Label: Debian-Security` does). Packages dpkg holds
//! (`/var/lib/dpkg/status`) are named (fact `held_security_packages`): a
//! held security update is still pending. Where `apt` is missing,
//! `apt-get -s dist-upgrade` (which leaves out held packages, so where dpkg
//! holds any it runs again with `--ignore-hold`). Listing needs no
//! dependency solving: on a host with a hundred pending upgrades it costs a
//! third of the simulation.
//!
//! Status rule: fail when a security update is pending, the running kernel
//! is older than the newest installed one or a reboot is required, or (apt,
//! zypper) the package lists are older than [`MAX_LIST_AGE_DAYS`]; pass when
//! none is; unknown when the package manager cannot answer, the list age is
//! unknown (apt, zypper), or the output is not understood (a zypper table
//! without its columns, a `dnf updateinfo` line not in the `SEVERITY/Sec.`
//! form, such as dnf5's table).

use serde_json::json;

use super::MAX_LIST_AGE_DAYS;
use crate::collect::{Context, Finding, ParseError};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// A pending upgrade.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub package: String,
    pub security: bool,
}

/// Parses `apt list --upgradable`: `name/archive[,archive...] version arch
/// [upgradable from: old]` lines (the `Listing...` header and anything else
/// skipped). An archive in `security_suites`, or named `*-security`, makes
/// the upgrade a security one.
pub fn parse_apt_list(text: &str, security_suites: &[String]) -> Vec<Pending> {
    text.lines()
        .filter(|l| l.contains("[upgradable from:"))
        .filter_map(|l| {
            let (package, rest) = l.split_once('/')?;
            let archives = rest.split_whitespace().next()?;
            let security = archives
                .split(',')
                .any(|a| a.ends_with("-security") || security_suites.iter().any(|s| s == a));
            Some(Pending { package: package.to_string(), security })
        })
        .collect()
}

/// Whether apt's output is `apt list --upgradable`'s rather than a simulation's.
fn is_apt_list(text: &str) -> bool {
    text.starts_with("Listing...") || text.contains("[upgradable from:")
}

/// The packages dpkg holds (`Status: hold ...` in its status file).
pub fn parse_dpkg_holds(status: &str) -> Vec<String> {
    let mut holds = Vec::new();
    let mut package = None;
    for line in status.lines() {
        if let Some(name) = line.strip_prefix("Package: ") {
            package = Some(name.trim());
        } else if line.starts_with("Status: hold ")
            && let Some(name) = package
        {
            holds.push(name.to_string());
        }
    }
    holds
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

fn is_dnf_security_line(l: &str) -> bool {
    l.contains("/Sec.")
        || l.contains(" Sec. ")
        || l.split_whitespace().nth(1).is_some_and(|s| s.ends_with("Sec."))
}

/// Parses `dnf -q updateinfo list --security`: `ADVISORY  SEVERITY/Sec.  PACKAGE` lines.
pub fn parse_dnf_security(text: &str) -> Vec<Pending> {
    text.lines()
        .filter(|l| is_dnf_security_line(l))
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|p| Pending { package: p.to_string(), security: true })
        .collect()
}

/// The first line of `dnf updateinfo` output that is neither an advisory in
/// the `SEVERITY/Sec.` form nor a known banner (dnf5 prints another table).
fn unrecognised_dnf_line(text: &str) -> Option<&str> {
    const BANNERS: &[&str] =
        &["Updating Subscription Management repositories", "Last metadata expiration check"];
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !is_dnf_security_line(l) && !BANNERS.iter().any(|b| l.starts_with(b)))
}

/// Parses `zypper list-patches` (SUSE): a `|`-separated table whose header
/// names the columns (`Repository | Name | Category | Severity | ... |
/// Status | ...`); the needed patches of category `security` are security
/// updates. "No updates found." gives an empty list.
pub fn parse_zypper_patches(text: &str) -> Result<Vec<Pending>, ParseError> {
    let printed = |what: String| ParseError::new(what).in_command("zypper");
    let mut lines = text.lines().map(str::trim);
    let header = lines.by_ref().find(|l| l.contains('|') && l.contains("Category"));
    let Some(header) = header else {
        return if text.contains("No updates found") || text.contains("Found 0 applicable patches") {
            Ok(Vec::new())
        } else {
            Err(printed("printed no patch table".into()))
        };
    };
    let cols: Vec<&str> = header.split('|').map(str::trim).collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(name), Some(category)) = (at("Name"), at("Category")) else {
        return Err(printed(format!("patch table without Name and Category columns: {header}")));
    };
    let status = at("Status");
    Ok(lines
        .filter(|l| l.contains('|') && !l.starts_with('-'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            let needed = status.is_none_or(|i| f.get(i).is_some_and(|s| *s == "needed"));
            let package = f.get(name).filter(|n| !n.is_empty())?.to_string();
            let security = f.get(category).is_some_and(|c| *c == "security");
            needed.then_some(Pending { package, security })
        })
        .collect())
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
    /// `apt`, `dnf`, `yum` or `zypper`, with its output, or why it failed.
    pub manager: Option<(String, Result<String, String>)>,
    /// Unix time the package lists were last refreshed.
    pub lists_updated_at: Option<i64>,
    pub running_kernel: Option<String>,
    pub boot_entries: Vec<String>,
    pub reboot_required: bool,
    /// apt only: the same simulation with holds ignored (`--ignore-hold`),
    /// where it answered: a held package's security update is still pending.
    pub apt_ignoring_holds: Option<String>,
    /// apt only: the packages dpkg holds.
    pub apt_holds: Vec<String>,
    /// apt only: the suites whose `Release` file marks a security archive.
    pub security_suites: Vec<String>,
}

/// The pending updates `manager` reported, held ones included, and the held
/// ones apart; `Err` when its output is not understood.
fn pending_updates(
    manager: &str,
    text: &str,
    o: &Observed,
) -> Result<(Vec<Pending>, Vec<Pending>), ParseError> {
    let pending = match manager {
        "apt" if is_apt_list(text) => {
            // The listing has the held packages; dpkg said which they are.
            let pending = parse_apt_list(text, &o.security_suites);
            let held = pending.iter().filter(|p| o.apt_holds.contains(&p.package)).cloned().collect();
            return Ok((pending, held));
        }
        "apt" => parse_apt_simulation(text),
        "zypper" => parse_zypper_patches(text)?,
        // Empty output is "no advisory"; anything else must be understood.
        _ => match unrecognised_dnf_line(text) {
            None => parse_dnf_security(text),
            Some(l) => {
                let why = ParseError::new(format!("printed an unrecognised line: {l}"));
                return Err(why.in_command(format!("{manager} updateinfo")));
            }
        },
    };
    // The simulation leaves held packages out: they are what it would
    // install were the holds lifted.
    let held: Vec<Pending> = match (manager, &o.apt_ignoring_holds) {
        ("apt", Some(all)) => parse_apt_simulation(all)
            .into_iter()
            .filter(|h| !pending.iter().any(|p| p.package == h.package))
            .collect(),
        _ => Vec::new(),
    };
    let all = pending.into_iter().chain(held.iter().cloned()).collect();
    Ok((all, held))
}

/// Decides the check; `now` is Unix seconds.
pub fn evaluate(o: &Observed, now: i64) -> Finding {
    let Some((manager, output)) = &o.manager else {
        return Finding::unknown("none", "no supported package manager (apt, dnf, yum, zypper) found");
    };
    let text = match output {
        Ok(t) => t,
        Err(e) => return Finding::unknown(manager, format!("{manager} could not list pending updates: {e}")),
    };
    let (pending, held) = match pending_updates(manager, text, o) {
        Ok(p) => p,
        Err(why) => return Finding::unknown(manager, why.to_string()).with_raw(text.clone()),
    };
    let held_security: Vec<&str> = held.iter().filter(|p| p.security).map(|p| p.package.as_str()).collect();
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
            .fact("held_security_packages", held_security.iter().take(20).copied().collect::<Vec<_>>())
            .with_raw(text.clone())
    };
    let mut problems = Vec::new();
    if !security.is_empty() {
        let names = security.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = if security.len() > 5 { ", ..." } else { "" };
        let on_hold = if held_security.is_empty() {
            String::new()
        } else {
            format!("; {} of them held back with apt-mark hold", held_security.len())
        };
        problems.push(format!("{} security updates pending ({names}{more}){on_hold}", security.len()));
    }
    if kernel_outdated || o.reboot_required {
        problems.push(match (&o.running_kernel, &newest) {
            (Some(r), Some(n)) if kernel_outdated => {
                format!("running kernel {r} is older than installed {n}; reboot required")
            }
            _ => "a reboot is required to complete updates".to_string(),
        });
    }
    // apt and zypper answer from local metadata: only fresh metadata can vouch.
    if manager == "apt" || manager == "zypper" {
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

/// Most listed security updates whose dpkg selection is asked for.
const MAX_HOLD_QUERIES: usize = 200;

/// Which of the listed security updates dpkg holds, asked of dpkg for
/// those packages alone (its whole status file is large).
fn listed_holds(host: &dyn Host, listing: &str, security_suites: &[String]) -> Vec<String> {
    let names: Vec<String> = parse_apt_list(listing, security_suites)
        .into_iter()
        .filter(|p| p.security)
        .map(|p| p.package)
        .take(MAX_HOLD_QUERIES)
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let mut args = vec!["-W", "-f", "${Package} ${Status}\\n"];
    args.extend(names.iter().map(String::as_str));
    let Ok(out) = host.run("dpkg-query", &args) else { return Vec::new() };
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.starts_with("hold "))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Reads the package state through the host. Changes nothing.
pub fn observe(host: &dyn Host) -> Observed {
    let listed = host
        .run("apt", &["list", "--upgradable"])
        .ok()
        .filter(|out| out.success() && is_apt_list(&out.stdout));
    let simulated = || host.run("apt-get", &["-s", "-o", "Debug::NoLocking=1", "dist-upgrade"]);
    let manager = match listed.map_or_else(simulated, Ok) {
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
    // SUSE: zypper lists needed patches from its cached metadata
    // (--no-refresh: the agent never refreshes); exit 100/101 mean patches
    // (security patches) are needed.
    let manager = manager.or_else(|| {
        match host.run("zypper", &["--non-interactive", "--no-refresh", "list-patches"]) {
            Ok(out) if matches!(out.code, Some(0 | 100 | 101)) => {
                Some(("zypper".to_string(), Ok(out.stdout)))
            }
            Ok(out) => {
                Some(("zypper".to_string(), Err(format!("exit {:?}: {}", out.code, out.stderr.trim()))))
            }
            Err(HostError::NotFound { .. }) => None,
            Err(e) => Some(("zypper".to_string(), Err(e.to_string()))),
        }
    });
    let stamps: Vec<String> = match manager.as_ref().map(|(m, _)| m.as_str()) {
        Some("zypper") => host
            .read_dir("/var/cache/zypp/raw")
            .unwrap_or_default()
            .iter()
            .map(|repo| format!("/var/cache/zypp/raw/{repo}/repodata/repomd.xml"))
            .collect(),
        _ => vec!["/var/lib/apt/periodic/update-success-stamp".into(), "/var/lib/apt/lists".into()],
    };
    let mut args = vec!["-c", "%Y"];
    args.extend(stamps.iter().map(String::as_str));
    let lists_updated_at = (!stamps.is_empty())
        .then(|| host.run("stat", &args).ok())
        .flatten()
        .and_then(|out| out.stdout.lines().filter_map(|l| l.trim().parse::<i64>().ok()).max());
    let apt = matches!(&manager, Some((m, _)) if m == "apt");
    let listing = apt && manager.as_ref().is_some_and(|(_, out)| out.as_deref().is_ok_and(is_apt_list));
    let security_suites: Vec<String> = match listing {
        true => crate::collect::auto_updates::apt::releases(host)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.is_security())
            .map(|r| r.suite)
            .collect(),
        false => Vec::new(),
    };
    let apt_holds = match (&manager, listing) {
        (Some((_, Ok(text))), true) => listed_holds(host, text, &security_suites),
        _ if apt => host.read_text("/var/lib/dpkg/status").map(|t| parse_dpkg_holds(&t)).unwrap_or_default(),
        _ => Vec::new(),
    };
    // The second simulation costs as much as the first: only where dpkg
    // holds something and apt could not list.
    let apt_ignoring_holds = match manager.as_ref().map(|(m, _)| m.as_str()) {
        Some("apt") if !listing && !apt_holds.is_empty() => host
            .run("apt-get", &["-s", "-o", "Debug::NoLocking=1", "--ignore-hold", "dist-upgrade"])
            .ok()
            .filter(|out| out.success())
            .map(|out| out.stdout),
        _ => None,
    };
    Observed {
        apt_ignoring_holds,
        apt_holds,
        security_suites,
        manager,
        lists_updated_at,
        running_kernel: host.read_text("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_string()),
        boot_entries: host.read_dir("/boot").unwrap_or_default(),
        // Debian/Ubuntu write reboot-required, SUSE's zypper reboot-needed.
        reboot_required: host.exists("/var/run/reboot-required") || host.exists("/run/reboot-needed"),
    }
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    evaluate(&observe(host), ctx.now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt-get -s dist-upgrade` with openssl on hold (apt-mark hold), and
    /// the same with `--ignore-hold` (apt 2.6 output, shortened).
    const HELD: &str = "Reading package lists...\nBuilding dependency tree...\nCalculating upgrade...\n\
        The following packages have been kept back:\n  openssl\n\
        0 upgraded, 0 newly installed, 0 to remove and 1 not upgraded.\n";
    const IGNORING: &str = "Reading package lists...\nBuilding dependency tree...\nCalculating upgrade...\n\
        The following packages will be upgraded:\n  openssl\n1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n\
        Inst openssl [3.0.11-1~deb12u1] (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])\n\
        Conf openssl (3.0.11-1~deb12u2 Debian-Security:12/stable-security [amd64])\n";

    #[test]
    fn a_security_update_on_hold_is_still_pending() {
        let now = 1_800_000_000;
        let o = Observed {
            manager: Some(("apt".into(), Ok(HELD.into()))),
            lists_updated_at: Some(now - 3600),
            running_kernel: None,
            boot_entries: Vec::new(),
            reboot_required: false,
            apt_ignoring_holds: Some(IGNORING.into()),
            apt_holds: vec!["openssl".into()],
            security_suites: Vec::new(),
        };
        let f = evaluate(&o, now);
        assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
        assert!(f.reason.unwrap().contains("1 of them held back with apt-mark hold"));
        assert_eq!(f.facts["held_security_packages"], json!(["openssl"]));
        let unheld = Observed { apt_ignoring_holds: None, ..o.clone() };
        assert_eq!(evaluate(&unheld, now).status, CheckStatus::Pass);
        // The listing names held packages itself; dpkg's status says which.
        let listed =
            Observed { manager: Some(("apt".into(), Ok(LISTED.into()))), apt_ignoring_holds: None, ..o };
        let f = evaluate(&listed, now);
        assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
        assert_eq!(f.facts["held_security_packages"], json!(["openssl"]));
        assert_eq!(
            (f.facts["pending_upgrades"].as_u64(), f.facts["pending_security_upgrades"].as_u64()),
            (Some(2), Some(1))
        );
    }

    /// `apt list --upgradable` (apt 2.6): a security update and another one.
    const LISTED: &str = "Listing...\nopenssl/oldstable-security 3.0.17-1~deb12u3 amd64 [upgradable from: 3.0.17-1~deb12u2]\n\
        tzdata/oldstable-updates 2025b-0+deb12u2 all [upgradable from: 2025b-0+deb12u1]\n";

    #[test]
    fn listed_upgrades_are_security_ones_by_their_archives() {
        let p = parse_apt_list(LISTED, &[]);
        assert_eq!(
            p.iter().map(|p| (p.package.as_str(), p.security)).collect::<Vec<_>>(),
            [("openssl", true), ("tzdata", false)]
        );
        // Debian 10's security suite had no -security name; its Release file's label tells.
        let old =
            "Listing...\nopenssl/oldoldstable 1.1.1n-0+deb10u6 amd64 [upgradable from: 1.1.1n-0+deb10u5]\n";
        assert!(!parse_apt_list(old, &[])[0].security);
        assert!(parse_apt_list(old, &["oldoldstable".to_string()])[0].security);
        let status =
            "Package: openssl\nStatus: hold ok installed\n\nPackage: bash\nStatus: install ok installed\n";
        assert_eq!(parse_dpkg_holds(status), ["openssl"]);
    }
}
