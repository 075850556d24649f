//! pf judged by what it accepts: the rules of `pfctl -s rules`, with every
//! anchor they reach, evaluated over regions of inbound new connections
//! (see `pf_region.rs`) into the exact set of (family, protocol, interfaces,
//! sources, source ports, destination ports) that end in `pass`, each an
//! [`Exposure`] naming the rule that passes it.
//!
//! pf's semantics (pf.conf(5)): rules are evaluated in order and the last
//! matching rule decides, unless a matching rule is `quick`, which decides
//! at once; what no rule matches is passed. An `anchor` rule evaluates the
//! anchor's rules where it stands, for the traffic the anchor rule itself
//! matches (interface, family, protocol, addresses, ports); a wildcard
//! `anchor "name/*"` evaluates each child anchor in turn (alphabetically, as
//! `pfctl -a PATH -s Anchors` lists them); a `quick` anchor ends the
//! evaluation when a rule matched inside it, by xnu's match flag
//! (`pf_step_into_anchor` clears it on entering any anchor and nothing
//! restores it, so a match before a nested anchor call does not count; a
//! wildcard anchor counts a match in any child). Names are relative to the
//! anchor holding the rule; at most [`MAX_ANCHOR_DEPTH`] levels and
//! [`MAX_ANCHORS`] anchors are read. Tables are read with `pfctl [-a PATH]
//! -t NAME -T show`; a table an anchor lacks is the main ruleset's (pf's
//! fallback), and one pf does not have matches nothing.
//!
//! A rule whose match is undecided (see `pf_rule.rs`) is never assumed to
//! match: a `pass` that might match makes what it would pass a possible
//! exposure (`certain = false`); a `block` that might match leaves the
//! region's earlier verdict possible as well.

use std::collections::BTreeMap;

use super::exposure::{Exposure, Family};
use super::intervals::IntervalSet;
use super::pf_addr::{Lookup, parse_table, service_in, well_known_port};
use super::pf_region::{Fam, Fate, Hit, IfSet, KEYS, Proto, Region, Space, coalesce};
use super::pf_rule::{Kind, Rule, parse_rule};
use crate::collect::ParseError;

/// Deepest anchor nesting followed.
pub const MAX_ANCHOR_DEPTH: usize = 8;
/// Most anchors read for one evaluation.
pub const MAX_ANCHORS: usize = 64;
/// Most regions carried at once (a bound on work for hostile rule sets).
pub const MAX_REGIONS: usize = 50_000;
/// The `because` of traffic no rule matches.
pub const DEFAULT_PASS: &str = "no rule (pf passes what no rule matches)";

/// Where anchors, tables and service names come from (`pfctl` on a host, a
/// map in tests). Failures are messages: on a host they are a command that
/// could not run or exited in error, not text that could not be read.
pub trait PfAnchors {
    /// The rules of the anchor at `path` as `pfctl -a PATH -s rules` prints them.
    fn rules(&mut self, path: &str) -> Result<String, String>;
    /// The full paths of the anchors directly below `path` (`pfctl -a PATH -s Anchors`).
    fn children(&mut self, path: &str) -> Result<Vec<String>, String>;
    /// The translation rules of the anchor at `path` (`pfctl [-a PATH] -s nat`).
    fn nat(&mut self, path: &str) -> Result<String, String>;
    /// `pfctl [-a ANCHOR] -t NAME -T show`; `Ok(None)` when pf has no such table.
    fn table(&mut self, anchor: &str, name: &str) -> Result<Option<String>, String> {
        let _ = anchor;
        Err(format!("table <{name}> cannot be read"))
    }
    /// `/etc/services`, which pfctl's service names come from.
    fn services(&mut self) -> Option<String> {
        None
    }
}

/// Resolves an anchor call made inside the anchor `current`: relative to
/// it, absolute with a leading `/`, `..` going up.
pub fn resolve_anchor(current: &str, name: &str) -> Result<String, ParseError> {
    let mut parts: Vec<&str> = if name.starts_with('/') {
        Vec::new()
    } else {
        current.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in name.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            parts.pop().ok_or_else(|| format!("anchor {name:?} reaches above the main rule set"))?;
        } else {
            parts.push(part);
        }
    }
    Ok(parts.join("/"))
}

