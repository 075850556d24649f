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
//! pf evaluates the rules of an anchor where the `anchor` rule stands (macOS
//! loads `anchor "com.apple/*"` by default, and VPN clients, sharing and
//! developer tools add their own), so the effective rule set includes them:
//! every unconditional `anchor "name"` rule is followed with `pfctl -a PATH
//! -s rules`, and a wildcard `anchor "name/*"` with the children `pfctl -a
//! PATH -s Anchors` lists, each in turn, recursively (names are relative to
//! the anchor holding the rule; at most `MAX_ANCHOR_DEPTH` levels and
//! `MAX_ANCHORS` anchors). An anchor rule limited to some traffic (an
//! interface, protocol or address) is not followed, like any other rule
//! that matches only some traffic.
//!
//! Status rule: pass when the application firewall is on (state 1 or 2), or
//! pf is enabled and its effective rule set blocks inbound traffic by
//! default (an unconditional `block [in] all` that no later unconditional
//! `pass [in] all` overrides; pf rules are last-match, so a later pass wins,
//! and a `quick` rule, or a `quick` anchor with a matching rule inside, ends
//! the evaluation). Fail when the application firewall is off and pf is
//! disabled or does not block by default. Unknown when the application
//! firewall state cannot be read, or it is off and pf, or an anchor it
//! follows, cannot be read (not root), since pf alone might still filter.

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
    Block { quick: bool },
    Pass { quick: bool },
}

/// One line of `pfctl -s rules` as far as the default inbound verdict goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PfRule {
    Unconditional(Unconditional),
    /// An unconditional `anchor "name"` rule: its rules are evaluated here.
    Anchor {
        name: String,
        quick: bool,
    },
    /// An inline anchor (`anchor { ... }`), which is not followed.
    Inline,
    /// Matches only some traffic, or is not a filter rule.
    Other,
}

/// The words that do not narrow a rule down: direction, logging, address
/// family, state keeping. `None` for a word that does (`out`, `on en0`,
/// `proto tcp`, `from`, `to`, ...); `Some(true)` for `quick`.
fn rule_words<'a>(words: impl Iterator<Item = &'a str>) -> Option<(bool, bool)> {
    let (mut quick, mut all, mut in_state) = (false, false, false);
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
            _ => return None,
        }
    }
    Some((quick, all))
}

/// Classifies one `pfctl -s rules` line.
fn classify_rule(line: &str) -> PfRule {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("anchor") => {
            if line.contains('{') {
                return PfRule::Inline;
            }
            let Some(name) = words.next().map(|n| n.trim_matches('"').to_string()) else {
                return PfRule::Other;
            };
            match rule_words(words) {
                // `pfctl` prints `all` for an anchor rule without conditions.
                Some((quick, _)) => PfRule::Anchor { name, quick },
                None => PfRule::Other,
            }
        }
        Some(action @ ("block" | "pass")) => match rule_words(words) {
            Some((quick, true)) if action == "block" => PfRule::Unconditional(Unconditional::Block { quick }),
            Some((quick, true)) => PfRule::Unconditional(Unconditional::Pass { quick }),
            _ => PfRule::Other,
        },
        _ => PfRule::Other,
    }
}

/// Deepest anchor nesting followed.
pub const MAX_ANCHOR_DEPTH: usize = 8;
/// Most anchors read for one evaluation.
pub const MAX_ANCHORS: usize = 64;

/// Where the rules of anchors come from (`pfctl -a` on a host, a map in tests).
pub trait PfAnchors {
    /// The rules of the anchor at `path` as `pfctl -a PATH -s rules` prints them.
    fn rules(&mut self, path: &str) -> Result<String, String>;
    /// The full paths of the anchors directly below `path` (`pfctl -a PATH -s Anchors`).
    fn children(&mut self, path: &str) -> Result<Vec<String>, String>;
}

/// Resolves an anchor call made inside the anchor `current`: relative to
/// it, absolute with a leading `/`, `..` going up.
fn resolve_anchor(current: &str, name: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = if name.starts_with('/') {
        Vec::new()
    } else {
        current.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in name.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            parts.pop().ok_or_else(|| format!("anchor {name:?} reaches above the main rule set"))?;
        } else {
            parts.push(part);
        }
    }
    Ok(parts.join("/"))
}

/// The verdict so far for inbound traffic no specific rule matches.
struct Walk<'a> {
    anchors: &'a mut dyn PfAnchors,
    read: usize,
    /// (blocks, which rule decided, whether it was quick).
    verdict: Option<(bool, String, bool)>,
    /// Whether an unconditional rule matched since the count was reset (for `quick` anchors).
    matched: bool,
}

fn rule_name(path: &str, n: usize) -> String {
    if path.is_empty() { format!("rule {n}") } else { format!("rule {n} of anchor {path}") }
}

