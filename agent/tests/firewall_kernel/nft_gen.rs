//! Random nftables rulesets built from every construct the firewall
//! evaluator supports, as proptest strategies, and written out in nft's
//! own syntax for the kernel to load.
//!
//! What is generated: tables of the `inet`, `ip` and `ip6` families; base
//! chains on the input and prerouting hooks at several priorities with
//! either policy; regular chains reached by `jump` and `goto` (only
//! forwards, so there are no loops for nft to refuse); a nat prerouting
//! chain with DNAT to the lab's inner namespace and redirects; a forward
//! chain. Matches: protocol, destination and source ports (values, ranges,
//! anonymous sets, `!=`, `<`, `>`), source and destination addresses and
//! prefixes, named interval sets, concatenations, interfaces (names and
//! wildcards, `iif` and `iifname`), conntrack state and status, `meta
//! nfproto`, `fib`, marks; verdicts, verdict maps, `return`, `continue`,
//! `reject`, a mark set before the verdict, counters.

use proptest::prelude::*;

pub const V4_SOURCES: [&str; 4] = ["203.0.113.7", "10.1.2.3", "198.51.100.9", "192.0.2.200"];
pub const V6_SOURCES: [&str; 3] = ["2001:db8::7", "fd00::3", "2001:db8:1::9"];
pub const PORTS: [u16; 8] = [1, 22, 53, 80, 443, 1000, 8080, 65535];
pub const SPORTS: [u16; 3] = [40000, 53, 1024];

const V4_PREFIXES: [&str; 7] = [
    "203.0.113.0/24",
    "10.0.0.0/8",
    "10.1.2.3",
    "198.51.100.0/25",
    "0.0.0.0/0",
    "192.0.2.128/25",
    "10.0.1.1",
];
const V6_PREFIXES: [&str; 5] = ["2001:db8::/32", "fd00::/8", "fd00::3", "2001:db8:1::/48", "fd00:b::1"];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fam {
    Inet,
    Ip,
    Ip6,
}

#[derive(Debug, Clone)]
pub enum Ports {
    One(u16),
    Range(u16, u16),
    Set(Vec<u16>),
    Not(u16),
    Below(u16),
    Above(u16),
}

#[derive(Debug, Clone)]
pub enum Match {
    L4(u8),
    BothL4,
    Dport(u8, Ports),
    Sport(u8, Ports),
    Saddr4(usize, bool),
    Saddr6(usize, bool),
    Set4,
    Set6,
    Daddr4(usize),
    Daddr6(usize),
    /// (interface index or a wildcard, negated, `iif` rather than `iifname`)
    Iif(usize, bool, bool),
    Ct(usize),
    CtDnat,
    Nfproto(bool),
    FibLocal(bool),
    Rpf,
    Mark(bool),
    Concat4(usize, u16),
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
    Continue,
    Return,
    Jump(usize),
    Goto(usize),
    Vmap(Vec<(u16, bool)>),
    Counter,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub set_mark: bool,
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
pub struct Base {
    pub prerouting: bool,
    pub prio: i32,
    pub drop: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Nat {
    pub tcp: bool,
    pub dport: u16,
    pub redirect: bool,
    pub to_port: Option<u16>,
    pub from: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub fam: Fam,
    pub bases: Vec<Base>,
    pub regular: Vec<Vec<Rule>>,
    pub nat: Vec<Nat>,
    pub forward: Option<(bool, Vec<Rule>)>,
}

#[derive(Debug, Clone)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    pub forwarding: bool,
}

fn ports() -> impl Strategy<Value = Ports> {
    let p = || prop::sample::select(PORTS.to_vec());
    prop_oneof![
        p().prop_map(Ports::One),
        (p(), p()).prop_map(|(a, b)| Ports::Range(a.min(b), a.max(b))),
        prop::collection::btree_set(p(), 1..4).prop_map(|s| Ports::Set(s.into_iter().collect())),
        p().prop_map(Ports::Not),
        p().prop_map(Ports::Below),
        p().prop_map(Ports::Above),
    ]
}

fn proto() -> impl Strategy<Value = u8> {
    prop_oneof![Just(6u8), Just(17u8), Just(0u8)]
}

fn a_match() -> impl Strategy<Value = Match> {
    prop_oneof![
        3 => proto().prop_map(Match::L4),
        1 => Just(Match::BothL4),
        6 => (proto(), ports()).prop_map(|(p, s)| Match::Dport(p, s)),
        2 => (proto(), ports()).prop_map(|(p, s)| Match::Sport(p, s)),
        3 => (0..V4_PREFIXES.len(), any::<bool>()).prop_map(|(i, n)| Match::Saddr4(i, n)),
        2 => (0..V6_PREFIXES.len(), any::<bool>()).prop_map(|(i, n)| Match::Saddr6(i, n)),
        1 => Just(Match::Set4),
        1 => Just(Match::Set6),
        1 => (0..2usize).prop_map(Match::Daddr4),
        1 => (0..2usize).prop_map(Match::Daddr6),
        3 => (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(i, n, f)| Match::Iif(i, n, f)),
        3 => (0..6usize).prop_map(Match::Ct),
        1 => Just(Match::CtDnat),
        1 => any::<bool>().prop_map(Match::Nfproto),
        1 => any::<bool>().prop_map(Match::FibLocal),
        1 => Just(Match::Rpf),
        1 => any::<bool>().prop_map(Match::Mark),
        1 => (0..V4_SOURCES.len(), prop::sample::select(PORTS.to_vec())).prop_map(|(i, p)| Match::Concat4(i, p)),
    ]
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        6 => Just(Verdict::Accept),
        4 => Just(Verdict::Drop),
        1 => Just(Verdict::Reject),
        1 => Just(Verdict::Continue),
        1 => Just(Verdict::Return),
        2 => (0..4usize).prop_map(Verdict::Jump),
        2 => (0..4usize).prop_map(Verdict::Goto),
        1 => prop::collection::vec((prop::sample::select(PORTS.to_vec()), any::<bool>()), 1..3).prop_map(Verdict::Vmap),
        1 => Just(Verdict::Counter),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (prop::collection::vec(a_match(), 0..4), prop::bool::weighted(0.1), verdict())
        .prop_map(|(matches, set_mark, verdict)| Rule { matches, set_mark, verdict })
}

fn rules(max: usize) -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(rule(), 0..max)
}

