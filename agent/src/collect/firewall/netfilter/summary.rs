//! From where the evaluator's regions end to what the host exposes: every
//! region delivered or forwarded becomes an [`Exposure`] (ports, sources,
//! interfaces, source ports, destinations), regions that differ only in
//! their ports are merged, and a region whose end is unknown is a possible
//! exposure naming why.

use std::collections::BTreeSet;

use super::interpret::{End, Outcome};
use super::region::{IfAtom, Ifaces, Region, whole};
use crate::collect::firewall::exposure::{Exposure, Family};
use crate::collect::firewall::intervals::{IntervalSet, PORT_MAX};

/// Most prefixes written out for one address set.
const MAX_PREFIXES: usize = 6;

/// How a region ends, for grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Delivered,
    Forwarded(u128, Option<u16>),
    Unknown,
}

/// One accepted (or possibly accepted) region on its way to an exposure.
#[derive(Debug, Clone)]
struct Item {
    region: Region,
    kind: Kind,
    certain: bool,
    either: Vec<String>,
    because: String,
}

impl Item {
    /// Whether this item's packets also end as `other` says: same end and
    /// conditions, and certain if `other` is (a certain acceptance is also
    /// a possible one).
    fn vouches_for(&self, other: &Item) -> bool {
        self.kind == other.kind && self.either == other.either && (self.certain || !other.certain)
    }
}

/// Most regions tidied up (beyond that they are listed as found).
const MAX_TIDY: usize = 200;

/// What one family and protocol exposes.
pub fn exposures(outcomes: &[Outcome], v6: bool, proto: &str, ifaces: &Ifaces) -> Vec<Exposure> {
    let family = if v6 { Family::Ipv6 } else { Family::Ipv4 };
    let tcp = proto == "tcp";
    let domain = whole(v6, tcp, ifaces);
    let mut items: Vec<Item> = outcomes
        .iter()
        .filter_map(|o| {
            let (kind, certain, because) = match &o.end {
                End::Dropped(_) => return None,
                End::Unknown(why) => (Kind::Unknown, false, why.clone()),
                End::Delivered => (Kind::Delivered, o.maybes.is_empty(), because(o)),
                End::Forwarded { addr, port } => {
                    (Kind::Forwarded(*addr, *port), o.maybes.is_empty(), because(o))
                }
            };
            Some(Item { region: o.region.clone(), kind, certain, either: o.either.clone(), because })
        })
        .collect();
    if items.len() <= MAX_TIDY {
        tidy(&mut items, &domain);
    }
    let mut out: Vec<Exposure> = Vec::new();
    for item in items {
        let r = &item.region;
        let mut e = Exposure::new(family, proto, r.dport.clone(), item.because);
        e.certain = item.certain;
        e.from = addresses(&r.saddr, &domain.saddr);
        if r.iifs != domain.iifs {
            e.via = Some(via_names(r, ifaces));
        }
        if !r.sport.is_full() {
            e.qualifiers.push(format!("from source port {}", r.sport.port_text()));
        }
        if let Some(to) = addresses(&r.daddr, &domain.daddr) {
            e.qualifiers.push(format!("to {}", to.join(",")));
        }
        if let Kind::Forwarded(addr, port) = item.kind {
            e.qualifiers.push(forward_text(v6, addr, port));
        }
        e.qualifiers.extend(item.either.iter().map(|w| format!("when {w} fits")));
        merge(&mut out, e);
    }
    out
}

/// The interfaces of `r` by name, a named interface left out when a class
/// that is also in `r` covers it (`eth*` rather than `eth*,eth0,eth1`).
fn via_names(r: &Region, ifaces: &Ifaces) -> Vec<String> {
    let atoms: Vec<_> = r.iifs.iter().map(|i| &ifaces.atoms[*i]).collect();
    let covered = |a: &&IfAtom| {
        !a.class && atoms.iter().any(|c| c.class && !c.name.is_empty() && a.name.starts_with(&c.name))
    };
    let names: BTreeSet<String> = atoms.iter().filter(|a| !covered(a)).map(|a| a.display()).collect();
    names.into_iter().collect()
}

