//! The left side of an nft JSON match: which packet field (or fields, or
//! field under a mask) it reads, what the expression implies on the way
//! (`tcp dport` implies TCP), or why it cannot be decided. Part of the
//! `nft_json` reader.

use serde_json::Value;

use super::nft_json::{flags, str_of};
use super::ruleset::{Elem, Field, Key, Stmt};
use super::values;

/// What the left side of a match reads.
pub(super) enum Left {
    Key(Key, Vec<Stmt>),
    /// Only what the expression implies decides (the rest is the sender's choice).
    Implied(Vec<Stmt>),
    /// A header field the sender chooses: both ways are possible.
    Either(String),
    Undecided(String),
}

pub(super) fn implied_l4(proto: &str) -> Vec<Stmt> {
    values::protocol(proto)
        .map(|p| {
            vec![Stmt::Match {
                key: Key::Field(Field::L4proto),
                negate: false,
                set: vec![vec![Elem::Range(p, p)]],
            }]
        })
        .unwrap_or_default()
}

pub(super) fn implied_family(v6: bool) -> Vec<Stmt> {
    let n = if v6 { 10 } else { 2 };
    vec![Stmt::Match { key: Key::Field(Field::Nfproto), negate: false, set: vec![vec![Elem::Range(n, n)]] }]
}

pub(super) fn left(e: &Value) -> Left {
    if let Some(m) = e.get("meta") {
        let field = match str_of(m, "key") {
            "nfproto" => Field::Nfproto,
            "l4proto" => Field::L4proto,
            "iif" | "iifname" => Field::Iifname,
            "oif" | "oifname" => Field::Oifname,
            "iiftype" => Field::Iiftype,
            "mark" => Field::Mark,
            "pkttype" => Field::Pkttype,
            "length" | "priority" | "random" | "nftrace" => {
                return Left::Either(format!("meta {}", str_of(m, "key")));
            }
            other => return Left::Undecided(format!("meta {other}")),
        };
        return Left::Key(Key::Field(field), Vec::new());
    }
    if let Some(p) = e.get("payload") {
        return payload(p);
    }
    if let Some(c) = e.get("ct") {
        let field = match (str_of(c, "key"), c.get("dir")) {
            ("state", None) => Field::CtState,
            ("status", None) => Field::CtStatus,
            ("mark", None) => Field::CtMark,
            (k, _) => return Left::Undecided(format!("ct {k}")),
        };
        return Left::Key(Key::Field(field), Vec::new());
    }
    if let Some(f) = e.get("fib") {
        let fl = flags(f);
        return match str_of(f, "result") {
            "type" if fl.iter().any(|x| x == "daddr") => Left::Key(Key::Field(Field::DaddrType), Vec::new()),
            "oif" if fl.iter().any(|x| x == "saddr") && fl.iter().any(|x| x == "iif") => {
                Left::Key(Key::Field(Field::RpfFound), Vec::new())
            }
            r => Left::Undecided(format!("fib {} {r}", fl.join(" . "))),
        };
    }
    if let Some(Value::Array(and)) = e.get("&") {
        return masked(and);
    }
    if let Some(Value::Array(parts)) = e.get("concat") {
        let mut fields = Vec::new();
        let mut implied = Vec::new();
        for part in parts {
            match left(part) {
                Left::Key(Key::Field(f), imp) => {
                    fields.push(f);
                    implied.extend(imp);
                }
                Left::Key(..) | Left::Implied(_) => return Left::Undecided(format!("concatenation {e}")),
                other => return other,
            }
        }
        return Left::Key(Key::Concat(fields), implied);
    }
    match e.as_object().and_then(|o| o.keys().next()) {
        Some(k)
            if matches!(
                k.as_str(),
                "exthdr" | "tcp option" | "numgen" | "jhash" | "symhash" | "ip option"
            ) =>
        {
            Left::Either(k.clone())
        }
        Some(k) => Left::Undecided(format!("`{k}` expression")),
        None => Left::Undecided(format!("expression {e}")),
    }
}

pub(super) fn payload(p: &Value) -> Left {
    let (proto, field) = (str_of(p, "protocol"), str_of(p, "field"));
    match (proto, field) {
        ("ip", "saddr") | ("ip6", "saddr") => {
            Left::Key(Key::Field(Field::Saddr), implied_family(proto == "ip6"))
        }
        ("ip", "daddr") | ("ip6", "daddr") => {
            Left::Key(Key::Field(Field::Daddr), implied_family(proto == "ip6"))
        }
        ("ip", "protocol") | ("ip6", "nexthdr") => {
            Left::Key(Key::Field(Field::L4proto), implied_family(proto == "ip6"))
        }
        ("th", "sport") => Left::Key(Key::Field(Field::Sport), Vec::new()),
        ("th", "dport") => Left::Key(Key::Field(Field::Dport), Vec::new()),
        ("tcp" | "udp" | "udplite" | "sctp" | "dccp", "sport") => {
            Left::Key(Key::Field(Field::Sport), implied_l4(proto))
        }
        ("tcp" | "udp" | "udplite" | "sctp" | "dccp", "dport") => {
            Left::Key(Key::Field(Field::Dport), implied_l4(proto))
        }
        ("tcp", "flags") => Left::Key(Key::Field(Field::TcpFlags), implied_l4("tcp")),
        ("ip" | "ip6" | "tcp" | "udp" | "icmp" | "icmpv6" | "ether" | "vlan", f) => {
            // Other header fields are the sender's choice (ttl, length, icmp type ...).
            let mut implied = match proto {
                "ip" | "ip6" => implied_family(proto == "ip6"),
                "ether" | "vlan" => Vec::new(),
                _ => implied_l4(proto),
            };
            implied.push(Stmt::Either(format!("{proto} {f}")));
            Left::Implied(implied)
        }
        _ if p.get("base").is_some() => raw_payload(p),
        _ => Left::Undecided(format!("{proto} {field}")),
    }
}

/// A raw payload load (`@th,0,32`), which nft prints where it merged
/// adjacent matches it cannot split back (`th sport 1 th dport 2`).
pub(super) fn raw_payload(p: &Value) -> Left {
    let num = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(u64::MAX);
    let key = match (str_of(p, "base"), num("offset"), num("len")) {
        ("th", 0, 16) => Key::Field(Field::Sport),
        ("th", 16, 16) => Key::Field(Field::Dport),
        ("th", 0, 32) => Key::Concat(vec![Field::Sport, Field::Dport]),
        (base, offset, len) => return Left::Either(format!("raw payload @{base},{offset},{len}")),
    };
    Left::Key(key, Vec::new())
}

pub(super) fn masked(and: &[Value]) -> Left {
    let [inner, mask] = and else { return Left::Undecided("bitwise expression".into()) };
    let Left::Key(Key::Field(field), implied) = left(inner) else {
        return Left::Undecided(format!("bitwise expression on {inner}"));
    };
    match bits(field, mask) {
        Some(m) => Left::Key(Key::Masked(field, m), implied),
        None => Left::Undecided(format!("bitwise mask {mask}")),
    }
}

/// A number or a flag list (`["fin", "syn"]`) as one bit value.
pub(super) fn bits(field: Field, v: &Value) -> Option<u128> {
    match v {
        Value::Number(n) => n.as_u64().map(u128::from),
        Value::String(s) => values::scalar(field, s),
        Value::Array(a) => a.iter().try_fold(0u128, |acc, x| bits(field, x).map(|b| acc | b)),
        _ => None,
    }
}
