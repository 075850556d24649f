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

pub use super::blocks::Block;
use super::blocks::{CONFIG, SSHD, joined, private};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

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
    joined(global, blocks)
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

/// Every `Match` block of `config` (includes followed) with what `sshd -T
/// ARGS -C` says for a connection meeting it, group members found with
/// `getent` ([`super::blocks::match_blocks`]).
pub fn match_blocks(host: &dyn Host, config: &str, args: &[&str]) -> Result<Vec<Block>, String> {
    super::blocks::match_blocks(host, config, args, &|group| group_member(host, group).ok_or(true))
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
