//! Regions of the inbound packet space the evaluator follows through the
//! ruleset at once: for one address family and transport protocol, a box
//! of source and destination addresses, source and destination ports and
//! arrival interfaces. A match splits a region into the part it selects
//! and the rest, so every packet of a region takes the same path.
//!
//! Interfaces are finite classes ([`Ifaces`]): every name a rule mentions,
//! one class per wildcard prefix for the other names starting with it, and
//! one for names no rule mentions. Outside traffic never arrives on `lo`,
//! so no class stands for it.

use std::collections::BTreeSet;

use super::ruleset::{Elem, Field, Key, Ruleset, Stmt};
use crate::collect::firewall::intervals::{IntervalSet, PORT_MAX, V4_MAX, V6_MAX};

/// The loopback interface's hardware type.
pub const LOOPBACK_TYPE: u128 = 772;

/// A box of packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub saddr: IntervalSet,
    pub daddr: IntervalSet,
    pub sport: IntervalSet,
    pub dport: IntervalSet,
    /// Indices into [`Ifaces::atoms`].
    pub iifs: BTreeSet<usize>,
}

impl Region {
    pub fn is_empty(&self) -> bool {
        self.saddr.is_empty()
            || self.daddr.is_empty()
            || self.sport.is_empty()
            || self.dport.is_empty()
            || self.iifs.is_empty()
    }

    /// The numeric dimension a field reads, when it is one of the box's.
    pub fn dim(&self, f: Field) -> Option<&IntervalSet> {
        match f {
            Field::Saddr => Some(&self.saddr),
            Field::Daddr => Some(&self.daddr),
            Field::Sport => Some(&self.sport),
            Field::Dport => Some(&self.dport),
            _ => None,
        }
    }

    /// Whether every packet of `self` is in `other`.
    pub fn is_subset(&self, other: &Region) -> bool {
        self.saddr.is_subset(&other.saddr)
            && self.daddr.is_subset(&other.daddr)
            && self.sport.is_subset(&other.sport)
            && self.dport.is_subset(&other.dport)
            && self.iifs.is_subset(&other.iifs)
    }

    /// The packets of `self` not in `other`, as disjoint boxes.
    pub fn minus(&self, other: &Region) -> Vec<Region> {
        let mut rest = self.clone();
        let mut out = Vec::new();
        for f in [Field::Saddr, Field::Daddr, Field::Sport, Field::Dport] {
            let (mine, theirs) = (rest.dim(f).cloned(), other.dim(f));
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                let outside = mine.minus(theirs);
                if !outside.is_empty() {
                    out.push(rest.with_dim(f, outside));
                }
                rest = rest.with_dim(f, mine.intersect(theirs));
                if rest.is_empty() {
                    return out;
                }
            }
        }
        let outside: BTreeSet<usize> = rest.iifs.difference(&other.iifs).copied().collect();
        if !outside.is_empty() {
            let mut piece = rest;
            piece.iifs = outside;
            out.push(piece);
        }
        out
    }

    /// A copy with the dimension of `f` replaced.
    pub fn with_dim(&self, f: Field, set: IntervalSet) -> Region {
        let mut r = self.clone();
        match f {
            Field::Saddr => r.saddr = set,
            Field::Daddr => r.daddr = set,
            Field::Sport => r.sport = set,
            Field::Dport => r.dport = set,
            _ => {}
        }
        r
    }
}

/// Address blocks by family.
pub struct Blocks {
    pub loopback: (u128, u128),
    pub multicast: (u128, u128),
    /// The limited broadcast address (IPv4 only).
    pub broadcast: Option<u128>,
    pub max: u128,
}

pub fn blocks(v6: bool) -> Blocks {
    if v6 {
        Blocks { loopback: (1, 1), multicast: (0xff00 << 112, V6_MAX), broadcast: None, max: V6_MAX }
    } else {
        Blocks {
            loopback: (0x7f00_0000, 0x7fff_ffff),
            multicast: (0xe000_0000, 0xefff_ffff),
            broadcast: Some(V4_MAX),
            max: V4_MAX,
        }
    }
}