/// Parses `pfctl -a PATH -s Anchors`: one anchor path per line, indented.
pub fn parse_pf_anchors(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// How reasons name rule `n` (1-based) of the anchor at `path`.
pub fn rule_name(path: &str, n: usize) -> String {
    if path.is_empty() { format!("rule {n}") } else { format!("rule {n} of anchor {path}") }
}

/// What pf does to inbound new connections.
#[derive(Debug, Clone, PartialEq)]
pub struct PfOutcome {
    /// What it passes.
    pub exposures: Vec<Exposure>,
    /// The rule that blocks most of what is blocked, in words.
    pub default_block: Option<String>,
}

type Sets = (IntervalSet, IntervalSet);

/// The evaluation in progress.
struct Walk<'a> {
    anchors: &'a mut dyn PfAnchors,
    read: usize,
    /// Regions whose fate is final.
    done: Vec<Region>,
    /// Block rules matching every probe, and whether they are quick.
    blockers: BTreeMap<String, bool>,
    tables: BTreeMap<(String, String), Result<Sets, String>>,
    services: Option<Option<String>>,
}

/// Table and service lookups for rules of the anchor `path`.
struct RuleLookup<'w, 'a> {
    walk: &'w mut Walk<'a>,
    path: &'w str,
}

impl Lookup for RuleLookup<'_, '_> {
    fn table(&mut self, name: &str) -> Result<Sets, String> {
        let key = (self.path.to_string(), name.to_string());
        if let Some(t) = self.walk.tables.get(&key) {
            return t.clone();
        }
        let t = self.walk.read_table(self.path, name);
        self.walk.tables.insert(key, t.clone());
        t
    }

    fn service(&mut self, name: &str, proto: &str) -> Option<u16> {
        let anchors = &mut *self.walk.anchors;
        let text = self.walk.services.get_or_insert_with(|| anchors.services());
        text.as_deref().and_then(|t| service_in(t, name, proto)).or_else(|| well_known_port(name))
    }
}

