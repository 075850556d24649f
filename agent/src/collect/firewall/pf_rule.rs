//! One line of `pfctl -s rules` (pfctl's normalised form, as its
//! `print_rule` writes it: `block drop in log quick on en0 inet proto tcp
//! from <t> port = 53 to any port 1000:2000 flags S/SA keep state label
//! "x"`, `pass in quick on lo0 all`, `anchor "com.apple/*" all`) read as
//! what it matches among inbound new connections: one [`Space`] per
//! (family, protocol), see `pf_region.rs`.
//!
//! Semantics follow pf.conf(5) (macOS, FreeBSD, OpenBSD): `in`/`out`/both;
//! `on [!] IFACE`; `inet`/`inet6`; `proto` names, numbers and lists;
//! addresses `any`, prefixes, ranges `a - b`, `<table>`, `!`, lists;
//! ports with `=`, `!=`, `<`, `<=`, `>`, `>=`, `a:b` (inclusive), `a >< b`
//! (exclusive), `a <> b` (outside); `flags F/M` matches a SYN when
//! `S & M == F` (TCP only). A destination of the host's own addresses
//! (`self`, `(en0)`) matches our probes; any other destination address may
//! or may not be the host's. Constructs whose match cannot be decided here
//! (`user`, `group`, `tos`, `probability`, `os`, `tagged`, `fragment`,
//! `route-to`, interface-address sources, unreadable tables, unknown
//! words) leave the match *undecided*: the box is widened to what the rest
//! of the rule matches and [`Match::doubt`] names the construct; parsing
//! stops at a word it does not know, which only widens the box further.

use super::intervals::{IntervalSet, PORT_MAX};
use super::pf_addr::{Addr, Dest, Lookup, port_set};
use super::pf_region::{Fam, IfSet, KEYS, Proto, Space};
use crate::collect::ParseError;

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `pass` (true) or `block` (false).
    Filter(bool),
    /// Evaluate the named anchor's rules here.
    Anchor(String),
    /// Not a filter decision (`scrub`, `scrub-anchor`, ...).
    Ignored,
}

/// What a rule matches of one (family, protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub space: Space,
    /// Why the match is undecided, when it is.
    pub doubt: Option<String>,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    pub quick: bool,
    /// Per (family, protocol) in the order of `pf_region::KEYS`.
    pub matches: [Option<Match>; 4],
}

impl Rule {
    /// Whether it matches every inbound probe for certain (`block in all`).
    pub fn unconditional(&self) -> bool {
        self.matches
            .iter()
            .zip(KEYS)
            .all(|(m, (fam, _))| m.as_ref().is_some_and(|m| m.doubt.is_none() && m.space == Space::full(fam)))
    }
}

/// A token of pfctl's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Word(String),
    Quoted(String),
    /// `( ... )`, kept whole: `(en0)`, `(max 100)`, `(port-unr)`.
    Group(String),
    Table(String),
    Op(&'static str),
    Bang,
    Open,
    Close,
    Comma,
}

/// Splits a rule line into tokens.
pub fn tokenize(line: &str) -> Result<Vec<Tok>, ParseError> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let until = |from: usize, end: char| chars[from..].iter().position(|&c| c == end).map(|p| from + p);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '"' => {
                let end = until(i + 1, '"').ok_or("unterminated quoted string")?;
                (Tok::Quoted(chars[i + 1..end].iter().collect()), end + 1 - i)
            }
            '(' => {
                let end = until(i + 1, ')').ok_or("unterminated parenthesis")?;
                (Tok::Group(chars[i + 1..end].iter().collect::<String>().trim().to_string()), end + 1 - i)
            }
            '{' => (Tok::Open, 1),
            '}' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '<' if next.is_some_and(|n| n.is_ascii_alphanumeric() || n == '_') => {
                let end = until(i + 1, '>').ok_or("unterminated table name")?;
                (Tok::Table(chars[i + 1..end].iter().collect()), end + 1 - i)
            }
            '<' | '>' | '!' | '=' => operator(c, next),
            _ => {
                let len = chars[i..]
                    .iter()
                    .position(|&c| c.is_whitespace() || "\"(){},".contains(c))
                    .unwrap_or(chars.len() - i);
                (Tok::Word(chars[i..i + len].iter().collect()), len)
            }
        };
        out.push(tok);
        i += len;
    }
    Ok(out)
}

