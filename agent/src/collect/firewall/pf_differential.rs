//! The region evaluation against a single-packet model of xnu's
//! `pf_test_rule` (last match, `quick`, anchors with xnu's match flag) on
//! random rule sets written in pfctl's form: every packet must fall in
//! exactly one final region, and that region's fate must be the model's.
//! Rules the evaluator cannot decide (`user`) are checked for soundness
//! over every way they could go: a certain pass (or block) must be the
//! model's verdict in all of them.

use super::*;
use crate::collect::firewall::pf_region::{Fam, Proto, Region};

/// xorshift64*: a small seeded generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

#[derive(Debug, Clone, Copy)]
enum Port {
    One(&'static str, u16),
    Two(&'static str, u16, u16),
}

/// A generated rule: the model the packet evaluator reads and the text
/// the region evaluator parses.
#[derive(Debug, Clone)]
struct Gen {
    pass: bool,
    quick: bool,
    /// `Some(true)` in, `Some(false)` out.
    dir: Option<bool>,
    on: Option<(bool, &'static str)>,
    fam: Option<Fam>,
    protos: Option<Vec<Proto>>,
    src: Option<(bool, &'static str, Fam)>,
    sport: Option<Port>,
    dport: Option<Port>,
    flags: Option<&'static str>,
    /// Undecided: matches only in worlds where its bit is set.
    user: Option<usize>,
    /// An anchor call: (wildcard, child rule sets).
    anchor: Option<(bool, Vec<Vec<Gen>>)>,
}

const PORTS: &[u16] = &[0, 1, 21, 22, 23, 80, 1000, 2000, 65534, 65535];
const V4_SRC: &[&str] = &["10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24", "0.0.0.0/1", "10.1.2.3"];
const V6_SRC: &[&str] = &["fe80::/10", "2001:db8::/32", "::1"];

fn gen_port(rng: &mut Rng) -> Port {
    let (a, b) = (rng.pick(PORTS), rng.pick(PORTS));
    let (a, b) = (a.min(b), a.max(b));
    match rng.below(9) {
        0..=5 => Port::One(rng.pick(&["=", "!=", "<", "<=", ">", ">="]), a),
        6 => Port::Two(":", a, b),
        7 => Port::Two("><", a, b),
        _ => Port::Two("<>", a, b),
    }
}

fn gen_rule(rng: &mut Rng, depth: usize, users: &mut usize, names: &mut usize) -> Gen {
    let mut g = Gen {
        pass: rng.chance(50),
        quick: rng.chance(25),
        dir: [None, Some(true), Some(true), Some(false)][rng.below(4)],
        on: rng.chance(30).then(|| (rng.chance(40), rng.pick(&["en0", "en1", "lo0"]))),
        fam: [None, None, Some(Fam::V4), Some(Fam::V6)][rng.below(4)],
        protos: None,
        src: None,
        sport: None,
        dport: None,
        flags: rng.chance(30).then(|| rng.pick(&["S/SA", "any", "A/A", "S/FSRPAUEW"])),
        user: None,
        anchor: None,
    };
    if rng.chance(60) {
        g.protos = Some(match rng.below(3) {
            0 => vec![Proto::Tcp],
            1 => vec![Proto::Udp],
            _ => vec![Proto::Tcp, Proto::Udp],
        });
        g.sport = rng.chance(20).then(|| gen_port(rng));
        g.dport = rng.chance(70).then(|| gen_port(rng));
    }
    if rng.chance(30) {
        let fam = if rng.chance(70) { Fam::V4 } else { Fam::V6 };
        let prefix = rng.pick(if fam == Fam::V4 { V4_SRC } else { V6_SRC });
        g.src = Some((rng.chance(30), prefix, fam));
        g.fam = Some(fam);
    }
    if *users < 3 && rng.chance(8) {
        g.user = Some(*users);
        *users += 1;
    } else if depth < 2 && rng.chance(12) {
        *names += 1;
        let wildcard = rng.chance(40);
        let children = if wildcard { 1 + rng.below(2) } else { 1 };
        let sets = (0..children).map(|_| gen_set(rng, depth + 1, users, names)).collect();
        g.anchor = Some((wildcard, sets));
        (g.protos, g.sport, g.dport, g.flags) = (None, None, None, None);
    }
    g
}

fn gen_set(rng: &mut Rng, depth: usize, users: &mut usize, names: &mut usize) -> Vec<Gen> {
    (0..1 + rng.below(6)).map(|_| gen_rule(rng, depth, users, names)).collect()
}

fn port_text(p: Port) -> String {
    match p {
        Port::One("=", 22) => " port = ssh".into(),
        Port::One(op, a) => format!(" port {op} {a}"),
        Port::Two(":", a, b) => format!(" port {a}:{b}"),
        Port::Two(op, a, b) => format!(" port {a} {op} {b}"),
    }
}

/// Writes a rule set as pfctl prints it, its anchors into `map`.
fn render(rules: &[Gen], path: &str, map: &mut Map, counter: &mut usize) -> String {
    let mut out = String::new();
    for g in rules {
        let mut s = match &g.anchor {
            Some((wildcard, sets)) => {
                *counter += 1;
                let name = format!("a{counter}");
                let full = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
                if *wildcard {
                    let kids: Vec<String> = (0..sets.len()).map(|i| format!("{full}/c{i}")).collect();
                    for (kid, set) in kids.iter().zip(sets) {
                        let text = render(set, kid, map, counter);
                        map.rules.insert(kid.clone(), text);
                    }
                    map.children.insert(full, kids);
                    format!("anchor \"{name}/*\"")
                } else {
                    let text = render(&sets[0], &full, map, counter);
                    map.rules.insert(full, text);
                    format!("anchor \"{name}\"")
                }
            }
            None if g.pass => "pass".to_string(),
            None => "block drop".to_string(),
        };
        s.push_str(match g.dir {
            Some(true) => " in",
            Some(false) => " out",
            None => "",
        });
        if g.quick {
            s.push_str(" quick");
        }
        if let Some((neg, name)) = g.on {
            s.push_str(&format!(" on {}{name}", if neg { "! " } else { "" }));
        }
        s.push_str(match g.fam {
            Some(Fam::V4) => " inet",
            Some(Fam::V6) => " inet6",
            None => "",
        });
        match g.protos.as_deref() {
            Some([p]) => s.push_str(&format!(" proto {}", if p == &Proto::Udp { "17" } else { "tcp" })),
            Some(_) => s.push_str(" proto { tcp udp }"),
            None => {}
        }
        if g.src.is_none() && g.sport.is_none() && g.dport.is_none() {
            s.push_str(" all");
        } else {
            let src =
                g.src.map_or("any".to_string(), |(neg, p, _)| format!("{}{p}", if neg { "! " } else { "" }));
            s.push_str(&format!(
                " from {src}{} to any{}",
                g.sport.map(port_text).unwrap_or_default(),
                g.dport.map(port_text).unwrap_or_default()
            ));
        }
        if g.user.is_some() {
            s.push_str(" user = 501");
        }
        if let Some(f) = g.flags {
            s.push_str(&format!(" flags {f}"));
        }
        if g.pass && g.anchor.is_none() {
            s.push_str(" keep state");
        }
        out.push_str(&s);
        out.push('\n');
    }
    out
}

/// One inbound packet.
#[derive(Debug, Clone, Copy)]
struct Packet {
    fam: Fam,
    proto: Proto,
    iface: &'static str,
    src: u128,
    sport: u16,
    dport: u16,
}

fn port_ok(p: Port, v: u16) -> bool {
    match p {
        Port::One("=", a) => v == a,
        Port::One("!=", a) => v != a,
        Port::One("<", a) => v < a,
        Port::One("<=", a) => v <= a,
        Port::One(">", a) => v > a,
        Port::One(">=", a) => v >= a,
        Port::Two(":", a, b) => a <= v && v <= b,
        Port::Two("><", a, b) => a < v && v < b,
        Port::Two(_, a, b) => v < a || v > b,
        Port::One(..) => false,
    }
}

fn in_prefix(prefix: &str, fam: Fam, addr: u128) -> bool {
    let (a, len) = prefix.split_once('/').unwrap_or((prefix, if fam == Fam::V4 { "32" } else { "128" }));
    let len: u32 = len.parse().unwrap();
    let (value, bits) = match a.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
        std::net::IpAddr::V6(v) => (u128::from(v), 128),
    };
    let shift = bits - len;
    shift >= 128 || (value >> shift) == (addr >> shift)
}

fn matches(g: &Gen, p: &Packet, world: u32) -> bool {
    let on_ok = g.on.is_none_or(|(neg, name)| (name != "lo0" && p.iface == name) != neg);
    let syn_ok = p.proto == Proto::Udp || g.flags.is_none_or(|f| f != "A/A");
    g.dir != Some(false)
        && on_ok
        && g.fam.is_none_or(|f| f == p.fam)
        && g.protos.as_ref().is_none_or(|ps| ps.contains(&p.proto))
        && syn_ok
        && g.src.is_none_or(|(neg, pre, fam)| fam == p.fam && in_prefix(pre, fam, p.src) != neg)
        && g.sport.is_none_or(|sp| port_ok(sp, p.sport))
        && g.dport.is_none_or(|dp| port_ok(dp, p.dport))
        && g.user.is_none_or(|bit| world & (1 << bit) != 0)
}

/// xnu's evaluation: `verdict` is the last match, `m` the match flag;
/// `true` when a quick rule or quick anchor ended it.
fn run(rules: &[Gen], p: &Packet, world: u32, verdict: &mut bool, m: &mut bool) -> bool {
    for g in rules.iter().filter(|g| matches(g, p, world)) {
        let Some((wildcard, sets)) = &g.anchor else {
            *verdict = g.pass;
            *m = true;
            if g.quick {
                return true;
            }
            continue;
        };
        *m = false;
        let mut anchor_match = false;
        for set in sets {
            if run(set, p, world, verdict, m) {
                return true;
            }
            if *wildcard && *m {
                anchor_match = true;
                *m = false;
            }
        }
        if g.quick && (anchor_match || *m) {
            return true;
        }
    }
    false
}

fn model(rules: &[Gen], p: &Packet, world: u32) -> bool {
    let (mut verdict, mut m) = (true, false);
    run(rules, p, world, &mut verdict, &mut m);
    verdict
}

fn random_packet(rng: &mut Rng) -> Packet {
    let fam = if rng.chance(50) { Fam::V4 } else { Fam::V6 };
    let v4: &[u128] = &[
        0,
        0x0a00_0000,
        0x0aff_ffff,
        0x0a01_0000,
        0x0a01_0203,
        0x0b00_0000,
        0x09ff_ffff,
        0xc0a8_0100,
        0xc0a8_01ff,
        0xc0a8_0200,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
    ];
    let v6: &[u128] = &[
        0,
        1,
        2,
        0xfe80 << 112,
        (0xfec0 << 112) - 1,
        0xfec0 << 112,
        0x2001_0db8 << 96,
        (0x2001_0db9 << 96) - 1,
        u128::MAX,
    ];
    let ports: Vec<u16> = PORTS.iter().flat_map(|&p| [p.saturating_sub(1), p, p.saturating_add(1)]).collect();
    Packet {
        fam,
        proto: if rng.chance(50) { Proto::Tcp } else { Proto::Udp },
        iface: rng.pick(&["en0", "en1", "en7"]),
        src: rng.pick(if fam == Fam::V4 { v4 } else { v6 }),
        sport: rng.pick(&ports),
        dport: rng.pick(&ports),
    }
}

fn region_of<'a>(regions: &'a [Region], p: &Packet) -> Vec<&'a Region> {
    regions
        .iter()
        .filter(|r| {
            r.fam == p.fam
                && r.proto == p.proto
                && r.space.ifaces.contains(p.iface)
                && r.space.src.contains(p.src)
                && r.space.sport.contains(u128::from(p.sport))
                && r.space.dport.contains(u128::from(p.dport))
        })
        .collect()
}

#[test]
fn regions_agree_with_a_single_packet_model_on_random_rule_sets() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..1500 {
        let (mut users, mut names) = (0, 0);
        let rules = gen_set(&mut rng, 0, &mut users, &mut names);
        let mut map = Map::default();
        let main = render(&rules, "", &mut map, &mut 0);
        let regions =
            evaluate_regions(&main, &mut map).unwrap_or_else(|e| panic!("case {case}: {e}\n{main}"));
        for _ in 0..150 {
            let p = random_packet(&mut rng);
            let hits = region_of(&regions, &p);
            assert_eq!(hits.len(), 1, "case {case}: {p:?} lies in {} regions\n{main}", hits.len());
            let fate = &hits[0].verdict;
            let worlds: Vec<bool> = (0..1u32 << users).map(|w| model(&rules, &p, w)).collect();
            let (any_pass, any_block) = (worlds.iter().any(|&v| v), worlds.iter().any(|&v| !v));
            let shown = format!("case {case}: {p:?}: model {worlds:?}, regions {fate:?}\n{main}");
            if users == 0 {
                assert_eq!((fate.pass.is_some(), fate.block.is_some()), (any_pass, any_block), "{shown}");
            } else {
                // Sound: whatever some world does is shown as possible.
                assert!(!any_pass || fate.pass.is_some(), "{shown}");
                assert!(!any_block || fate.block.is_some(), "{shown}");
            }
        }
    }
}
