//! The Windows backend of the `ssh_server` check: the OpenSSH server
//! (Windows capability `OpenSSH.Server`, or the Win32-OpenSSH MSI).
//!
//! Reads the `sshd` service with `sc query sshd` (`STATE : 4 RUNNING`) and
//! `sc qc sshd` (`START_TYPE`, `BINARY_PATH_NAME`); the state and start
//! type numbers do not depend on the display language. When the server runs
//! or starts automatically, runs `<binary> -T` with the service's own `-f`
//! and `-o` arguments (by default `C:\Windows\System32\OpenSSH\sshd.exe -T`,
//! needs administrator rights to read the host keys) and hands the
//! effective configuration to [`super::evaluate_sshd_t`]. The configuration
//! file (`-f`, else `C:\ProgramData\ssh\sshd_config`) is read for its
//! `Match` blocks ([`blocks`]): one that loosens a judged setting is asked
//! about with `sshd -T -C` for a connection meeting it.
//!
//! Status rule: not_applicable when the service is not installed (sc error
//! 1060) or is stopped and not set to start automatically; otherwise the
//! evaluator's verdict on `sshd -T`, failed by a `Match` block that sshd
//! says loosens it, and `unknown` instead of a pass when a loosening block
//! could not be asked about (`Group` criteria, which are not resolved on
//! Windows), the file has `Include` lines (not followed) or cannot be read;
//! unknown when `sc` or `sshd -T` cannot answer, including a stopped
//! service whose start type is unreadable.

mod blocks;

use serde_json::json;

use crate::collect::ssh_server::matches::{Spec, spec_for};
use crate::collect::windows::host_error;
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use crate::privacy::Personal;
use blocks::{Effect, MatchBlock, parse_config, service_options};
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "openssh";
const DEFAULT_SSHD: &str = "C:\\Windows\\System32\\OpenSSH\\sshd.exe";
/// Where Win32-OpenSSH reads its configuration (`__PROGRAMDATA__\ssh`).
const DEFAULT_CONFIG: &str = "C:\\ProgramData\\ssh\\sshd_config";

/// A `KEY : number NAME` field of `sc query` / `sc qc` output.
pub fn parse_sc_number(text: &str, key: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// The whole `BINARY_PATH_NAME` of `sc qc` output: program and arguments.
fn parse_sc_command(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "BINARY_PATH_NAME").then(|| v.trim().to_string())
    })
}

/// The program of `BINARY_PATH_NAME` in `sc qc` output, without quotes and arguments.
pub fn parse_sc_binary(text: &str) -> Option<String> {
    let value = parse_sc_command(text)?;
    let path = match value.strip_prefix('"') {
        Some(rest) => rest.split('"').next().unwrap_or(rest).to_string(),
        None => {
            // Unquoted: up to and including `.exe`, spaces allowed before it.
            let lower = value.to_ascii_lowercase();
            lower.find(".exe").map_or(value.clone(), |i| value[..i + 4].to_string())
        }
    };
    (!path.is_empty()).then_some(path)
}