/// The dimensions of a region, for tidying.
#[derive(Debug, Clone, Copy)]
enum Dim {
    Saddr,
    Daddr,
    Sport,
    Dport,
    Iifs,
}

const DIMS: [Dim; 5] = [Dim::Iifs, Dim::Sport, Dim::Daddr, Dim::Saddr, Dim::Dport];

/// `r` with dimension `d` taken from `from`.
fn take(r: &Region, d: Dim, from: &Region) -> Region {
    let mut out = r.clone();
    match d {
        Dim::Saddr => out.saddr = from.saddr.clone(),
        Dim::Daddr => out.daddr = from.daddr.clone(),
        Dim::Sport => out.sport = from.sport.clone(),
        Dim::Dport => out.dport = from.dport.clone(),
        Dim::Iifs => out.iifs = from.iifs.clone(),
    }
    out
}

/// How long dimension `d` of `r` is to write: prefixes (or the fewer
/// prefixes of what it leaves out), port ranges, interface classes; 0 for
/// the whole domain. Growing is worth it only when this shrinks.
fn complexity(r: &Region, d: Dim, domain: &Region) -> usize {
    let addrs = |set: &IntervalSet, dom: &IntervalSet| {
        if dom.is_subset(set) { 0 } else { set.prefixes().len().min(dom.minus(set).prefixes().len() + 1) }
    };
    match d {
        Dim::Saddr => addrs(&r.saddr, &domain.saddr),
        Dim::Daddr => addrs(&r.daddr, &domain.daddr),
        Dim::Sport => usize::from(!r.sport.is_full()) * r.sport.ranges().len(),
        Dim::Dport => usize::from(!r.dport.is_full()) * r.dport.ranges().len(),
        Dim::Iifs => usize::from(r.iifs != domain.iifs) * r.iifs.len(),
    }
}

/// `r` with dimension `d` joined with that of `other`.
fn union(r: &Region, d: Dim, other: &Region) -> Region {
    let mut out = r.clone();
    match d {
        Dim::Saddr => out.saddr = r.saddr.union(&other.saddr),
        Dim::Daddr => out.daddr = r.daddr.union(&other.daddr),
        Dim::Sport => out.sport = r.sport.union(&other.sport),
        Dim::Dport => out.dport = r.dport.union(&other.dport),
        Dim::Iifs => out.iifs = r.iifs.union(&other.iifs).copied().collect(),
    }
    out
}

/// Whether every packet of `piece` is in some region of `others`.
fn covered(piece: Region, others: &[&Region]) -> bool {
    let mut left = vec![piece];
    for o in others {
        left = left.into_iter().flat_map(|p| p.minus(o)).collect();
        if left.is_empty() {
            return true;
        }
    }
    left.is_empty()
}

/// Makes the accepted regions read as people write rules: a region grows
/// along a dimension when what it gains is accepted anyway (by regions of
/// the same kind), and regions inside another disappear. Every region still
/// holds only packets that end as it says.
fn tidy(items: &mut Vec<Item>, domain: &Region) {
    loop {
        let mut changed = false;
        for i in 0..items.len() {
            let others: Vec<Region> = items
                .iter()
                .enumerate()
                .filter(|(j, x)| *j != i && x.vouches_for(&items[i]))
                .map(|(_, x)| x.region.clone())
                .collect();
            let refs: Vec<&Region> = others.iter().collect();
            for d in DIMS {
                // Grow to the whole dimension, else to the union with a neighbour's.
                let own = items[i].region.clone();
                let candidates =
                    std::iter::once(take(&own, d, domain)).chain(others.iter().map(|o| union(&own, d, o)));
                for grown in candidates {
                    if grown == own
                        || !own.is_subset(&grown)
                        || complexity(&grown, d, domain) >= complexity(&own, d, domain)
                    {
                        continue;
                    }
                    if grown.minus(&own).into_iter().all(|g| covered(g, &refs)) {
                        items[i].region = grown;
                        changed = true;
                        break;
                    }
                }
            }
        }
        let before = items.len();
        let mut keep: Vec<Item> = Vec::new();
        for mut item in items.drain(..) {
            if let Some(k) =
                keep.iter_mut().find(|k| k.vouches_for(&item) && item.region.is_subset(&k.region))
            {
                if k.certain == item.certain {
                    add_because(&mut k.because, &item.because);
                }
                continue;
            }
            let probe = item.clone();
            let inside = |k: &Item| probe.vouches_for(k) && k.region.is_subset(&probe.region);
            let absorbed: Vec<String> = keep
                .iter()
                .filter(|k| inside(k) && k.certain == probe.certain)
                .map(|k| k.because.clone())
                .collect();
            for b in absorbed {
                add_because(&mut item.because, &b);
            }
            keep.retain(|k| !inside(k));
            keep.push(item);
        }
        *items = keep;
        if !changed && items.len() == before {
            return;
        }
    }
}