fn operator(c: char, next: Option<char>) -> (Tok, usize) {
    match (c, next) {
        ('<', Some('=')) => (Tok::Op("<="), 2),
        ('<', Some('>')) => (Tok::Op("<>"), 2),
        ('>', Some('=')) => (Tok::Op(">="), 2),
        ('>', Some('<')) => (Tok::Op("><"), 2),
        ('!', Some('=')) => (Tok::Op("!="), 2),
        ('<', _) => (Tok::Op("<"), 1),
        ('>', _) => (Tok::Op(">"), 1),
        ('=', _) => (Tok::Op("="), 1),
        _ => (Tok::Bang, 1),
    }
}

/// A cursor over tokens.
pub struct Cursor {
    toks: Vec<Tok>,
    at: usize,
}

impl Cursor {
    pub fn new(toks: Vec<Tok>) -> Self {
        Cursor { toks, at: 0 }
    }

    pub fn advance(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += usize::from(t.is_some());
        t
    }

    pub fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    /// Consumes `t` when it comes next.
    pub fn eat(&mut self, t: &Tok) -> bool {
        let hit = self.peek() == Some(t);
        self.at += usize::from(hit);
        hit
    }

    pub fn eat_word(&mut self, w: &str) -> bool {
        self.eat(&Tok::Word(w.to_string()))
    }

    /// Consumes a `( ... )` when it comes next.
    fn skip_group(&mut self) -> bool {
        let hit = matches!(self.peek(), Some(Tok::Group(_)));
        self.at += usize::from(hit);
        hit
    }

    /// The next word, or an error naming what was expected.
    fn word(&mut self, what: &str) -> Result<String, String> {
        match self.advance() {
            Some(Tok::Word(w)) => Ok(w),
            other => Err(format!("expected {what}, found {other:?}")),
        }
    }

    /// Skips one argument: a word, a quoted string, a group, a table or a `{ }` list.
    fn skip_arg(&mut self) {
        if self.eat(&Tok::Open) {
            while !matches!(self.advance(), Some(Tok::Close) | None) {}
        } else {
            self.advance();
        }
    }
}

/// The conditions of a rule as they are read.
struct Conds {
    out_only: bool,
    quick: bool,
    ifaces: IfSet,
    fam: Option<Fam>,
    protos: Option<Vec<u16>>,
    src: Addr,
    sport: Result<IntervalSet, String>,
    dst: Addr,
    dport: Result<IntervalSet, String>,
    syn: bool,
    icmp_only: bool,
    doubts: Vec<String>,
}

impl Default for Conds {
    fn default() -> Self {
        Conds {
            out_only: false,
            quick: false,
            ifaces: IfSet::any(),
            fam: None,
            protos: None,
            src: Addr::any(),
            sport: Ok(IntervalSet::full(PORT_MAX)),
            dst: Addr::any(),
            dport: Ok(IntervalSet::full(PORT_MAX)),
            syn: true,
            icmp_only: false,
            doubts: Vec::new(),
        }
    }
}

/// Parses one line of `pfctl -s rules`. `Err` for a line that is no rule
/// pfctl prints, or an inline anchor (`anchor { ... }`), which is not
/// evaluated; the caller knows which anchor and line it is.
pub fn parse_rule(line: &str, lookup: &mut dyn Lookup) -> Result<Rule, ParseError> {
    let toks = tokenize(line)?;
    if toks.contains(&Tok::Open)
        && toks.first() == Some(&Tok::Word("anchor".into()))
        && line.trim_end().ends_with('{')
    {
        return Err("an inline anchor, which this agent does not evaluate".into());
    }
    let mut p = Cursor::new(toks);
    let kind = match p.advance() {
        Some(Tok::Word(w)) if w == "pass" => Kind::Filter(true),
        Some(Tok::Word(w)) if w == "block" => Kind::Filter(false),
        Some(Tok::Word(w)) if w == "anchor" => match p.advance() {
            Some(Tok::Quoted(name)) => Kind::Anchor(name),
            _ => return Err("an inline anchor, which this agent does not evaluate".into()),
        },
        Some(Tok::Word(w)) if IGNORED.contains(&w.as_str()) => Kind::Ignored,
        _ => return Err(format!("unrecognised rule {line:?}").into()),
    };
    if kind == Kind::Ignored {
        return Ok(Rule { kind, quick: false, matches: [None, None, None, None] });
    }
    let mut c = Conds::default();
    while let Some(t) = p.advance() {
        if !c.clause(t, &mut p, lookup)? {
            break;
        }
    }
    Ok(c.into_rule(kind))
}