/// Sources an outside sender can use: not loopback, multicast or broadcast
/// (the kernel drops such sources as martians).
pub fn source_domain(v6: bool) -> IntervalSet {
    let b = blocks(v6);
    let bad = [Some(b.loopback), Some(b.multicast), b.broadcast.map(|x| (x, x))];
    IntervalSet::from_ranges(b.max, bad.into_iter().flatten()).complement()
}

/// Destinations a probe to this host can carry: not loopback; TCP only to
/// unicast addresses, UDP also to multicast and broadcast.
pub fn dest_domain(v6: bool, tcp: bool) -> IntervalSet {
    let b = blocks(v6);
    let mut bad = vec![b.loopback];
    if tcp {
        bad.push(b.multicast);
        bad.extend(b.broadcast.map(|x| (x, x)));
    }
    IntervalSet::from_ranges(b.max, bad).complement()
}

/// Multicast and broadcast destinations: their packet and route types.
pub fn daddr_class(v6: bool, daddr: u128) -> (u128, u128) {
    let b = blocks(v6);
    if (b.multicast.0..=b.multicast.1).contains(&daddr) {
        (2, 5) // pkttype multicast, route type multicast
    } else if b.broadcast == Some(daddr) {
        (1, 3)
    } else {
        (0, 2) // unicast to this host: local
    }
}

/// The destination ranges of each class, for splitting by packet or route type.
pub fn daddr_classes(v6: bool) -> Vec<(IntervalSet, (u128, u128))> {
    let b = blocks(v6);
    let mc = IntervalSet::from_ranges(b.max, [b.multicast]);
    let bc = IntervalSet::from_ranges(b.max, b.broadcast.map(|x| (x, x)));
    let rest = mc.union(&bc).complement();
    vec![(rest, (0, 2)), (mc, (2, 5)), (bc, (1, 3))]
}

/// An interface class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAtom {
    /// The exact name, or the prefix of a class.
    pub name: String,
    /// Whether `name` is a prefix standing for every other name starting with it.
    pub class: bool,
    /// Hardware type (`meta iiftype`): one of the types rules name, or one they do not.
    pub kind: u128,
}

impl IfAtom {
    /// Whether an interface pattern (`eth0`, `eth*`) matches every name of the atom.
    pub fn matches(&self, pattern: &str) -> bool {
        match (pattern.strip_suffix('*'), self.class) {
            (Some(prefix), _) => self.name.starts_with(prefix),
            (None, false) => self.name == pattern,
            (None, true) => false,
        }
    }

    /// `eth0`, `eth*`, or `other` for names no rule mentions.
    pub fn display(&self) -> String {
        match (self.class, self.name.is_empty()) {
            (true, true) => "other".into(),
            (true, false) => format!("{}*", self.name),
            (false, _) => self.name.clone(),
        }
    }
}

/// The interface classes of a ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ifaces {
    pub atoms: Vec<IfAtom>,
}

