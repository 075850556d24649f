//! Regions of the inbound packet space pf is judged on: new connections (a
//! TCP SYN, a UDP datagram) from outside to this host, per address family
//! and protocol, over the interfaces they arrive on (never loopback: outside
//! traffic does not arrive on `lo0`), their source address, source port and
//! destination port.
//!
//! A rule's match is a [`Space`] (a box: one set per dimension), so a region
//! splits into the part a rule matches and at most four boxes it does not
//! ([`Space::minus`]); the evaluator in `pf.rs` carries each region's
//! [`Fate`] through the rules. Pure.

use std::collections::BTreeSet;

use super::intervals::{IntervalSet, PORT_MAX, V4_MAX, V6_MAX};

/// Address family of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fam {
    V4,
    V6,
}

impl Fam {
    /// The largest address of the family.
    pub fn max(self) -> u128 {
        match self {
            Fam::V4 => V4_MAX,
            Fam::V6 => V6_MAX,
        }
    }
}

/// Protocol of a region: the two that carry new connections to services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// The IP protocol number (pf prints and accepts both).
    pub fn number(self) -> u16 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// Every (family, protocol) evaluated, in the order of [`key_index`].
pub const KEYS: [(Fam, Proto); 4] =
    [(Fam::V4, Proto::Tcp), (Fam::V4, Proto::Udp), (Fam::V6, Proto::Tcp), (Fam::V6, Proto::Udp)];

/// Index of a (family, protocol) in [`KEYS`].
pub fn key_index(fam: Fam, proto: Proto) -> usize {
    match (fam, proto) {
        (Fam::V4, Proto::Tcp) => 0,
        (Fam::V4, Proto::Udp) => 1,
        (Fam::V6, Proto::Tcp) => 2,
        (Fam::V6, Proto::Udp) => 3,
    }
}

/// Whether an interface name is a loopback one (`lo0`, the group `lo`).
pub fn is_loopback(name: &str) -> bool {
    name.strip_prefix("lo").is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// A set of non-loopback interfaces: the universe is open (any name may
/// appear), so a set is either some names or all but some names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IfSet {
    Only(BTreeSet<String>),
    AllBut(BTreeSet<String>),
}

impl IfSet {
    /// Every interface outside traffic can arrive on.
    pub fn any() -> Self {
        IfSet::AllBut(BTreeSet::new())
    }

    /// `on NAME` (`negated`: `on ! NAME`); a loopback name matches no
    /// outside traffic, its negation all of it.
    pub fn named(name: &str, negated: bool) -> Self {
        let names: BTreeSet<String> =
            if is_loopback(name) { BTreeSet::new() } else { BTreeSet::from([name.to_string()]) };
        if negated { IfSet::AllBut(names) } else { IfSet::Only(names) }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, IfSet::Only(s) if s.is_empty())
    }

    pub fn is_any(&self) -> bool {
        matches!(self, IfSet::AllBut(s) if s.is_empty())
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            IfSet::Only(s) => s.contains(name),
            IfSet::AllBut(s) => !s.contains(name),
        }
    }

    pub fn complement(&self) -> Self {
        match self {
            IfSet::Only(s) => IfSet::AllBut(s.clone()),
            IfSet::AllBut(s) => IfSet::Only(s.clone()),
        }
    }

    pub fn intersect(&self, other: &IfSet) -> Self {
        match (self, other) {
            (IfSet::Only(a), IfSet::Only(b)) => IfSet::Only(a.intersection(b).cloned().collect()),
            (IfSet::Only(a), IfSet::AllBut(b)) | (IfSet::AllBut(b), IfSet::Only(a)) => {
                IfSet::Only(a.difference(b).cloned().collect())
            }
            (IfSet::AllBut(a), IfSet::AllBut(b)) => IfSet::AllBut(a.union(b).cloned().collect()),
        }
    }

    pub fn minus(&self, other: &IfSet) -> Self {
        self.intersect(&other.complement())
    }

    /// The exposure's `via`: `None` for any interface, else the names
    /// (`!en1` for all but en1).
    pub fn describe(&self) -> Option<Vec<String>> {
        match self {
            IfSet::AllBut(s) if s.is_empty() => None,
            IfSet::AllBut(s) => Some(s.iter().map(|n| format!("!{n}")).collect()),
            IfSet::Only(s) => Some(s.iter().cloned().collect()),
        }
    }
}

/// A box of the packet space of one (family, protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Space {
    pub ifaces: IfSet,
    /// Source addresses in the family's domain.
    pub src: IntervalSet,
    pub sport: IntervalSet,
    pub dport: IntervalSet,
}

