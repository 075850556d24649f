//! Constants as nftables and iptables write them, turned into numbers:
//! protocol, conntrack-state, packet-type, route-type and TCP-flag names,
//! interface types, service names, addresses with prefixes and ranges.
//! Shared by both readers so `-p tcp` and `meta l4proto tcp` mean the same.
//! Pure.

use std::net::IpAddr;

use super::ruleset::{Elem, Field};

/// IP protocol numbers by the names nft and iptables print.
pub fn protocol(name: &str) -> Option<u128> {
    Some(match name.to_ascii_lowercase().as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "ipv6" => 41,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "ipv6-icmp" | "icmp6" => 58,
        "ospf" => 89,
        "sctp" => 132,
        "udplite" => 136,
        other => return other.parse().ok(),
    })
}

/// Conntrack state bits (`ct state`, `--ctstate`, `--state`).
pub fn ct_state(name: &str) -> Option<u128> {
    Some(match name.to_ascii_lowercase().as_str() {
        "invalid" => 1,
        "established" => 2,
        "related" => 4,
        "new" => 8,
        "untracked" => 64,
        // iptables' conntrack match also knows DNAT/SNAT pseudo states.
        _ => return None,
    })
}

/// Conntrack status bits (`ct status`).
pub fn ct_status(name: &str) -> Option<u128> {
    Some(match name {
        "expected" => 1,
        "seen-reply" => 2,
        "assured" => 4,
        "confirmed" => 8,
        "snat" => 16,
        "dnat" => 32,
        "dying" => 512,
        _ => return None,
    })
}

/// TCP flag bits.
pub fn tcp_flag(name: &str) -> Option<u128> {
    Some(match name.to_ascii_lowercase().as_str() {
        "fin" => 1,
        "syn" => 2,
        "rst" => 4,
        "psh" => 8,
        "ack" => 16,
        "urg" => 32,
        "ecn" | "ece" => 64,
        "cwr" => 128,
        _ => return None,
    })
}

/// Packet types (`meta pkttype`, `-m pkttype`).
pub fn pkttype(name: &str) -> Option<u128> {
    Some(match name.to_ascii_lowercase().as_str() {
        "host" | "unicast" => 0,
        "broadcast" => 1,
        "multicast" => 2,
        "other" => 3,
        _ => return None,
    })
}

/// Route types (`fib daddr type`, `-m addrtype`).
pub fn route_type(name: &str) -> Option<u128> {
    Some(match name.to_ascii_lowercase().as_str() {
        "unspec" => 0,
        "unicast" => 1,
        "local" => 2,
        "broadcast" => 3,
        "anycast" => 4,
        "multicast" => 5,
        "blackhole" => 6,
        "unreachable" => 7,
        "prohibit" => 8,
        "throw" => 9,
        "nat" => 10,
        "xresolve" => 11,
        _ => return None,
    })
}

/// Interface hardware types (`meta iiftype`).
pub fn iftype(name: &str) -> Option<u128> {
    Some(match name {
        "ether" => 1,
        "ppp" => 512,
        "ipip" => 768,
        "ipip6" => 769,
        "loopback" => 772,
        "sit" => 776,
        "ipgre" => 778,
        "none" => 65534,
        other => return other.parse().ok(),
    })
}

/// Well-known service names nft may print instead of port numbers.
pub fn service(name: &str) -> Option<u128> {
    Some(match name {
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "http" => 80,
        "ntp" => 123,
        "https" => 443,
        "microsoft-ds" => 445,
        "dhcpv6-client" => 546,
        "dhcpv6-server" => 547,
        "mdns" => 5353,
        other => return other.parse().ok(),
    })
}

/// An address as a number: IPv4 in the low 32 bits, IPv6 whole.
pub fn address(text: &str) -> Option<u128> {
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(u128::from(u32::from(a))),
        IpAddr::V6(a) => Some(u128::from(a)),
    }
}

/// The range an address prefix covers (`10.0.0.0/8`, `fe80::/10`).
pub fn prefix(addr: &str, len: u32) -> Option<(u128, u128)> {
    let bits = if addr.contains(':') { 128 } else { 32 };
    if len > bits {
        return None;
    }
    let base = address(addr)?;
    let host_bits = bits - len;
    let span: u128 = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    let lo = base & !span;
    Some((lo, lo | span))
}

