//! The Windows backend of the `firewall` check: Windows Defender Firewall's
//! effective profiles and inbound rules, judged by what they admit.
//!
//! Reads, changing nothing:
//! - the *effective* profiles (local settings merged with Group Policy):
//!   `Get-NetFirewallProfile -PolicyStore ActiveStore` as JSON: `Name`,
//!   `Enabled` (GpoBoolean: 0 False, 1 True, 2 NotConfigured),
//!   `DefaultInboundAction` (0 NotConfigured, 2 Allow, 4 Block),
//!   `AllowInboundRules` and `AllowLocalFirewallRules` (GpoBoolean;
//!   NotConfigured on the ActiveStore is the documented default, True).
//!   When PowerShell cannot answer: `netsh advfirewall show allprofiles`
//!   (English text: `State ON`, `Firewall Policy BlockInbound,AllowOutbound`,
//!   `BlockInboundAlways` being shields-up, `LocalFirewallRules`).
//! - every inbound rule of the ActiveStore with its port, address,
//!   application, service, interface and security filters, in one
//!   PowerShell invocation (`windows_rules`); when PowerShell cannot answer:
//!   `netsh advfirewall firewall show rule name=all dir=in verbose`.
//!
//! What profiles and rules admit is computed in `windows_reach`, where the
//! semantics and their Microsoft sources are written down: a profile that
//! is off or allows by default admits everything; one with
//! `AllowInboundRules` False admits nothing; otherwise the enabled allow
//! rules for that profile, less what block rules clearly cover, each an
//! [`Exposure`].
//!
//! Status rule: fail when the Domain, Private or Public profile is off or
//! allows inbound traffic by default, or when an allow rule certainly admits
//! more than a specific service ([`judge`]: more than `MAX_SERVICE_PORTS`
//! ports, not limited to one program), naming the rule and its profiles.
//! Unknown when a profile is missing or not resolved, when the rules cannot
//! be read or were read only through netsh (which does not show the
//! ActiveStore: the profiles and the rules netsh shows no longer prove that
//! nothing admits everything), or when a rule possibly admits that much
//! (naming why). Pass otherwise, listing what the allow rules admit.

use serde_json::{Map, Value, json};

use super::exposure::{Exposure, Judgement, capped_facts, judge, list_text};
use super::windows_reach::{Gate, Reach, reach, rule_reason};
use super::windows_rules::{NETSH_RULES_ARGS, RULES_SCRIPT, Rule, parse_netsh_rules, parse_rules_json};
use super::windows_values::{DOMAIN, PRIVATE, PUBLIC};
use crate::collect::windows::{Unavailable, console, json_bool, json_items, json_str, powershell};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND_PS: &str = "netsecurity";
const BACKEND_NETSH: &str = "netsh";

/// Why rules read through netsh cannot show that nothing admits everything.
const NETSH_PARTIAL: &str = "the rules were read through netsh, which does not show the ActiveStore \
     (rules of other policy stores, such as MDM, may be missing)";

/// Effective firewall profiles, GPO merged; enums print as numbers.
pub const PROFILE_SCRIPT: &str = "$ErrorActionPreference='Stop'; ConvertTo-Json -InputObject @(Get-NetFirewallProfile -PolicyStore ActiveStore | Select-Object Name,Enabled,DefaultInboundAction,DefaultOutboundAction,AllowInboundRules,AllowLocalFirewallRules)";

/// One firewall profile as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `Domain`, `Private` or `Public`.
    pub name: String,
    /// `None` when not resolved (NotConfigured) or unreadable.
    pub enabled: Option<bool>,
    /// `Block`, `Allow`, `NotConfigured` (Block on the ActiveStore) or
    /// `BlockAll` (netsh's shields-up).
    pub default_inbound: String,
    /// `AllowInboundRules`; `None` when not read (taken as the default, True).
    pub allow_inbound_rules: Option<bool>,
    /// `AllowLocalFirewallRules`; `None` when not read.
    pub allow_local_rules: Option<bool>,
}

impl Profile {
    fn blocks_inbound(&self) -> bool {
        matches!(self.default_inbound.as_str(), "Block" | "NotConfigured" | "BlockAll")
    }
    fn to_json(&self) -> Value {
        json!({"name": self.name, "enabled": self.enabled, "default_inbound": self.default_inbound})
    }
}

/// The inbound rules and the reader that produced them.
#[derive(Debug, Clone)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub backend: &'static str,
}

fn gpo_boolean(v: Option<&Value>) -> Option<bool> {
    match v {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("NotConfigured") => None,
        Some(Value::Number(n)) if n.as_i64() == Some(2) => None,
        other => json_bool(other),
    }
}

