//! Addresses and ports as `pfctl -s rules` prints them, read as sets.
//!
//! Addresses (pfctl's `print_addr`): `any`, `10.0.0.0/8`, `fe80::1`,
//! ranges `a - b`, `<table>` (its contents from `pfctl -t NAME -T show`,
//! longest prefix deciding, `!` entries excluding: pf's table lookup), an
//! interface's addresses `(en0)`, `(en0:0)`, `(self)` (the host itself),
//! `(en0:network)`, `(en0:broadcast)`, `(en0:peer)`, `no-route`,
//! `urpf-failed`, `route "label"`, each possibly negated with `!`, and lists
//! `{ ... }` (their union: pfctl expands a list into one rule per element,
//! all with the same action). Ports (`print_port`): `= 22`, `= ssh`
//! (pfctl prints service names for `=` and `!=`), `!=`, `<`, `<=`, `>`,
//! `>=`, `a:b`, `a >< b`, `a <> b`, lists.

use std::net::IpAddr;

use super::intervals::{IntervalSet, PORT_MAX, V4_MAX, V6_MAX};
use super::pf_region::Fam;
use super::pf_rule::{Cursor, Tok};
use crate::collect::ParseError;

/// What the rule parser needs from outside the rule text.
pub trait Lookup {
    /// A table's addresses (IPv4, IPv6); `Err` with why when unreadable.
    fn table(&mut self, name: &str) -> Result<(IntervalSet, IntervalSet), String>;
    /// The port of a service name for `tcp` or `udp`.
    fn service(&mut self, name: &str, proto: &str) -> Option<u16>;
}

/// What an address expression denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrKind {
    /// Concrete addresses per family.
    Sets { v4: IntervalSet, v6: IntervalSet },
    /// The host's own addresses (`self`, `(en0)`).
    Host,
    /// Everything but the host's own addresses.
    NotHost,
    /// Cannot be decided here, with why.
    Undecided(String),
}

/// An address expression and its text (for reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub kind: AddrKind,
    pub text: String,
    /// The family of its address literals, when it is made of literals of
    /// one family only: pfctl gives such a rule that family.
    pub family: Option<Fam>,
}

/// Whether a destination expression matches packets to this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Host,
    NotHost,
    Maybe(String),
}

impl Addr {
    pub fn any() -> Addr {
        Addr {
            kind: AddrKind::Sets { v4: IntervalSet::full(V4_MAX), v6: IntervalSet::full(V6_MAX) },
            text: "any".into(),
            family: None,
        }
    }

    /// `[!] element` or `[!] { element ... }`.
    pub fn parse(p: &mut Cursor, lookup: &mut dyn Lookup) -> Addr {
        let negated = p.eat(&Tok::Bang);
        let addr = if p.eat(&Tok::Open) { list(p, lookup) } else { element(p, lookup) };
        if negated { addr.negate() } else { addr }
    }

    fn negate(self) -> Addr {
        let kind = match self.kind {
            AddrKind::Sets { v4, v6 } => AddrKind::Sets { v4: v4.complement(), v6: v6.complement() },
            AddrKind::Host => AddrKind::NotHost,
            AddrKind::NotHost => AddrKind::Host,
            u @ AddrKind::Undecided(_) => u,
        };
        Addr { kind, text: format!("! {}", self.text), family: self.family }
    }

    /// As a source: the addresses of `fam`, or why that cannot be told.
    pub fn source(&self, fam: Fam) -> Result<IntervalSet, String> {
        match &self.kind {
            AddrKind::Sets { v4, v6 } => Ok(if fam == Fam::V4 { v4.clone() } else { v6.clone() }),
            AddrKind::Host | AddrKind::NotHost => {
                Err(format!("source {} (the host's own addresses) is not evaluated", self.text))
            }
            AddrKind::Undecided(why) => Err(why.clone()),
        }
    }

