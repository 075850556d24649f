//! The macOS backend of the `firewall` check.
//!
//! Reads the application firewall with
//! `/usr/libexec/ApplicationFirewall/socketfilterfw --getglobalstate`
//! (`Firewall is enabled. (State = 1)`; state 2 blocks all incoming
//! connections), `--getblockall` and `--getstealthmode` (both printed in an
//! older `Block all ENABLED!` / `Stealth mode enabled` and a newer `Firewall
//! has block all state set to enabled.` / `Firewall stealth mode is on`
//! form), and the packet filter with `pfctl -s info` (`Status: Enabled`) and
//! `pfctl -s rules`; pfctl needs root.
//!
//! Status rule: pass when the application firewall is on (state 1 or 2), or
//! pf is enabled and its main rule set blocks inbound traffic by default (an
//! unconditional `block [in] all` that no later unconditional `pass [in] all`
//! overrides; pf rules are last-match, so a later pass wins, and a `quick`
//! pass-all before the block wins too). Fail when the application firewall
//! is off and pf is disabled or does not block by default. Unknown when the
//! application firewall state cannot be read, or it is off and pf cannot be
//! read (not root), since pf alone might still filter.

use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

const SOCKETFILTERFW: &str = "/usr/libexec/ApplicationFirewall/socketfilterfw";

/// The application firewall's global state: 0 off, 1 on, 2 block all.
pub fn parse_global_state(text: &str) -> Option<u8> {
    if let Some(rest) = text.split("State = ").nth(1) {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<u8>() {
            return Some(n);
        }
    }
    // Some builds print the sentence only.
    let lower = text.to_ascii_lowercase();
    if lower.contains("firewall is disabled") {
        Some(0)
    } else if lower.contains("firewall is blocking all") {
        Some(2)
    } else if lower.contains("firewall is enabled") {
        Some(1)
    } else {
        None
    }
}

/// An on/off answer of `--getblockall` or `--getstealthmode`, in either the
/// old (`... ENABLED!`, `... enabled`) or new (`... set to enabled.`,
/// `... is on`) wording.
pub fn parse_on_off(text: &str) -> Option<bool> {
    let lower = text.trim().to_ascii_lowercase();
    let words: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    if words.iter().any(|w| matches!(*w, "disabled" | "off")) {
        Some(false)
    } else if words.iter().any(|w| matches!(*w, "enabled" | "on")) {
        Some(true)
    } else {
        None
    }
}

/// Whether `pfctl -s info` says pf is enabled (`Status: Enabled for ...`).
pub fn parse_pf_info(text: &str) -> Option<bool> {
    let line = text.lines().find(|l| l.trim_start().starts_with("Status:"))?;
    let value = line.trim_start().trim_start_matches("Status:").trim_start();
    if value.starts_with("Enabled") {
        Some(true)
    } else if value.starts_with("Disabled") {
        Some(false)
    } else {
        None
    }
}

/// What an unconditional pf rule does to inbound traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unconditional {
    Block,
    Pass { quick: bool },
}

/// Classifies one `pfctl -s rules` line; `None` for rules that match only
/// some traffic (an interface, protocol, address or port) or act outbound.
fn classify_rule(line: &str) -> Option<Unconditional> {
    let mut words = line.split_whitespace().peekable();
    let action = words.next()?;
    if action != "block" && action != "pass" {
        return None;
    }
    let mut quick = false;
    let mut all = false;
    let mut in_state = false;
    for w in words {
        if in_state {
            // "keep state", "modulate state", "no state", "flags S/SA" take one word.
            in_state = false;
            continue;
        }
        match w {
            "drop" | "return" | "in" | "log" | "inet" | "inet6" => {}
            "quick" => quick = true,
            "all" => all = true,
            "keep" | "modulate" | "synproxy" | "no" | "flags" => in_state = true,
            "label" => break,
            // "out", "on en0", "proto tcp", "from", "to", ...: not everything inbound.
            _ => return None,
        }
    }
    if !all {
        return None;
    }
    Some(if action == "block" { Unconditional::Block } else { Unconditional::Pass { quick } })
}