/// A dotted IPv4 mask (`255.255.0.0`) as a prefix length, when contiguous.
pub fn mask_len(mask: &str) -> Option<u32> {
    let m = u32::from(mask.parse::<std::net::Ipv4Addr>().ok()?);
    let len = m.leading_ones();
    (m.checked_shl(len).unwrap_or(0) == 0).then_some(len)
}

/// One scalar constant of `field` written as a name or a number.
pub fn scalar(field: Field, text: &str) -> Option<u128> {
    let t = text.trim();
    let number = || {
        if let Some(hex) = t.strip_prefix("0x") { u128::from_str_radix(hex, 16).ok() } else { t.parse().ok() }
    };
    match field {
        Field::Nfproto => match t {
            "ipv4" => Some(2),
            "ipv6" => Some(10),
            _ => number(),
        },
        Field::L4proto => protocol(t),
        Field::Saddr | Field::Daddr => address(t),
        Field::Sport | Field::Dport => service(t),
        Field::Iiftype => iftype(t),
        Field::CtState => ct_state(t).or_else(number),
        Field::CtStatus => ct_status(t).or_else(number),
        Field::Pkttype => pkttype(t).or_else(number),
        Field::DaddrType => route_type(t).or_else(number),
        Field::TcpFlags => tcp_flag(t).or_else(number),
        Field::RpfFound => match t {
            "false" | "missing" => Some(0),
            "true" => Some(1),
            _ => None,
        },
        Field::Mark | Field::CtMark => number(),
        Field::Iifname | Field::Oifname => None,
    }
}

/// Whether the field holds names rather than numbers.
pub fn is_name(field: Field) -> bool {
    matches!(field, Field::Iifname | Field::Oifname)
}

/// One element written as text: a name pattern for interface fields, else a
/// number, an `a-b` range or an address prefix.
pub fn text_elem(field: Field, text: &str) -> Option<Elem> {
    if is_name(field) {
        return Some(Elem::Name(text.to_string()));
    }
    if matches!(field, Field::Saddr | Field::Daddr)
        && let Some((addr, len)) = text.split_once('/')
    {
        let len = len.parse().ok().or_else(|| mask_len(len))?;
        let (lo, hi) = prefix(addr, len)?;
        return Some(Elem::Range(lo, hi));
    }
    if let Some(v) = scalar(field, text) {
        return Some(Elem::Range(v, v));
    }
    // `a-b` ranges of addresses or ports (ports may also be `a:b` in iptables).
    let (a, b) = text.split_once('-').or_else(|| text.split_once(':').filter(|_| !text.contains('.')))?;
    let lo = if a.is_empty() { Some(0) } else { scalar(field, a) }?;
    let hi = if b.is_empty() { Some(65535) } else { scalar(field, b) }?;
    Some(Elem::Range(lo.min(hi), lo.max(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_read_as_the_kernel_numbers_them() {
        assert_eq!(protocol("tcp"), Some(6));
        assert_eq!(protocol("ipv6-icmp"), Some(58));
        assert_eq!(protocol("253"), Some(253));
        assert_eq!(ct_state("NEW"), Some(8));
        assert_eq!(scalar(Field::Mark, "0x10"), Some(16));
        assert_eq!(prefix("10.1.2.3", 8), Some((0x0a00_0000, 0x0aff_ffff)));
        assert_eq!(prefix("::", 0), Some((0, u128::MAX)));
        assert_eq!(prefix("10.0.0.0", 33), None);
        assert_eq!(mask_len("255.255.0.0"), Some(16));
        assert_eq!(mask_len("255.0.255.0"), None);
    }

    #[test]
    fn text_elements_cover_ports_ranges_and_prefixes() {
        assert_eq!(text_elem(Field::Dport, "22"), Some(Elem::Range(22, 22)));
        assert_eq!(text_elem(Field::Dport, "1000:2000"), Some(Elem::Range(1000, 2000)));
        assert_eq!(text_elem(Field::Dport, "1024:"), Some(Elem::Range(1024, 65535)));
        assert_eq!(
            text_elem(Field::Saddr, "10.0.0.0/255.0.0.0"),
            Some(Elem::Range(0x0a00_0000, 0x0aff_ffff))
        );
        assert_eq!(text_elem(Field::Saddr, "10.0.0.1-10.0.0.9"), Some(Elem::Range(0x0a00_0001, 0x0a00_0009)));
        assert_eq!(text_elem(Field::Iifname, "eth+"), Some(Elem::Name("eth+".into())));
        assert_eq!(text_elem(Field::Dport, "nonsense"), None);
    }
}
