//! The values of Windows firewall rule conditions as `Get-NetFirewallRule`,
//! its filter cmdlets and netsh print them, read into sets the semantics
//! can compare: local ports ([`Ports`]), addresses ([`Addrs`]), protocols,
//! and the NetSecurity enumerations as names or as the numbers
//! `ConvertTo-Json` prints for them (Enabled True 1, False 2; Action
//! NotConfigured 0, Allow 2, AllowBypass 3, Block 4; Profile Any 0, Domain
//! 1, Private 2, Public 4, NotApplicable 65535, and the COM API's
//! NET_FW_PROFILE2_ALL 0x7fffffff; PolicyStoreType None 0, Local 1,
//! GroupPolicy 2, Dynamic 3, Generated 4, Hardcoded 5, MDM 6).
//!
//! Formats, from New-NetFirewallRule: local ports are numbers, ranges
//! (`5000-5020`), `Any` or the keywords `RPC`, `RPCEPMap`, `Teredo`,
//! `IPHTTPSIn`, `IPHTTPSOut`, `PlayToDiscovery` (netsh: `RPC-EPMap`,
//! `IPHTTPS`); addresses are IPv4/IPv6 addresses, subnets by prefix length
//! or (IPv4) mask, ranges, or keywords such as `LocalSubnet`, `DNS`,
//! `Intranet`, optionally restricted to a family by a trailing 4 or 6. Only
//! `RPCEPMap` is resolved (TCP 135, the RPC endpoint mapper, Microsoft
//! Learn "Create inbound rules to support RPC"); the other keywords name
//! ports chosen at run time and stay unresolved. Pure; nothing panics on
//! any input.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::intervals::{IntervalSet, PORT_MAX, V4_MAX, V6_MAX};

/// Profile bits as in NET_FW_PROFILE_TYPE2 and the NetSecurity Profile enum.
pub const DOMAIN: u8 = 1;
pub const PRIVATE: u8 = 2;
pub const PUBLIC: u8 = 4;
pub const ALL_PROFILES: u8 = DOMAIN | PRIVATE | PUBLIC;

/// What a matching packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Allow that overrides block rules (authenticated bypass).
    Bypass,
    Block,
}

/// The rule's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proto {
    Any,
    Tcp,
    Udp,
    /// Without ports: `icmpv4`, `icmpv6`, `protocol 41`, ...
    Other(String),
}

/// Local (destination) ports: resolved numbers plus the keywords and values
/// that were not resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub set: IntervalSet,
    pub unresolved: Vec<String>,
}

/// An address condition: `Any`, or literal addresses (as IPv4 and IPv6
/// sets) and keywords (`LocalSubnet`, `Intranet`, ..., lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addrs {
    pub any: bool,
    /// The entries as printed, in order.
    pub entries: Vec<String>,
    pub keywords: BTreeSet<String>,
    pub v4: IntervalSet,
    pub v6: IntervalSet,
}

impl Ports {
    pub fn any() -> Self {
        Ports { set: IntervalSet::full(PORT_MAX), unresolved: Vec::new() }
    }

    /// `Any`, `80`, `5000-5010`, `80, 443`, `RPCEPMap` (TCP 135, the RPC
    /// endpoint mapper); other keywords (`RPC`: the ports the endpoint
    /// mapper hands out, `Teredo`, `IPHTTPSIn`, `PlayToDiscovery`) and
    /// values not understood stay unresolved.
    pub fn parse(values: &[String]) -> Self {
        let mut ranges = Vec::new();
        let mut unresolved = Vec::new();
        for v in values {
            let key = v.to_ascii_lowercase().replace('-', "");
            if key == "any" || key == "*" {
                return Ports::any();
            }
            if key == "rpcepmap" {
                ranges.push((135, 135));
                continue;
            }
            match v
                .split_once('-')
                .map_or_else(|| (v.parse(), v.parse()), |(a, b)| (a.trim().parse(), b.trim().parse()))
            {
                (Ok(lo), Ok(hi)) if lo <= PORT_MAX && hi <= PORT_MAX => ranges.push((lo, hi)),
                _ => unresolved.push(v.clone()),
            }
        }
        Ports { set: IntervalSet::from_ranges(PORT_MAX, ranges), unresolved }
    }
}

impl Addrs {
    pub fn any() -> Self {
        Addrs {
            any: true,
            entries: Vec::new(),
            keywords: BTreeSet::new(),
            v4: IntervalSet::empty(V4_MAX),
            v6: IntervalSet::empty(V6_MAX),
        }
    }