/// A GpoBoolean whose NotConfigured means `default` (absent stays `None`).
fn gpo_boolean_or(v: Option<&Value>, default: bool) -> Option<bool> {
    v.filter(|v| !v.is_null()).map(|v| gpo_boolean(Some(v)).unwrap_or(default))
}

fn inbound_action(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => "NotConfigured".into(),
            Some(2) => "Allow".into(),
            Some(4) => "Block".into(),
            other => format!("unknown ({other:?})"),
        },
        _ => "unknown".into(),
    }
}

/// Parses the JSON of [`PROFILE_SCRIPT`].
pub fn parse_netfirewallprofile(text: &str) -> Result<Vec<Profile>, ParseError> {
    let items = json_items(text)?;
    let profiles: Vec<Profile> = items
        .iter()
        .filter_map(|p| {
            Some(Profile {
                name: json_str(p, "Name")?.to_string(),
                enabled: gpo_boolean(p.get("Enabled")),
                default_inbound: inbound_action(p.get("DefaultInboundAction")),
                allow_inbound_rules: gpo_boolean_or(p.get("AllowInboundRules"), true),
                allow_local_rules: gpo_boolean_or(p.get("AllowLocalFirewallRules"), true),
            })
        })
        .collect();
    if profiles.is_empty() {
        return Err(ParseError::new("listed no profile").in_command("Get-NetFirewallProfile"));
    }
    Ok(profiles)
}

/// Parses `netsh advfirewall show allprofiles` (English output).
pub fn parse_netsh_allprofiles(text: &str) -> Result<Vec<Profile>, ParseError> {
    let mut profiles: Vec<Profile> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(head) =
            line.strip_suffix(':').map(str::trim).and_then(|h| h.strip_suffix("Profile Settings"))
        {
            profiles.push(Profile {
                name: head.trim().to_string(),
                enabled: None,
                default_inbound: "unknown".into(),
                allow_inbound_rules: None,
                allow_local_rules: None,
            });
            continue;
        }
        let Some(current) = profiles.last_mut() else { continue };
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match (key, value.trim()) {
            ("State", "ON") => current.enabled = Some(true),
            ("State", "OFF") => current.enabled = Some(false),
            ("Firewall", v) if v.starts_with("Policy") => netsh_policy(current, v),
            ("LocalFirewallRules", "Enable") => current.allow_local_rules = Some(true),
            ("LocalFirewallRules", "Disable") => current.allow_local_rules = Some(false),
            _ => {}
        }
    }
    if profiles.is_empty() {
        let why = "printed no \"... Profile Settings:\" section (non-English output?)";
        return Err(ParseError::new(why).in_command("netsh"));
    }
    Ok(profiles)
}

/// `Policy BlockInbound,AllowOutbound`; `BlockInboundAlways` ignores the
/// allow rules (AllowInboundRules False).
fn netsh_policy(p: &mut Profile, value: &str) {
    let inbound = value.trim_start_matches("Policy").trim().split(',').next().unwrap_or("").trim();
    p.default_inbound = match inbound {
        "BlockInbound" => "Block".into(),
        "BlockInboundAlways" => "BlockAll".into(),
        "AllowInbound" => "Allow".into(),
        "NotConfigured" => "NotConfigured".into(),
        other => format!("unknown ({other})"),
    };
    p.allow_inbound_rules = Some(inbound != "BlockInboundAlways");
}

