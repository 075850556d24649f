//! What Windows Defender Firewall admits inbound, per profile, from the
//! profiles' settings ([`Gate`]) and the inbound rules ([`Rule`]): the
//! [`Exposure`]s of the Windows backend.
//!
//! Semantics, as Microsoft documents them:
//! - A profile that is off, or whose `DefaultInboundAction` is Allow,
//!   admits everything ("Allow: Allows all inbound network traffic, whether
//!   or not it matches an inbound rule", Set-NetFirewallProfile).
//! - A profile with `AllowInboundRules` False admits nothing: "All inbound
//!   firewall rules are ignored. All inbound traffic will use the
//!   DefaultInboundAction" (Set-NetFirewallProfile; with Block this is
//!   shields-up, netsh's `BlockInboundAlways`).
//! - Otherwise the profile blocks by default and "explicitly defined allow
//!   rules take precedence over the default block setting; explicit block
//!   rules take precedence over any conflicting allow rules", with no
//!   administrator-assigned order (Microsoft Learn, "Windows Firewall
//!   rules", rule precedence). The exception is an allow rule with
//!   `OverrideBlockRules` (action AllowBypass): its authenticated traffic
//!   passes block rules (New-NetFirewallRule -OverrideBlockRules).
//! - A rule applies in the profiles of its `Profile` mask; Any (0, and the
//!   COM API's 0x7fffffff) is all three (New-NetFirewallRule -Profile).
//! - `AllowLocalFirewallRules` False: "The firewall rules defined by the
//!   local administrator are ignored, and only firewall rules from GPOs are
//!   applied" (Set-NetFirewallProfile). Whether the ActiveStore still lists
//!   such rules is not documented, so a local rule in such a profile is
//!   possibly ignored: its exposure is not certain, and as a block rule it
//!   removes nothing.
//!
//! Every enabled allow rule of a profile that honours rules becomes an
//! exposure: family from the addresses (any unless they are all IPv4 or
//! all IPv6), protocol and local ports, remote addresses as `from`, the
//! program (or else the one service or app package) as `program`, the
//! profiles as `via`, other conditions as qualifiers. Protocols without
//! ports (ICMP, IGMP, ...) are listed apart ([`Other`]). A block rule
//! removes an allow exposure, or some of its ports, only where it clearly
//! covers it: read completely, no condition beyond protocol, local ports,
//! remote addresses, program, service and package, each at least as broad
//! as the allow rule's; anything less and the exposure is kept. What could
//! not be read (a filter, a keyword port such as `RPC`, the rule's state,
//! action or profiles) makes the exposure possible only (`certain` false),
//! named in `because`, with the broadest reading. Rules read through netsh
//! are not the ActiveStore (rules of other stores, such as MDM, may be
//! missing): each profile that honours rules then also possibly admits
//! everything (`partial`).

use serde_json::{Value, json};

use super::exposure::{Exposure, Family};
use super::windows_rules::Rule;
use super::windows_values::{Action, Proto, literal};
use crate::collect::Context;
use crate::privacy::Personal;

/// What one profile lets through, before the rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// On, blocking by default, rules honoured; `merge_local` is
    /// `AllowLocalFirewallRules` (`None` when not read).
    Rules { merge_local: Option<bool> },
    /// Shields-up: rules ignored, nothing admitted.
    Nothing,
    /// Everything admitted (or possibly, when not `certain`) because `why`.
    Everything { certain: bool, why: String },
}

/// Where an exposure comes from: the rule (`None` for a profile-wide one)
/// and what makes it uncertain.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub rule: Option<String>,
    pub doubts: Vec<String>,
}

/// A protocol without ports that an allow rule admits.
#[derive(Debug, Clone, PartialEq)]
pub struct Other {
    pub proto: String,
    pub via: Vec<String>,
    pub because: String,
    pub certain: bool,
}

