//! Windows inbound firewall rules as the agent reads them: the [`Rule`]
//! model and its two readers, the ActiveStore through PowerShell
//! ([`RULES_SCRIPT`], [`parse_rules_json`]) and, when PowerShell cannot
//! answer, `netsh advfirewall firewall show rule name=all dir=in verbose`
//! ([`parse_netsh_rules`], English output only). What the rules admit is
//! decided in `windows_reach`.
//!
//! The script reads every inbound rule of the ActiveStore (the effective
//! policy: Group Policy merged with the local stores) and its filter
//! objects: port, address, application, service, interface type, interface
//! and security. Each filter cmdlet runs once with `-All -PolicyStore
//! ActiveStore` and the script joins the filters to their rule on
//! `InstanceID` (filter and rule are one-to-one): piping every rule into
//! the filter cmdlets costs one CIM query per rule and filter, minutes on
//! hosts with hundreds of rules. Enumerations are converted to their names
//! in the script (`[string]`); the values, also as the numbers an
//! unconverted `ConvertTo-Json` prints, are read in `windows_values`.
//!
//! Nothing read is dropped: a filter missing from the join (printed empty)
//! is recorded in [`Rule::unread`], a port keyword not resolved in
//! [`Ports::unresolved`], a condition not modelled (interface, users,
//! authentication, ...) in [`Rule::limits`]. The semantics treat each as
//! possibly anything for an allow rule and as not covering for a block rule.

use serde_json::Value;

use super::windows_values::{
    Action, Addrs, Ports, Proto, action, enabled, list, profiles, proto, source, text, unset,
};
use crate::collect::ParseError;
use crate::collect::windows::json_items;

/// Every inbound rule of the ActiveStore with its filters, one flat JSON
/// object each; any error ends the script (exit 1) rather than printing a
/// partial list.
pub const RULES_SCRIPT: &str = "$ErrorActionPreference='Stop'; [Console]::OutputEncoding = [Text.Encoding]::UTF8; $s = 'ActiveStore'; function ById($f) { $m = @{}; foreach ($x in @($f)) { $m[[string]$x.InstanceID] = $x }; $m }; $pf = ById (Get-NetFirewallPortFilter -All -PolicyStore $s); $af = ById (Get-NetFirewallAddressFilter -All -PolicyStore $s); $ap = ById (Get-NetFirewallApplicationFilter -All -PolicyStore $s); $sv = ById (Get-NetFirewallServiceFilter -All -PolicyStore $s); $it = ById (Get-NetFirewallInterfaceTypeFilter -All -PolicyStore $s); $ia = ById (Get-NetFirewallInterfaceFilter -All -PolicyStore $s); $sc = ById (Get-NetFirewallSecurityFilter -All -PolicyStore $s); ConvertTo-Json -InputObject @(Get-NetFirewallRule -PolicyStore $s -Direction Inbound | ForEach-Object { $id = [string]$_.InstanceID; $p = $pf[$id]; $a = $af[$id]; $g = $ap[$id]; $v = $sv[$id]; $t = $it[$id]; $i = $ia[$id]; $c = $sc[$id]; [pscustomobject]@{ Name = $_.Name; DisplayName = $_.DisplayName; Enabled = [string]$_.Enabled; Action = [string]$_.Action; Profile = [string]$_.Profile; Source = [string]$_.PolicyStoreSourceType; EdgeTraversal = [string]$_.EdgeTraversalPolicy; Owner = $_.Owner; Platform = ($_.Platform -join ','); DynamicKeywords = ($_.RemoteDynamicKeywordAddresses -join ','); Protocol = [string]$p.Protocol; LocalPort = ($p.LocalPort -join ','); RemotePort = ($p.RemotePort -join ','); DynamicTarget = [string]$p.DynamicTarget; LocalAddress = ($a.LocalAddress -join ','); RemoteAddress = ($a.RemoteAddress -join ','); Program = $g.Program; Package = $g.Package; Service = $v.Service; InterfaceType = [string]$t.InterfaceType; InterfaceAlias = ($i.InterfaceAlias -join ','); Authentication = [string]$c.Authentication; OverrideBlockRules = $c.OverrideBlockRules; LocalUser = $c.LocalUser; RemoteUser = $c.RemoteUser; RemoteMachine = $c.RemoteMachine } })";