/// Whether `pfctl -s rules` blocks inbound traffic by default, with why.
pub fn parse_pf_rules(text: &str) -> (bool, String) {
    let mut verdict: Option<(bool, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        match classify_rule(line.trim()) {
            Some(Unconditional::Pass { quick: true }) => {
                // A quick pass-all ends evaluation for every packet, whatever follows.
                return (false, format!("rule {} passes everything (quick)", i + 1));
            }
            Some(Unconditional::Pass { .. }) => verdict = Some((false, i + 1)),
            Some(Unconditional::Block) => verdict = Some((true, i + 1)),
            None => {}
        }
    }
    match verdict {
        Some((true, n)) => (true, format!("rule {n} blocks all inbound traffic not passed by a later rule")),
        Some((false, n)) => (false, format!("rule {n} passes all inbound traffic")),
        None => (false, "no rule blocks inbound traffic by default".into()),
    }
}

/// What was read of pf.
#[derive(Debug, Clone, PartialEq)]
pub enum Pf {
    /// Enabled with (default deny, why).
    Enabled(bool, String),
    Disabled,
    /// Could not be read, with why.
    Unreadable(String),
}

/// Decides the check from the application firewall answers and pf.
pub fn evaluate(
    global: Option<u8>,
    block_all: Option<bool>,
    stealth: Option<bool>,
    pf: &Pf,
    raw: String,
) -> Finding {
    let (pf_fact, pf_deny) = match pf {
        Pf::Enabled(deny, _) => ("enabled", *deny),
        Pf::Disabled => ("disabled", false),
        Pf::Unreadable(_) => ("unknown", false),
    };
    let base = |status| {
        let mut f = Finding::new(status, "socketfilterfw")
            .fact("application_firewall_state", global.map(u64::from))
            .fact("block_all", block_all)
            .fact("stealth_mode", stealth)
            .fact("pf", pf_fact)
            .with_raw(raw.clone());
        if let Pf::Enabled(deny, _) = pf {
            f = f.fact("pf_default_deny", *deny);
        }
        f
    };
    let pf_note = match pf {
        Pf::Enabled(true, why) => format!("pf enabled and blocks inbound by default ({why})"),
        Pf::Enabled(false, why) => format!("pf enabled but does not block inbound by default ({why})"),
        Pf::Disabled => "pf disabled".into(),
        Pf::Unreadable(why) => format!("pf state unreadable: {why}"),
    };
    match global {
        Some(1) | Some(2) => {
            let blocks = global == Some(2) || block_all == Some(true);
            let mode = if blocks { "blocks all incoming connections" } else { "on" };
            let stealth = match stealth {
                Some(true) => ", stealth mode on",
                Some(false) => ", stealth mode off",
                None => "",
            };
            base(CheckStatus::Pass).with_reason(format!("application firewall {mode}{stealth}"))
        }
        Some(0) if pf_deny => {
            let mut f = base(CheckStatus::Pass).with_reason(format!("application firewall off; {pf_note}"));
            f.backend = "pf".into();
            f
        }
        Some(0) => match pf {
            Pf::Unreadable(_) => base(CheckStatus::Unknown)
                .with_reason(format!("application firewall off and {pf_note}; pf alone might filter")),
            _ => base(CheckStatus::Fail).with_reason(format!("application firewall off; {pf_note}")),
        },
        Some(n) => {
            base(CheckStatus::Unknown).with_reason(format!("unexpected application firewall state {n}"))
        }
        None if pf_deny => {
            let mut f = base(CheckStatus::Pass)
                .with_reason(format!("application firewall state unreadable; {pf_note}"));
            f.backend = "pf".into();
            f
        }
        None => base(CheckStatus::Unknown)
            .with_reason(format!("application firewall state unreadable; {pf_note}")),
    }
}

