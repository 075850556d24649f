//! The lab's observer: the nftables table added to the host namespace for the
//! duration of one `probe` call, and the reading of what it saw.
//!
//! Why it tells the truth: its input chain sits on the input hook at
//! priority `i32::MAX`, the highest the kernel accepts, and is added after
//! the ruleset under test, so it runs after every other input base chain
//! (nftables and x_tables alike: both are hooks on the same netfilter hook
//! list, ordered by priority, equal priorities in order of registration). A
//! drop anywhere before is final, so a packet that reaches it has passed them
//! all and would be handed to a local socket. It records each TCP/UDP
//! packet's interface and 5-tuple in a dynamic set (`add @set`), nothing
//! else. Its postrouting chain does the same for packets the host sends
//! towards the inner namespace. The recorded tuples are the packets as they
//! are *after* any NAT; `Lab::probe` maps them back to the probes through
//! conntrack's reply tuples, which NAT keeps unique.
//!
//! Completion: a sentinel datagram sent after the probes on each interface is
//! counted (and dropped) by an ingress chain at priority `i32::MIN`; ingress
//! runs before IP processing, and the sender's packets share one FIFO backlog,
//! so once the sentinel is counted every probe before it has been processed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use super::{Probe, Proto};

/// The observer table's name; `Lab::probe` removes it before returning.
pub const TABLE: &str = "custos_lab_observe";
/// The permanent observer in the inner namespace.
pub const INNER_TABLE: &str = "custos_lab_inner";
/// Sentinel source (RFC 2544 benchmarking range, never a probe source) and port.
pub const SENTINEL_V4: &str = "198.18.0.9";
pub const SENTINEL_PORT: u16 = 9;

/// A packet the observer recorded: protocol, interface it came in on (host
/// arrivals only), source, source port, destination, destination port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub proto: Proto,
    pub iif: Option<String>,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// What one reading of the observer table found.
pub struct Observed {
    /// Sentinel counters by interface index.
    pub sync: HashMap<usize, u64>,
    pub host: Vec<Seen>,
    pub forwarded: Vec<Seen>,
}

const FAMILIES: [(&str, &str, &str); 2] = [("4", "ipv4", "ip"), ("6", "ipv6", "ip6")];
const PROTOS: [&str; 2] = ["tcp", "udp"];

/// For TCP, the match that keeps only a connection's opening SYN: a probe
/// is one, while a peer's RST answering the host's SYN-ACK (sent to a probe
/// source another peer also holds) carries the probe's tuple too.
fn syn_only(proto: &str) -> &'static str {
    if proto == "tcp" { " tcp flags & (syn | ack) == syn" } else { "" }
}

/// The `nft -f` script adding the observer; `used` are the indexes of the
/// interfaces probes arrive on.
pub fn script(ifaces: &[String], used: &[usize], inner_iface: &str) -> String {
    // One set per family and protocol: nft 1.0.6 mis-declares a set whose
    // concatenated type includes `inet_proto`, so the protocol cannot be a key.
    let mut s = format!("table inet {TABLE} {{\n");
    for (v, _, _) in FAMILIES {
        for p in PROTOS {
            let addr = if v == "4" { "ipv4_addr" } else { "ipv6_addr" };
            let _ = writeln!(
                s,
                "  set h{v}{p} {{ type ifname . {addr} . {addr} . inet_service . inet_service; flags dynamic; size 65536; }}\n  \
                 set f{v}{p} {{ type {addr} . {addr} . inet_service . inet_service; flags dynamic; size 65536; }}"
            );
        }
    }
    for &via in used {
        let _ = writeln!(
            s,
            "  chain sync{via} {{\n    type filter hook ingress device \"{}\" priority -2147483648; policy accept;\n    \
             ip saddr {SENTINEL_V4} udp dport {SENTINEL_PORT} counter drop comment \"sync{via}\"\n  }}",
            ifaces[via]
        );
    }
    s.push_str("  chain input {\n    type filter hook input priority 2147483647; policy accept;\n");
    for (v, nfproto, l3) in FAMILIES {
        for p in PROTOS {
            let syn = syn_only(p);
            let _ = writeln!(
                s,
                "    meta nfproto {nfproto} meta l4proto {p}{syn} add @h{v}{p} {{ iifname . {l3} saddr . {l3} daddr . th sport . th dport }}"
            );
        }
    }
    s.push_str("  }\n  chain post {\n    type filter hook postrouting priority 2147483647; policy accept;\n");
    for (v, nfproto, l3) in FAMILIES {
        for p in PROTOS {
            let syn = syn_only(p);
            let _ = writeln!(
                s,
                "    oifname \"{inner_iface}\" meta nfproto {nfproto} meta l4proto {p}{syn} add @f{v}{p} {{ {l3} saddr . {l3} daddr . th sport . th dport }}"
            );
        }
    }
    s.push_str("  }\n}\n");
    s
}

