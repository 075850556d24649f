//! The Linux backends of the `software_inventory` check.
//!
//! Lists the installed packages from the package database:
//! - dpkg (Debian, Ubuntu): `dpkg-query -W -f
//!   '${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n'`; the
//!   status column keeps only installed packages (second letter `i`), not
//!   removed ones whose configuration files remain (`rc`);
//! - rpm (RHEL, Fedora, SUSE), when dpkg-query is not installed:
//!   `rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n'`, leaving out
//!   the `gpg-pubkey` entries, which are imported signing keys, not software.
//!
//! Status rule: facts only. `pass` when the package database was read (facts
//! `package_manager`, `package_count`, `packages` = [{name, version, arch}],
//! sorted by name); `unknown` when no package manager answers or its output
//! holds no package.

use serde_json::json;

use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// The dpkg-query format (dpkg expands `\t` and `\n` itself).
pub const DPKG_FORMAT: &str = "${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\n";
/// The rpm query format (rpm expands `\t` and `\n` itself).
pub const RPM_FORMAT: &str = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\n";

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// Parses the dpkg-query output, keeping installed packages.
pub fn parse_dpkg(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let status = f.next()?;
            // Status-Abbrev is want, status, error flag: "ii ", "rc ", "hi ".
            if status.chars().nth(1) != Some('i') {
                return None;
            }
            Some(Package {
                name: f.next()?.to_string(),
                version: f.next()?.to_string(),
                arch: f.next()?.trim_end().to_string(),
            })
        })
        .collect()
}

/// Parses the rpm output, leaving out imported signing keys.
pub fn parse_rpm(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Package {
                name: f.next()?.to_string(),
                version: f.next()?.to_string(),
                arch: f.next()?.trim_end().to_string(),
            })
        })
        .filter(|p| p.name != "gpg-pubkey" && !p.name.is_empty())
        .collect()
}

/// Decides the check from a package manager's name and output.
pub fn evaluate(manager: &str, text: &str) -> Finding {
    let mut packages = if manager == "dpkg" { parse_dpkg(text) } else { parse_rpm(text) };
    packages.sort();
    if packages.is_empty() {
        return Finding::unknown(manager, format!("{manager} listed no installed package"))
            .with_raw(text.to_string());
    }
    let list: Vec<serde_json::Value> =
        packages.iter().map(|p| json!({"name": p.name, "version": p.version, "arch": p.arch})).collect();
    Finding::new(CheckStatus::Pass, manager)
        .with_reason(format!("{} packages installed ({manager})", packages.len()))
        .fact("package_manager", manager)
        .fact("package_count", packages.len())
        .fact("packages", list)
        .with_raw(text.to_string())
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let mut notes = Vec::new();
    let mut fallback = None;
    for (manager, program, args) in [
        ("dpkg", "dpkg-query", vec!["-W", "-f", DPKG_FORMAT]),
        ("rpm", "rpm", vec!["-qa", "--qf", RPM_FORMAT]),
    ] {
        match host.run(program, &args) {
            Ok(out) if out.success() => {
                let f = evaluate(manager, &out.stdout);
                if f.status == CheckStatus::Pass {
                    return f;
                }
                // An empty dpkg database next to rpm (or the reverse): try the other one.
                fallback.get_or_insert(f);
            }
            Ok(out) => notes.push(format!("{program} exited with {:?}: {}", out.code, out.stderr.trim())),
            Err(HostError::NotFound { .. }) => notes.push(format!("{program} not installed")),
            Err(e) => notes.push(e.to_string()),
        }
    }
    fallback.unwrap_or_else(|| {
        Finding::unknown("none", format!("no package database could be read ({})", notes.join("; ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_packages_and_keys_are_left_out() {
        let d = parse_dpkg("ii \tbash\t5.2.15-2+b7\tamd64\nrc \told-lib\t1.0-1\tamd64\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "bash");
        let r = parse_rpm("bash\t5.1.8-9.el9\tx86_64\ngpg-pubkey\tfd431d51-4ae0493b\t(none)\n");
        assert_eq!(r.len(), 1);
    }
}