fn because(o: &Outcome) -> String {
    // No rule named: only empty chains with accepting policies, or none.
    let accepted = if o.trail.is_empty() {
        "no rule or policy drops it".to_string()
    } else {
        format!("accepted by {}", o.trail.join(", then "))
    };
    if o.maybes.is_empty() { accepted } else { format!("{accepted}, if {} allows", o.maybes.join(" and ")) }
}

fn forward_text(v6: bool, addr: u128, port: Option<u16>) -> String {
    let a = if v6 {
        std::net::Ipv6Addr::from(addr).to_string()
    } else {
        std::net::Ipv4Addr::from(u32::try_from(addr).unwrap_or(0)).to_string()
    };
    match port {
        Some(p) if v6 => format!("forwarded to [{a}]:{p}"),
        Some(p) => format!("forwarded to {a}:{p}"),
        None => format!("forwarded to {a}"),
    }
}

/// `None` for the whole domain; otherwise prefixes, or `any except ...`
/// when that is shorter.
fn addresses(set: &IntervalSet, domain: &IntervalSet) -> Option<Vec<String>> {
    if domain.is_subset(set) {
        return None;
    }
    let shown = set.prefixes();
    let missing = domain.minus(set).prefixes();
    let (mut list, prefix) = if missing.len() < shown.len() { (missing, "any except ") } else { (shown, "") };
    let extra = list.len().saturating_sub(MAX_PREFIXES);
    list.truncate(MAX_PREFIXES);
    if extra > 0 {
        list.push(format!("{extra} more"));
    }
    if let Some(first) = list.first_mut() {
        *first = format!("{prefix}{first}");
    }
    Some(list)
}

/// Adds `e`, merging it into an exposure that differs only in ports.
fn merge(out: &mut Vec<Exposure>, e: Exposure) {
    let same = |x: &Exposure| {
        x.family == e.family
            && x.proto == e.proto
            && x.from == e.from
            && x.via == e.via
            && x.qualifiers == e.qualifiers
            && x.certain == e.certain
            && x.program == e.program
    };
    match out.iter_mut().find(|x| same(x)) {
        Some(x) => {
            x.ports = x.ports.union(&e.ports);
            add_because(&mut x.because, &e.because);
        }
        None => out.push(e),
    }
}

/// Adds another rule to a `because`, up to three.
fn add_because(to: &mut String, more: &str) {
    if !to.split("; ").any(|b| b == more) && to.matches("; ").count() < 2 {
        to.push_str("; ");
        to.push_str(more);
    }
}

/// Sorts exposures by family, protocol and first port.
pub fn sort(list: &mut [Exposure]) {
    list.sort_by(|a, b| {
        (a.family, &a.proto, a.ports.first().unwrap_or(PORT_MAX + 1), a.describe()).cmp(&(
            b.family,
            &b.proto,
            b.ports.first().unwrap_or(PORT_MAX + 1),
            b.describe(),
        ))
    });
}
