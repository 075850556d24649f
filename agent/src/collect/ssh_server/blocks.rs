//! The `Match` blocks of an OpenSSH server configuration, each asked about
//! with `sshd -T -C` for a connection that meets it, and joined with the
//! global verdict. Shared by the Linux and macOS backends, which differ
//! only in how they find a group's members and the daemon's own options.
//!
//! Invariant: a block sshd cannot be asked about (no connection can be
//! built for it, or its members cannot all be listed) never lets the check
//! pass: it is `unknown`, and a failing block fails the check.

use std::cell::RefCell;

use serde_json::json;

use super::matches::{Directive, NoSpec, Spec, directives, spec_for, wildcard};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

/// The OpenSSH server binary asked for its effective configuration.
pub const SSHD: &str = "/usr/sbin/sshd";
/// The server's configuration file.
pub const CONFIG: &str = "/etc/ssh/sshd_config";
/// Deepest `Include` nesting followed (sshd's own limit is 16).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The facts of a block's settings (those the policy judges), on every OS.
pub const SETTINGS: [&str; 8] = [
    "permit_root_login",
    "password_authentication",
    "kbd_interactive_authentication",
    "permit_empty_passwords",
    "max_auth_tries",
    "weak_ciphers",
    "weak_macs",
    "weak_kex",
];

/// What sshd said for a connection meeting one `Match` block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The criteria as written.
    pub criteria: String,
    /// The connection asked about and `sshd -T -C`'s output, or why not.
    pub outcome: Result<(Spec, Result<String, String>), NoSpec>,
}

/// A member of a group, by the host's own directory: `Ok(name)`, or
/// `Err(certain)`: `true` when the group certainly has no member, `false`
/// when the directory cannot tell.
pub type MemberOf<'a> = dyn Fn(&str) -> Result<String, bool> + 'a;

/// Every `Match` block of `config` (includes followed) with what `sshd -T
/// ARGS -C` says for a connection meeting it. A configuration file that
/// does not exist has no blocks (sshd runs on its defaults).
pub fn match_blocks(
    host: &dyn Host,
    config: &str,
    args: &[&str],
    member_of: &MemberOf,
) -> Result<Vec<Block>, String> {
    let mut criteria = Vec::new();
    read_config(host, config, 0, &mut criteria)?;
    Ok(criteria.into_iter().map(|c| ask(host, c, args, member_of)).collect())
}

/// One block: the connection that meets it, and what sshd says for it.
fn ask(host: &dyn Host, criteria: String, args: &[&str], member_of: &MemberOf) -> Block {
    let uncertain = RefCell::new(Vec::new());
    let member = |group: &str| match member_of(group) {
        Ok(m) => Some(m),
        Err(certain) => {
            if !certain {
                uncertain.borrow_mut().push(group.to_string());
            }
            None
        }
    };
    let outcome = match spec_for(&criteria, &member) {
        // Members the directory does not list may still meet it.
        Err(NoSpec::Nobody(why)) if !uncertain.borrow().is_empty() => Err(NoSpec::Undecided(format!(
            "{why} in the local directory, and the members of {} cannot all be listed there",
            uncertain.borrow().join(", ")
        ))),
        other => other,
    };
    let outcome = outcome.map(|spec| {
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
    Block { criteria, outcome }
}

/// The global verdict joined with the blocks', or, when they could not be
/// read, a pass made `unknown`.
pub fn joined(global: Finding, blocks: Result<Vec<Block>, String>) -> Finding {
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

/// One block judged: the connection asked about, its status, why, and the
/// settings the policy judges.
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
fn with_blocks(f: Finding, blocks: &[Block]) -> Finding {
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
    combine(f, failed, unclear, facts)
}

/// The global finding with the blocks' verdicts folded in: a failing block
/// fails it, an undecided one makes a pass `unknown`; the reason names the
/// blocks that decided, and the fact `match_blocks` lists them all.
pub fn combine(
    mut f: Finding,
    failed: Vec<String>,
    unclear: Vec<String>,
    facts: Vec<serde_json::Value>,
) -> Finding {
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

/// User names (from `Match User` lists and group members) enter the facts
/// and the reason only as the privacy settings allow.
pub fn private(mut f: Finding, blocks: &[Block], ctx: &Context) -> Finding {
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
