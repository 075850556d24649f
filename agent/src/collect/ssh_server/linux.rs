//! The Linux backend of the `ssh_server` check.
//!
//! Finds the OpenSSH server binary (`/usr/sbin/sshd`), asks systemd whether
//! it is running or enabled (unit `ssh` on Debian/Ubuntu, `sshd` on
//! RHEL/Fedora/SUSE), and evaluates `sshd -T`. No binary: `not_applicable`.
//! Installed but neither running nor enabled: `not_applicable` too, with the
//! reason (nothing listens). When systemd cannot answer (containers), the
//! configuration is evaluated anyway: a server that may run is judged by
//! what it would accept.
//!
//! `sshd -T` alone prints the settings outside every `Match` block, so
//! each block of the configuration (includes followed) is also asked
//! about: `sshd -T -C` for a connection that meets it (`matches.rs`). A
//! block that turns password or root logins on for some connections fails
//! the check, naming the block; one no connection can be built for is
//! `unknown`.

use serde_json::json;

use super::matches::{Directive, NoSpec, Spec, directives, spec_for, wildcard};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

const SSHD: &str = "/usr/sbin/sshd";

/// Service state from `systemctl is-active` / `is-enabled` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Running,
    Enabled,
    Off,
    Unknown,
}

/// Combines `systemctl is-active U` and `systemctl is-enabled U` outputs.
pub fn parse_service(active: Option<&str>, enabled: Option<&str>) -> Service {
    match (active.map(str::trim), enabled.map(str::trim)) {
        (Some("active") | Some("reloading") | Some("activating"), _) => Service::Running,
        (_, Some("enabled") | Some("enabled-runtime") | Some("static") | Some("indirect")) => {
            Service::Enabled
        }
        (Some("inactive") | Some("failed"), Some("disabled") | Some("masked") | Some("masked-runtime")) => {
            Service::Off
        }
        _ => Service::Unknown,
    }
}

/// What sshd said for a connection meeting one `Match` block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The criteria as written.
    pub criteria: String,
    /// The connection asked about and `sshd -T -C`'s output, or why not.
    pub outcome: Result<(Spec, Result<String, String>), NoSpec>,
}

/// Evaluates what was read: the service state, the `sshd -T` result and
/// what sshd says for each `Match` block (or why they could not be read).
pub fn evaluate(
    service: Service,
    sshd_t: Result<String, String>,
    blocks: Result<Vec<Block>, String>,
) -> Finding {
    if service == Service::Off {
        return Finding::new(CheckStatus::NotApplicable, "openssh")
            .with_reason("sshd is installed but neither running nor enabled")
            .fact("service", "off");
    }
    let state = match service {
        Service::Running => "running",
        Service::Enabled => "enabled",
        _ => "unknown",
    };
    let global = match sshd_t {
        Ok(text) => super::evaluate_sshd_t(&text, "openssh").fact("service", state),
        Err(why) => return Finding::unknown("openssh", why).fact("service", state),
    };
    match blocks {
        Ok(blocks) => with_blocks(global, &blocks),
        Err(why) if global.status == CheckStatus::Pass => {
            let reason = format!("the Match blocks of the configuration could not be read: {why}");
            let mut f = global.with_reason(reason);
            f.status = CheckStatus::Unknown;
            f
        }
        Err(_) => global,
    }
}

/// The facts of a block's settings (those the policy judges).
const SETTINGS: [&str; 8] = [
    "permit_root_login",
    "password_authentication",
    "kbd_interactive_authentication",
    "permit_empty_passwords",
    "max_auth_tries",
    "weak_ciphers",
    "weak_macs",
    "weak_kex",
];

