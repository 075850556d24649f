//! The Linux backend of the `ssh_server` check.
//!
//! Finds the OpenSSH server binary (`/usr/sbin/sshd`), asks systemd whether
//! it is running or enabled (unit `ssh` on Debian/Ubuntu, `sshd` on
//! RHEL/Fedora/SUSE), and evaluates `sshd -T`. No binary: `not_applicable`.
//! Installed but neither running nor enabled: `not_applicable` too, with the
//! reason (nothing listens). When systemd cannot answer (containers), the
//! configuration is evaluated anyway: a server that may run is judged by
//! what it would accept.

use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
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

/// Evaluates what was read: the service state and the `sshd -T` result.
pub fn evaluate(service: Service, sshd_t: Result<String, String>) -> Finding {
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
    match sshd_t {
        Ok(text) => super::evaluate_sshd_t(&text, "openssh").fact("service", state),
        Err(why) => Finding::unknown("openssh", why).fact("service", state),
    }
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let sshd_t = match host.run(SSHD, &["-T"]) {
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
    evaluate(parse_service(active.as_deref(), enabled.as_deref()), sshd_t)
}