/// Everything the firewall admits; `meta[i]` belongs to `exposures[i]`.
#[derive(Debug, Default)]
pub struct Reach {
    pub exposures: Vec<Exposure>,
    pub meta: Vec<Meta>,
    pub other: Vec<Other>,
}

impl Reach {
    /// Adds `e` for `profile`, joining it with an equal exposure of another
    /// profile.
    fn add(&mut self, mut e: Exposure, meta: Meta, profile: &str) {
        if let Some(i) = self.exposures.iter().position(|x| same_but_via(x, &e)) {
            if let Some(v) = self.exposures[i].via.as_mut() {
                v.push(profile.to_string());
            }
            return;
        }
        e.via = Some(vec![profile.to_string()]);
        self.exposures.push(e);
        self.meta.push(meta);
    }

    fn add_other(&mut self, proto: &str, e: &Exposure, profile: &str) {
        match self.other.iter_mut().find(|o| o.proto == proto && o.because == e.because) {
            Some(o) => o.via.push(profile.to_string()),
            None => self.other.push(Other {
                proto: proto.to_string(),
                via: vec![profile.to_string()],
                because: e.because.clone(),
                certain: e.certain,
            }),
        }
    }

    /// The `exposed_other` fact.
    pub fn other_facts(&self) -> Value {
        Value::Array(
            self.other
                .iter()
                .map(|o| json!({"proto": o.proto, "via": o.via.join(","), "because": o.because, "certain": o.certain}))
                .collect(),
        )
    }
}

fn same_but_via(a: &Exposure, b: &Exposure) -> bool {
    a.family == b.family
        && a.proto == b.proto
        && a.ports == b.ports
        && a.from == b.from
        && a.program == b.program
        && a.qualifiers == b.qualifiers
        && a.certain == b.certain
        && a.because == b.because
}