    /// Addresses as the firewall prints them: `Any`, `10.0.0.1`,
    /// `10.0.0.0/255.0.0.0`, `10.0.0.0/8`, `10.0.0.1-10.0.0.9`, `fe80::/64`,
    /// `2001:db8::1-2001:db8::ff`, or keywords.
    pub fn parse(values: &[String]) -> Self {
        let mut out = Addrs::any();
        out.any = values.is_empty() || values.iter().any(|v| v.eq_ignore_ascii_case("any") || v == "*");
        if out.any {
            return out;
        }
        for v in values {
            out.entries.push(v.clone());
            match literal(v) {
                Some(Literal::V4(lo, hi)) => {
                    out.v4 = out.v4.union(&IntervalSet::from_ranges(V4_MAX, [(lo, hi)]))
                }
                Some(Literal::V6(lo, hi)) => {
                    out.v6 = out.v6.union(&IntervalSet::from_ranges(V6_MAX, [(lo, hi)]))
                }
                None => {
                    out.keywords.insert(v.to_ascii_lowercase());
                }
            }
        }
        out
    }

    /// Whether every address of `other` is one of these.
    pub fn covers(&self, other: &Addrs) -> bool {
        self.any
            || (!other.any
                && other.keywords.is_subset(&self.keywords)
                && other.v4.is_subset(&self.v4)
                && other.v6.is_subset(&self.v6))
    }

    /// IPv4 only, IPv6 only, or both (`None`); keywords ending in 4 or 6
    /// are restricted to that family.
    pub fn only_family(&self) -> Option<u8> {
        if self.any {
            return None;
        }
        let kw4 = self.keywords.iter().all(|k| k.ends_with('4'));
        let kw6 = self.keywords.iter().all(|k| k.ends_with('6'));
        let (has4, has6) = (!self.v4.is_empty(), !self.v6.is_empty());
        if !has6 && kw4 && (has4 || !self.keywords.is_empty()) {
            Some(4)
        } else if !has4 && kw6 && (has6 || !self.keywords.is_empty()) {
            Some(6)
        } else {
            None
        }
    }
}

/// A literal address entry as an inclusive range.
pub enum Literal {
    V4(u128, u128),
    V6(u128, u128),
}

/// Parses one literal entry; `None` for a keyword or anything else.
pub fn literal(s: &str) -> Option<Literal> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once('-') {
        return match (a.trim().parse::<Ipv4Addr>(), b.trim().parse::<Ipv4Addr>()) {
            (Ok(a), Ok(b)) => Some(Literal::V4(u32::from(a).into(), u32::from(b).into())),
            _ => match (a.trim().parse::<Ipv6Addr>(), b.trim().parse::<Ipv6Addr>()) {
                (Ok(a), Ok(b)) => Some(Literal::V6(u128::from(a), u128::from(b))),
                _ => None,
            },
        };
    }
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    if let Ok(a) = addr.parse::<Ipv4Addr>() {
        let bits = match len {
            None => 32,
            Some(l) => l.parse::<u32>().ok().or_else(|| mask_bits(l))?,
        };
        let (lo, hi) = prefix_range(u32::from(a).into(), bits, 32)?;
        return Some(Literal::V4(lo, hi));
    }
    let a = addr.parse::<Ipv6Addr>().ok()?;
    let bits = match len {
        None => 128,
        Some(l) => l.parse::<u32>().ok()?,
    };
    let (lo, hi) = prefix_range(u128::from(a), bits, 128)?;
    Some(Literal::V6(lo, hi))
}

/// `255.255.255.0` → 24; `None` for a mask that is not contiguous.
fn mask_bits(mask: &str) -> Option<u32> {
    let m = u32::from(mask.parse::<Ipv4Addr>().ok()?);
    let bits = m.leading_ones();
    (m.checked_shl(bits).unwrap_or(0) == 0).then_some(bits)
}

fn prefix_range(addr: u128, bits: u32, width: u32) -> Option<(u128, u128)> {
    if bits > width {
        return None;
    }
    let host = width - bits;
    let span = if host >= 128 { u128::MAX } else { (1u128 << host) - 1 };
    let lo = addr & !span;
    Some((lo, lo | span))
}

/// A JSON value as text: strings trimmed, numbers and booleans printed;
/// `None` for null or absent.
pub(super) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        _ => None,
    }
}

/// A list as printed: a comma-joined string (`80, 443`) or a JSON array.
pub(super) fn list(v: Option<&Value>) -> Vec<String> {
    let parts: Vec<String> = match v {
        Some(Value::Array(items)) => items.iter().filter_map(|i| text(Some(i))).collect(),
        other => text(other).into_iter().collect(),
    };
    parts.iter().flat_map(|p| p.split(',')).map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// NetSecurity `Enabled`: True 1, False 2 (not a boolean: 2 is false).
pub fn enabled(v: Option<&Value>) -> Option<bool> {
    match text(v)?.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "2" | "no" => Some(false),
        _ => None,
    }
}

/// NetSecurity `Action` (and netsh's words).
pub fn action(v: Option<&Value>) -> Result<Action, String> {
    let t = text(v).unwrap_or_default();
    match t.to_ascii_lowercase().as_str() {
        "allow" | "2" => Ok(Action::Allow),
        "allowbypass" | "bypass" | "3" => Ok(Action::Bypass),
        "block" | "4" => Ok(Action::Block),
        _ => Err(if t.is_empty() { "missing".into() } else { t }),
    }
}