    /// As a destination of packets to this host.
    pub fn destination(&self, fam: Fam) -> Dest {
        match &self.kind {
            AddrKind::Sets { v4, v6 } => {
                let set = if fam == Fam::V4 { v4 } else { v6 };
                if set.is_full() {
                    Dest::Host
                } else if set.is_empty() {
                    Dest::NotHost
                } else {
                    Dest::Maybe(format!("destination {} may or may not be this host's address", self.text))
                }
            }
            AddrKind::Host => Dest::Host,
            AddrKind::NotHost => Dest::NotHost,
            AddrKind::Undecided(why) => Dest::Maybe(why.clone()),
        }
    }
}

fn undecided(text: String, why: String) -> Addr {
    Addr { kind: AddrKind::Undecided(why), text, family: None }
}

/// The union of a `{ ... }` list (the opening brace already read).
fn list(p: &mut Cursor, lookup: &mut dyn Lookup) -> Addr {
    let mut items = Vec::new();
    loop {
        match p.peek() {
            Some(Tok::Close) | None => {
                p.advance();
                break;
            }
            Some(Tok::Comma) => {
                p.advance();
            }
            Some(_) => items.push(Addr::parse(p, lookup)),
        }
    }
    let text = format!("{{ {} }}", items.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(" "));
    let mut v4 = IntervalSet::empty(V4_MAX);
    let mut v6 = IntervalSet::empty(V6_MAX);
    let mut host = false;
    for a in &items {
        match &a.kind {
            AddrKind::Sets { v4: a4, v6: a6 } => {
                v4 = v4.union(a4);
                v6 = v6.union(a6);
            }
            AddrKind::Host => host = true,
            AddrKind::NotHost => {
                return undecided(text.clone(), format!("address list {text} is not evaluated"));
            }
            AddrKind::Undecided(why) => return undecided(text, why.clone()),
        }
    }
    let kind = if host { AddrKind::Host } else { AddrKind::Sets { v4, v6 } };
    let family = items.first().and_then(|a| a.family).filter(|f| items.iter().all(|a| a.family == Some(*f)));
    Addr { kind, text, family }
}

/// One address element.
fn element(p: &mut Cursor, lookup: &mut dyn Lookup) -> Addr {
    match p.advance() {
        Some(Tok::Word(w)) => word(&w, p),
        Some(Tok::Table(name)) => {
            let text = format!("<{name}>");
            match lookup.table(&name) {
                Ok((v4, v6)) => Addr { kind: AddrKind::Sets { v4, v6 }, text, family: None },
                Err(e) => undecided(text, e),
            }
        }
        Some(Tok::Group(g)) => interface(&g, p),
        other => undecided("?".into(), format!("address {other:?} is not understood")),
    }
}

fn word(w: &str, p: &mut Cursor) -> Addr {
    match w {
        "any" => Addr::any(),
        "self" => Addr { kind: AddrKind::Host, text: "self".into(), family: None },
        "route" => {
            p.advance();
            undecided(w.into(), "`route` addresses are not evaluated".into())
        }
        _ => match parse_prefix(w) {
            Some((lo, hi, fam)) => {
                let (hi, text) = match range_end(p, fam) {
                    Some((end, to)) => (end, format!("{w} - {to}")),
                    None => (hi, w.to_string()),
                };
                let set = IntervalSet::from_ranges(fam.max(), [(lo, hi)]);
                let (v4, v6) = match fam {
                    Fam::V4 => (set, IntervalSet::empty(V6_MAX)),
                    Fam::V6 => (IntervalSet::empty(V4_MAX), set),
                };
                Addr { kind: AddrKind::Sets { v4, v6 }, text, family: Some(fam) }
            }
            None => undecided(w.into(), format!("address `{w}` is not evaluated")),
        },
    }
}

/// The end of a range `a - b` when one follows.
fn range_end(p: &mut Cursor, fam: Fam) -> Option<(u128, String)> {
    if p.peek() != Some(&Tok::Word("-".into())) {
        return None;
    }
    p.advance();
    match p.advance() {
        Some(Tok::Word(b)) => parse_prefix(&b).filter(|(_, _, f)| *f == fam).map(|(_, hi, _)| (hi, b)),
        _ => None,
    }
}