/// What sshd said for one `Match` block of the configuration.
#[derive(Debug, Clone)]
pub struct Block {
    pub criteria: String,
    /// The connection asked about (empty when none was).
    pub connection: String,
    pub status: CheckStatus,
    pub reason: String,
    /// The judged settings sshd applies to that connection.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// What one block means: listed only, or asked about through `ask` (which
/// runs `sshd -T -C` for a connection).
pub fn judge_block(b: &MatchBlock, ask: &dyn Fn(&Spec) -> Result<String, String>) -> Block {
    let listed = |status, reason: &str| Block {
        criteria: b.criteria.clone(),
        connection: String::new(),
        status,
        reason: reason.to_string(),
        settings: serde_json::Map::new(),
    };
    let loosened = match b.effect() {
        Effect::None => return listed(CheckStatus::NotApplicable, "sets nothing the check judges"),
        Effect::Tightens => return listed(CheckStatus::NotApplicable, "only tightens what the check judges"),
        Effect::Loosens(what) => what.join(", "),
    };
    if b.by_group() {
        let why = format!("sets {loosened} for members of a group, which are not resolved on Windows");
        return listed(CheckStatus::Unknown, &why);
    }
    let spec = match spec_for(&b.criteria, &|_| None) {
        Ok(spec) => spec,
        // Without `Group` criteria no block applies to no one: undecided.
        Err(e) => {
            return listed(CheckStatus::Unknown, &format!("sets {loosened}; {e}"));
        }
    };
    let (status, reason, settings) = match ask(&spec) {
        Ok(text) => {
            let g = super::evaluate_sshd_t(&text, BACKEND);
            let settings = super::blocks::SETTINGS
                .iter()
                .filter_map(|k| Some((k.to_string(), g.facts.get(*k)?.clone())))
                .collect();
            (g.status, g.reason.unwrap_or_default(), settings)
        }
        Err(e) => (CheckStatus::Unknown, e, serde_json::Map::new()),
    };
    Block { criteria: b.criteria.clone(), connection: spec.arg(), status, reason, settings }
}

/// The global verdict joined with the blocks': a failing block fails the
/// check, an undecided one (or what was not read) makes a pass `unknown`.
fn with_blocks(f: Finding, blocks: &Result<Vec<Block>, HostError>) -> Finding {
    let (list, read_error) = match blocks {
        Ok(list) => (&list[..], None),
        Err(e) => (&[][..], Some(format!("the Match blocks of the configuration could not be read: {e}"))),
    };
    let text = |b: &Block| {
        format!("for connections meeting `Match {}` ({}): {}", b.criteria, b.connection, b.reason)
    };
    let failed: Vec<String> = list.iter().filter(|b| b.status == CheckStatus::Fail).map(text).collect();
    let mut unclear: Vec<String> =
        list.iter().filter(|b| b.status == CheckStatus::Unknown).map(text).collect();
    unclear.extend(read_error);
    let facts: Vec<serde_json::Value> = list
        .iter()
        .map(|b| {
            json!({"match": b.criteria, "connection": b.connection, "status": b.status.as_str(),
                   "reason": b.reason, "settings": b.settings})
        })
        .collect();
    super::blocks::combine(f, failed, unclear, facts)
}

/// Decides the check from `sc query sshd`, `sc qc sshd`, the `sshd -T`
/// result and what sshd said for each `Match` block (or why they could not
/// be read).
pub fn evaluate(
    query: &str,
    qc: Option<&str>,
    sshd_t: Option<Result<String, String>>,
    blocks: &Result<Vec<Block>, HostError>,
) -> Finding {
    if query.contains("FAILED 1060") {
        return Finding::new(CheckStatus::NotApplicable, "none")
            .with_reason("no OpenSSH server installed (no sshd service)")
            .fact("service", "absent");
    }
    let Some(state) = parse_sc_number(query, "STATE") else {
        return Finding::unknown(BACKEND, "sc query sshd printed no STATE").with_raw(query);
    };
    let start = qc.and_then(|t| parse_sc_number(t, "START_TYPE"));
    let running = state == 4;
    let service = if running { "running" } else { "stopped" };
    if !running && start.is_none() {
        // Stopped, but whether it starts by itself is not known.
        return Finding::unknown(
            BACKEND,
            "sshd is stopped and its start type could not be read (sc qc sshd)",
        )
        .fact("service", service)
        .with_raw(query);
    }
    if !running && start != Some(2) {
        return Finding::new(CheckStatus::NotApplicable, BACKEND)
            .with_reason("the OpenSSH server is installed but neither running nor set to start automatically")
            .fact("service", service)
            .fact("start_type", serde_json::json!(start))
            .with_raw(query);
    }
    match sshd_t {
        Some(Ok(text)) => {
            with_blocks(super::evaluate_sshd_t(&text, BACKEND).fact("service", service), blocks)
        }
        Some(Err(why)) => Finding::unknown(BACKEND, why).fact("service", service),
        None => Finding::unknown(BACKEND, "sshd -T was not run").fact("service", service),
    }
}

/// Runs `sshd ARGS`, the output or why there is none.
fn run_sshd(host: &dyn Host, binary: &str, args: &[&str]) -> Result<String, String> {
    match host.run(binary, args) {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => {
            let msg = format!("{}{}", out.stderr.trim(), out.stdout.trim());
            if msg.contains("hostkeys")
                || msg.contains("Permission denied")
                || msg.contains("Unable to load host key")
            {
                Err(format!("sshd -T needs administrator rights to read the host keys: {msg}"))
            } else {
                Err(format!("sshd {} exited with {:?}: {msg}", args.join(" "), out.code))
            }
        }
        Err(e) => Err(format!("{binary} {}: {e}", args.join(" "))),
    }
}

/// Every `Match` block of the configuration file with what sshd says for it;
/// `Include` lines, which are not followed, are undecided blocks of their own.
fn match_blocks(host: &dyn Host, binary: &str, options: &[String]) -> Result<Vec<Block>, HostError> {
    let path = options.iter().position(|a| a == "-f").and_then(|i| options.get(i + 1));
    let path = path.map_or(DEFAULT_CONFIG, String::as_str);
    let config = match host.read_text(path) {
        Ok(text) => parse_config(&text),
        // No file: sshd runs on its defaults, which have no blocks.
        Err(HostError::NoFile { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let ask = |spec: &Spec| {
        let conn = spec.arg();
        let mut args: Vec<&str> = vec!["-T"];
        args.extend(options.iter().map(String::as_str));
        args.extend(["-C", conn.as_str()]);
        run_sshd(host, binary, &args)
    };
    let mut out: Vec<Block> = config.blocks.iter().map(|b| judge_block(b, &ask)).collect();
    out.extend(config.includes.iter().map(|p| Block {
        criteria: format!("(Include {p})"),
        connection: String::new(),
        status: CheckStatus::Unknown,
        reason: "included files are not followed on Windows".into(),
        settings: serde_json::Map::new(),
    }));
    Ok(out)
}

/// User names (from `Match User` lists) enter the facts and the reason only
/// as the privacy settings allow.
fn private(mut f: Finding, blocks: &Result<Vec<Block>, HostError>, ctx: &Context) -> Finding {
    for b in blocks.iter().flatten() {
        let words: Vec<&str> = b.criteria.split_whitespace().collect();
        let listed =
            words.windows(2).filter(|w| w[0].eq_ignore_ascii_case("user")).flat_map(|w| w[1].split(','));
        for name in listed.map(|n| n.trim_start_matches('!')).filter(|n| !n.contains(['*', '?'])) {
            ctx.register(Personal::UserName, name);
        }
    }
    f.reason = f.reason.map(|r| ctx.scrub(&r));
    if let Some(v) = f.facts.get_mut("match_blocks") {
        *v = serde_json::from_str(&ctx.scrub(&v.to_string())).unwrap_or(serde_json::Value::Null);
    }
    f
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let query = match host.run("sc", &["query", "sshd"]) {
        Ok(out) => format!("{}{}", out.stdout, out.stderr),
        Err(e) => return host_error(&e).unknown(BACKEND, "sc query sshd"),
    };
    let qc = host.run("sc", &["qc", "sshd"]).ok().filter(|o| o.success()).map(|o| o.stdout);
    let state = parse_sc_number(&query, "STATE");
    let start = qc.as_deref().and_then(|t| parse_sc_number(t, "START_TYPE"));
    // Only run sshd when the evaluation will need it.
    if query.contains("FAILED 1060") || !(state == Some(4) || start == Some(2)) {
        return evaluate(&query, qc.as_deref(), None, &Ok(Vec::new()));
    }
    let binary = qc.as_deref().and_then(parse_sc_binary).unwrap_or_else(|| DEFAULT_SSHD.to_string());
    // The service runs with these; they change what it applies.
    let options = qc.as_deref().and_then(parse_sc_command).map(|c| service_options(&c)).unwrap_or_default();
    let mut args: Vec<&str> = vec!["-T"];
    args.extend(options.iter().map(String::as_str));
    let sshd_t = run_sshd(host, &binary, &args);
    let blocks = if sshd_t.is_ok() { match_blocks(host, &binary, &options) } else { Ok(Vec::new()) };
    private(evaluate(&query, qc.as_deref(), Some(sshd_t), &blocks), &blocks, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_paths() {
        let q = "        BINARY_PATH_NAME   : \"C:\\Program Files\\OpenSSH\\sshd.exe\" -f x\r\n";
        assert_eq!(parse_sc_binary(q).as_deref(), Some("C:\\Program Files\\OpenSSH\\sshd.exe"));
        let u = "        BINARY_PATH_NAME   : C:\\Windows\\System32\\OpenSSH\\sshd.exe\r\n";
        assert_eq!(parse_sc_binary(u).as_deref(), Some(DEFAULT_SSHD));
    }

    #[test]
    fn a_loosening_block_is_asked_about_and_a_group_block_is_not_resolved() {
        let config = parse_config(
            "Match Address 10.0.0.0/8\n  PasswordAuthentication yes\nMatch Group staff\n  PermitEmptyPasswords yes\n",
        );
        let asked = std::cell::RefCell::new(Vec::new());
        let ask = |spec: &Spec| {
            asked.borrow_mut().push(spec.arg());
            Ok("permitrootlogin no\npasswordauthentication yes\nkbdinteractiveauthentication no\n\
                permitemptypasswords no\nciphers aes128-ctr\nmacs hmac-sha2-256\nkexalgorithms curve25519-sha256\n"
                .to_string())
        };
        let b = judge_block(&config.blocks[0], &ask);
        assert_eq!((b.status, b.connection.as_str()), (CheckStatus::Fail, "addr=10.0.0.1"));
        let g = judge_block(&config.blocks[1], &ask);
        assert_eq!(g.status, CheckStatus::Unknown);
        assert_eq!(asked.borrow().len(), 1, "the group block is not asked about");
    }
}