/// What the profiles say before any rule is read.
#[derive(Debug, Default)]
struct ProfileVerdict {
    /// Certain failures (a profile off or allowing by default).
    problems: Vec<String>,
    unclear: Vec<String>,
    /// Said in a passing reason (a profile that ignores allow rules).
    notes: Vec<String>,
    gates: Vec<(&'static str, u8, Gate)>,
}

fn profile_verdict(profiles: &[Profile]) -> ProfileVerdict {
    let mut v = ProfileVerdict::default();
    for (name, bit) in [("Domain", DOMAIN), ("Private", PRIVATE), ("Public", PUBLIC)] {
        let gate = match profiles.iter().find(|p| p.name.eq_ignore_ascii_case(name)) {
            None => {
                let why = format!("{name} profile not listed");
                v.unclear.push(why.clone());
                Gate::Everything { certain: false, why }
            }
            Some(p) => profile_gate(name, p, &mut v),
        };
        v.gates.push((name, bit, gate));
    }
    v
}

fn profile_gate(name: &str, p: &Profile, v: &mut ProfileVerdict) -> Gate {
    let (mut open, mut unclear) = (Vec::new(), Vec::new());
    match p.enabled {
        Some(true) => {}
        Some(false) => open.push(format!("{name} profile is off")),
        None => unclear.push(format!("{name} profile state is not resolved")),
    }
    if p.default_inbound.starts_with("unknown") {
        unclear.push(format!("{name} profile inbound action is {}", p.default_inbound));
    } else if !p.blocks_inbound() {
        open.push(format!("{name} profile allows inbound traffic by default"));
    }
    let gate = if let Some(why) = open.first() {
        Gate::Everything { certain: true, why: why.clone() }
    } else if let Some(why) = unclear.first() {
        Gate::Everything { certain: false, why: why.clone() }
    } else if p.default_inbound == "BlockAll" || p.allow_inbound_rules == Some(false) {
        v.notes.push(format!("{name} profile ignores inbound allow rules"));
        Gate::Nothing
    } else {
        Gate::Rules { merge_local: p.allow_local_rules }
    };
    v.problems.extend(open);
    v.unclear.extend(unclear);
    gate
}

/// The reasons of the broad exposures rules make: certain (judged open by
/// [`judge`]) and possible ones.
fn rule_reasons(r: &Reach) -> (Vec<String>, Vec<String>) {
    let reason = |e: &Exposure| {
        let i = r.exposures.iter().position(|x| std::ptr::eq(x, e))?;
        rule_reason(e, &r.meta[i])
    };
    let open = match judge(&r.exposures) {
        Judgement::Open(v) => v.into_iter().filter_map(reason).collect(),
        _ => Vec::new(),
    };
    let maybe = r.exposures.iter().filter(|e| e.is_broad() && !e.certain).filter_map(reason).collect();
    (open, maybe)
}

/// Per profile, a setting as a fact object (`{"Domain": true, ...}`).
fn per_profile(profiles: &[Profile], get: fn(&Profile) -> Option<bool>) -> Value {
    let map: Map<String, Value> = profiles.iter().map(|p| (p.name.clone(), json!(get(p)))).collect();
    Value::Object(map)
}

/// Decides the check from the profiles read by `backend` and the inbound
/// rules (or why they could not be read).
pub fn evaluate(
    profiles: &[Profile],
    rules: &Result<Rules, String>,
    backend: &str,
    raw: &str,
    ctx: &Context,
) -> Finding {
    let mut v = profile_verdict(profiles);
    if let Err(e) = rules {
        for (_, _, gate) in v.gates.iter_mut().filter(|g| matches!(g.2, Gate::Rules { .. })) {
            *gate = Gate::Everything { certain: false, why: "inbound rules could not be read".into() };
        }
        v.unclear.push(format!(
            "inbound firewall rules could not be read ({e}), so no profile can be shown to filter"
        ));
    }
    // netsh shows the rules it knows, not the ActiveStore: what it does not
    // show could admit anything, so rules read through it never pass.
    let partial = matches!(rules, Ok(r) if r.backend == BACKEND_NETSH);
    if partial && v.gates.iter().any(|g| matches!(g.2, Gate::Rules { .. })) {
        v.unclear.push(NETSH_PARTIAL.into());
    }
    let list = rules.as_ref().map_or(&[][..], |r| &r.rules[..]);
    let reach = reach(&v.gates, list, partial.then_some(NETSH_PARTIAL), ctx);
    let (open, maybe) = rule_reasons(&reach);
    let finding = |status| {
        Finding::new(status, backend)
            .fact("profiles_enabled", profiles.iter().filter(|p| p.enabled == Some(true)).count())
            .fact("profiles", profiles.iter().map(Profile::to_json).collect::<Vec<_>>())
            .fact("allow_inbound_rules", per_profile(profiles, |p| p.allow_inbound_rules))
            .fact("allow_local_rules", per_profile(profiles, |p| p.allow_local_rules))
            .fact("rules_read", rules.as_ref().ok().map(|r| r.rules.len()))
            .fact("rules_backend", rules.as_ref().ok().map(|r| r.backend))
            .fact("exposed", capped_facts(&reach.exposures))
            .fact("exposed_total", reach.exposures.len())
            .fact("exposed_other", reach.other_facts())
            .with_raw(raw)
    };
    if !v.problems.is_empty() || !open.is_empty() {
        let all = [v.problems, open, v.unclear, maybe].concat();
        return finding(CheckStatus::Fail).with_reason(all.join("; "));
    }
    if !v.unclear.is_empty() || !maybe.is_empty() {
        return finding(CheckStatus::Unknown).with_reason([v.unclear, maybe].concat().join("; "));
    }
    let mut reason = String::from("Domain, Private and Public profiles are on and block inbound by default");
    for n in &v.notes {
        reason.push_str(&format!("; {n}"));
    }
    let refs: Vec<&Exposure> = reach.exposures.iter().collect();
    reason.push_str(&format!("; inbound allow rules admit only specific services: {}", list_text(&refs, 10)));
    finding(CheckStatus::Pass).with_reason(reason)
}

/// Why a source gave no answer, for a reason.
fn why(u: &Unavailable) -> String {
    match u {
        Unavailable::Denied(m) => format!("needs administrator rights ({m})"),
        other => other.message().to_string(),
    }
}

/// The profiles, from PowerShell or netsh, with the backend and raw text;
/// the `unknown` finding when neither answers.
fn read_profiles(host: &dyn Host) -> Result<(Vec<Profile>, &'static str, String), Finding> {
    let ps_problem = match powershell(host, PROFILE_SCRIPT) {
        Ok(text) => match parse_netfirewallprofile(&text) {
            Ok(profiles) => return Ok((profiles, BACKEND_PS, text)),
            Err(e) => Unavailable::Failed(e.to_string()),
        },
        Err(e) => e,
    };
    match console(host, "netsh", &["advfirewall", "show", "allprofiles"]) {
        Ok(text) => match parse_netsh_allprofiles(&text) {
            Ok(profiles) => Ok((profiles, BACKEND_NETSH, text)),
            Err(e) => Err(Finding::unknown(
                BACKEND_NETSH,
                format!("{e}; Get-NetFirewallProfile: {}", ps_problem.message()),
            )
            .with_raw(text)),
        },
        Err(e) => Err(e.unknown(
            BACKEND_NETSH,
            &format!(
                "firewall profiles could not be read (Get-NetFirewallProfile: {})",
                ps_problem.message()
            ),
        )),
    }
}

/// The inbound rules, from PowerShell or netsh, with the raw text.
fn read_rules(host: &dyn Host) -> (Result<Rules, String>, String) {
    let ps_problem = match powershell(host, RULES_SCRIPT) {
        Ok(text) => match parse_rules_json(&text) {
            Ok(rules) => return (Ok(Rules { rules, backend: BACKEND_PS }), text),
            Err(e) => e.to_string(),
        },
        Err(e) => why(&e),
    };
    match console(host, "netsh", &NETSH_RULES_ARGS) {
        Ok(text) => match parse_netsh_rules(&text) {
            Ok(rules) => (Ok(Rules { rules, backend: BACKEND_NETSH }), text),
            Err(e) => (Err(format!("Get-NetFirewallRule: {ps_problem}; netsh: {e}")), text),
        },
        Err(e) => (Err(format!("Get-NetFirewallRule: {ps_problem}; netsh: {}", why(&e))), String::new()),
    }
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let (profiles, backend, raw) = match read_profiles(host) {
        Ok(read) => read,
        Err(finding) => return finding,
    };
    let (rules, rules_raw) = read_rules(host);
    evaluate(&profiles, &rules, backend, &format!("{raw}\n{rules_raw}"), ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_object_and_string_enums() {
        let one = "{\"Name\":\"Public\",\"Enabled\":\"True\",\"DefaultInboundAction\":\"Allow\",\"AllowInboundRules\":2}";
        let p = parse_netfirewallprofile(one).unwrap();
        let want = Profile {
            name: "Public".into(),
            enabled: Some(true),
            default_inbound: "Allow".into(),
            allow_inbound_rules: Some(true),
            allow_local_rules: None,
        };
        assert_eq!(p, vec![want]);
        assert!(parse_netfirewallprofile("garbage").is_err());
    }

    #[test]
    fn netsh_block_inbound_always_counts_as_blocking_and_ignores_rules() {
        let text = "\r\nPublic Profile Settings: \r\n-----\r\nState                                 ON\r\n\
                    Firewall Policy                       BlockInboundAlways,AllowOutbound\r\n\
                    LocalFirewallRules                    N/A (GPO-store only)\r\n";
        let p = parse_netsh_allprofiles(text).unwrap();
        assert_eq!(
            (p[0].name.as_str(), p[0].enabled, p[0].allow_inbound_rules),
            ("Public", Some(true), Some(false))
        );
        assert!(p[0].blocks_inbound() && p[0].allow_local_rules.is_none());
        let v = profile_verdict(&p);
        assert_eq!(v.gates[2].2, Gate::Nothing);
        assert_eq!(v.unclear, vec!["Domain profile not listed", "Private profile not listed"]);
    }
}
