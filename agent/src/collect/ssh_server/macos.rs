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

use std::cell::RefCell;

use serde_json::json;

use super::matches::{Directive, NoSpec, Spec, directives, spec_for, wildcard};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

const SSHD: &str = "/usr/sbin/sshd";
const CONFIG: &str = "/etc/ssh/sshd_config";
/// Deepest `Include` nesting followed (sshd's own limit is 16).
const MAX_INCLUDE_DEPTH: usize = 16;
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

/// `Remote Login: On` → `Some(true)`.
pub fn parse_remote_login(text: &str) -> Option<bool> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix("Remote Login:"))?.trim();
    match value.to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
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
    match blocks {
        Ok(blocks) => with_blocks(global, &blocks),
        Err(why) if global.status == CheckStatus::Pass => {
            let mut f =
                global.with_reason(format!("the Match blocks of the configuration could not be read: {why}"));
            f.status = CheckStatus::Unknown;
            f
        }
        Err(_) => global,
    }
}

/// One block judged: the connection asked about, its status and why.
fn judge_block(b: &Block) -> (String, CheckStatus, String, serde_json::Map<String, serde_json::Value>) {
    let mut settings = serde_json::Map::new();
    match &b.outcome {
        Ok((spec, Ok(text))) => {
            let g = super::evaluate_sshd_t(text, "openssh");
            // What the policy holds to its limits, as for the global settings.
            for k in SETTINGS {
                if let Some(v) = g.facts.get(k) {
                    settings.insert(k.to_string(), v.clone());
                }
            }
            (spec.arg(), g.status, g.reason.unwrap_or_default(), settings)
        }
        Ok((spec, Err(e))) => (spec.arg(), CheckStatus::Unknown, e.clone(), settings),
        Err(NoSpec::Nobody(why)) => (String::new(), CheckStatus::NotApplicable, why.clone(), settings),
        Err(e @ NoSpec::Undecided(_)) => (String::new(), CheckStatus::Unknown, e.to_string(), settings),
    }
}

/// The global verdict joined with each block's: a failing block fails the
/// check, an undecided one makes a pass `unknown`.
fn with_blocks(mut f: Finding, blocks: &[Block]) -> Finding {
    let (mut failed, mut unclear, mut facts) = (Vec::new(), Vec::new(), Vec::new());
    for b in blocks {
        let (connection, status, why, settings) = judge_block(b);
        let text = format!("for connections meeting `Match {}` ({connection}): {why}", b.criteria);
        match status {
            CheckStatus::Fail => failed.push(text),
            CheckStatus::Unknown => unclear.push(text),
            _ => {}
        }
        facts.push(json!({"match": b.criteria, "connection": connection, "status": status.as_str(),
                          "reason": why, "settings": settings}));
    }
    let status = match f.status {
        CheckStatus::Pass | CheckStatus::Unknown if !failed.is_empty() => CheckStatus::Fail,
        CheckStatus::Pass if !unclear.is_empty() => CheckStatus::Unknown,
        s => s,
    };
    let mut parts: Vec<String> = Vec::new();
    if status == f.status {
        parts.push(f.reason.take().unwrap_or_default());
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

/// Collects the `Match` criteria of `path` and what it includes.
fn read_config(host: &dyn Host, path: &str, depth: usize, out: &mut Vec<String>) -> Result<(), String> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(format!("{path}: includes nested deeper than {MAX_INCLUDE_DEPTH}"));
    }
    let text = match host.read_text(path) {
        Ok(t) => t,
        // No configuration file: sshd runs on its defaults, which have no blocks.
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
/// a connection meeting it.
pub fn match_blocks(host: &dyn Host) -> Result<Vec<Block>, String> {
    let mut criteria = Vec::new();
    read_config(host, CONFIG, 0, &mut criteria)?;
    Ok(criteria
        .into_iter()
        .map(|c| {
            let uncertain = RefCell::new(Vec::new());
            let member_of = |group: &str| match group_member(host, group) {
                Ok(m) => Some(m),
                Err(certain) => {
                    if !certain {
                        uncertain.borrow_mut().push(group.to_string());
                    }
                    None
                }
            };
            let outcome = match spec_for(&c, &member_of) {
                // Members the local directory does not list may still meet it.
                Err(NoSpec::Nobody(why)) if !uncertain.borrow().is_empty() => {
                    Err(NoSpec::Undecided(format!(
                        "{why} in the local directory, and the members of {} cannot all be listed there",
                        uncertain.borrow().join(", ")
                    )))
                }
                other => other,
            };
            let outcome = outcome.map(|spec| {
                let conn = spec.arg();
                let out = match host.run(SSHD, &["-T", "-C", conn.as_str()]) {
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