/// `(en0)`, `(en0:0)`, `(self)`: the host's addresses; with `:network`,
/// `:broadcast`, `:peer` (or a netmask after it) other addresses.
fn interface(g: &str, p: &mut Cursor) -> Addr {
    let text = format!("({g})");
    if let Some(Tok::Word(w)) = p.peek()
        && w.starts_with('/')
    {
        let mask = w.clone();
        p.advance();
        return undecided(format!("{text}{mask}"), format!("the network {text}{mask} is not evaluated"));
    }
    let mut parts = g.split(':');
    let _name = parts.next();
    if parts.all(|m| m == "0") {
        Addr { kind: AddrKind::Host, text, family: None }
    } else {
        undecided(text.clone(), format!("interface address {text} is not evaluated"))
    }
}

/// `10.0.0.0/8`, `10.0.0.1`, `fe80::1%en0`, `2001:db8::/32`: the first and
/// last address and the family; `None` for anything else.
pub fn parse_prefix(w: &str) -> Option<(u128, u128, Fam)> {
    let (addr, len) = match w.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().ok()?)),
        None => (w, None),
    };
    let addr = addr.split('%').next()?;
    let (value, bits, fam) = match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32, Fam::V4),
        IpAddr::V6(a) => (u128::from(a), 128, Fam::V6),
    };
    let len = len.unwrap_or(bits);
    if len > bits {
        return None;
    }
    let host_bits = bits - len;
    let span: u128 = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    let lo = value & !span;
    Some((lo, (lo | span).min(fam.max()), fam))
}

/// A port expression after `port` (see the module doc); `Err` names a
/// service name that cannot be resolved.
pub fn port_set(p: &mut Cursor, lookup: &mut dyn Lookup, proto: &str) -> Result<IntervalSet, String> {
    if !p.eat(&Tok::Open) {
        return port_item(p, lookup, proto);
    }
    let mut set = IntervalSet::empty(PORT_MAX);
    let mut undecided = None;
    loop {
        match p.peek() {
            Some(Tok::Close) | None => {
                p.advance();
                break;
            }
            Some(Tok::Comma) => {
                p.advance();
            }
            Some(_) => match port_item(p, lookup, proto) {
                Ok(s) => set = set.union(&s),
                Err(e) => undecided = Some(e),
            },
        }
    }
    undecided.map_or(Ok(set), Err)
}

fn port_item(p: &mut Cursor, lookup: &mut dyn Lookup, proto: &str) -> Result<IntervalSet, String> {
    let mut value = |w: &str| -> Result<u128, String> {
        w.parse::<u16>()
            .ok()
            .or_else(|| lookup.service(w, proto))
            .map(u128::from)
            .ok_or_else(|| format!("port `{w}` (a service name not found)"))
    };
    match p.advance() {
        Some(Tok::Op(op)) => {
            let Some(Tok::Word(w)) = p.advance() else { return Err(format!("port `{op}` without a value")) };
            let a = value(&w)?;
            Ok(by_op(op, a, a))
        }
        Some(Tok::Word(w)) => {
            if let Some((a, b)) = w.split_once(':') {
                return Ok(by_op(":", value(a)?, value(b)?));
            }
            let a = value(&w)?;
            match p.peek() {
                Some(Tok::Op(op @ ("><" | "<>"))) => {
                    let op = *op;
                    p.advance();
                    let Some(Tok::Word(b)) = p.advance() else {
                        return Err(format!("port `{w} {op}` without an end"));
                    };
                    Ok(by_op(op, a, value(&b)?))
                }
                _ => Ok(by_op("=", a, a)),
            }
        }
        other => Err(format!("port {other:?} is not understood")),
    }
}

