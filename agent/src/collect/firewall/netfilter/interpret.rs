//! The kernel's semantics over regions: where each part of the inbound
//! packet space ends (delivered to the host, forwarded after a DNAT,
//! dropped, or unknown) and which rules decided it.
//!
//! Follows what netfilter does with the first packet of a new connection:
//! the base chains of the prerouting hook in priority order (a NAT binding
//! made by one nat chain skips the later ones), the routing decision (a
//! destination rewritten to another host is forwarded, and dropped where
//! forwarding is off), then every base chain of the input or forward hook in
//! priority order. In a chain, rules in order; `jump` returns, `goto` does
//! not; `return` and the end of a chain go back to the caller, and in a base
//! chain to its policy. An accept ends only its own base chain: the next
//! base chain still judges the packet; a drop or reject ends everything.
//!
//! A region takes the same path for every packet in it: a match splits it
//! ([`Evaluator::split`]). A match the sender decides (TTL, length) splits
//! it into two copies, both real; a match this evaluator cannot decide
//! splits it into two copies marked with the expression (`maybes`), and an
//! outcome reached through one is only possible. Pure: the time, the host
//! and the kernel are not consulted.

mod split;

use std::cell::Cell;
use std::collections::BTreeSet;

use split::split_at;

use super::region::{Ifaces, Region, daddr_class, daddr_classes};
use super::routes::Routes;
use super::ruleset::{Dnat, Elem, Field, Hook, Key, Rule, Ruleset, Stmt, Tuples, Verdict};
use crate::collect::firewall::intervals::IntervalSet;

/// Most region steps one evaluation may take before it gives up.
pub const MAX_STEPS: usize = 2_000_000;
/// Deepest jump nesting followed (the kernel allows 16 levels).
const MAX_DEPTH: usize = 64;

/// What the host does besides its ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub forwarding_v4: bool,
    pub forwarding_v6: bool,
    pub routes: Routes,
}

/// Where a region ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Accepted by every base chain of the input hook.
    Delivered,
    /// Rewritten to another host and accepted by every forward chain.
    Forwarded {
        addr: u128,
        port: Option<u16>,
    },
    Dropped(String),
    Unknown(String),
}

/// A region with where it ends and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub region: Region,
    pub end: End,
    /// Undecided expressions on the way: the outcome is only possible.
    pub maybes: Vec<String>,
    /// Sender-chosen conditions on the way (`ip ttl`): true for these packets.
    pub either: Vec<String>,
    /// The rules (or policies) that accepted it, one per base chain.
    pub trail: Vec<String>,
}

/// The ruleset was too large to follow within [`MAX_STEPS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// The output interface of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Oif {
    /// On the input path there is none: `oifname` matches nothing.
    None,
    Known(String),
    Unknown,
}

#[derive(Debug, Clone)]
struct Flow {
    region: Region,
    mark: u32,
    ct_mark: u32,
    untracked: bool,
    dnat: Option<Dnat>,
    /// Whether the NAT binding changed the tuple (the kernel sets the
    /// `dnat` status bit only then); `None` when it cannot be told.
    dnat_changed: Option<bool>,
    oif: Oif,
    maybes: Vec<String>,
    either: Vec<String>,
    trail: Vec<String>,
}

enum ChainEnd {
    Accept,
    Drop(String),
    /// The end of the chain or `return`: back to the caller or the policy.
    Fall,
    Unknown(String),
}