/// What the firewall admits: `gates` holds each profile's name, bit and
/// gate; `partial` says why `rules` may not be all rules (each profile that
/// honours rules then possibly admits everything).
pub fn reach(gates: &[(&str, u8, Gate)], rules: &[Rule], partial: Option<&str>, ctx: &Context) -> Reach {
    // Every personal value of every rule passes the privacy settings once,
    // so the raw observation is scrubbed of it even when no exposure names it.
    for r in rules {
        if let Some(p) = &r.program {
            private_path(ctx, p);
        }
        for a in r.local.entries.iter().chain(&r.remote.entries) {
            private_address(ctx, a);
        }
    }
    let mut out = Reach::default();
    for (name, bit, gate) in gates {
        match gate {
            Gate::Nothing => {}
            Gate::Everything { certain, why } => {
                let mut e = Exposure::everything(Family::Any, why.clone());
                e.certain = *certain;
                out.add(e, Meta { rule: None, doubts: Vec::new() }, name);
            }
            Gate::Rules { merge_local } => {
                if let Some(why) = partial {
                    let mut e = Exposure::everything(Family::Any, why);
                    e.certain = false;
                    out.add(e, Meta { rule: None, doubts: Vec::new() }, name);
                }
                let blocks: Vec<&Rule> = rules.iter().filter(|b| blocks_in(b, *bit, *merge_local)).collect();
                for rule in rules {
                    let Some((exposures, meta)) = allowed(rule, *bit, *merge_local, ctx) else { continue };
                    for e in exposures {
                        if let Some(p) = e.proto.strip_prefix("other:") {
                            out.add_other(p, &e, name);
                        } else if let Some(e) = after_blocks(e, rule, &blocks) {
                            out.add(e, meta.clone(), name);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Whether `rule` is a block rule that surely applies in the profile `bit`.
fn blocks_in(rule: &Rule, bit: u8, merge_local: Option<bool>) -> bool {
    rule.enabled == Some(true)
        && rule.action == Ok(Action::Block)
        && rule.profiles.is_some_and(|m| m & bit != 0)
        && !(rule.source.as_deref() == Some("Local") && merge_local == Some(false))
}

/// The exposures of `rule` in the profile `bit` (`None` when it admits
/// nothing there). Protocols without ports come back as proto `other:NAME`.
fn allowed(rule: &Rule, bit: u8, merge_local: Option<bool>, ctx: &Context) -> Option<(Vec<Exposure>, Meta)> {
    if rule.enabled == Some(false)
        || rule.action == Ok(Action::Block)
        || rule.profiles.is_some_and(|m| m & bit == 0)
    {
        return None;
    }
    let doubts = doubts(rule, merge_local);
    let because = if doubts.is_empty() {
        format!("inbound allow rule \"{}\"", rule.display)
    } else {
        format!("inbound allow rule \"{}\": {}", rule.display, doubts.join("; "))
    };
    let mut ports = rule.ports.set.clone();
    if !rule.ports.unresolved.is_empty() {
        ports = super::intervals::IntervalSet::full(super::intervals::PORT_MAX);
    }
    let mut base = Exposure::new(family(rule), "any", ports.clone(), because);
    base.certain = doubts.is_empty();
    base.from =
        (!rule.remote.any).then(|| rule.remote.entries.iter().map(|a| private_address(ctx, a)).collect());
    base.program = program(rule, ctx);
    base.qualifiers = qualifiers(rule, ctx);
    let protos: Vec<String> = match &rule.proto {
        Proto::Other(p) => vec![format!("other:{p}")],
        Proto::Tcp => vec!["tcp".into()],
        Proto::Udp => vec!["udp".into()],
        // A port condition matches only protocols with ports.
        Proto::Any if !ports.is_full() => vec!["tcp".into(), "udp".into()],
        Proto::Any => vec!["any".into()],
    };
    let exposures = protos.into_iter().map(|p| Exposure { proto: p, ..base.clone() }).collect();
    Some((exposures, Meta { rule: Some(rule.display.clone()), doubts }))
}

/// What makes an allow rule's exposure only possible.
fn doubts(rule: &Rule, merge_local: Option<bool>) -> Vec<String> {
    let mut d = Vec::new();
    if rule.enabled.is_none() {
        d.push("its state could not be read".to_string());
    }
    if let Err(a) = &rule.action {
        d.push(format!("its action {a} is not understood"));
    }
    if rule.profiles.is_none() {
        d.push("its profiles could not be read".into());
    }
    if rule.source.as_deref() == Some("Local") && merge_local == Some(false) {
        d.push("a local rule, possibly ignored (AllowLocalFirewallRules False)".into());
    }
    for f in &rule.unread {
        d.push(format!("its {f} filter could not be read"));
    }
    if !rule.ports.unresolved.is_empty() {
        d.push(format!("local port {} is not resolved by this agent", rule.ports.unresolved.join(",")));
    }
    d
}

fn family(rule: &Rule) -> Family {
    let f = rule.remote.only_family().or(rule.local.only_family());
    match f {
        Some(4) => Family::Ipv4,
        Some(6) => Family::Ipv6,
        _ => Family::Any,
    }
}

/// The one program, or else the one service or app package.
fn program(rule: &Rule, ctx: &Context) -> Option<String> {
    match (&rule.program, &rule.service, &rule.package) {
        (Some(p), _, _) => Some(private_path(ctx, p)),
        (None, Some(s), _) => Some(format!("service {s}")),
        (None, None, Some(p)) => Some(format!("package {p}")),
        (None, None, None) => None,
    }
}

fn qualifiers(rule: &Rule, ctx: &Context) -> Vec<String> {
    let mut q = Vec::new();
    if !rule.local.any {
        let to: Vec<String> = rule.local.entries.iter().map(|a| private_address(ctx, a)).collect();
        q.push(format!("to {}", to.join(",")));
    }
    if let (Some(_), Some(s)) = (&rule.program, &rule.service) {
        q.push(format!("service {s}"));
    }
    q.extend(rule.limits.iter().cloned());
    if rule.edge {
        q.push("edge traversal allowed".into());
    }
    if rule.override_block == Some(true) || rule.action == Ok(Action::Bypass) {
        q.push("overrides block rules".into());
    }
    q
}

/// `e` after the block rules that clearly cover it; `None` when nothing is left.
fn after_blocks(mut e: Exposure, allow: &Rule, blocks: &[&Rule]) -> Option<Exposure> {
    // Authenticated bypass passes block rules; not knowing is the same.
    if allow.override_block != Some(false) || allow.action != Ok(Action::Allow) {
        return Some(e);
    }
    for b in blocks.iter().filter(|b| covers(b, allow)) {
        if !b.ports.unresolved.is_empty() {
            continue;
        }
        if b.proto == Proto::Any && b.ports.set.is_full() {
            return None;
        }
        if matches!((&b.proto, e.proto.as_str()), (Proto::Tcp, "tcp") | (Proto::Udp, "udp")) {
            e.ports = e.ports.minus(&b.ports.set);
            if e.ports.is_empty() {
                return None;
            }
        }
    }
    Some(e)
}

/// Whether every packet `allow` matches (ports aside) also matches `block`.
fn covers(block: &Rule, allow: &Rule) -> bool {
    let at_least = |b: &Option<String>, a: &Option<String>| {
        b.as_ref().is_none_or(|b| a.as_ref().is_some_and(|a| a.eq_ignore_ascii_case(b)))
    };
    block.complete
        && block.unread.is_empty()
        && block.limits.is_empty()
        && block.local.any
        && at_least(&block.program, &allow.program)
        && at_least(&block.service, &allow.service)
        && at_least(&block.package, &allow.package)
        && block.remote.covers(&allow.remote)
}

/// A literal address as the privacy settings allow; keywords as they are.
fn private_address(ctx: &Context, a: &str) -> String {
    if literal(a).is_none() {
        return a.to_string();
    }
    ctx.personal(Personal::Address, a).unwrap_or_else(|| "<omitted>".into())
}

/// A program path with the user name of a profile directory
/// (`C:\Users\NAME\...`) as the privacy settings allow.
fn private_path(ctx: &Context, path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let Some(i) = lower.find("\\users\\") else { return path.to_string() };
    let start = i + "\\users\\".len();
    let end = path[start..].find('\\').map_or(path.len(), |j| start + j);
    let user = &path[start..end];
    if user.is_empty() || ["public", "default", "all users"].contains(&user.to_ascii_lowercase().as_str()) {
        return path.to_string();
    }
    let with = ctx.personal(Personal::UserName, user).unwrap_or_else(|| "<omitted>".into());
    format!("{}{with}{}", &path[..start], &path[end..])
}

/// `any program on any port from any address` (and the qualifiers), for a reason.
pub fn admits(e: &Exposure) -> String {
    let program = e.program.as_ref().map_or_else(|| "any program".to_string(), |p| format!("program {p}"));
    let ports = if e.proto == "any" {
        "any port".to_string()
    } else if e.ports.is_full() {
        format!("any {} port", e.proto)
    } else {
        format!("{} ports {}", e.proto, e.ports.port_text())
    };
    let from = e.from.as_ref().map_or_else(|| "any address".to_string(), |f| f.join(","));
    let mut out = format!("{program} on {ports} from {from}");
    if !e.qualifiers.is_empty() {
        out.push_str(&format!(" ({})", e.qualifiers.join("; ")));
    }
    out
}

/// The reason text for a broad exposure made by a rule (`None` for a
/// profile-wide one, which the profile's own reason names).
pub fn rule_reason(e: &Exposure, meta: &Meta) -> Option<String> {
    let rule = meta.rule.as_ref()?;
    let via = e.via.as_ref().map_or_else(|| "any profile".to_string(), |v| v.join(", "));
    Some(if e.certain {
        format!("inbound allow rule \"{rule}\" ({via}) admits {}", admits(e))
    } else {
        format!("inbound allow rule \"{rule}\" ({via}) may admit {}: {}", admits(e), meta.doubts.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::firewall::windows_rules::parse_rules_json;
    use crate::privacy::{Handling, Privacy};
    use serde_json::json;

    /// A rule from the script's JSON: every filter `Any` unless overridden.
    fn rule(overrides: Value) -> Rule {
        let mut base = json!({"Name": "r", "DisplayName": "R", "Enabled": "True", "Action": "Allow",
            "Profile": "Any", "Source": "Local", "EdgeTraversal": "Block", "Protocol": "Any", "LocalPort": "Any",
            "RemotePort": "Any", "DynamicTarget": "Any", "LocalAddress": "Any", "RemoteAddress": "Any",
            "Program": "Any", "Service": "Any", "InterfaceType": "Any", "InterfaceAlias": "Any",
            "Authentication": "NotRequired", "OverrideBlockRules": false, "LocalUser": "Any",
            "RemoteUser": "Any", "RemoteMachine": "Any"});
        if let (Some(b), Value::Object(o)) = (base.as_object_mut(), overrides) {
            b.extend(o);
        }
        parse_rules_json(&base.to_string()).unwrap().remove(0)
    }

    fn all_rules() -> Vec<(&'static str, u8, Gate)> {
        let g = || Gate::Rules { merge_local: Some(true) };
        vec![("Domain", 1, g()), ("Private", 2, g()), ("Public", 4, g())]
    }

    fn run(rules: &[Rule]) -> Reach {
        reach(&all_rules(), rules, None, &Context::at(0))
    }

    #[test]
    fn an_allow_all_rule_is_broad_and_a_disabled_one_admits_nothing() {
        let r = run(&[rule(json!({"DisplayName": "Allow everything", "Profile": "Public"}))]);
        assert_eq!(r.exposures.len(), 1);
        let e = &r.exposures[0];
        assert!(e.is_broad() && e.certain && e.via == Some(vec!["Public".into()]));
        assert_eq!(
            rule_reason(e, &r.meta[0]).unwrap(),
            "inbound allow rule \"Allow everything\" (Public) admits any program on any port from any address"
        );
        assert!(run(&[rule(json!({"Enabled": "False"}))]).exposures.is_empty());
        assert!(run(&[rule(json!({"Enabled": 2}))]).exposures.is_empty());
    }

    #[test]
    fn block_rules_subtract_only_what_they_clearly_cover() {
        let allow = rule(json!({"Protocol": "TCP", "LocalPort": "1-65535"}));
        let block_all = rule(json!({"Action": "Block", "DisplayName": "Block all"}));
        assert!(run(&[allow.clone(), block_all.clone()]).exposures.is_empty());
        let block_low = rule(json!({"Action": "Block", "Protocol": "TCP", "LocalPort": "1-1023"}));
        let r = run(&[allow.clone(), block_low]);
        assert_eq!(r.exposures[0].ports.port_text(), "1024-65535");
        // Narrower blocks, override-block allows and blocks in another profile remove nothing.
        for block in [
            rule(json!({"Action": "Block", "InterfaceType": "Wireless"})),
            rule(json!({"Action": "Block", "RemoteAddress": "10.0.0.0/255.0.0.0"})),
            rule(json!({"Action": "Block", "Program": "C:\\x.exe"})),
            rule(json!({"Action": "Block", "Profile": "Domain"})),
            rule(json!({"Action": "Block", "Enabled": "False"})),
        ] {
            let r = run(&[allow.clone(), block]);
            assert!(r.exposures.iter().any(|e| e.ports.count() == 65535 && e.is_broad()));
        }
        let bypass = rule(json!({"Authentication": "Required", "OverrideBlockRules": true}));
        let r = run(&[bypass, block_all]);
        assert!(r.exposures[0].qualifiers.contains(&"overrides block rules".to_string()));
        // A block for specific addresses covers an allow for fewer of them.
        let from_lan = rule(json!({"RemoteAddress": "10.1.0.0/16"}));
        let block_ten = rule(json!({"Action": "Block", "RemoteAddress": "10.0.0.0/8"}));
        assert!(run(&[from_lan, block_ten]).exposures.is_empty());
    }

    #[test]
    fn profiles_merge_and_gates_decide() {
        let rdp = rule(json!({"Protocol": "TCP", "LocalPort": "3389", "Profile": "Domain, Private"}));
        let r = run(std::slice::from_ref(&rdp));
        assert_eq!(r.exposures[0].via, Some(vec!["Domain".into(), "Private".into()]));
        assert_eq!(r.exposures[0].describe(), "any tcp/3389 from any via Domain,Private");
        let gates = vec![
            ("Domain", 1, Gate::Nothing),
            ("Private", 2, Gate::Everything { certain: true, why: "Private profile is off".into() }),
        ];
        let r = reach(&gates, &[rdp], None, &Context::at(0));
        assert_eq!((r.exposures.len(), r.exposures[0].because.as_str()), (1, "Private profile is off"));
        assert!(r.meta[0].rule.is_none());
    }

    #[test]
    fn what_was_not_read_makes_an_exposure_possible() {
        let rpc = rule(json!({"DisplayName": "LOB", "Protocol": "TCP", "LocalPort": "RPC", "Profile": 1}));
        let r = run(&[rpc]);
        let e = &r.exposures[0];
        assert!(e.is_broad() && !e.certain && e.proto == "tcp");
        assert!(
            rule_reason(e, &r.meta[0]).unwrap().contains("(Domain) may admit any program on any tcp port")
        );
        assert!(e.because.contains("local port RPC is not resolved"));
        let no_ports = rule(json!({"Protocol": "", "Program": null}));
        let r = run(&[no_ports]);
        assert!(r.meta[0].doubts.len() == 2 && r.exposures[0].proto == "any");
        let gates = vec![("Public", 4, Gate::Rules { merge_local: Some(false) })];
        let r = reach(&gates, &[rule(json!({}))], None, &Context::at(0));
        assert!(!r.exposures[0].certain && r.exposures[0].because.contains("AllowLocalFirewallRules False"));
        let gp = rule(json!({"Source": "GroupPolicy"}));
        assert!(reach(&gates, &[gp], None, &Context::at(0)).exposures[0].certain);
    }

    #[test]
    fn ports_without_protocol_other_protocols_and_families() {
        let r = run(&[rule(json!({"LocalPort": "80", "RemoteAddress": "LocalSubnet4"}))]);
        let protos: Vec<&str> = r.exposures.iter().map(|e| e.proto.as_str()).collect();
        assert_eq!(protos, ["tcp", "udp"]);
        assert_eq!(r.exposures[0].family, Family::Ipv4);
        assert_eq!(r.exposures[0].from, Some(vec!["LocalSubnet4".into()]));
        let r = run(&[rule(json!({"Protocol": "ICMPv6", "RemoteAddress": "fe80::/64"}))]);
        assert!(r.exposures.is_empty());
        assert_eq!(r.other_facts()[0]["proto"], "icmpv6");
        assert_eq!(r.other_facts()[0]["via"], "Domain,Private,Public");
    }

    #[test]
    fn user_names_and_addresses_follow_the_privacy_settings() {
        let ctx =
            Context::new(0, Privacy::with_key(Handling::Omit, Handling::Collect, Handling::Omit, &[7; 32]));
        let app = rule(
            json!({"Program": "C:\\Users\\alice\\AppData\\Local\\app.exe", "RemoteAddress": "203.0.113.7"}),
        );
        let r = reach(&all_rules(), &[app], None, &ctx);
        let e = &r.exposures[0];
        assert_eq!(e.program.as_deref(), Some("C:\\Users\\<omitted>\\AppData\\Local\\app.exe"));
        assert_eq!(e.from, Some(vec!["<omitted>".into()]));
        assert_eq!(ctx.scrub("C:\\Users\\alice\\x 203.0.113.7"), "C:\\Users\\<omitted>\\x <omitted>");
    }
}
