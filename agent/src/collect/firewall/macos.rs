//! The macOS backend of the `firewall` check: what gets in, through both
//! of the Mac's inbound filters.
//!
//! A new inbound connection meets pf first (in the kernel's packet path)
//! and then the application firewall (a socket filter), so it arrives only
//! when pf passes it and the application firewall allows its program. The
//! application firewall is read as `alf.rs` says; pf with `pfctl -s info`
//! (`Status: Enabled`), `pfctl -s rules` and what those rules reach
//! (anchors, tables), evaluated by meaning as `pf.rs` says, and `pfctl -s
//! nat`, whose `rdr`/`binat` rules make pf's verdict undecidable (see
//! [`check_translation`]); pfctl needs root.
//!
//! What gets in is the intersection where it can be computed: pf's
//! exposures limited to the programs the application firewall allows when
//! it is on, pf's alone when it is off, the application firewall's alone
//! when pf is disabled (or unreadable, which can only make more get in).
//! The status is [`exposure::judge`] of that: pass when only specific
//! services (or programs) get in, fail when something broad does, naming
//! the rule; unknown when the application firewall is off and pf cannot be
//! read, or pf's verdict depends on a construct it does not evaluate.

use serde_json::Value;

use super::alf::{self, Alf, SOCKETFILTERFW};
use super::exposure::{self, Exposure, Family, Judgement};
use super::pf::{PfAnchors, PfOutcome, check_translation, evaluate_pf_rules, parse_pf_anchors};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

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

/// What was read of pf.
#[derive(Debug, Clone, PartialEq)]
pub enum Pf {
    /// Enabled, with what its rules pass.
    Enabled(PfOutcome),
    Disabled,
    /// Could not be read or evaluated, with why.
    Unreadable(String),
}

/// Most exposures listed when pf's are intersected with the application
/// firewall's (beyond it, the application firewall's alone are listed).
const MAX_COMBINED: usize = 256;

/// pf's exposures limited to what the application firewall allows.
fn intersect(pf: &[Exposure], allowed: &[Exposure]) -> Vec<Exposure> {
    if pf.len().saturating_mul(allowed.len()) > MAX_COMBINED {
        return allowed
            .iter()
            .map(|a| Exposure { qualifiers: vec!["where pf passes it".into()], ..a.clone() })
            .collect();
    }
    let mut out = Vec::new();
    for e in pf {
        for a in allowed {
            let mut both = e.clone();
            both.program = a.program.clone();
            both.certain = e.certain && a.certain;
            both.because = format!("{}, and {}", e.because, a.because);
            out.push(both);
        }
    }
    out
}

/// What gets in, when it can be told, with a note on how it was computed.
fn what_gets_in(alf: &Alf, pf: &Pf) -> Option<Vec<Exposure>> {
    match (alf.state, pf) {
        (Some(1 | 2), _) if alf.blocks_all() => Some(Vec::new()),
        (Some(1 | 2), Pf::Enabled(o)) => Some(intersect(&o.exposures, &alf.allowance())),
        (Some(1 | 2), _) => Some(alf.allowance()),
        (Some(0) | None, Pf::Enabled(o)) => Some(o.exposures.clone()),
        (Some(0), Pf::Disabled) => {
            Some(vec![Exposure::everything(Family::Any, "application firewall off and pf disabled")])
        }
        _ => None,
    }
}

/// pf's own verdict in words (for reasons).
fn pf_note(pf: &Pf) -> String {
    match pf {
        Pf::Enabled(o) => match exposure::judge(&o.exposures) {
            Judgement::Filtered => {
                let by = o.default_block.as_deref().unwrap_or("no rule passes anything");
                let listed: Vec<&Exposure> = o.exposures.iter().collect();
                format!(
                    "pf enabled and blocks inbound by default ({by}); pf passes only: {}",
                    exposure::list_text(&listed, 8)
                )
            }
            Judgement::Open(open) => {
                format!("pf enabled but does not block inbound by default ({})", opening(&open))
            }
            Judgement::Unclear(maybe) => {
                format!(
                    "pf enabled, but it may pass inbound traffic by default: {}",
                    exposure::list_text(&maybe, 3)
                )
            }
        },
        Pf::Disabled => "pf disabled".into(),
        Pf::Unreadable(why) => format!("pf cannot be judged: {why}"),
    }
}