/// The global verdict joined with each block's: a failing block fails the
/// check, an undecided one makes a pass `unknown`.
fn with_blocks(mut f: Finding, blocks: &[Block]) -> Finding {
    let mut failed = Vec::new();
    let mut unclear = Vec::new();
    let mut facts = Vec::new();
    for b in blocks {
        let mut settings = serde_json::Map::new();
        let (connection, status, why) = match &b.outcome {
            Ok((spec, Ok(text))) => {
                let g = super::evaluate_sshd_t(text, "openssh");
                // What the policy holds to its limits, as for the global settings.
                for k in SETTINGS {
                    if let Some(v) = g.facts.get(k) {
                        settings.insert(k.to_string(), v.clone());
                    }
                }
                (spec.arg(), g.status, g.reason.unwrap_or_default())
            }
            Ok((spec, Err(e))) => (spec.arg(), CheckStatus::Unknown, e.clone()),
            Err(NoSpec::Nobody(why)) => (String::new(), CheckStatus::NotApplicable, why.clone()),
            Err(e @ NoSpec::Undecided(_)) => (String::new(), CheckStatus::Unknown, e.to_string()),
        };
        let text = format!("for connections meeting `Match {}` ({connection}): {why}", b.criteria);
        match status {
            CheckStatus::Fail => failed.push(text),
            CheckStatus::Unknown => unclear.push(text),
            _ => {}
        }
        facts.push(json!({"match": b.criteria, "connection": connection, "status": status.as_str(),
                          "reason": why, "settings": settings}));
    }
    let base = f.reason.take().unwrap_or_default();
    let status = match f.status {
        CheckStatus::Pass if !failed.is_empty() => CheckStatus::Fail,
        CheckStatus::Pass if !unclear.is_empty() => CheckStatus::Unknown,
        CheckStatus::Unknown if !failed.is_empty() => CheckStatus::Fail,
        s => s,
    };
    let mut parts: Vec<String> = Vec::new();
    if status == f.status {
        parts.push(base);
    }
    match status {
        CheckStatus::Fail => parts.extend(failed),
        CheckStatus::Unknown => parts.extend(unclear),
        _ => {}
    }
    f.status = status;
    let reason = parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join("; ");
    f.with_reason(reason).fact("match_blocks", facts)
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    // The running daemon's own options change what it applies.
    let daemon =
        host.run("pgrep", &["-a", "-x", "sshd"]).ok().map(|o| daemon_options(&o.stdout)).unwrap_or_default();
    let config = daemon.iter().position(|a| a == "-f").and_then(|i| daemon.get(i + 1)).cloned();
    let config = config.unwrap_or_else(|| CONFIG.to_string());
    let mut argv: Vec<&str> = vec!["-T"];
    argv.extend(daemon.iter().map(String::as_str));
    let sshd_t = match host.run(SSHD, &argv) {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => {
            let msg = out.stderr.trim();
            let why = if msg.contains("hostkeys") || msg.contains("Permission denied") {
                format!("sshd -T needs root to read the host keys: {msg}")
            } else {
                format!("sshd -T exited with {:?}: {msg}", out.code)
            };
            Err(why)
        }
        Err(HostError::NotFound { .. }) => {
            return Finding::new(CheckStatus::NotApplicable, "none").with_reason("no SSH server installed");
        }
        Err(e) => Err(format!("sshd -T: {e}")),
    };
    // The unit that exists is the one `is-enabled` answers for (an unknown
    // unit prints nothing there, but "inactive" for `is-active`).
    let unit = ["ssh", "sshd"].iter().find_map(|unit| {
        let out = host.run("systemctl", &["is-enabled", unit]).ok()?;
        let state = out.stdout.trim().to_string();
        (!state.is_empty()).then_some((*unit, state))
    });
    let (active, enabled) = match unit {
        Some((unit, enabled)) => {
            let active =
                host.run("systemctl", &["is-active", unit]).ok().map(|o| o.stdout.trim().to_string());
            (active, Some(enabled))
        }
        None => (None, None),
    };
    let service = parse_service(active.as_deref(), enabled.as_deref());
    let options: Vec<&str> = daemon.iter().map(String::as_str).collect();
    let blocks = match_blocks(host, &config, &options);
    private(evaluate(service, sshd_t, blocks.clone()), &blocks.unwrap_or_default(), ctx)
}

/// User names (from `Match User` lists and group members) enter the facts
/// and the reason only as the privacy settings allow.
fn private(mut f: Finding, blocks: &[Block], ctx: &Context) -> Finding {
    for b in blocks {
        let words: Vec<&str> = b.criteria.split_whitespace().collect();
        let listed =
            words.windows(2).filter(|w| w[0].eq_ignore_ascii_case("user")).flat_map(|w| w[1].split(','));
        for name in listed.map(|n| n.trim_start_matches('!')).filter(|n| !n.contains(['*', '?'])) {
            ctx.register(Personal::UserName, name);
        }
        if let Ok((Spec { user: Some(u), .. }, _)) = &b.outcome {
            ctx.register(Personal::UserName, u);
        }
    }
    f.reason = f.reason.map(|r| ctx.scrub(&r));
    if let Some(v) = f.facts.get_mut("match_blocks") {
        *v = serde_json::from_str(&ctx.scrub(&v.to_string())).unwrap_or(serde_json::Value::Null);
    }
    f
}

/// The `-f FILE` and `-o OPTION` arguments of the listening sshd, from
/// `pgrep -a -x sshd` (OpenSSH 9 titles its listener `sshd: /usr/sbin/sshd
/// -D -o ... [listener] ...`; older ones keep the plain command line;
/// per-connection processes, `sshd: alice [priv]`, are skipped). The
/// result is ready to pass to `sshd -T`.
pub fn daemon_options(pgrep: &str) -> Vec<String> {
    for line in pgrep.lines() {
        let mut words = line.split_whitespace().skip(1).peekable();
        if words.peek() == Some(&"sshd:") {
            words.next();
        }
        let Some(binary) = words.next() else { continue };
        if !(binary == "sshd" || binary.ends_with("/sshd")) {
            continue;
        }
        let args: Vec<&str> = words.take_while(|w| *w != "[listener]").collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < args.len() {
            match args[i] {
                flag @ ("-f" | "-o") if i + 1 < args.len() => {
                    out.extend([flag.to_string(), args[i + 1].to_string()]);
                    i += 2;
                }
                a if a.starts_with("-o") && a.len() > 2 => {
                    out.extend(["-o".to_string(), a[2..].to_string()]);
                    i += 1;
                }
                _ => i += 1,
            }
        }
        return out;
    }
    Vec::new()
}