fn table() -> impl Strategy<Value = Table> {
    let base =
        (prop::bool::weighted(0.2), prop::sample::select(vec![-10, 0, 0, 10]), any::<bool>(), rules(6))
            .prop_map(|(prerouting, prio, drop, rules)| Base { prerouting, prio, drop, rules });
    let nat = (
        any::<bool>(),
        prop::sample::select(PORTS.to_vec()),
        prop::bool::weighted(0.3),
        prop::option::of(prop::sample::select(PORTS.to_vec())),
        prop::option::of(0..V4_PREFIXES.len()),
    )
        .prop_map(|(tcp, dport, redirect, to_port, from)| Nat { tcp, dport, redirect, to_port, from });
    (
        prop_oneof![3 => Just(Fam::Inet), 1 => Just(Fam::Ip), 1 => Just(Fam::Ip6)],
        prop::collection::vec(base, 1..3),
        prop::collection::vec(rules(4), 0..4),
        prop::collection::vec(nat, 0..3),
        prop::option::of((any::<bool>(), rules(3))),
    )
        .prop_map(|(fam, bases, regular, nat, forward)| Table { fam, bases, regular, nat, forward })
}

pub fn ruleset() -> impl Strategy<Value = Ruleset> {
    (prop::collection::vec(table(), 1..3), prop::bool::weighted(0.3))
        .prop_map(|(tables, forwarding)| Ruleset { tables, forwarding })
}

fn l4(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        _ => "th",
    }
}