/// The netsh fallback's arguments (English output, every inbound rule).
pub const NETSH_RULES_ARGS: [&str; 7] =
    ["advfirewall", "firewall", "show", "rule", "name=all", "dir=in", "verbose"];

/// One inbound rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub display: String,
    /// `None` when not readable.
    pub enabled: Option<bool>,
    /// `Err(value)` when not understood.
    pub action: Result<Action, String>,
    /// Profile bits; `None` when not readable.
    pub profiles: Option<u8>,
    /// Where the rule comes from: `Local`, `GroupPolicy`, `Hardcoded`, ...
    pub source: Option<String>,
    /// Edge traversal (Teredo, NAT) allowed or deferred.
    pub edge: bool,
    pub proto: Proto,
    pub ports: Ports,
    pub local: Addrs,
    pub remote: Addrs,
    /// `None` for any program (and likewise service, package).
    pub program: Option<String>,
    pub service: Option<String>,
    pub package: Option<String>,
    /// Allowed traffic bypasses block rules; `None` when not readable.
    pub override_block: Option<bool>,
    /// Conditions not modelled that narrow the rule (interface type,
    /// authenticated peers, source ports, ...), as text.
    pub limits: Vec<String>,
    /// Filters that could not be read (`port`, `address`, ...).
    pub unread: Vec<String>,
    /// Whether the reader shows every condition a rule can have (netsh
    /// does not print interface aliases, packages or owners).
    pub complete: bool,
}

impl Rule {
    fn new(name: &str, complete: bool) -> Self {
        Rule {
            name: name.to_string(),
            display: name.to_string(),
            enabled: None,
            action: Err("missing".into()),
            profiles: None,
            source: None,
            edge: false,
            proto: Proto::Any,
            ports: Ports::any(),
            local: Addrs::any(),
            remote: Addrs::any(),
            program: None,
            service: None,
            package: None,
            override_block: None,
            limits: Vec::new(),
            unread: Vec::new(),
            complete,
        }
    }

    fn limit(&mut self, cond: bool, text: impl Into<String>) {
        if cond {
            self.limits.push(text.into());
        }
    }
}

/// Parses the JSON of [`RULES_SCRIPT`] (an array, or one object).
pub fn parse_rules_json(text_out: &str) -> Result<Vec<Rule>, ParseError> {
    let items = json_items(text_out)?;
    let mut rules = Vec::with_capacity(items.len());
    for item in &items {
        if !item.is_object() {
            return Err(format!("expected one object per rule, got {item}").into());
        }
        if text(item.get("Direction")).is_some_and(|d| d.eq_ignore_ascii_case("outbound") || d == "2") {
            continue;
        }
        rules.push(rule_from_json(item));
    }
    Ok(rules)
}

fn rule_from_json(item: &Value) -> Rule {
    let get = |k: &str| item.get(k);
    let name = text(get("Name")).unwrap_or_default();
    let mut r = Rule::new(&name, true);
    if let Some(d) = text(get("DisplayName")).filter(|d| !d.is_empty()) {
        r.display = d;
    }
    r.enabled = enabled(get("Enabled"));
    r.action = action(get("Action"));
    r.profiles = profiles(get("Profile").or_else(|| get("Profiles")));
    r.source = source(get("Source").or_else(|| get("PolicyStoreSourceType")));
    r.edge = !matches!(text(get("EdgeTraversal")).as_deref(), Some("Block" | "0") | None);
    port_filter(&mut r, item);
    address_filter(&mut r, item);
    application_filters(&mut r, item);
    security_filter(&mut r, item);
    let owner = text(get("Owner")).unwrap_or_default();
    r.limit(!owner.is_empty(), format!("owner {owner}"));
    let platform = list(get("Platform"));
    r.limit(!platform.is_empty(), format!("platform {}", platform.join(",")));
    r.limit(!list(get("DynamicKeywords")).is_empty(), "dynamic keyword addresses");
    r
}