/// Rule types `pfctl -s rules` prints that decide nothing about passing.
const IGNORED: &[&str] = &[
    "scrub",
    "scrub-anchor",
    "no",
    "nat",
    "nat-anchor",
    "rdr",
    "rdr-anchor",
    "binat",
    "binat-anchor",
    "dummynet",
    "dummynet-anchor",
];

impl Conds {
    /// Reads one clause starting with `t`; `Ok(false)` stops at a word that
    /// is not known (the rule is then undecided from here on).
    fn clause(&mut self, t: Tok, p: &mut Cursor, lookup: &mut dyn Lookup) -> Result<bool, String> {
        let w = match t {
            Tok::Word(w) => w,
            Tok::Bang if p.eat_word("tagged") => {
                p.skip_arg();
                self.doubt("`! tagged` (tags are not evaluated)");
                return Ok(true);
            }
            other => {
                self.doubt(&format!("{other:?} is not understood"));
                return Ok(false);
            }
        };
        match w.as_str() {
            "drop" | "return" | "return-rst" | "return-icmp" | "return-icmp6" | "log" => {
                p.skip_group();
            }
            "in" => {}
            "out" => self.out_only = true,
            "quick" => self.quick = true,
            "on" => {
                let negated = p.eat(&Tok::Bang);
                self.ifaces = IfSet::named(&p.word("an interface")?, negated);
            }
            "inet" => self.fam = Some(Fam::V4),
            "inet6" => self.fam = Some(Fam::V6),
            "proto" => self.protos = Some(protocols(p)?),
            "all" | "no-df" | "random-id" | "allow-opts" => {}
            "from" | "to" => self.endpoint(&w, p, lookup),
            "flags" => self.syn = admits_syn(&p.word("flags")?),
            "keep" | "modulate" | "synproxy" | "no" => {
                p.eat_word("state");
                p.skip_group();
            }
            "label" | "tag" | "rtable" | "min-ttl" | "max-mss" | "reply-to" | "dup-to" => p.skip_arg(),
            "queue" => {
                if !p.skip_group() {
                    p.skip_arg();
                }
            }
            "icmp-type" | "icmp6-type" => {
                self.icmp_only = true;
                p.skip_arg();
            }
            "route-to" | "fastroute" => {
                if w == "route-to" {
                    p.skip_arg();
                }
                self.doubt(&format!("`{w}` (the packet may be routed away instead of delivered)"));
            }
            "user" | "group" => {
                skip_id_condition(p);
                self.doubt(&format!("`{w}` (the owner of the receiving socket is not evaluated)"));
            }
            "tos" | "probability" | "os" | "tagged" => {
                p.skip_arg();
                self.doubt(&format!("`{w}` is not evaluated"));
            }
            "fragment" => self.doubt("`fragment` (fragments are not evaluated)"),
            _ => {
                self.doubt(&format!("`{w}` is not understood"));
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn doubt(&mut self, what: &str) {
        self.doubts.push(what.to_string());
    }

    /// `from ADDR [port P]` or `to ADDR [port P]`.
    fn endpoint(&mut self, which: &str, p: &mut Cursor, lookup: &mut dyn Lookup) {
        let addr = Addr::parse(p, lookup);
        let ports = if p.eat_word("port") {
            let proto = match self.protos.as_deref() {
                Some([17]) => "udp",
                _ => "tcp",
            };
            port_set(p, lookup, proto)
        } else {
            Ok(IntervalSet::full(PORT_MAX))
        };
        if which == "from" {
            self.src = addr;
            self.sport = ports;
        } else {
            self.dst = addr;
            self.dport = ports;
        }
    }

    /// The per-(family, protocol) boxes.
    fn into_rule(self, kind: Kind) -> Rule {
        let matches = KEYS.map(|(fam, proto)| self.match_of(fam, proto));
        Rule { kind, quick: self.quick, matches }
    }

    fn match_of(&self, fam: Fam, proto: Proto) -> Option<Match> {
        // Without `inet`/`inet6`, address literals give the rule their family.
        let family = self.fam.or(self.src.family).or(self.dst.family);
        if self.out_only || self.icmp_only || family.is_some_and(|f| f != fam) {
            return None;
        }
        if self.protos.as_ref().is_some_and(|ps| !ps.contains(&proto.number())) {
            return None;
        }
        if proto == Proto::Tcp && !self.syn {
            return None;
        }
        let mut doubts = self.doubts.clone();
        let src = match self.src.source(fam) {
            Ok(set) => set,
            Err(d) => {
                doubts.push(d);
                IntervalSet::full(fam.max())
            }
        };
        match self.dst.destination(fam) {
            Dest::Host => {}
            Dest::NotHost => return None,
            Dest::Maybe(d) => doubts.push(d),
        }
        let mut ports = |r: &Result<IntervalSet, String>| match r {
            Ok(set) => set.clone(),
            Err(d) => {
                doubts.push(d.clone());
                IntervalSet::full(PORT_MAX)
            }
        };
        let (sport, dport) = (ports(&self.sport), ports(&self.dport));
        let space = Space { ifaces: self.ifaces.clone(), src, sport, dport };
        if space.is_empty() {
            return None;
        }
        let doubt = if doubts.is_empty() { None } else { Some(doubts.join("; ")) };
        Some(Match { space, doubt })
    }
}

/// `proto tcp`, `proto 17`, `proto { tcp udp }`: protocol numbers; a name
/// other than tcp/udp is some other protocol.
fn protocols(p: &mut Cursor) -> Result<Vec<u16>, String> {
    let number = |w: &str| match w {
        "tcp" => 6,
        "udp" => 17,
        _ => w.parse::<u16>().unwrap_or(u16::MAX),
    };
    if p.eat(&Tok::Open) {
        let mut out = Vec::new();
        loop {
            match p.advance() {
                Some(Tok::Close) => return Ok(out),
                Some(Tok::Comma) => {}
                Some(Tok::Word(w)) => out.push(number(&w)),
                other => return Err(format!("unexpected {other:?} in a protocol list")),
            }
        }
    }
    Ok(vec![number(&p.word("a protocol")?)])
}

/// TCP flag letters as pfctl prints them, lowest bit first.
const TCP_FLAGS: &str = "FSRPAUEW";

fn flag_bits(s: &str) -> Option<u8> {
    s.chars().try_fold(0u8, |acc, c| TCP_FLAGS.find(c).map(|i| acc | (1 << i)))
}

/// Whether `flags F/M` (or `flags any`) matches a SYN: `S & M == F`, an
/// empty mask meaning all flags (pfctl's `parse_flags`). Unparsable flags
/// are taken as matching, which only widens the rule.
pub fn admits_syn(spec: &str) -> bool {
    if spec == "any" {
        return true;
    }
    let (want, mask) = spec.split_once('/').unwrap_or((spec, ""));
    let (Some(want), Some(mask)) = (flag_bits(want), flag_bits(mask)) else { return true };
    let mask = if mask == 0 { u8::MAX } else { mask };
    const SYN: u8 = 0b10;
    SYN & mask == want
}

/// Skips `user`/`group` arguments: `= 501`, `unknown`, `1000:2000`, `1 >< 5`.
fn skip_id_condition(p: &mut Cursor) {
    if matches!(p.peek(), Some(Tok::Op(_))) {
        p.advance();
    }
    p.skip_arg();
    if matches!(p.peek(), Some(Tok::Op("><" | "<>"))) {
        p.advance();
        p.skip_arg();
    }
}