impl Space {
    /// Everything of a family.
    pub fn full(fam: Fam) -> Self {
        Space {
            ifaces: IfSet::any(),
            src: IntervalSet::full(fam.max()),
            sport: IntervalSet::full(PORT_MAX),
            dport: IntervalSet::full(PORT_MAX),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ifaces.is_empty() || self.src.is_empty() || self.sport.is_empty() || self.dport.is_empty()
    }

    pub fn intersect(&self, other: &Space) -> Space {
        Space {
            ifaces: self.ifaces.intersect(&other.ifaces),
            src: self.src.intersect(&other.src),
            sport: self.sport.intersect(&other.sport),
            dport: self.dport.intersect(&other.dport),
        }
    }

    /// `self` without `other`, as disjoint non-empty boxes: peel one
    /// dimension at a time, keeping what lies outside `other` in it.
    pub fn minus(&self, other: &Space) -> Vec<Space> {
        let mut out = Vec::new();
        let mut rest = self.clone();
        let mut keep = |s: Space| {
            if !s.is_empty() {
                out.push(s);
            }
        };
        keep(Space { ifaces: rest.ifaces.minus(&other.ifaces), ..rest.clone() });
        rest.ifaces = rest.ifaces.intersect(&other.ifaces);
        keep(Space { src: rest.src.minus(&other.src), ..rest.clone() });
        rest.src = rest.src.intersect(&other.src);
        keep(Space { sport: rest.sport.minus(&other.sport), ..rest.clone() });
        rest.sport = rest.sport.intersect(&other.sport);
        keep(Space { dport: rest.dport.minus(&other.dport), ..rest });
        out
    }
}

/// What pf may do to a region: pass it (naming the rule), block it, or
/// either when a rule whose match is undecided stands in the way (`doubt`
/// names it). Both `None` never occurs: pf passes what no rule matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fate {
    pub pass: Option<String>,
    pub block: Option<String>,
    pub doubt: Option<String>,
}

impl Fate {
    /// The fate a rule gives when it matches for certain.
    pub fn of(pass: bool, rule: &str) -> Fate {
        let name = Some(rule.to_string());
        if pass { Fate { pass: name, ..Fate::default() } } else { Fate { block: name, ..Fate::default() } }
    }

    /// Either of two fates (the first one's names win).
    pub fn union(&self, other: &Fate) -> Fate {
        Fate {
            pass: self.pass.clone().or_else(|| other.pass.clone()),
            block: self.block.clone().or_else(|| other.block.clone()),
            doubt: self.doubt.clone().or_else(|| other.doubt.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pass.is_none() && self.block.is_none()
    }
}

/// Whether a rule has matched, as far as pf's `quick` anchors can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hit {
    No,
    Maybe,
    Yes,
}

/// A region and what the rules so far do to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region {
    pub fam: Fam,
    pub proto: Proto,
    pub space: Space,
    /// The last matching rule's verdict so far.
    pub verdict: Fate,
    /// Verdicts of `quick` rules that might have ended the evaluation.
    pub exits: Fate,
    /// pf's match flag (`match` in xnu's `pf_test_rule`): set by a matching
    /// filter rule, cleared on entering any anchor and never restored.
    pub matched: Hit,
    /// Per anchor being evaluated, innermost last: whether a child of a
    /// wildcard anchor matched (xnu's `anchor->match`).
    pub frames: Vec<Hit>,
}

impl Region {
    pub fn with_space(&self, space: Space) -> Region {
        Region { space, ..self.clone() }
    }

    /// A filter rule matched (or might have).
    pub fn mark(&mut self, hit: Hit) {
        self.matched = self.matched.max(hit);
    }

    /// Entering an anchor (`pf_step_into_anchor`).
    pub fn enter(&mut self) {
        self.frames.push(Hit::No);
        self.matched = Hit::No;
    }

    /// The end of one child of a wildcard anchor (`pf_step_out_of_anchor`).
    pub fn child_done(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            *top = (*top).max(self.matched);
        }
        self.matched = Hit::No;
    }

    /// Leaving an anchor: whether it counts as matched for a `quick` anchor rule.
    pub fn leave(&mut self) -> Hit {
        self.frames.pop().unwrap_or(Hit::No).max(self.matched)
    }

    pub fn key(&self) -> usize {
        key_index(self.fam, self.proto)
    }
}

/// Merges regions that differ only in destination ports, then only in
/// source addresses (exact: `A×B1 ∪ A×B2 = A×(B1∪B2)`), so the count
/// stays near the number of distinct fates rather than growing per rule.
pub fn coalesce(regions: Vec<Region>) -> Vec<Region> {
    let by_dport = merge(regions, |r| &mut r.space.dport);
    merge(by_dport, |r| &mut r.space.src)
}

fn merge(regions: Vec<Region>, dim: fn(&mut Region) -> &mut IntervalSet) -> Vec<Region> {
    let mut groups: std::collections::BTreeMap<Region, IntervalSet> = std::collections::BTreeMap::new();
    for mut r in regions {
        let set = dim(&mut r).clone();
        let max = set.domain_max();
        *dim(&mut r) = IntervalSet::empty(max);
        groups.entry(r).and_modify(|s| *s = s.union(&set)).or_insert(set);
    }
    groups
        .into_iter()
        .map(|(mut r, set)| {
            *dim(&mut r) = set;
            r
        })
        .collect()
}