impl Walk<'_> {
    fn read_table(&mut self, path: &str, name: &str) -> Result<Sets, String> {
        let unreadable = |e: String| format!("table <{name}> unreadable: {e}");
        if !path.is_empty()
            && let Some(text) = self.anchors.table(path, name).map_err(unreadable)?
        {
            return parse_table(&text).map_err(|e| unreadable(e.to_string()));
        }
        match self.anchors.table("", name).map_err(unreadable)? {
            Some(text) => parse_table(&text).map_err(|e| unreadable(e.to_string())),
            // pf matches nothing against a table it does not have.
            None => Ok((IntervalSet::empty(Fam::V4.max()), IntervalSet::empty(Fam::V6.max()))),
        }
    }

    /// Evaluates the rules of `path` on the regions still undecided.
    fn ruleset(
        &mut self,
        path: &str,
        text: &str,
        depth: usize,
        mut live: Vec<Region>,
    ) -> Result<Vec<Region>, ParseError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if live.is_empty() {
                break;
            }
            if line.is_empty() {
                continue;
            }
            let here = rule_name(path, i + 1);
            let rule = parse_rule(line, &mut RuleLookup { walk: self, path })
                .map_err(|e| e.in_pf_anchor(path).at_line(i + 1))?;
            live = match &rule.kind {
                Kind::Ignored => live,
                Kind::Filter(pass) => self.filter(live, &rule, *pass, &here),
                Kind::Anchor(name) => self.anchor_rule(path, name, &rule, depth, live, &here)?,
            };
            live = coalesce(live);
            if live.len() > MAX_REGIONS || self.done.len() > MAX_REGIONS {
                self.done = coalesce(std::mem::take(&mut self.done));
                if live.len() > MAX_REGIONS || self.done.len() > MAX_REGIONS {
                    let limit = format!("the rule set splits into more than {MAX_REGIONS} cases at {here}");
                    return Err(limit.into());
                }
            }
        }
        Ok(live)
    }

    /// Applies a `pass` or `block` rule.
    fn filter(&mut self, live: Vec<Region>, rule: &Rule, pass: bool, here: &str) -> Vec<Region> {
        if !pass && rule.unconditional() {
            self.blockers.insert(here.to_string(), rule.quick);
        }
        let mut out = Vec::with_capacity(live.len());
        for r in live {
            let Some((inside, doubt)) = split(&r, rule, &mut out) else { continue };
            let mut hit = inside;
            let fate = Fate::of(pass, here);
            match doubt {
                None => {
                    hit.verdict = fate;
                    hit.mark(Hit::Yes);
                    if rule.quick {
                        self.finish(hit);
                        continue;
                    }
                }
                Some(d) => {
                    let fate = Fate { doubt: Some(format!("{here} might match ({d})")), ..fate };
                    // Matched: the rule's verdict (at once when quick); not matched: as before.
                    if rule.quick {
                        hit.exits = hit.exits.union(&fate);
                    } else {
                        hit.verdict = hit.verdict.union(&fate);
                    }
                    hit.mark(Hit::Maybe);
                }
            }
            out.push(hit);
        }
        out
    }

    /// Applies an `anchor` rule: the regions it matches go through the anchor.
    fn anchor_rule(
        &mut self,
        path: &str,
        name: &str,
        rule: &Rule,
        depth: usize,
        live: Vec<Region>,
        here: &str,
    ) -> Result<Vec<Region>, ParseError> {
        let mut out = Vec::new();
        let mut inside = Vec::new();
        for r in live {
            let Some((mut hit, doubt)) = split(&r, rule, &mut out) else { continue };
            if let Some(d) = doubt {
                return Err(format!("{here} calls anchor {name} for traffic limited by {d}").into());
            }
            hit.enter();
            inside.push(hit);
        }
        if inside.is_empty() {
            return Ok(out);
        }
        for mut r in self.anchor(path, name, depth + 1, inside)? {
            match (rule.quick, r.leave()) {
                (true, Hit::Yes) => {
                    self.finish(r);
                    continue;
                }
                (true, Hit::Maybe) => r.exits = r.exits.union(&r.verdict),
                _ => {}
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Evaluates the anchor call `name` made in `current`.
    fn anchor(
        &mut self,
        current: &str,
        name: &str,
        depth: usize,
        mut live: Vec<Region>,
    ) -> Result<Vec<Region>, ParseError> {
        if depth > MAX_ANCHOR_DEPTH {
            return Err(
                format!("anchors are nested deeper than {MAX_ANCHOR_DEPTH} levels at {name:?}").into()
            );
        }
        let (base, wildcard) = match name.strip_suffix("/*") {
            Some(b) => (b, true),
            None if name == "*" => ("", true),
            None => (name, false),
        };
        let base = resolve_anchor(current, base)?;
        // A wildcard evaluates each child (alphabetically), not the anchor's own rules.
        let targets = if wildcard {
            let mut c = self.anchors.children(&base)?;
            c.sort();
            c
        } else {
            vec![base]
        };
        for target in targets {
            self.read += 1;
            if self.read > MAX_ANCHORS {
                return Err(format!("more than {MAX_ANCHORS} anchors to read").into());
            }
            let rules = self.anchors.rules(&target)?;
            live = self.ruleset(&target, &rules, depth, live)?;
            if wildcard {
                live.iter_mut().for_each(Region::child_done);
            }
        }
        Ok(live)
    }

    /// Ends a region's evaluation: its verdict, or any quick exit it might have taken.
    fn finish(&mut self, mut r: Region) {
        r.verdict = r.verdict.union(&r.exits);
        r.exits = Fate::default();
        self.done.push(r);
    }
}

/// Splits `r` by what `rule` matches of it: the parts it does not match go
/// to `out`; the part it matches is returned with the match's doubt.
fn split(r: &Region, rule: &Rule, out: &mut Vec<Region>) -> Option<(Region, Option<String>)> {
    let Some(m) = &rule.matches[r.key()] else {
        out.push(r.clone());
        return None;
    };
    let inside = r.space.intersect(&m.space);
    if inside.is_empty() {
        out.push(r.clone());
        return None;
    }
    out.extend(r.space.minus(&m.space).into_iter().map(|s| r.with_space(s)));
    Some((r.with_space(inside), m.doubt.clone()))
}

/// Checks that no translation rule changes inbound packets: `rdr` and
/// `binat` rewrite the destination before the filter rules see it, and
/// `rdr pass` skips them, so pf's verdict cannot be told from the filter
/// rules alone while one exists. Follows `rdr-anchor` and `binat-anchor`
/// calls (wildcards included) within the same limits as the filter rules.
pub fn check_translation(anchors: &mut dyn PfAnchors) -> Result<(), ParseError> {
    let mut read = 0;
    translation_in(anchors, "", 0, &mut read)
}

fn translation_in(
    anchors: &mut dyn PfAnchors,
    path: &str,
    depth: usize,
    read: &mut usize,
) -> Result<(), ParseError> {
    if depth > MAX_ANCHOR_DEPTH {
        return Err(format!(
            "translation anchors are nested deeper than {MAX_ANCHOR_DEPTH} levels at {path:?}"
        )
        .into());
    }
    *read += 1;
    if *read > MAX_ANCHORS {
        return Err(format!("more than {MAX_ANCHORS} translation anchors to read").into());
    }
    let text = anchors.nat(path)?;
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some(kind @ ("rdr" | "binat")) => {
                let why = format!("a translation rule (`{kind}`), which this agent does not evaluate");
                return Err(ParseError::new(why).in_pf_anchor(path).at_line(i + 1));
            }
            Some("rdr-anchor" | "binat-anchor") => {
                let name = words.next().unwrap_or_default().trim_matches('"');
                let (base, wildcard) = match name.strip_suffix("/*") {
                    Some(b) => (b, true),
                    None => (name, name == "*"),
                };
                let base = resolve_anchor(path, base.trim_end_matches('*'))?;
                let targets = if wildcard { anchors.children(&base)? } else { vec![base] };
                for target in targets {
                    translation_in(anchors, &target, depth + 1, read)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every region of inbound new connections with its final fate.
pub fn evaluate_regions(main: &str, anchors: &mut dyn PfAnchors) -> Result<Vec<Region>, ParseError> {
    walk_all(anchors, main).map(|(done, _)| done)
}

/// Evaluates the main rules from the whole packet space; the final regions
/// and the unconditional block rules met.
fn walk_all(
    anchors: &mut dyn PfAnchors,
    main: &str,
) -> Result<(Vec<Region>, BTreeMap<String, bool>), ParseError> {
    let mut walk = Walk {
        anchors,
        read: 0,
        done: Vec::new(),
        blockers: BTreeMap::new(),
        tables: BTreeMap::new(),
        services: None,
    };
    let default = Fate { pass: Some(DEFAULT_PASS.to_string()), ..Fate::default() };
    let start = KEYS
        .iter()
        .map(|&(fam, proto)| Region {
            fam,
            proto,
            space: Space::full(fam),
            verdict: default.clone(),
            exits: Fate::default(),
            matched: Hit::No,
            frames: Vec::new(),
        })
        .collect();
    let live = walk.ruleset("", main, 0, start)?;
    for r in live {
        walk.finish(r);
    }
    Ok((coalesce(std::mem::take(&mut walk.done)), std::mem::take(&mut walk.blockers)))
}

/// What the effective pf rule set (the main rules of `pfctl -s rules` with
/// every anchor they reach) passes; `Err` when an anchor or the rules
/// cannot be read or followed: a rule not understood is named by its anchor
/// and line, an anchor [`PfAnchors`] could not give or a limit passed only
/// in words.
pub fn evaluate_pf_rules(main: &str, anchors: &mut dyn PfAnchors) -> Result<PfOutcome, ParseError> {
    let (done, blockers) = walk_all(anchors, main)?;
    Ok(PfOutcome { exposures: exposures(&done), default_block: default_block(&done, &blockers) })
}

/// The block rule deciding the most destination ports, in words.
fn default_block(done: &[Region], blockers: &BTreeMap<String, bool>) -> Option<String> {
    let mut weight: BTreeMap<&str, u128> = BTreeMap::new();
    for r in done.iter().filter(|r| r.verdict.pass.is_none()) {
        if let Some(b) = &r.verdict.block {
            *weight.entry(b).or_default() += r.space.dport.count();
        }
    }
    let (rule, _) = weight.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    Some(match blockers.get(rule) {
        Some(true) => format!("{rule} blocks all inbound traffic (quick)"),
        Some(false) => format!("{rule} blocks all inbound traffic not passed by a later rule"),
        None => format!("{rule} blocks inbound traffic no other rule passes"),
    })
}

type ExposureKey = (Fam, Proto, IfSet, IntervalSet, IntervalSet, String, Option<String>);

/// The passed regions as exposures: one per (family, protocol, interfaces,
/// sources, source ports, rule), its destination ports united; a v4 and a
/// v6 exposure alike in all else become one of family `any`.
fn exposures(done: &[Region]) -> Vec<Exposure> {
    let mut groups: BTreeMap<ExposureKey, IntervalSet> = BTreeMap::new();
    for r in done {
        let Some(pass) = &r.verdict.pass else { continue };
        let doubt = r
            .verdict
            .block
            .as_ref()
            .map(|b| r.verdict.doubt.clone().unwrap_or_else(|| format!("{b} might block it")));
        let key = (
            r.fam,
            r.proto,
            r.space.ifaces.clone(),
            r.space.src.clone(),
            r.space.sport.clone(),
            pass.clone(),
            doubt,
        );
        groups
            .entry(key)
            .and_modify(|s| *s = s.union(&r.space.dport))
            .or_insert_with(|| r.space.dport.clone());
    }
    let list = groups.into_iter().map(|(k, ports)| to_exposure(k, ports)).collect();
    merge_families(list)
}

/// Most source prefixes listed in one exposure.
const MAX_PREFIXES: usize = 16;

fn to_exposure((fam, proto, ifaces, src, sport, pass, doubt): ExposureKey, ports: IntervalSet) -> Exposure {
    let family = if fam == Fam::V4 { Family::Ipv4 } else { Family::Ipv6 };
    let mut e = Exposure::new(family, proto.as_str(), ports, pass.clone());
    if !src.is_full() {
        let mut prefixes = src.prefixes();
        if prefixes.len() > MAX_PREFIXES {
            let more = prefixes.len() - MAX_PREFIXES;
            prefixes.truncate(MAX_PREFIXES);
            prefixes.push(format!("and {more} more prefixes"));
        }
        e.from = Some(prefixes);
    }
    e.via = ifaces.describe();
    if !sport.is_full() {
        e.qualifiers.push(format!("source port {}", sport.port_text()));
    }
    if let Some(d) = doubt {
        e.certain = false;
        e.because = format!("{pass}; uncertain: {d}");
    }
    e
}

fn merge_families(list: Vec<Exposure>) -> Vec<Exposure> {
    let (mut v6, v4): (Vec<Exposure>, Vec<Exposure>) =
        list.into_iter().partition(|e| e.family == Family::Ipv6);
    let mut out = Vec::new();
    for mut e in v4 {
        let twin = v6.iter().position(|o| {
            e.from.is_none() && o.from.is_none() && Exposure { family: Family::Ipv6, ..e.clone() } == *o
        });
        if let Some(i) = twin {
            v6.remove(i);
            e.family = Family::Any;
        }
        out.push(e);
    }
    out.extend(v6);
    out
}

#[cfg(test)]
#[path = "pf_tests.rs"]
mod tests;