/// A profile mask: a number (0 and 0x7fffffff are all profiles) or names
/// (`Domain, Private`, `Any`); `None` for NotApplicable or anything else.
pub fn profiles(v: Option<&Value>) -> Option<u8> {
    let mut mask = 0u8;
    for part in list(v) {
        mask |= match part.to_ascii_lowercase().as_str() {
            "any" | "all" | "0" | "2147483647" => ALL_PROFILES,
            "domain" => DOMAIN,
            "private" => PRIVATE,
            "public" => PUBLIC,
            n => u8::try_from(n.parse::<u32>().ok().filter(|n| (1..=7).contains(n))?).ok()?,
        };
    }
    (mask != 0).then_some(mask)
}

/// NetSecurity `PolicyStoreType` as a name.
pub(super) fn source(v: Option<&Value>) -> Option<String> {
    let t = text(v)?;
    let names = ["None", "Local", "GroupPolicy", "Dynamic", "Generated", "Hardcoded", "MDM"];
    Some(t.parse::<usize>().ok().and_then(|n| names.get(n)).map_or(t.clone(), |n| n.to_string()))
}

/// A protocol; `None` when empty (the port filter was not read).
pub fn proto(t: &str) -> Option<Proto> {
    Some(match t.trim().to_ascii_lowercase().as_str() {
        "" => return None,
        "any" | "256" | "*" => Proto::Any,
        "tcp" | "6" => Proto::Tcp,
        "udp" | "17" => Proto::Udp,
        "icmpv4" | "1" => Proto::Other("icmpv4".into()),
        "icmpv6" | "58" => Proto::Other("icmpv6".into()),
        n if n.parse::<u8>().is_ok() => Proto::Other(format!("protocol {n}")),
        other => Proto::Other(other.to_string()),
    })
}

/// A condition value that means "no condition".
pub(super) fn unset(v: &str) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case("any")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn port_lists_ranges_and_keywords() {
        let p = Ports::parse(&list(Some(&json!("80, 443"))));
        assert_eq!(p.set.port_text(), "80,443");
        assert_eq!(Ports::parse(&strings(&["5000-5010"])).set.count(), 11);
        assert!(Ports::parse(&strings(&["Any"])).set.is_full());
        assert_eq!(Ports::parse(&strings(&["RPC-EPMap"])).set.port_text(), "135");
        let rpc = Ports::parse(&list(Some(&json!(["RPC", "445"]))));
        assert_eq!(
            (rpc.set.port_text().as_str(), rpc.unresolved.as_slice()),
            ("445", &strings(&["RPC"])[..])
        );
        assert_eq!(Ports::parse(&strings(&["70000"])).unresolved, strings(&["70000"]));
    }

    #[test]
    fn addresses_masks_ranges_ipv6_and_keywords() {
        let a = Addrs::parse(&strings(&["10.0.0.0/255.0.0.0", "192.168.1.5"]));
        assert!(!a.any && a.v4.count() == (1 << 24) + 1 && a.only_family() == Some(4));
        let v6 = Addrs::parse(&strings(&["fe80::/64", "2001:db8::1-2001:db8::ff"]));
        assert_eq!((v6.v6.count(), v6.only_family()), ((1u128 << 64) + 255, Some(6)));
        let kw = Addrs::parse(&strings(&["LocalSubnet"]));
        assert_eq!((kw.keywords.len(), kw.only_family()), (1, None));
        assert!(Addrs::any().covers(&kw) && !kw.covers(&Addrs::any()) && kw.covers(&kw));
        assert!(a.covers(&Addrs::parse(&strings(&["10.1.2.0/24"]))));
        assert!(literal("10.0.0.0/255.0.255.0").is_none());
    }

    #[test]
    fn profile_masks_as_numbers_and_names() {
        for (v, want) in [
            (json!(1), Some(DOMAIN)),
            (json!(2), Some(PRIVATE)),
            (json!(4), Some(PUBLIC)),
            (json!(6), Some(PRIVATE | PUBLIC)),
            (json!(2147483647), Some(ALL_PROFILES)),
            (json!(0), Some(ALL_PROFILES)),
            (json!("Any"), Some(ALL_PROFILES)),
            (json!("Domain, Private"), Some(DOMAIN | PRIVATE)),
            (json!(65535), None),
            (json!("NotApplicable"), None),
        ] {
            assert_eq!(profiles(Some(&v)), want, "{v}");
        }
    }

    #[test]
    fn enums_as_numbers_and_strings() {
        assert_eq!(enabled(Some(&json!(2))), Some(false));
        assert_eq!(enabled(Some(&json!("True"))), Some(true));
        assert_eq!(action(Some(&json!(4))), Ok(Action::Block));
        assert_eq!(action(Some(&json!("Allow"))), Ok(Action::Allow));
        assert_eq!(action(Some(&json!(0))), Err("0".into()));
        assert_eq!(proto("6"), Some(Proto::Tcp));
        assert_eq!(proto("41"), Some(Proto::Other("protocol 41".into())));
        assert_eq!(source(Some(&json!(2))).as_deref(), Some("GroupPolicy"));
    }
}