impl Walk<'_> {
    /// Evaluates the rules of `path` in order; `Ok(true)` when a quick rule
    /// ended the evaluation.
    fn ruleset(&mut self, path: &str, text: &str, depth: usize) -> Result<bool, String> {
        for (i, line) in text.lines().enumerate() {
            let here = rule_name(path, i + 1);
            match classify_rule(line.trim()) {
                PfRule::Unconditional(u) => {
                    self.matched = true;
                    let (blocks, quick) = match u {
                        Unconditional::Block { quick } => (true, quick),
                        Unconditional::Pass { quick } => (false, quick),
                    };
                    self.verdict = Some((blocks, here, quick));
                    if quick {
                        // A quick match ends evaluation for every packet, whatever follows.
                        return Ok(true);
                    }
                }
                PfRule::Anchor { name, quick } => {
                    let before = std::mem::replace(&mut self.matched, false);
                    if self.anchor(path, &name, depth + 1)? {
                        return Ok(true);
                    }
                    if quick && self.matched {
                        return Ok(true);
                    }
                    self.matched |= before;
                }
                PfRule::Inline => {
                    return Err(format!("{here} is an inline anchor, which this agent does not evaluate"));
                }
                PfRule::Other => {}
            }
        }
        Ok(false)
    }

    /// Evaluates the anchor call `name` made in `current`.
    fn anchor(&mut self, current: &str, name: &str, depth: usize) -> Result<bool, String> {
        if depth > MAX_ANCHOR_DEPTH {
            return Err(format!("anchors are nested deeper than {MAX_ANCHOR_DEPTH} levels at {name:?}"));
        }
        let (base, wildcard) = match name.strip_suffix("/*") {
            Some(b) => (b, true),
            None if name == "*" => ("", true),
            None => (name, false),
        };
        let base = resolve_anchor(current, base)?;
        // A wildcard evaluates each child (alphabetically), not the anchor's own rules.
        let targets = if wildcard {
            let mut c = self.anchors.children(&base)?;
            c.sort();
            c
        } else {
            vec![base]
        };
        for target in targets {
            self.read += 1;
            if self.read > MAX_ANCHORS {
                return Err(format!("more than {MAX_ANCHORS} anchors to read"));
            }
            let rules = self.anchors.rules(&target)?;
            if self.ruleset(&target, &rules, depth)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether the effective pf rule set (the main rules of `pfctl -s rules`
/// with every anchor they call) blocks inbound traffic by default, with
/// why; `Err` when an anchor cannot be read or followed.
pub fn evaluate_pf_rules(main: &str, anchors: &mut dyn PfAnchors) -> Result<(bool, String), String> {
    let mut walk = Walk { anchors, read: 0, verdict: None, matched: false };
    walk.ruleset("", main, 0)?;
    Ok(match walk.verdict {
        Some((true, r, false)) => {
            (true, format!("{r} blocks all inbound traffic not passed by a later rule"))
        }
        Some((true, r, true)) => (true, format!("{r} blocks all inbound traffic (quick)")),
        Some((false, r, true)) => (false, format!("{r} passes everything (quick)")),
        Some((false, r, false)) => (false, format!("{r} passes all inbound traffic")),
        None => (false, "no rule blocks inbound traffic by default".into()),
    })
}

/// Parses `pfctl -a PATH -s Anchors`: one anchor path per line, indented.
pub fn parse_pf_anchors(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
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

/// Anchors read through `pfctl -a`, their output kept in the raw observation.
struct HostAnchors<'a> {
    host: &'a dyn Host,
    raw: &'a mut String,
}

impl PfAnchors for HostAnchors<'_> {
    fn rules(&mut self, path: &str) -> Result<String, String> {
        let text = run_text(self.host, "pfctl", &["-a", path, "-s", "rules"])
            .map_err(|e| format!("anchor {path} unreadable: {e}"))?;
        self.raw.push_str(&format!("# anchor {path}\n{text}"));
        Ok(text)
    }

    fn children(&mut self, path: &str) -> Result<Vec<String>, String> {
        match self.host.run("pfctl", &["-a", path, "-s", "Anchors"]) {
            Ok(out) if out.success() => {
                self.raw.push_str(&format!("# anchors under {path}\n{}", out.stdout));
                Ok(parse_pf_anchors(&out.stdout))
            }
            // No such anchor: nothing below it to evaluate.
            Ok(out) if out.stderr.contains("not found") => Ok(Vec::new()),
            Ok(out) => Err(format!(
                "anchors under {path} unreadable: pfctl -a {path} -s Anchors exited with {:?}: {}",
                out.code,
                out.stderr.trim()
            )),
            Err(e) => Err(format!("anchors under {path} unreadable: {e}")),
        }
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
                let mut anchors = HostAnchors { host, raw };
                match evaluate_pf_rules(&rules, &mut anchors) {
                    Ok((deny, why)) => Pf::Enabled(deny, why),
                    Err(e) => {
                        Pf::Unreadable(format!("pf is enabled but its rule set cannot be evaluated: {e}"))
                    }
                }
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

    use std::collections::BTreeMap;

    /// Anchors from a map; a missing entry cannot be read.
    #[derive(Default)]
    struct Map {
        rules: BTreeMap<&'static str, &'static str>,
        children: BTreeMap<&'static str, Vec<String>>,
    }

    impl PfAnchors for Map {
        fn rules(&mut self, path: &str) -> Result<String, String> {
            self.rules.get(path).map(|r| r.to_string()).ok_or_else(|| format!("anchor {path} unreadable"))
        }
        fn children(&mut self, path: &str) -> Result<Vec<String>, String> {
            Ok(self.children.get(path).cloned().unwrap_or_default())
        }
    }

    fn parse_pf_rules(text: &str) -> (bool, String) {
        evaluate_pf_rules(text, &mut Map::default()).unwrap()
    }

    #[test]
    fn anchors_are_followed_where_they_stand() {
        let main =
            "block drop in all\npass in quick on lo0 all flags S/SA keep state\nanchor \"com.apple/*\" all\n";
        let mut m = Map::default();
        m.children.insert(
            "com.apple",
            vec!["com.apple/250.ApplicationFirewall".into(), "com.apple/200.AirDrop".into()],
        );
        m.rules.insert("com.apple/200.AirDrop", "");
        m.rules.insert(
            "com.apple/250.ApplicationFirewall",
            "pass in on awdl0 proto udp from any to any port = 5353 keep state\n",
        );
        assert!(evaluate_pf_rules(main, &mut m).unwrap().0);

        // A pass-all inside an anchor after the block reopens everything.
        m.rules.insert("com.apple/200.AirDrop", "anchor \"Bonjour\" all\n");
        m.rules.insert("com.apple/200.AirDrop/Bonjour", "pass in all flags S/SA keep state\n");
        let (deny, why) = evaluate_pf_rules(main, &mut m).unwrap();
        assert!(!deny);
        assert_eq!(why, "rule 1 of anchor com.apple/200.AirDrop/Bonjour passes all inbound traffic");

        // ... but not before it: pf is last-match.
        let early = "anchor \"com.apple/*\" all\nblock drop in all\n";
        assert!(evaluate_pf_rules(early, &mut m).unwrap().0);
        // A quick block inside an anchor ends the evaluation.
        m.rules.insert("com.apple/200.AirDrop/Bonjour", "block drop in quick all\n");
        let reopened = "anchor \"com.apple/*\" all\npass in all\n";
        assert!(evaluate_pf_rules(reopened, &mut m).unwrap().0);
        // A quick anchor stops after a match inside it.
        let quick_anchor = "anchor \"x\" quick all\npass in all\n";
        m.rules.insert("x", "block drop in all\n");
        assert!(evaluate_pf_rules(quick_anchor, &mut m).unwrap().0);
        m.rules.insert("x", "block drop in on en0 all\n");
        assert!(!evaluate_pf_rules(quick_anchor, &mut m).unwrap().0, "nothing matched inside");
    }

    #[test]
    fn unreadable_deep_and_inline_anchors_are_errors() {
        let mut m = Map::default();
        let e = evaluate_pf_rules("block drop in all\nanchor \"vpn\" all\n", &mut m).unwrap_err();
        assert_eq!(e, "anchor vpn unreadable");
        // An anchor calling itself stops at the depth bound.
        m.rules.insert("loop", "anchor \"/loop\" all\n");
        let e = evaluate_pf_rules("anchor \"loop\" all\n", &mut m).unwrap_err();
        assert!(e.contains("deeper than 8"), "{e}");
        let e = evaluate_pf_rules("anchor \"x\" all {\n", &mut m).unwrap_err();
        assert!(e.contains("inline anchor"), "{e}");
        // Conditional anchors are not followed, like conditional rules.
        assert!(evaluate_pf_rules("block drop in all\nanchor \"vpn\" on utun3 all\n", &mut m).unwrap().0);
        assert_eq!(resolve_anchor("a/b", "../c"), Ok("a/c".into()));
        assert_eq!(resolve_anchor("a/b", "/c"), Ok("c".into()));
        assert!(resolve_anchor("", "../c").is_err());
        assert_eq!(
            parse_pf_anchors("  com.apple/200.AirDrop\n  com.apple/250.ApplicationFirewall\n").len(),
            2
        );
    }

    #[test]
    fn pf_rules_are_last_match() {
        let deny = "scrub-anchor \"com.apple/*\" all fragment reassemble\nblock drop in all\n\
                    pass in quick on lo0 all flags S/SA keep state\npass out all flags S/SA keep state\n";
        assert!(parse_pf_rules(deny).0);
        let reopened = "block drop in all\npass in all flags S/SA keep state\n";
        assert!(!parse_pf_rules(reopened).0);
        let quick = "pass in quick all no state\nblock drop in all\n";
        assert!(!parse_pf_rules(quick).0);
        let apple_default = "scrub-anchor \"com.apple/*\" all fragment reassemble\n";
        assert!(!parse_pf_rules(apple_default).0);
        assert!(!parse_pf_rules("block drop in on en0 all\n").0);
    }
}