/// The first rule that opens the host, and what it passes.
fn opening(open: &[&Exposure]) -> String {
    let Some(first) = open.first() else { return "nothing".into() };
    let rule = &first.because;
    let by_rule: Vec<&Exposure> = open.iter().copied().filter(|e| &e.because == rule).collect();
    let covers = |fam: Family, proto: &str| {
        by_rule.iter().any(|e| {
            (e.family == fam || e.family == Family::Any)
                && (e.proto == proto || e.proto == "any")
                && e.ports.is_full()
                && e.from.is_none()
                && e.via.is_none()
                && e.qualifiers.is_empty()
        })
    };
    let all = [Family::Ipv4, Family::Ipv6].iter().all(|&f| covers(f, "tcp") && covers(f, "udp"));
    if rule == super::pf::DEFAULT_PASS {
        "no rule blocks inbound traffic: pf passes what no rule matches".into()
    } else if all {
        format!("{rule} passes all inbound traffic")
    } else {
        format!("{rule} passes {}", exposure::list_text(&by_rule, 3))
    }
}

/// The application firewall's state in words (`on, stealth mode on`).
fn alf_note(alf: &Alf) -> String {
    let mode = if alf.blocks_all() { "blocks all incoming connections" } else { "on" };
    let stealth = match alf.stealth {
        Some(true) => ", stealth mode on",
        Some(false) => ", stealth mode off",
        None => "",
    };
    let apps = match &alf.apps {
        Err(e) if !alf.blocks_all() => format!("; its list of allowed programs could not be read ({e})"),
        _ => String::new(),
    };
    format!("application firewall {mode}{stealth}{apps}")
}

fn status_of(j: &Judgement) -> CheckStatus {
    match j {
        Judgement::Filtered => CheckStatus::Pass,
        Judgement::Open(_) => CheckStatus::Fail,
        Judgement::Unclear(_) => CheckStatus::Unknown,
    }
}

/// Decides the check from the application firewall and pf.
pub fn evaluate(alf: &Alf, pf: &Pf, raw: String) -> Finding {
    let through = what_gets_in(alf, pf);
    let mut f = facts(Finding::new(CheckStatus::Unknown, "socketfilterfw"), alf, pf, through.as_deref())
        .with_raw(raw);
    let judged = through.as_deref().map(exposure::judge);
    let listed = |t: &[Exposure]| exposure::list_text(&t.iter().collect::<Vec<_>>(), 8);
    let (status, reason) = match (alf.state, judged) {
        (Some(n @ 3..), _) => (CheckStatus::Unknown, format!("unexpected application firewall state {n}")),
        (Some(1 | 2), Some(j)) => {
            let t = through.as_deref().unwrap_or_default();
            (status_of(&j), format!("{}; what gets in: {}", alf_note(alf), listed(t)))
        }
        (_, Some(Judgement::Filtered)) => {
            f.backend = "pf".into();
            let prefix = if alf.state.is_some() {
                "application firewall off"
            } else {
                "application firewall state unreadable"
            };
            (CheckStatus::Pass, format!("{prefix}; {}", pf_note(pf)))
        }
        (None, _) => {
            (CheckStatus::Unknown, format!("application firewall state unreadable; {}", pf_note(pf)))
        }
        (_, Some(j)) => (status_of(&j), format!("application firewall off; {}", pf_note(pf))),
        (_, None) => (
            CheckStatus::Unknown,
            format!("application firewall off and {}; pf alone might filter", pf_note(pf)),
        ),
    };
    f.status = status;
    f.with_reason(reason)
}

/// The facts: the application firewall's settings, pf's state and verdict,
/// and what gets in.
fn facts(f: Finding, alf: &Alf, pf: &Pf, through: Option<&[Exposure]>) -> Finding {
    let pf_fact = match pf {
        Pf::Enabled(_) => "enabled",
        Pf::Disabled => "disabled",
        Pf::Unreadable(_) => "unknown",
    };
    let mut f = f
        .fact("application_firewall_state", alf.state.map(u64::from))
        .fact("block_all", alf.block_all)
        .fact("stealth_mode", alf.stealth)
        .fact("allow_built_in_signed", alf.signed_built_in)
        .fact("allow_downloaded_signed", alf.signed_downloaded)
        .fact("allowed_apps", alf.allowed_apps())
        .fact("pf", pf_fact)
        .fact("exposed", through.map_or(Value::Null, exposure::to_facts));
    if let Pf::Enabled(o) = pf {
        // "pf alone admits only specific services"; left out when undecided.
        match exposure::judge(&o.exposures) {
            Judgement::Filtered => f = f.fact("pf_default_deny", true),
            Judgement::Open(_) => f = f.fact("pf_default_deny", false),
            Judgement::Unclear(_) => {}
        }
    }
    f
}