fn port_text(p: &Ports) -> String {
    match p {
        Ports::One(a) => a.to_string(),
        Ports::Range(a, b) => format!("{a}-{b}"),
        Ports::Set(s) => format!("{{ {} }}", s.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")),
        Ports::Not(a) => format!("!= {a}"),
        Ports::Below(a) => format!("< {a}"),
        Ports::Above(a) => format!("> {a}"),
    }
}

/// One match in nft syntax, or `None` where the table's family cannot hold it.
fn match_text(m: &Match, fam: Fam, ifaces: &[String], host4: &[String], host6: &[String]) -> Option<String> {
    let v4 = fam != Fam::Ip6;
    let v6 = fam != Fam::Ip;
    let not = |n: bool| if n { "!= " } else { "" };
    Some(match m {
        Match::L4(0) | Match::BothL4 => "meta l4proto { tcp, udp }".into(),
        Match::L4(p) => format!("meta l4proto {}", l4(*p)),
        Match::Dport(p, s) => format!("{} dport {}", l4(*p), port_text(s)),
        Match::Sport(p, s) => format!("{} sport {}", l4(*p), port_text(s)),
        Match::Saddr4(i, n) if v4 => format!("ip saddr {}{}", not(*n), V4_PREFIXES[*i]),
        Match::Saddr6(i, n) if v6 => format!("ip6 saddr {}{}", not(*n), V6_PREFIXES[*i]),
        Match::Set4 if v4 => "ip saddr @s4".into(),
        Match::Set6 if v6 => "ip6 saddr @s6".into(),
        Match::Daddr4(i) if v4 => format!("ip daddr {}", host4[*i]),
        Match::Daddr6(i) if v6 => format!("ip6 daddr {}", host6[*i]),
        Match::Iif(i, n, by_index) => {
            let name = ifaces.get(*i).cloned().unwrap_or_else(|| "cx*".into());
            let key = if *by_index && !name.contains('*') { "iif" } else { "iifname" };
            format!("{key} {}\"{name}\"", not(*n))
        }
        Match::Ct(i) => [
            "ct state new",
            "ct state established,related",
            "ct state invalid",
            "ct state { new, untracked }",
            "ct state != established",
            "ct state new,established",
        ][*i]
            .into(),
        Match::CtDnat => "ct status dnat".into(),
        Match::Nfproto(v6only) if fam == Fam::Inet => {
            format!("meta nfproto {}", if *v6only { "ipv6" } else { "ipv4" })
        }
        Match::FibLocal(n) => format!("fib daddr type {}local", not(*n)),
        Match::Rpf => "fib saddr . iif oif missing".into(),
        Match::Mark(one) => format!("meta mark {}", if *one { "0x1" } else { "0x0" }),
        Match::Concat4(i, p) if v4 => format!("ip saddr . tcp dport {{ {} . {p} }}", V4_SOURCES[*i]),
        _ => return None,
    })
}

/// The rule in nft syntax; `targets` are the chains it may jump to.
fn rule_text(r: &Rule, fam: Fam, targets: &[String], ctx: &Ctx) -> String {
    // nft refuses a rule naming two address families or two transport
    // protocols: keep the first of each.
    let (mut family, mut proto): (Option<bool>, Option<u8>) = (None, None);
    let mut parts: Vec<String> = Vec::new();
    for m in &r.matches {
        let (f, p) = match m {
            Match::Saddr4(..) | Match::Set4 | Match::Daddr4(_) | Match::Concat4(..) => (Some(false), None),
            Match::Saddr6(..) | Match::Set6 | Match::Daddr6(_) => (Some(true), None),
            Match::Nfproto(v6) => (Some(*v6), None),
            Match::L4(p) | Match::Dport(p, _) | Match::Sport(p, _) if *p != 0 => (None, Some(*p)),
            // `meta l4proto { tcp, udp }` conflicts with a later `tcp dport` too.
            Match::L4(0) | Match::BothL4 => (None, Some(0)),
            _ => (None, None),
        };
        let p = if matches!(m, Match::Concat4(..)) { Some(6) } else { p };
        if f.is_some_and(|f| family.is_some_and(|g| g != f))
            || p.is_some_and(|p| proto.is_some_and(|q| q != p))
        {
            continue;
        }
        if let Some(text) = match_text(m, fam, &ctx.ifaces, &ctx.host4, &ctx.host6) {
            family = family.or(f);
            proto = proto.or(p);
            parts.push(text);
        }
    }
    if r.set_mark {
        parts.push("meta mark set 0x1".into());
    }
    let target = |n: usize| targets.get(n % targets.len().max(1)).cloned();
    parts.push(match &r.verdict {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject => "reject".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(n) => target(*n).map_or("accept".into(), |t| format!("jump {t}")),
        Verdict::Goto(n) => target(*n).map_or("drop".into(), |t| format!("goto {t}")),
        Verdict::Vmap(entries) => {
            let mut seen = std::collections::BTreeMap::new();
            for (p, a) in entries {
                seen.insert(*p, if *a { "accept" } else { "drop" });
            }
            let list: Vec<String> = seen.iter().map(|(p, v)| format!("{p} : {v}")).collect();
            format!("th dport vmap {{ {} }}", list.join(", "))
        }
        Verdict::Counter => "counter".into(),
    });
    parts.join(" ")
}

/// What the lab provides that rules name.
pub struct Ctx {
    pub ifaces: Vec<String>,
    pub host4: Vec<String>,
    pub host6: Vec<String>,
    pub inner4: String,
    pub inner6: String,
    pub inner_iface: String,
}

fn nat_text(n: &Nat, fam: Fam, ctx: &Ctx) -> Vec<String> {
    let proto = if n.tcp { "tcp" } else { "udp" };
    let port = n.to_port.map(|p| format!(":{p}")).unwrap_or_default();
    let mut out = Vec::new();
    for v6 in [false, true] {
        if (v6 && fam == Fam::Ip) || (!v6 && fam == Fam::Ip6) {
            continue;
        }
        let from = match n.from {
            Some(i) if !v6 => format!("ip saddr {} ", V4_PREFIXES[i]),
            _ => String::new(),
        };
        // A redirect to the arrival interface's first address may leave the
        // tuple as it was, which cannot be told from the rules: always move the port.
        let moved = if n.to_port == Some(n.dport) || n.to_port.is_none() {
            n.dport.wrapping_add(1).max(1)
        } else {
            n.to_port.unwrap_or(1)
        };
        let action = match (n.redirect, v6) {
            (true, _) => format!("redirect to :{moved}"),
            (false, false) => format!("dnat ip to {}{port}", ctx.inner4),
            (false, true) if n.to_port.is_some() => format!("dnat ip6 to [{}]{port}", ctx.inner6),
            (false, true) => format!("dnat ip6 to {}", ctx.inner6),
        };
        let fam_guard =
            if fam == Fam::Inet { if v6 { "meta nfproto ipv6 " } else { "meta nfproto ipv4 " } } else { "" };
        out.push(format!("{fam_guard}{from}{proto} dport {} {action}", n.dport));
        if n.redirect {
            break; // family-independent
        }
    }
    out
}

/// The whole ruleset in nft syntax.
pub fn render(rs: &Ruleset, ctx: &Ctx) -> String {
    let mut s = String::new();
    for (ti, t) in rs.tables.iter().enumerate() {
        let fam = match t.fam {
            Fam::Inet => "inet",
            Fam::Ip => "ip",
            Fam::Ip6 => "ip6",
        };
        s += &format!("table {fam} t{ti} {{\n");
        if t.fam != Fam::Ip6 {
            s += "  set s4 { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 203.0.113.0/25 } }\n";
        }
        if t.fam != Fam::Ip {
            s += "  set s6 { type ipv6_addr; flags interval; elements = { fd00::/16, 2001:db8:1::/48 } }\n";
        }
        let names: Vec<String> = (0..t.regular.len()).map(|i| format!("r{i}")).collect();
        for (i, rules) in t.regular.iter().enumerate() {
            s += &format!("  chain r{i} {{\n");
            for r in rules {
                s += &format!("    {}\n", rule_text(r, t.fam, &names[i + 1..], ctx));
            }
            s += "  }\n";
        }
        for (i, b) in t.bases.iter().enumerate() {
            let hook = if b.prerouting { "prerouting" } else { "input" };
            let policy = if b.drop { "drop" } else { "accept" };
            s += &format!(
                "  chain b{i} {{\n    type filter hook {hook} priority {}; policy {policy};\n",
                b.prio
            );
            for r in &b.rules {
                s += &format!("    {}\n", rule_text(r, t.fam, &names, ctx));
            }
            s += "  }\n";
        }
        if !t.nat.is_empty() && t.fam != Fam::Ip6 {
            s += "  chain nat {\n    type nat hook prerouting priority -100; policy accept;\n";
            for n in &t.nat {
                for line in nat_text(n, t.fam, ctx) {
                    s += &format!("    {line}\n");
                }
            }
            s += "  }\n";
        }
        if let Some((drop, rules)) = &t.forward {
            let policy = if *drop { "drop" } else { "accept" };
            s +=
                &format!("  chain forward_c {{\n    type filter hook forward priority 0; policy {policy};\n");
            s += &format!("    oifname \"{}\" ct status dnat tcp dport 1000 accept\n", ctx.inner_iface);
            for r in rules {
                s += &format!("    {}\n", rule_text(r, t.fam, &names, ctx));
            }
            s += "  }\n";
        }
        s += "}\n";
    }
    s
}