/// The inner namespace's permanent observer: counts every UDP packet and
/// TCP opening SYN that reaches it from the host (what the host's `post`
/// chain records, so the counts compare; a peer's RST to the inner's answer
/// is forwarded too and counted by neither).
pub fn inner_script() -> String {
    let syn = syn_only("tcp");
    format!(
        "table inet {INNER_TABLE} {{\n  chain pre {{\n    type filter hook prerouting priority -2147483648; policy accept;\n    \
         iifname \"eth0\" meta l4proto udp counter comment \"arrived\"\n    \
         iifname \"eth0\" meta l4proto tcp{syn} counter comment \"arrived\"\n  }}\n}}\n"
    )
}

fn items(json: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("nft -j output is not JSON: {e}"))?;
    match doc["nftables"].take() {
        serde_json::Value::Array(items) => Ok(items),
        _ => Err("nft -j output has no nftables array".into()),
    }
}

/// Counter values by rule comment (summed over rules sharing one) from
/// `nft -j list table ...` output.
pub fn counters(json: &str) -> Result<HashMap<String, u64>, String> {
    let mut out = HashMap::new();
    for item in items(json)? {
        let Some(rule) = item.get("rule") else { continue };
        let Some(comment) = rule["comment"].as_str() else { continue };
        let packets = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
            .ok_or_else(|| format!("rule {comment} has no counter"))?;
        *out.entry(comment.to_string()).or_insert(0) += packets;
    }
    Ok(out)
}

fn element(set: &str, elem: &serde_json::Value) -> Result<Seen, String> {
    let bad = || format!("set {set}: unexpected element {elem}");
    let parts = elem["concat"].as_array().ok_or_else(bad)?;
    let proto = if set.ends_with("tcp") { Proto::Tcp } else { Proto::Udp };
    let (iif, rest) = if set.starts_with('h') {
        (Some(parts.first().and_then(|v| v.as_str()).ok_or_else(bad)?.to_string()), &parts[1..])
    } else {
        (None, &parts[..])
    };
    let [src, dst, sport, dport] = rest else { return Err(bad()) };
    let addr = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<IpAddr>().ok()).ok_or_else(bad);
    let port = |v: &serde_json::Value| v.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or_else(bad);
    Ok(Seen { proto, iif, src: addr(src)?, sport: port(sport)?, dst: addr(dst)?, dport: port(dport)? })
}

/// Reads `nft -j list table inet custos_lab_observe` output.
pub fn observed(json: &str) -> Result<Observed, String> {
    let mut out = Observed { sync: HashMap::new(), host: Vec::new(), forwarded: Vec::new() };
    for (comment, packets) in counters(json)? {
        if let Some(via) = comment.strip_prefix("sync").and_then(|v| v.parse().ok()) {
            out.sync.insert(via, packets);
        }
    }
    for item in items(json)? {
        let Some(set) = item.get("set") else { continue };
        let name = set["name"].as_str().unwrap_or_default();
        for elem in set["elem"].as_array().into_iter().flatten() {
            let seen = element(name, elem)?;
            if name.starts_with('h') { out.host.push(seen) } else { out.forwarded.push(seen) }
        }
    }
    Ok(out)
}

/// The probe whose 5-tuple the packet still has.
pub fn exact(probes: &[Probe], s: &Seen) -> Option<usize> {
    probes.iter().position(|p| {
        p.proto == s.proto && p.src == s.src && p.sport == s.sport && p.dst == s.dst && p.dport == s.dport
    })
}

/// The probe a NAT-rewritten packet started as: the conntrack entry whose
/// reply tuple is the packet's reversed holds the original tuple.
pub fn through_nat(probes: &[Probe], s: &Seen, conns: &[super::kernel::Conn]) -> Option<usize> {
    let num = match s.proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    };
    let c = conns.iter().find(|c| c.proto == num && c.reply == (s.dst, s.dport, s.src, s.sport))?;
    let (src, sport, dst, dport) = c.original;
    exact(probes, &Seen { proto: s.proto, iif: None, src, sport, dst, dport })
}