pub(super) fn run_text(host: &dyn Host, program: &str, args: &[&str]) -> Result<String, String> {
    match host.run(program, args) {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => {
            let msg = if out.stderr.trim().is_empty() { out.stdout.trim() } else { out.stderr.trim() };
            Err(format!("{program} {} exited with {:?}: {msg}", args.join(" "), out.code))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Anchors and tables read through `pfctl`, their output kept in the raw observation.
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

    fn nat(&mut self, path: &str) -> Result<String, String> {
        let args: &[&str] = if path.is_empty() { &["-s", "nat"] } else { &["-a", path, "-s", "nat"] };
        let text =
            run_text(self.host, "pfctl", args).map_err(|e| format!("translation rules unreadable: {e}"))?;
        self.raw.push_str(&format!("# translation rules {path}\n{text}"));
        Ok(text)
    }

    fn table(&mut self, anchor: &str, name: &str) -> Result<Option<String>, String> {
        let mut args = if anchor.is_empty() { Vec::new() } else { vec!["-a", anchor] };
        args.extend(["-t", name, "-T", "show"]);
        match self.host.run("pfctl", &args) {
            Ok(out) if out.success() => {
                self.raw.push_str(&format!("# table <{name}> {anchor}\n{}", out.stdout));
                Ok(Some(out.stdout))
            }
            Ok(out) if out.stderr.contains("Table does not exist") => Ok(None),
            Ok(out) => {
                Err(format!("pfctl {} exited with {:?}: {}", args.join(" "), out.code, out.stderr.trim()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn services(&mut self) -> Option<String> {
        self.host.read_text("/etc/services").ok()
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
                    Ok(outcome) => match check_translation(&mut anchors) {
                        Ok(()) => Pf::Enabled(outcome),
                        Err(e) => {
                            Pf::Unreadable(format!("pf is enabled but what it lets in cannot be told: {e}"))
                        }
                    },
                    Err(e) => {
                        Pf::Unreadable(format!("pf is enabled but its rule set cannot be evaluated: {e}"))
                    }
                }
            }
            Err(e) => Pf::Unreadable(format!("pf is enabled but its rules are unreadable: {e}")),
        },
    }
}

/// Reads the application firewall through `socketfilterfw`.
pub fn observe_alf(host: &dyn Host, ctx: &Context, raw: &mut String) -> Alf {
    let mut ask = |arg: &str| match run_text(host, SOCKETFILTERFW, &[arg]) {
        Ok(text) => {
            raw.push_str(&text);
            Ok(text)
        }
        Err(e) => Err(e),
    };
    let state = ask("--getglobalstate").ok().as_deref().and_then(alf::parse_global_state);
    let block_all = ask("--getblockall").ok().as_deref().and_then(alf::parse_on_off);
    let stealth = ask("--getstealthmode").ok().as_deref().and_then(alf::parse_on_off);
    let (signed_built_in, signed_downloaded) =
        ask("--getallowsigned").ok().as_deref().map_or((None, None), alf::parse_allow_signed);
    let apps =
        ask("--listapps").and_then(|t| alf::parse_listapps(&t).map_err(|e| e.to_string())).map(|apps| {
            apps.into_iter().map(|a| alf::App { path: alf::recordable_path(&a.path, ctx), ..a }).collect()
        });
    Alf { state, block_all, stealth, signed_built_in, signed_downloaded, apps }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let mut raw = String::new();
    let alf = observe_alf(host, ctx, &mut raw);
    let pf = observe_pf(host, &mut raw);
    evaluate(&alf, &pf, raw)
}

#[cfg(test)]
#[path = "macos_tests.rs"]
mod tests;