impl Ifaces {
    /// Every class the ruleset's interface matches tell apart, and each of
    /// `devices` (the devices routes use, which reverse path checks name).
    pub fn of(ruleset: &Ruleset, devices: &[String]) -> Ifaces {
        let mut names: BTreeSet<String> = devices.iter().cloned().collect();
        let mut prefixes = BTreeSet::from([String::new()]);
        let mut kinds = BTreeSet::new();
        for stmt in
            ruleset.tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules).flat_map(|r| &r.stmts)
        {
            let (key, tuples): (&Key, Vec<&Vec<Elem>>) = match stmt {
                Stmt::Match { key, set, .. } => (key, set.iter().collect()),
                Stmt::Vmap { key, entries } => (key, entries.iter().map(|(e, _)| e).collect()),
                _ => continue,
            };
            let fields = key.fields();
            for (f, e) in tuples.into_iter().flat_map(|t| fields.iter().zip(t)) {
                match (f, e) {
                    (Field::Iifname, Elem::Name(n)) => match n.strip_suffix('*') {
                        Some(p) => {
                            prefixes.insert(p.to_string());
                        }
                        None => {
                            names.insert(n.clone());
                        }
                    },
                    (Field::Iiftype, Elem::Range(lo, hi)) => {
                        kinds.insert(*lo);
                        kinds.insert(*hi);
                    }
                    _ => {}
                }
            }
        }
        names.remove("lo");
        kinds.remove(&LOOPBACK_TYPE);
        // One type no rule names stands for all the others.
        let unnamed = (1u128..).find(|k| !kinds.contains(k) && *k != LOOPBACK_TYPE).unwrap_or(0);
        kinds.insert(unnamed);
        let mut atoms = Vec::new();
        for &kind in &kinds {
            atoms.extend(names.iter().map(|n| IfAtom { name: n.clone(), class: false, kind }));
            atoms.extend(prefixes.iter().map(|p| IfAtom { name: p.clone(), class: true, kind }));
        }
        Ifaces { atoms }
    }

    pub fn all(&self) -> BTreeSet<usize> {
        (0..self.atoms.len()).collect()
    }

    /// The class a concrete interface name of a given type falls in.
    pub fn atom_for(&self, name: &str, kind: u128) -> Option<usize> {
        let same_kind = |a: &&IfAtom| a.kind == kind || !self.atoms.iter().any(|b| b.kind == kind);
        if let Some(i) = self.atoms.iter().position(|a| !a.class && a.name == name && same_kind(&a)) {
            return Some(i);
        }
        // The longest prefix class it belongs to.
        self.atoms
            .iter()
            .enumerate()
            .filter(|(_, a)| a.class && name.starts_with(&a.name) && same_kind(a))
            .max_by_key(|(_, a)| a.name.len())
            .map(|(i, _)| i)
    }
}

/// The whole space of new inbound packets of one family and protocol.
pub fn whole(v6: bool, tcp: bool, ifaces: &Ifaces) -> Region {
    Region {
        saddr: source_domain(v6),
        daddr: dest_domain(v6, tcp),
        sport: IntervalSet::full(PORT_MAX),
        dport: IntervalSet::full(PORT_MAX),
        iifs: ifaces.all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_classes_split_names_by_what_rules_mention() {
        let mut ruleset = Ruleset::default();
        let rule = |pat: &str| super::super::ruleset::Rule {
            label: String::new(),
            stmts: vec![Stmt::Match {
                key: Key::Field(Field::Iifname),
                negate: false,
                set: vec![vec![Elem::Name(pat.into())]],
            }],
        };
        ruleset.tables.push(super::super::ruleset::Table {
            family: super::super::ruleset::TableFamily::Inet,
            name: "t".into(),
            origin: super::super::ruleset::Origin::Nftables,
            chains: vec![super::super::ruleset::Chain {
                name: "c".into(),
                base: None,
                rules: vec![rule("eth0"), rule("eth*"), rule("lo")],
            }],
        });
        let ifs = Ifaces::of(&ruleset, &[]);
        let shown: Vec<String> = ifs.atoms.iter().map(IfAtom::display).collect();
        assert_eq!(shown, vec!["eth0", "other", "eth*"]);
        let eth1 = ifs.atom_for("eth1", 1).unwrap();
        assert!(ifs.atoms[eth1].matches("eth*") && !ifs.atoms[eth1].matches("eth0"));
        assert_eq!(ifs.atom_for("wlan0", 1).map(|i| ifs.atoms[i].display()), Some("other".into()));
    }

    #[test]
    fn domains_leave_out_what_cannot_arrive_from_outside() {
        let src = source_domain(false);
        assert!(!src.contains(0x7f00_0001) && !src.contains(0xe000_00fb) && src.contains(0x0a00_0001));
        assert!(dest_domain(false, false).contains(0xe000_00fb));
        assert!(!dest_domain(false, true).contains(0xe000_00fb));
        assert!(!source_domain(true).contains(1));
        assert_eq!(daddr_class(false, 0xe000_00fb), (2, 5));
    }
}