fn run_text(host: &dyn Host, program: &str, args: &[&str]) -> Result<String, String> {
    match host.run(program, args) {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => {
            let msg = if out.stderr.trim().is_empty() { out.stdout.trim() } else { out.stderr.trim() };
            Err(format!("{program} {} exited with {:?}: {msg}", args.join(" "), out.code))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Reads pf through `pfctl`.
pub fn observe_pf(host: &dyn Host, raw: &mut String) -> Pf {
    let info = match host.run("pfctl", &["-s", "info"]) {
        Ok(out) if out.success() => out.stdout,
        Ok(out) => {
            let msg = out.stderr.trim();
            return Pf::Unreadable(if msg.contains("Permission denied") {
                format!("pfctl needs root ({})", msg.lines().last().unwrap_or(msg))
            } else {
                format!("pfctl -s info exited with {:?}: {msg}", out.code)
            });
        }
        Err(HostError::PermissionDenied { .. }) => return Pf::Unreadable("pfctl needs root".into()),
        Err(e) => return Pf::Unreadable(e.to_string()),
    };
    raw.push_str(&info);
    match parse_pf_info(&info) {
        Some(false) => Pf::Disabled,
        None => Pf::Unreadable("pfctl -s info printed no Status line".into()),
        Some(true) => match run_text(host, "pfctl", &["-s", "rules"]) {
            Ok(rules) => {
                raw.push_str(&rules);
                let (deny, why) = parse_pf_rules(&rules);
                Pf::Enabled(deny, why)
            }
            Err(e) => Pf::Unreadable(format!("pf is enabled but its rules are unreadable: {e}")),
        },
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let mut raw = String::new();
    let mut ask = |arg: &str| match run_text(host, SOCKETFILTERFW, &[arg]) {
        Ok(text) => {
            raw.push_str(&text);
            Some(text)
        }
        Err(_) => None,
    };
    let global = ask("--getglobalstate").as_deref().and_then(parse_global_state);
    let block_all = ask("--getblockall").as_deref().and_then(parse_on_off);
    let stealth = ask("--getstealthmode").as_deref().and_then(parse_on_off);
    let pf = observe_pf(host, &mut raw);
    evaluate(global, block_all, stealth, &pf, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_wordings_of_socketfilterfw_are_read() {
        assert_eq!(parse_global_state("Firewall is enabled. (State = 1)\n"), Some(1));
        assert_eq!(parse_global_state("Firewall is disabled. (State = 0)\n"), Some(0));
        assert_eq!(
            parse_global_state("Firewall is blocking all non-essential incoming connections. (State = 2)"),
            Some(2)
        );
        assert_eq!(parse_on_off("Firewall has block all state set to enabled.\n"), Some(true));
        assert_eq!(parse_on_off("Firewall has block all state set to disabled.\n"), Some(false));
        assert_eq!(parse_on_off("Block all DISABLED! \n"), Some(false));
        assert_eq!(parse_on_off("Firewall stealth mode is on\n"), Some(true));
        assert_eq!(parse_on_off("Stealth mode disabled \n"), Some(false));
        assert_eq!(parse_on_off("garbage"), None);
    }

    #[test]
    fn pf_rules_are_last_match() {
        let deny = "scrub-anchor \"com.apple/*\" all fragment reassemble\nblock drop in all\n\
                    pass in quick on lo0 all flags S/SA keep state\npass out all flags S/SA keep state\n\
                    anchor \"com.apple/*\" all\n";
        assert!(parse_pf_rules(deny).0);
        let reopened = "block drop in all\npass in all flags S/SA keep state\n";
        assert!(!parse_pf_rules(reopened).0);
        let quick = "pass in quick all no state\nblock drop in all\n";
        assert!(!parse_pf_rules(quick).0);
        let apple_default =
            "scrub-anchor \"com.apple/*\" all fragment reassemble\nanchor \"com.apple/*\" all\n";
        assert!(!parse_pf_rules(apple_default).0);
        assert!(!parse_pf_rules("block drop in on en0 all\n").0);
    }
}