fn port_filter(r: &mut Rule, item: &Value) {
    match text(item.get("Protocol")).as_deref().and_then(proto) {
        None => r.unread.push("port".into()),
        Some(p) => {
            r.proto = p;
            r.ports = Ports::parse(&list(item.get("LocalPort")));
            let remote = list(item.get("RemotePort"));
            r.limit(
                !remote.is_empty() && !unset(&remote.join(",")),
                format!("source port {}", remote.join(",")),
            );
            let dynamic = text(item.get("DynamicTarget")).unwrap_or_default();
            r.limit(!unset(&dynamic) && dynamic != "0", format!("dynamic transport {dynamic}"));
        }
    }
}

fn address_filter(r: &mut Rule, item: &Value) {
    let (local, remote) = (list(item.get("LocalAddress")), list(item.get("RemoteAddress")));
    if local.is_empty() || remote.is_empty() {
        r.unread.push("address".into());
        return;
    }
    r.local = Addrs::parse(&local);
    r.remote = Addrs::parse(&remote);
}

/// Application, service, interface type and interface filters.
fn application_filters(r: &mut Rule, item: &Value) {
    match text(item.get("Program")) {
        None => r.unread.push("application".into()),
        Some(p) => r.program = (!unset(&p)).then_some(p),
    }
    let package = text(item.get("Package")).unwrap_or_default();
    r.limit(package == "*", "any app package");
    r.package = (!unset(&package) && package != "*").then_some(package);
    match text(item.get("Service")) {
        None => r.unread.push("service".into()),
        Some(s) if s == "*" => r.limits.push("any service".into()),
        Some(s) => r.service = (!unset(&s)).then_some(s),
    }
    match text(item.get("InterfaceType")).filter(|t| !t.is_empty()) {
        None => r.unread.push("interface type".into()),
        Some(t) => r.limit(!unset(&t) && t != "0", format!("interface type {t}")),
    }
    let alias = list(item.get("InterfaceAlias"));
    if alias.is_empty() {
        r.unread.push("interface".into());
    } else {
        r.limit(!unset(&alias.join(",")), format!("interfaces {}", alias.join(",")));
    }
}

fn security_filter(r: &mut Rule, item: &Value) {
    let auth = text(item.get("Authentication")).unwrap_or_default();
    if auth.is_empty() {
        r.unread.push("security".into());
        return;
    }
    r.limit(!matches!(auth.as_str(), "NotRequired" | "0"), format!("authenticated peers only ({auth})"));
    r.override_block = match text(item.get("OverrideBlockRules")).as_deref() {
        Some("True") => Some(true),
        Some("False") | None => Some(false),
        Some(_) => None,
    };
    for (key, what) in
        [("LocalUser", "local users"), ("RemoteUser", "remote users"), ("RemoteMachine", "remote computers")]
    {
        let v = text(item.get(key)).unwrap_or_default();
        r.limit(!unset(&v), format!("{what} {v}"));
    }
}

/// Parses `netsh advfirewall firewall show rule name=all dir=in verbose`
/// (English). netsh prints no interface aliases, packages or owners, so its
/// rules are not [`Rule::complete`].
pub fn parse_netsh_rules(text_out: &str) -> Result<Vec<Rule>, ParseError> {
    // Each rule with whether it is outbound (the command asks for dir=in).
    let mut rules: Vec<(Rule, bool)> = Vec::new();
    for line in text_out.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if key == "Rule Name" {
            let mut r = Rule::new(value, false);
            r.override_block = Some(false);
            rules.push((r, false));
        } else if let Some((r, outbound)) = rules.last_mut() {
            if key == "Direction" {
                *outbound = value.eq_ignore_ascii_case("out");
            }
            netsh_field(r, key, value);
        }
    }
    if rules.is_empty() && !text_out.contains("No rules match") {
        let why = "printed no \"Rule Name:\" line (non-English output?)";
        return Err(ParseError::new(why).in_command("netsh"));
    }
    Ok(rules.into_iter().filter(|(_, outbound)| !outbound).map(|(r, _)| r).collect())
}