/// What a field reads for a flow.
enum Val<'a> {
    Concrete(u128),
    Dim(&'a IntervalSet),
    Oif(&'a Oif),
    Iif,
    IifType,
    /// Packet type (index 0) or route type (index 1), by destination class.
    DaddrClass(usize),
    /// Not known here: matching it is undecided.
    Unsure(&'static str),
    /// Whether the route back to the source leaves through the arrival interface.
    Rpf,
    /// The destination a redirect wrote: the arrival interface's address.
    Redirected,
    /// No value at all (conntrack fields of an untracked packet, TCP flags
    /// of a datagram): every match fails, negated or not.
    Absent,
}

type Pair = (Vec<Flow>, Vec<Flow>);

/// Follows regions of one family and protocol through a ruleset.
pub struct Evaluator<'a> {
    ruleset: &'a Ruleset,
    env: &'a Env,
    ifaces: &'a Ifaces,
    v6: bool,
    proto: u8,
    steps: Cell<usize>,
}

impl<'a> Evaluator<'a> {
    pub fn new(ruleset: &'a Ruleset, env: &'a Env, ifaces: &'a Ifaces, v6: bool, proto: u8) -> Self {
        Evaluator { ruleset, env, ifaces, v6, proto, steps: Cell::new(0) }
    }

    /// Where every part of `region` ends.
    pub fn run(&self, region: Region) -> Result<Vec<Outcome>, TooLarge> {
        let start = Flow {
            region,
            mark: 0,
            ct_mark: 0,
            untracked: false,
            dnat: None,
            dnat_changed: None,
            oif: Oif::None,
            maybes: Vec::new(),
            either: Vec::new(),
            trail: Vec::new(),
        };
        let mut finals = Vec::new();
        let routed = self.run_hook(Hook::Prerouting, vec![start], &mut finals)?;
        let (mut forward, input): (Vec<Flow>, Vec<Flow>) = routed
            .into_iter()
            .partition(|f| f.dnat.as_ref().and_then(|d| d.addr).is_some_and(|a| !self.is_local(a)));
        for f in self.run_hook(Hook::Input, input, &mut finals)? {
            finals.push(outcome(f, End::Delivered));
        }
        let forwarding = if self.v6 { self.env.forwarding_v6 } else { self.env.forwarding_v4 };
        if !forwarding {
            finals.extend(forward.into_iter().map(|f| outcome(f, End::Dropped("forwarding is off".into()))));
            return Ok(finals);
        }
        for f in &mut forward {
            let addr = f.dnat.as_ref().and_then(|d| d.addr).unwrap_or(0);
            f.oif = self.env.routes.device(self.v6, addr).map_or(Oif::Unknown, Oif::Known);
        }
        for f in self.run_hook(Hook::Forward, forward, &mut finals)? {
            let d = f.dnat.clone().unwrap_or(Dnat { addr: None, port: None });
            finals.push(outcome(f, End::Forwarded { addr: d.addr.unwrap_or(0), port: d.port }));
        }
        Ok(finals)
    }

    fn is_local(&self, addr: u128) -> bool {
        let loopback = if self.v6 { addr == 1 } else { addr >> 24 == 0x7f };
        loopback || self.env.routes.is_local(self.v6, addr)
    }

    /// The base chains on `hook` that see this family, in priority order;
    /// of equal priorities the one listed last first, because the kernel
    /// inserts a hook before those of the same priority already registered
    /// (`nf_hook_entries_grow`) and lists tables and chains in the order
    /// they were made. That order matters only where chains change the
    /// packet (marks, NAT); accept and drop verdicts commute.
    fn base_chains(&self, hook: Hook) -> Vec<(usize, usize)> {
        let mut v: Vec<(i64, usize, usize)> = Vec::new();
        for (t, table) in self.ruleset.tables.iter().enumerate() {
            if !table.family.sees(self.v6) {
                continue;
            }
            for (c, chain) in table.chains.iter().enumerate() {
                if let Some(b) = chain.base.as_ref().filter(|b| b.hook == hook) {
                    v.push((b.prio, t, c));
                }
            }
        }
        v.sort_by_key(|&(prio, t, c)| (prio, std::cmp::Reverse((t, c))));
        v.into_iter().map(|(_, t, c)| (t, c)).collect()
    }

    /// Runs flows through every base chain of `hook`; what passes them all is returned.
    fn run_hook(
        &self,
        hook: Hook,
        flows: Vec<Flow>,
        finals: &mut Vec<Outcome>,
    ) -> Result<Vec<Flow>, TooLarge> {
        let mut live = flows;
        for (t, c) in self.base_chains(hook) {
            let table = &self.ruleset.tables[t];
            let Some(base) = &table.chains[c].base else { continue };
            let label = table.chain_label(c);
            let mut next = Vec::new();
            for f in live {
                // NAT sees only tracked connections, and binds once.
                if base.nat && (f.untracked || f.dnat.is_some()) {
                    next.push(f);
                    continue;
                }
                for (mut g, end) in self.run_chain(t, c, f, 0)? {
                    match end {
                        ChainEnd::Accept => next.push(g),
                        ChainEnd::Fall if !base.policy_drop => {
                            // An empty chain's policy says nothing worth naming.
                            if !base.nat && !table.chains[c].rules.is_empty() {
                                g.trail.push(format!("{label} policy accept"));
                            }
                            next.push(g);
                        }
                        ChainEnd::Fall => {
                            finals.push(outcome(g, End::Dropped(format!("{label} policy drop"))))
                        }
                        ChainEnd::Drop(by) => finals.push(outcome(g, End::Dropped(by))),
                        ChainEnd::Unknown(why) => finals.push(outcome(g, End::Unknown(why))),
                    }
                }
            }
            live = next;
        }
        Ok(live)
    }

    fn run_chain(
        &self,
        t: usize,
        c: usize,
        flow: Flow,
        depth: usize,
    ) -> Result<Vec<(Flow, ChainEnd)>, TooLarge> {
        let table = &self.ruleset.tables[t];
        if depth > MAX_DEPTH {
            let why = format!("jumps nested deeper than {MAX_DEPTH} at {}", table.chain_label(c));
            return Ok(vec![(flow, ChainEnd::Unknown(why))]);
        }
        let mut live = vec![flow];
        let mut done = Vec::new();
        for rule in &table.chains[c].rules {
            if live.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for f in live {
                self.tick()?;
                self.run_rule(t, c, rule, f, depth, &mut next, &mut done)?;
            }
            live = next;
        }
        done.extend(live.into_iter().map(|f| (f, ChainEnd::Fall)));
        Ok(done)
    }

    fn tick(&self) -> Result<(), TooLarge> {
        let n = self.steps.get() + 1;
        self.steps.set(n);
        if n > MAX_STEPS { Err(TooLarge) } else { Ok(()) }
    }

    /// One rule on one flow: what goes on to the next rule lands in `next`,
    /// what leaves the chain in `done`.
    #[allow(clippy::too_many_arguments)]
    fn run_rule(
        &self,
        t: usize,
        c: usize,
        rule: &Rule,
        flow: Flow,
        depth: usize,
        next: &mut Vec<Flow>,
        done: &mut Vec<(Flow, ChainEnd)>,
    ) -> Result<(), TooLarge> {
        let mut cur = vec![flow];
        for stmt in &rule.stmts {
            if cur.is_empty() {
                return Ok(());
            }
            match stmt {
                Stmt::Match { key, negate, set } => {
                    let mut keep = Vec::new();
                    for f in cur {
                        let (yes, no) = self.split(&f, key, *negate, set);
                        keep.extend(yes);
                        next.extend(no);
                    }
                    cur = keep;
                }
                Stmt::Either(what) | Stmt::Undecided(what) => {
                    let sure = matches!(stmt, Stmt::Either(_));
                    let mut keep = Vec::new();
                    for f in cur {
                        let (mut yes, mut no) = (f.clone(), f);
                        if sure {
                            yes.either.push(what.clone());
                        } else {
                            yes.maybes.push(what.clone());
                            no.maybes.push(what.clone());
                        }
                        keep.push(yes);
                        next.push(no);
                    }
                    cur = keep;
                }
                Stmt::Verdict(v) => {
                    for f in cur {
                        self.verdict(t, c, rule, v, f, depth, next, done)?;
                    }
                    return Ok(());
                }
                Stmt::Vmap { key, entries } => {
                    for f in cur {
                        let mut rest = vec![f];
                        for (tuple, v) in entries {
                            let mut miss = Vec::new();
                            for r in rest {
                                let (yes, no) = self.split(&r, key, false, &vec![tuple.clone()]);
                                for y in yes {
                                    self.verdict(t, c, rule, v, y, depth, next, done)?;
                                }
                                miss.extend(no);
                            }
                            rest = miss;
                        }
                        // A lookup that finds nothing ends the rule.
                        next.extend(rest);
                    }
                    return Ok(());
                }
                Stmt::Dnat(d) => {
                    let label = format!("{} {}", self.ruleset.tables[t].chain_label(c), rule.label);
                    for f in cur {
                        for mut g in self.bind(f, d) {
                            g.trail.push(label.clone());
                            done.push((g, ChainEnd::Accept));
                        }
                    }
                    return Ok(());
                }
                Stmt::SetMark { ct, value, mask } => {
                    for f in &mut cur {
                        let m = if *ct { &mut f.ct_mark } else { &mut f.mark };
                        *m = (*m & !mask) ^ value;
                    }
                }
                Stmt::RestoreMark => cur.iter_mut().for_each(|f| f.mark = f.ct_mark),
                Stmt::Notrack => cur.iter_mut().for_each(|f| f.untracked = true),
                Stmt::Nothing => {}
                Stmt::Unknown(what) => {
                    let label = format!("{} {}", self.ruleset.tables[t].chain_label(c), rule.label);
                    done.extend(cur.into_iter().map(|f| (f, ChainEnd::Unknown(format!("{label}: {what}")))));
                    return Ok(());
                }
            }
        }
        next.extend(cur);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn verdict(
        &self,
        t: usize,
        c: usize,
        rule: &Rule,
        v: &Verdict,
        mut f: Flow,
        depth: usize,
        next: &mut Vec<Flow>,
        done: &mut Vec<(Flow, ChainEnd)>,
    ) -> Result<(), TooLarge> {
        let table = &self.ruleset.tables[t];
        let label = || format!("{} {}", table.chain_label(c), rule.label);
        match v {
            Verdict::Accept => {
                f.trail.push(label());
                done.push((f, ChainEnd::Accept));
            }
            Verdict::Drop | Verdict::Reject => done.push((f, ChainEnd::Drop(label()))),
            Verdict::Continue => next.push(f),
            Verdict::Return => done.push((f, ChainEnd::Fall)),
            Verdict::Jump(name) | Verdict::Goto(name) => {
                let Some(target) = table.chain(name) else {
                    done.push((f, ChainEnd::Unknown(format!("{} names the missing chain {name}", label()))));
                    return Ok(());
                };
                let jump = matches!(v, Verdict::Jump(_));
                for (g, end) in self.run_chain(t, target, f, depth + 1)? {
                    match end {
                        ChainEnd::Fall if jump => next.push(g),
                        other => done.push((g, other)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Binds a destination NAT, splitting the flow by whether the tuple
    /// changes: a redirect's new address (the arrival interface's first
    /// address) is not known here, so whether it changes is undecided
    /// unless the port does.
    fn bind(&self, f: Flow, d: &Dnat) -> Vec<Flow> {
        if f.dnat.is_some() {
            return vec![f];
        }
        // (part whose port stays, part whose port changes)
        let (port_kept, port_moved) = match d.port {
            Some(p) => split_at(&f, Field::Dport, u128::from(p)),
            None => (Some(f), None),
        };
        let mut out: Vec<(Flow, Option<bool>)> = port_moved.into_iter().map(|g| (g, Some(true))).collect();
        if let Some(kept) = port_kept {
            match d.addr {
                Some(a) => {
                    let (same, moved) = split_at(&kept, Field::Daddr, a);
                    out.extend(moved.map(|g| (g, Some(true))));
                    out.extend(same.map(|g| (g, Some(false))));
                }
                None => out.push((kept, None)),
            }
        }
        out.into_iter()
            .map(|(mut g, changed)| {
                g.dnat = Some(d.clone());
                g.dnat_changed = changed;
                g
            })
            .collect()
    }
}

fn outcome(f: Flow, end: End) -> Outcome {
    Outcome { region: f.region, end, maybes: f.maybes, either: f.either, trail: f.trail }
}
