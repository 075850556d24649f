//! The macOS backend of the `ssh_server` check.
//!
//! Remote Login (the bundled OpenSSH server, launchd job `com.openssh.sshd`)
//! is read with `systemsetup -getremotelogin` (`Remote Login: On` / `Off`;
//! needs root, otherwise `You need administrator access to run this
//! tool... exiting!`). When it is on, the effective configuration printed by
//! `/usr/sbin/sshd -T` (root, to read the host keys) is judged by the shared
//! [`super::evaluate_sshd_t`].
//!
//! Status rule: not_applicable when Remote Login is off; otherwise the
//! shared rule on `sshd -T`; unknown when Remote Login's state or the
//! effective configuration cannot be read.

use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const SSHD: &str = "/usr/sbin/sshd";

/// `Remote Login: On` → `Some(true)`.
pub fn parse_remote_login(text: &str) -> Option<bool> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix("Remote Login:"))?.trim();
    match value.to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Decides the check from the Remote Login state and the `sshd -T` result.
pub fn evaluate(remote_login: Result<bool, String>, sshd_t: Option<Result<String, String>>) -> Finding {
    match remote_login {
        Err(why) => Finding::unknown("openssh", why),
        Ok(false) => Finding::new(CheckStatus::NotApplicable, "openssh")
            .with_reason("Remote Login (SSH) is off")
            .fact("remote_login", false),
        Ok(true) => match sshd_t {
            Some(Ok(text)) => super::evaluate_sshd_t(&text, "openssh").fact("remote_login", true),
            Some(Err(why)) => Finding::unknown("openssh", why).fact("remote_login", true),
            None => Finding::unknown("openssh", "sshd -T was not run").fact("remote_login", true),
        },
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let remote_login = match host.run("systemsetup", &["-getremotelogin"]) {
        Ok(out) => {
            let text = format!("{}{}", out.stdout, out.stderr);
            if text.contains("administrator access") {
                Err("systemsetup needs root to read Remote Login (You need administrator access)".to_string())
            } else {
                parse_remote_login(&text)
                    .ok_or_else(|| format!("systemsetup printed no Remote Login state: {}", text.trim()))
            }
        }
        Err(e) => Err(format!("systemsetup: {e}")),
    };
    let sshd_t = (remote_login == Ok(true)).then(|| match host.run(SSHD, &["-T"]) {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => {
            let msg = out.stderr.trim();
            if msg.contains("hostkeys") || msg.contains("Permission denied") {
                Err(format!("sshd -T needs root to read the host keys: {msg}"))
            } else {
                Err(format!("sshd -T exited with {:?}: {msg}", out.code))
            }
        }
        Err(e) => Err(format!("sshd -T: {e}")),
    });
    evaluate(remote_login, sshd_t)
}
