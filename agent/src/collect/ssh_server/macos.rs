//! The macOS backend of the `ssh_server` check.
//!
//! Remote Login (the bundled OpenSSH server, launchd job `com.openssh.sshd`)
//! is read with `systemsetup -getremotelogin` (`Remote Login: On` / `Off`;
//! needs root, otherwise `You need administrator access to run this
//! tool... exiting!`). When it is on, the effective configuration printed by
//! `/usr/sbin/sshd -T` (root, to read the host keys) is judged by the shared
//! [`super::evaluate_sshd_t`].
//!
//! `sshd -T` alone prints the settings outside every `Match` block, and a
//! block such as `Match Address 10.0.0.0/8` / `PasswordAuthentication yes`
//! is invisible to it. So, as on Linux, every `Match` block of
//! `/etc/ssh/sshd_config` and what it includes (macOS ships `Include
//! /etc/ssh/sshd_config.d/*`) is asked about: `sshd -T -C` for a connection
//! that meets it (`matches.rs`). A `Match Group` is met by a member from
//! the local directory (`dscl . -read /Groups/NAME GroupMembership
//! NestedGroups PrimaryGroupID`, and the users whose primary group it is,
//! `dscl . -list /Users PrimaryGroupID`); a group that is not local, or
//! nests other groups, may have members the local directory does not list,
//! so a block for it with no member found is `unknown`, not "applies to no
//! one".
//!
//! Status rule: not_applicable when Remote Login is off; otherwise the
//! shared rule on `sshd -T`, failed by a block that allows what it forbids
//! (naming the block); unknown when Remote Login's state, the effective
//! configuration or a block cannot be read.

pub use super::blocks::Block;
use super::blocks::{CONFIG, SSHD, joined, private};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

/// `Remote Login: On` → `Some(true)`.
pub fn parse_remote_login(text: &str) -> Option<bool> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix("Remote Login:"))?.trim();
    match value.to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Decides the check from the Remote Login state, the `sshd -T` result and
/// what sshd says for each `Match` block (or why they could not be read).
pub fn evaluate(
    remote_login: Result<bool, String>,
    sshd_t: Option<Result<String, String>>,
    blocks: Result<Vec<Block>, String>,
) -> Finding {
    let global = match remote_login {
        Err(why) => return Finding::unknown("openssh", why),
        Ok(false) => {
            return Finding::new(CheckStatus::NotApplicable, "openssh")
                .with_reason("Remote Login (SSH) is off")
                .fact("remote_login", false);
        }
        Ok(true) => match sshd_t {
            Some(Ok(text)) => super::evaluate_sshd_t(&text, "openssh").fact("remote_login", true),
            Some(Err(why)) => return Finding::unknown("openssh", why).fact("remote_login", true),
            None => return Finding::unknown("openssh", "sshd -T was not run").fact("remote_login", true),
        },
    };
    joined(global, blocks)
}

/// The values of one attribute in `dscl . -read` output (`Key: a b`, or
/// the values on indented lines after `Key:`).
fn dscl_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    let mut lines = text.lines();
    let Some(first) = lines.by_ref().find(|l| l.starts_with(&prefix)) else { return Vec::new() };
    let mut values: Vec<String> = first[prefix.len()..].split_whitespace().map(str::to_string).collect();
    values.extend(
        lines.take_while(|l| l.starts_with(' ')).flat_map(|l| l.split_whitespace().map(str::to_string)),
    );
    values
}

/// A member of a local group: listed by name, or having it as primary
/// group. `Err(true)` when the group certainly has no member (local, no
/// member, no nested group), `Err(false)` when the local directory cannot
/// tell (not a local group, nested groups, unreadable).
fn group_member(host: &dyn Host, group: &str) -> Result<String, bool> {
    let path = format!("/Groups/{group}");
    let out = host
        .run("dscl", &[".", "-read", &path, "GroupMembership", "NestedGroups", "PrimaryGroupID"])
        .map_err(|_| false)?;
    // dscl exits non-zero when one of the keys is missing but prints the others.
    let gid = dscl_values(&out.stdout, "PrimaryGroupID").into_iter().next().ok_or(false)?;
    if let Some(m) = dscl_values(&out.stdout, "GroupMembership").into_iter().next() {
        return Ok(m);
    }
    let users = host.run("dscl", &[".", "-list", "/Users", "PrimaryGroupID"]).map_err(|_| false)?;
    if !users.success() {
        return Err(false);
    }
    let primary = users.stdout.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (name, g) = (w.next()?, w.next()?);
        (g == gid).then(|| name.to_string())
    });
    match primary {
        Some(name) => Ok(name),
        None => Err(dscl_values(&out.stdout, "NestedGroups").is_empty()),
    }
}

/// Every `Match` block of the configuration with what `sshd -T -C` says for
/// a connection meeting it, group members from the local directory.
pub fn match_blocks(host: &dyn Host) -> Result<Vec<Block>, String> {
    super::blocks::match_blocks(host, CONFIG, &[], &|group| group_member(host, group))
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
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
    if remote_login != Ok(true) {
        return evaluate(remote_login, None, Ok(Vec::new()));
    }
    let sshd_t = match host.run(SSHD, &["-T"]) {
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
    };
    let blocks = match_blocks(host);
    let f = evaluate(remote_login, Some(sshd_t), blocks.clone());
    private(f, &blocks.unwrap_or_default(), ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FixtureHost;

    #[test]
    fn group_members_come_from_the_local_directory_or_stay_open() {
        let host = FixtureHost::new()
            .command(
                "dscl . -read /Groups/staff GroupMembership NestedGroups PrimaryGroupID",
                "GroupMembership: root\nPrimaryGroupID: 20\n",
            )
            .command(
                "dscl . -read /Groups/devs GroupMembership NestedGroups PrimaryGroupID",
                "NestedGroups: 7C1B2F3A-4D5E-4F60-8A9B-0C1D2E3F4A5B\nPrimaryGroupID: 701\n",
            )
            .command(
                "dscl . -read /Groups/empty GroupMembership NestedGroups PrimaryGroupID",
                "PrimaryGroupID: 702\n",
            )
            .command("dscl . -list /Users PrimaryGroupID", "_sshd 75\nalice 20\nroot 0\n");
        assert_eq!(group_member(&host, "staff"), Ok("root".into()));
        assert_eq!(group_member(&host, "devs"), Err(false), "nested: members elsewhere");
        assert_eq!(group_member(&host, "empty"), Err(true));
        assert_eq!(group_member(&host, "ldapgroup"), Err(false), "not local");
    }
}