/// The ports an operator selects (pf's `pf_match_port`).
pub fn by_op(op: &str, a: u128, b: u128) -> IntervalSet {
    let range = |lo: u128, hi: u128| {
        if lo <= hi { IntervalSet::from_ranges(PORT_MAX, [(lo, hi)]) } else { IntervalSet::empty(PORT_MAX) }
    };
    match op {
        "=" => range(a, a),
        "!=" => range(a, a).complement(),
        "<" if a == 0 => IntervalSet::empty(PORT_MAX),
        "<" => range(0, a - 1),
        "<=" => range(0, a),
        ">" => range(a + 1, PORT_MAX),
        ">=" => range(a, PORT_MAX),
        "><" if b == 0 => IntervalSet::empty(PORT_MAX),
        "><" => range(a + 1, b - 1),
        "<>" => range(a, b).complement(),
        _ => range(a, b),
    }
}

/// The contents of `pfctl -t NAME -T show` (one address or prefix a line,
/// `!` for an excluded entry) as the sets a lookup in it matches: the most
/// specific entry containing an address decides. `Err` names the line of
/// an entry that is not an address.
pub fn parse_table(text: &str) -> Result<(IntervalSet, IntervalSet), ParseError> {
    let mut entries = Vec::new();
    let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    for (n, line) in lines.filter(|(_, l)| !l.is_empty()) {
        let (negated, addr) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let (lo, hi, fam) = parse_prefix(addr)
            .ok_or_else(|| ParseError::new(format!("table entry {line:?} is not an address")).at_line(n))?;
        entries.push((hi - lo, fam, negated, lo, hi));
    }
    // Widest first, so a narrower entry overrides a wider one.
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut v4 = IntervalSet::empty(V4_MAX);
    let mut v6 = IntervalSet::empty(V6_MAX);
    for (_, fam, negated, lo, hi) in entries {
        let set = if fam == Fam::V4 { &mut v4 } else { &mut v6 };
        let entry = IntervalSet::from_ranges(fam.max(), [(lo, hi)]);
        *set = if negated { set.minus(&entry) } else { set.union(&entry) };
    }
    Ok((v4, v6))
}

/// A service's port from `/etc/services` text (`name port/proto aliases`).
pub fn service_in(services: &str, name: &str, proto: &str) -> Option<u16> {
    services.lines().find_map(|line| {
        let mut fields = line.split('#').next()?.split_whitespace();
        let first = fields.next()?;
        let (port, p) = fields.next()?.split_once('/')?;
        let named = first == name || fields.any(|a| a == name);
        (named && p == proto).then(|| port.parse().ok()).flatten()
    })
}

/// Well-known service names pfctl prints for common ports (the names of
/// macOS's `/etc/services`), used when that file cannot be read.
pub fn well_known_port(name: &str) -> Option<u16> {
    const PORTS: &[(&str, u16)] = &[
        ("ftp-data", 20),
        ("ftp", 21),
        ("ssh", 22),
        ("telnet", 23),
        ("smtp", 25),
        ("domain", 53),
        ("bootps", 67),
        ("bootpc", 68),
        ("tftp", 69),
        ("http", 80),
        ("www", 80),
        ("kerberos", 88),
        ("pop3", 110),
        ("sunrpc", 111),
        ("ntp", 123),
        ("netbios-ns", 137),
        ("netbios-dgm", 138),
        ("netbios-ssn", 139),
        ("imap", 143),
        ("snmp", 161),
        ("ldap", 389),
        ("svrloc", 427),
        ("https", 443),
        ("microsoft-ds", 445),
        ("isakmp", 500),
        ("syslog", 514),
        ("shell", 514),
        ("printer", 515),
        ("afpovertcp", 548),
        ("submission", 587),
        ("ipp", 631),
        ("ldaps", 636),
        ("imaps", 993),
        ("pop3s", 995),
        ("ms-sql-s", 1433),
        ("ssdp", 1900),
        ("nfs", 2049),
        ("eppc", 3031),
        ("mysql", 3306),
        ("ms-wbt-server", 3389),
        ("ipsec-msft", 4500),
        ("nat-pmp", 5351),
        ("mdns", 5353),
        ("postgresql", 5432),
        ("rfb", 5900),
    ];
    PORTS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}