/// The server's configuration file.
const CONFIG: &str = "/etc/ssh/sshd_config";
/// Deepest `Include` nesting followed (sshd's own limit is 16).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Every `Match` block of `config` (includes followed) with what `sshd -T
/// ARGS -C` says for a connection meeting it. A configuration file that
/// does not exist has no blocks (sshd runs on its defaults).
pub fn match_blocks(host: &dyn Host, config: &str, args: &[&str]) -> Result<Vec<Block>, String> {
    let mut criteria = Vec::new();
    read_config(host, config, 0, &mut criteria)?;
    let member_of = |group: &str| group_member(host, group);
    Ok(criteria
        .into_iter()
        .map(|c| {
            let outcome = spec_for(&c, &member_of).map(|spec| {
                let conn = spec.arg();
                let mut argv: Vec<&str> = vec!["-T"];
                argv.extend_from_slice(args);
                argv.extend(["-C", conn.as_str()]);
                let out = match host.run(SSHD, &argv) {
                    Ok(o) if o.success() => Ok(o.stdout),
                    Ok(o) => Err(format!("sshd -T -C {conn} exited with {:?}: {}", o.code, o.stderr.trim())),
                    Err(e) => Err(format!("sshd -T -C {conn}: {e}")),
                };
                (spec, out)
            });
            Block { criteria: c, outcome }
        })
        .collect())
}

/// Collects the `Match` criteria of `path` and what it includes.
fn read_config(host: &dyn Host, path: &str, depth: usize, out: &mut Vec<String>) -> Result<(), String> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(format!("{path}: includes nested deeper than {MAX_INCLUDE_DEPTH}"));
    }
    let text = match host.read_text(path) {
        Ok(t) => t,
        Err(HostError::NoFile { .. }) if depth == 0 => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    for d in directives(&text) {
        match d {
            Directive::Match(c) => out.push(c),
            Directive::Include(patterns) => {
                for p in patterns {
                    for file in expand(host, &p)? {
                        read_config(host, &file, depth + 1, out)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The files an `Include` pattern names, sorted as sshd's glob sorts them;
/// relative patterns are under `/etc/ssh`. Wildcards only in the file name.
fn expand(host: &dyn Host, pattern: &str) -> Result<Vec<String>, String> {
    let full = if pattern.starts_with('/') { pattern.to_string() } else { format!("/etc/ssh/{pattern}") };
    let (dir, name) = full.rsplit_once('/').unwrap_or(("", full.as_str()));
    if dir.contains(['*', '?']) {
        return Err(format!("Include {pattern}: wildcards in directory names are not followed"));
    }
    if !name.contains(['*', '?']) {
        return Ok(if host.exists(&full) { vec![full] } else { Vec::new() });
    }
    let mut names = match host.read_dir(dir) {
        Ok(n) => n,
        Err(HostError::NoFile { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    names.retain(|n| wildcard(name, n));
    names.sort();
    Ok(names.into_iter().map(|n| format!("{dir}/{n}")).collect())
}

/// A member of `group` by the host's databases, as sshd counts members
/// (`getgrouplist`: listed members, and users whose primary group it is).
fn group_member(host: &dyn Host, group: &str) -> Option<String> {
    let out = host.run("getent", &["group", group]).ok().filter(|o| o.success())?;
    let fields: Vec<&str> = out.stdout.trim().split(':').collect();
    if let Some(m) = fields.get(3).and_then(|m| m.split(',').map(str::trim).find(|m| !m.is_empty())) {
        return Some(m.to_string());
    }
    let gid = fields.get(2)?;
    let users = host.run("getent", &["passwd"]).ok().filter(|o| o.success())?;
    users.stdout.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(3) == Some(gid)).then(|| f[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listeners_own_options_are_found() {
        let pgrep = "812 sshd: /usr/sbin/sshd -D -f /etc/ssh/custom.conf -oPermitRootLogin=yes [listener] 0 of 10-100 startups\n\
                     901 sshd: alice [priv]\n";
        assert_eq!(
            daemon_options(pgrep),
            ["-f", "/etc/ssh/custom.conf", "-o", "PermitRootLogin=yes"].map(String::from).to_vec()
        );
        assert_eq!(daemon_options("77 /usr/sbin/sshd -D -o PasswordAuthentication=yes\n").len(), 2);
        assert!(daemon_options("901 sshd: alice [priv]\n").is_empty());
        assert!(daemon_options("").is_empty());
    }
}