fn netsh_field(r: &mut Rule, key: &str, value: &str) {
    let v = Value::String(value.to_string());
    let values: Vec<String> =
        value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    match key {
        "Enabled" => r.enabled = enabled(Some(&v)),
        "Profiles" => r.profiles = profiles(Some(&v)),
        "LocalIP" => r.local = Addrs::parse(&values),
        "RemoteIP" => r.remote = Addrs::parse(&values),
        "Protocol" => match proto(value) {
            Some(p) => r.proto = p,
            None => r.unread.push("port".into()),
        },
        "LocalPort" => r.ports = Ports::parse(&values),
        "RemotePort" => r.limit(!unset(value), format!("source port {value}")),
        "Edge traversal" => r.edge = !value.eq_ignore_ascii_case("no"),
        "Program" => r.program = (!unset(value)).then(|| value.to_string()),
        "Service" => r.service = (!unset(value)).then(|| value.to_string()),
        "InterfaceTypes" => r.limit(!unset(value), format!("interface type {value}")),
        "Security" => {
            r.limit(!value.eq_ignore_ascii_case("NotRequired"), format!("authenticated peers only ({value})"))
        }
        "RemoteComputerGroup" | "RemoteUserGroup" | "LocalUserGroup" => {
            r.limit(!unset(value), format!("{key} {value}"))
        }
        "Rule source" => {
            r.source = Some(if value.eq_ignore_ascii_case("Local Setting") {
                "Local".into()
            } else {
                value.to_string()
            })
        }
        "Action" => r.action = action(Some(&v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::firewall::windows_values::PUBLIC;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_single_object_with_numbers_and_a_missing_filter() {
        let one = r#"{"Name": "X", "DisplayName": "", "Enabled": 1, "Action": 2, "Profile": 4,
            "Protocol": "", "RemoteAddress": "Any", "LocalAddress": "Any", "Program": "Any",
            "Service": "Any", "InterfaceType": 0, "InterfaceAlias": "Any", "Authentication": 0,
            "OverrideBlockRules": false}"#;
        let rules = parse_rules_json(one).unwrap();
        let r = &rules[0];
        assert_eq!(
            (r.display.as_str(), r.enabled, r.action.clone(), r.profiles),
            ("X", Some(true), Ok(Action::Allow), Some(PUBLIC))
        );
        assert_eq!(r.unread, strings(&["port"]));
        assert!(r.limits.is_empty() && r.program.is_none() && r.override_block == Some(false));
        assert!(parse_rules_json("[1]").is_err() && parse_rules_json("garbage").is_err());
        assert!(parse_rules_json("[\r\n\r\n]").unwrap().is_empty());
    }

    #[test]
    fn netsh_rules_and_non_english_output() {
        let text = "\r\nRule Name:                            Allow everything\r\n\
            ----------------------------------------------------------------------\r\n\
            Enabled:                              Yes\r\nDirection:                            In\r\n\
            Profiles:                             Public\r\nRemoteIP:                             Any\r\n\
            Protocol:                             TCP\r\nLocalPort:                            1024-65535\r\n\
            Program:                              C:\\Tools\\x.exe\r\nAction:                               Allow\r\n\r\n\
            Rule Name:                            Out\r\nEnabled:                              Yes\r\n\
            Direction:                            Out\r\nOk.\r\n";
        let rules = parse_netsh_rules(text).unwrap();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!((r.profiles, r.proto.clone(), r.ports.set.count()), (Some(PUBLIC), Proto::Tcp, 64512));
        assert_eq!(r.program.as_deref(), Some("C:\\Tools\\x.exe"));
        assert!(!r.complete && r.enabled == Some(true));
        assert!(parse_netsh_rules("Regelname: X\r\n").is_err());
        assert!(parse_netsh_rules("\r\nNo rules match the specified criteria.\r\n").unwrap().is_empty());
    }
}
