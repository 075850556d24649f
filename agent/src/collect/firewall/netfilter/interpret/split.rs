//! How one match splits a flow: what the matched field reads for the flow
//! (a dimension of its region, a value every packet of it shares, or
//! something undecided), and the parts of the flow that match and that do
//! not. Part of [`super::Evaluator`]; pure like it.

use super::*;
use crate::collect::firewall::netfilter::region::IfAtom;

impl Evaluator<'_> {
    /// What `field` reads for the packets of `f`, as the kernel sees the
    /// first packet of a new connection after what the flow went through
    /// (marks set, a NAT binding).
    fn value<'f>(&self, f: &'f Flow, field: Field) -> Val<'f> {
        let dnat_addr = f.dnat.as_ref().and_then(|d| d.addr);
        let redirected = f.dnat.as_ref().is_some_and(|d| d.addr.is_none());
        match field {
            Field::Nfproto => Val::Concrete(if self.v6 { 10 } else { 2 }),
            Field::L4proto => Val::Concrete(u128::from(self.proto)),
            Field::Saddr => Val::Dim(&f.region.saddr),
            Field::Sport => Val::Dim(&f.region.sport),
            Field::Daddr => match dnat_addr {
                Some(a) => Val::Concrete(a),
                None if redirected => Val::Redirected,
                None => Val::Dim(&f.region.daddr),
            },
            Field::Dport => match f.dnat.as_ref().and_then(|d| d.port) {
                Some(p) => Val::Concrete(u128::from(p)),
                None => Val::Dim(&f.region.dport),
            },
            Field::Iifname => Val::Iif,
            Field::Iiftype => Val::IifType,
            Field::Oifname => Val::Oif(&f.oif),
            // New, or untracked after `notrack`.
            Field::CtState => Val::Concrete(if f.untracked { 64 } else { 8 }),
            // Without a connection the kernel's ct expression breaks the rule
            // (`NFT_BREAK`; the xt matches return false): no match either way.
            Field::CtStatus | Field::CtMark if f.untracked => Val::Absent,
            Field::CtStatus => match (&f.dnat, f.dnat_changed) {
                (None, _) | (Some(_), Some(false)) => Val::Concrete(0),
                (Some(_), Some(true)) => Val::Concrete(32),
                (Some(_), None) => Val::Unsure("whether the redirect changed the destination"),
            },
            Field::CtMark => Val::Concrete(u128::from(f.ct_mark)),
            Field::Mark => Val::Concrete(u128::from(f.mark)),
            Field::Pkttype => Val::DaddrClass(0),
            Field::DaddrType => match dnat_addr {
                // Rewritten: local, a multicast or broadcast class, or unicast elsewhere.
                Some(a) => Val::Concrete(match daddr_class(self.v6, a).1 {
                    2 if !self.is_local(a) => 1,
                    class => class,
                }),
                None if redirected => Val::Concrete(2),
                None => Val::DaddrClass(1),
            },
            Field::RpfFound if self.env.routes.known => Val::Rpf,
            Field::RpfFound => Val::Unsure("the reverse path check (no routes read)"),
            // A new connection opens with a SYN; UDP has no TCP flags.
            Field::TcpFlags if self.proto == 6 => Val::Concrete(2),
            Field::TcpFlags => Val::Absent,
        }
    }

    /// Splits `f` by a match: (the part that goes on in the rule, the part
    /// that does not).
    pub(super) fn split(&self, f: &Flow, key: &Key, negate: bool, set: &Tuples) -> Pair {
        let fields = key.fields();
        if fields.iter().any(|field| matches!(self.value(f, *field), Val::Absent)) {
            return (Vec::new(), vec![f.clone()]);
        }
        let (yes, no) = match key {
            Key::Field(field) | Key::Masked(field, _) => {
                let mask = if let Key::Masked(_, m) = key { Some(*m) } else { None };
                let elems: Vec<&Elem> = set.iter().filter_map(|t| t.first()).collect();
                self.split_field(f, *field, mask, &elems)
            }
            Key::Concat(fields) => self.split_tuples(f, fields, set),
        };
        if negate { (no, yes) } else { (yes, no) }
    }

    /// A concatenation: a packet matches when some tuple matches it in
    /// every field.
    fn split_tuples(&self, f: &Flow, fields: &[Field], set: &Tuples) -> Pair {
        let mut rest = vec![f.clone()];
        let mut yes = Vec::new();
        for tuple in set.iter().filter(|t| t.len() == fields.len()) {
            let mut missed = Vec::new();
            for r in rest {
                let mut cur = vec![r];
                for (field, elem) in fields.iter().zip(tuple) {
                    let mut keep = Vec::new();
                    for c in cur {
                        let (y, n) = self.split_field(&c, *field, None, &[elem]);
                        keep.extend(y);
                        missed.extend(n);
                    }
                    cur = keep;
                }
                yes.extend(cur);
            }
            rest = missed;
        }
        (yes, rest)
    }

    /// One field (under `mask`, if any) against a set of elements.
    fn split_field(&self, f: &Flow, field: Field, mask: Option<u128>, elems: &[&Elem]) -> Pair {
        let in_range =
            |v: u128| elems.iter().any(|e| matches!(e, Elem::Range(lo, hi) if *lo <= v && v <= *hi));
        let whole =
            |hit: bool| if hit { (vec![f.clone()], Vec::new()) } else { (Vec::new(), vec![f.clone()]) };
        match self.value(f, field) {
            Val::Concrete(v) => whole(in_range(mask.map_or(v, |m| v & m))),
            Val::Dim(_) if mask.is_some() => undecided(f, "a masked match on an address or port"),
            Val::Dim(dim) => {
                let ranges = elems.iter().filter_map(|e| match e {
                    Elem::Range(lo, hi) => Some((*lo, *hi)),
                    Elem::Name(_) => None,
                });
                let hit = IntervalSet::from_ranges(dim.domain_max(), ranges);
                (with(f, field, dim.intersect(&hit)), with(f, field, dim.minus(&hit)))
            }
            Val::Oif(oif) => {
                // On the input path there is no output device: its name reads empty.
                let name = match oif {
                    Oif::None => "",
                    Oif::Known(n) => n.as_str(),
                    Oif::Unknown => return undecided(f, "the output interface (no route read)"),
                };
                whole(elems.iter().any(|e| matches!(e, Elem::Name(p) if name_matches(p, name))))
            }
            Val::Iif => {
                self.split_ifaces(f, |a| elems.iter().any(|e| matches!(e, Elem::Name(p) if a.matches(p))))
            }
            Val::IifType => self.split_ifaces(f, |a| in_range(a.kind)),
            Val::DaddrClass(which) => {
                let (mut yes, mut no) = (Vec::new(), Vec::new());
                for (set, classes) in daddr_classes(self.v6) {
                    let part = with(f, Field::Daddr, f.region.daddr.intersect(&set));
                    let value = if which == 0 { classes.0 } else { classes.1 };
                    if in_range(value) { yes.extend(part) } else { no.extend(part) }
                }
                (yes, no)
            }
            Val::Unsure(what) => undecided(f, what),
            Val::Redirected => self.split_redirected(f, in_range),
            Val::Rpf => self.split_rpf(f, in_range),
            Val::Absent => (Vec::new(), vec![f.clone()]),
        }
    }

    /// The reverse path check: for each arrival interface, the sources
    /// whose route leaves through it are found (1), the others missing (0).
    /// Interface classes hold no device a route names (every such device
    /// has an atom of its own), so for them every source is missing.
    fn split_rpf(&self, f: &Flow, hit: impl Fn(u128) -> bool) -> Pair {
        let max = f.region.saddr.domain_max();
        let mut groups: Vec<(IntervalSet, BTreeSet<usize>)> = Vec::new();
        for &i in &f.region.iifs {
            let atom = &self.ifaces.atoms[i];
            let via = if atom.class {
                IntervalSet::empty(max)
            } else {
                self.env.routes.reached_via(self.v6, &atom.name)
            };
            match groups.iter_mut().find(|(v, _)| *v == via) {
                Some((_, atoms)) => {
                    atoms.insert(i);
                }
                None => groups.push((via, BTreeSet::from([i]))),
            }
        }
        let (mut yes, mut no) = (Vec::new(), Vec::new());
        for (via, atoms) in groups {
            let mut g = f.clone();
            g.region.iifs = atoms;
            let found = g.region.saddr.intersect(&via);
            let missing = g.region.saddr.minus(&via);
            for (part, value) in [(found, 1), (missing, 0)] {
                let parts = with(&g, Field::Saddr, part);
                if hit(value) { yes.extend(parts) } else { no.extend(parts) }
            }
        }
        (yes, no)
    }

    /// The destination after a redirect: the arrival interface's address,
    /// by interface; undecided where it cannot be told (an interface class,
    /// a device with several addresses).
    fn split_redirected(&self, f: &Flow, hit: impl Fn(u128) -> bool) -> Pair {
        let (mut yes, mut no, mut unsure) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for &i in &f.region.iifs {
            let atom = &self.ifaces.atoms[i];
            let addr = if atom.class { None } else { self.env.routes.redirect_addr(self.v6, &atom.name) };
            match addr {
                Some(a) if hit(a) => yes.insert(i),
                Some(_) => no.insert(i),
                None => unsure.insert(i),
            };
        }
        let part = |iifs: BTreeSet<usize>| {
            let mut g = f.clone();
            g.region.iifs = iifs;
            g
        };
        let (mut y, mut n) = (Vec::new(), Vec::new());
        if !yes.is_empty() {
            y.push(part(yes));
        }
        if !no.is_empty() {
            n.push(part(no));
        }
        if !unsure.is_empty() {
            let (uy, un) = undecided(&part(unsure), "the address a redirect rewrites to");
            y.extend(uy);
            n.extend(un);
        }
        (y, n)
    }

    /// Splits by arrival interface class.
    fn split_ifaces(&self, f: &Flow, hit: impl Fn(&IfAtom) -> bool) -> Pair {
        let (yes, no): (BTreeSet<usize>, BTreeSet<usize>) =
            f.region.iifs.iter().partition(|i| hit(&self.ifaces.atoms[**i]));
        let part = |iifs: BTreeSet<usize>| {
            if iifs.is_empty() {
                return Vec::new();
            }
            let mut g = f.clone();
            g.region.iifs = iifs;
            vec![g]
        };
        (part(yes), part(no))
    }
}

/// `f` with dimension `field` narrowed to `set`; nothing when empty.
pub(super) fn with(f: &Flow, field: Field, set: IntervalSet) -> Vec<Flow> {
    if set.is_empty() {
        return Vec::new();
    }
    let mut g = f.clone();
    g.region = g.region.with_dim(field, set);
    vec![g]
}

/// Splits a flow by whether dimension `field` equals `v`: (equal, not equal),
/// each `None` when empty.
pub(super) fn split_at(f: &Flow, field: Field, v: u128) -> (Option<Flow>, Option<Flow>) {
    let Some(dim) = f.region.dim(field) else { return (None, Some(f.clone())) };
    let one = IntervalSet::single(dim.domain_max(), v);
    let part = |set: IntervalSet| with(f, field, set).pop();
    (part(dim.intersect(&one)), part(dim.minus(&one)))
}

/// Both ways, each marked with the undecided expression.
fn undecided(f: &Flow, what: &str) -> Pair {
    let mut g = f.clone();
    g.maybes.push(what.to_string());
    (vec![g.clone()], vec![g])
}

/// An interface pattern (`eth0`, `eth*`) against a name.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}
