//! Reads `nft -j list ruleset` (libnftables' JSON schema, version 1) into
//! a [`Ruleset`].
//!
//! A tolerant reader over `serde_json::Value` rather than a typed schema
//! crate: one expression this agent has never seen must make only the rule
//! that holds it undecided (named in the finding), not the whole document
//! unreadable. Dormant tables are skipped (the kernel does not run them);
//! a set that rules fill from packets (`add @set { ip saddr }`) cannot be
//! trusted as it stands, so matching against it is undecided.
//!
//! Tables written by iptables-nft hold `xt` compatibility expressions that
//! nft cannot decode; the caller replaces those tables with what
//! `iptables-nft-save` prints ([`xt_tables`]).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::nft_bytecode::{self, Bytecode};
use super::nft_left::{Left, bits, implied_family, implied_l4, left};
use super::nft_text::render_rule;
use super::ruleset::{
    Base, Chain, Dnat, Elem, Field, Hook, Key, Origin, Rule, Ruleset, Stmt, Table, TableFamily, Tuples,
    Verdict,
};
use super::values;

/// Why the document could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NftJsonError {
    #[error("nft JSON is malformed: {0}")]
    Malformed(String),
    #[error("nft JSON has no \"nftables\" array")]
    NoArray,
}

/// Named sets and maps of one table, as written (elements converted where used).
#[derive(Default)]
struct Named<'a> {
    sets: HashMap<&'a str, &'a [Value]>,
    maps: HashMap<&'a str, &'a [Value]>,
    /// Sets and maps that rules fill from packets.
    dynamic: HashSet<String>,
}

/// Parses the whole document, with the bytecode listing where it was read
/// (see `nft_bytecode.rs` for what it corrects).
pub fn parse(text: &str, code: Option<&Bytecode>) -> Result<Ruleset, NftJsonError> {
    let mut doc: Value = serde_json::from_str(text).map_err(|e| NftJsonError::Malformed(e.to_string()))?;
    nft_bytecode::correct(&mut doc, code);
    let items = doc.get("nftables").and_then(Value::as_array).ok_or(NftJsonError::NoArray)?;
    let mut tables: Vec<(Table, Named)> = Vec::new();
    let find = |tables: &[(Table, Named<'_>)], o: &Value| {
        let (fam, name) = (str_of(o, "family"), str_of(o, "table"));
        tables.iter().position(|(t, _)| family_name(t) == fam && t.name == name)
    };
    for item in items {
        if let Some(t) = item.get("table") {
            if flags(t).iter().any(|f| f == "dormant") {
                continue; // not run by the kernel: its chains filter nothing
            }
            let table = Table {
                family: TableFamily::parse(str_of(t, "family")),
                name: str_of(t, "name").to_string(),
                origin: Origin::Nftables,
                chains: Vec::new(),
            };
            tables.push((table, Named::default()));
        } else if let Some(c) = item.get("chain") {
            if let Some(i) = find(&tables, c) {
                tables[i].0.chains.push(Chain {
                    name: str_of(c, "name").into(),
                    base: base(c),
                    rules: Vec::new(),
                });
            }
        } else if let Some((kind, s)) =
            item.get("set").map(|s| ("set", s)).or(item.get("map").map(|m| ("map", m)))
            && let Some(i) = find(&tables, s)
        {
            let elems = s.get("elem").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let named = &mut tables[i].1;
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            let list = if kind == "set" { &mut named.sets } else { &mut named.maps };
            list.insert(name, elems);
        }
    }
    // Rules last: they refer to sets, and a set filled from packets may be
    // named before the rule that fills it.
    let rules: Vec<&Value> = items.iter().filter_map(|i| i.get("rule")).collect();
    for r in &rules {
        if let Some(i) = find(&tables, r) {
            dynamic_sets(exprs(r), &mut tables[i].1.dynamic);
        }
    }
    for r in rules {
        let Some(i) = find(&tables, r) else { continue };
        let (table, named) = &mut tables[i];
        let Some(chain) = table.chain(str_of(r, "chain")) else { continue };
        let list = exprs(r);
        let n = table.chains[chain].rules.len() + 1;
        let stmts = list.iter().flat_map(|e| statement(e, named)).collect();
        let label = format!("rule {n} `{}`", render_rule(list));
        table.chains[chain].rules.push(Rule::new(label, stmts));
    }
    Ok(Ruleset { tables: tables.into_iter().map(|(t, _)| t).collect() })
}

/// The `(family, table)` pairs holding iptables-nft compatibility
/// expressions, which `iptables-nft-save` can print in full.
pub fn xt_tables(text: &str) -> Vec<(String, String)> {
    let Ok(doc) = serde_json::from_str::<Value>(text) else { return Vec::new() };
    let mut out: Vec<(String, String)> = Vec::new();
    for r in doc.get("nftables").and_then(Value::as_array).into_iter().flatten().filter_map(|i| i.get("rule"))
    {
        let key = (str_of(r, "family").to_string(), str_of(r, "table").to_string());
        if exprs(r).iter().any(|e| e.get("xt").is_some()) && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

fn family_name(t: &Table) -> &'static str {
    match t.family {
        TableFamily::Ip => "ip",
        TableFamily::Ip6 => "ip6",
        TableFamily::Inet => "inet",
        TableFamily::Other => "other",
    }
}

pub(super) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn flags(v: &Value) -> Vec<String> {
    match v.get("flags") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn exprs(rule: &Value) -> &[Value] {
    rule.get("expr").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn base(c: &Value) -> Option<Base> {
    let hook = c.get("hook").and_then(Value::as_str)?;
    Some(Base {
        hook: Hook::parse(hook),
        prio: c.get("prio").and_then(Value::as_i64).unwrap_or(0),
        nat: str_of(c, "type") == "nat",
        policy_drop: str_of(c, "policy") == "drop",
    })
}

/// Names of sets and maps the statements fill from packets.
fn dynamic_sets(list: &[Value], out: &mut HashSet<String>) {
    for e in list {
        for key in ["set", "map", "meter"] {
            if let Some(s) = e.get(key)
                && s.get("op").is_some()
            {
                let name = s.get("set").or(s.get("map")).and_then(Value::as_str).unwrap_or("");
                out.insert(name.trim_start_matches('@').to_string());
            }
        }
    }
}

/// One statement of a rule, with the matches it implies first (`tcp dport`
/// implies `meta l4proto tcp`, `ip saddr` implies IPv4).
fn statement(e: &Value, named: &Named) -> Vec<Stmt> {
    let Some((kind, body)) = e.as_object().and_then(|o| o.iter().next()) else {
        return vec![Stmt::Unknown(format!("statement {e}"))];
    };
    let one = |s| vec![s];
    match kind.as_str() {
        "match" => match_stmt(body, named),
        "accept" => one(Stmt::Verdict(Verdict::Accept)),
        "drop" => one(Stmt::Verdict(Verdict::Drop)),
        // A reject names how it answers, and so what it applies to: nft
        // folds `meta nfproto ipv4` into `reject with icmp ...`.
        "reject" => {
            let implied = match str_of(body, "type") {
                "icmp" => implied_family(false),
                "icmpv6" => implied_family(true),
                "tcp reset" => implied_l4("tcp"),
                _ => Vec::new(),
            };
            [implied, one(Stmt::Verdict(Verdict::Reject))].concat()
        }
        "continue" => one(Stmt::Verdict(Verdict::Continue)),
        "return" => one(Stmt::Verdict(Verdict::Return)),
        "jump" => one(Stmt::Verdict(Verdict::Jump(str_of(body, "target").into()))),
        "goto" => one(Stmt::Verdict(Verdict::Goto(str_of(body, "target").into()))),
        "vmap" => vmap(body, named),
        // Put in by `nft_bytecode::correct` for a match nft's listing leaves ambiguous.
        "custos-undecided" => one(Stmt::Undecided(body.as_str().unwrap_or_default().into())),
        // The first packet of a connection is within any rate or quota.
        "limit" | "quota" if body.get("inv") == Some(&Value::Bool(true)) => {
            one(Stmt::Match { key: Key::Field(Field::Nfproto), negate: false, set: Vec::new() })
        }
        "xt" if is_target(body) => one(xt_target(body)),
        "xt" => one(Stmt::Undecided(format!("iptables-nft match `{}` (xt)", str_of(body, "name")))),
        "counter" | "log" | "limit" | "quota" | "snat" | "masquerade" | "set" | "map" | "meter" | "flow"
        | "dup" | "ct helper" | "ct timeout" | "ct expectation" => one(Stmt::Nothing),
        "notrack" => one(Stmt::Notrack),
        "mangle" => one(mangle(body)),
        // A NAT statement for one family applies to that family only.
        "dnat" | "redirect" => match str_of(body, "family") {
            "ip" => [implied_family(false), one(dnat(kind, body))].concat(),
            "ip6" => [implied_family(true), one(dnat(kind, body))].concat(),
            _ => one(dnat(kind, body)),
        },
        "queue" => one(Stmt::Unknown("`queue`: user space decides".into())),
        other => one(Stmt::Unknown(format!("`{other}` statement"))),
    }
}

fn is_target(xt: &Value) -> bool {
    str_of(xt, "type") == "target"
}

/// An xt target nft cannot decode (iptables-nft-save reads these tables).
fn xt_target(xt: &Value) -> Stmt {
    match str_of(xt, "name") {
        "LOG" | "NFLOG" | "TCPMSS" | "CHECKSUM" | "AUDIT" | "TRACE" | "SNAT" | "MASQUERADE" => Stmt::Nothing,
        "REJECT" => Stmt::Verdict(Verdict::Reject),
        name => Stmt::Unknown(format!("iptables-nft target `{name}` (xt)")),
    }
}

fn mangle(body: &Value) -> Stmt {
    let target = body.get("key");
    let meta_mark = target.and_then(|k| k.get("meta")).is_some_and(|m| str_of(m, "key") == "mark");
    let ct_mark = target.and_then(|k| k.get("ct")).is_some_and(|m| str_of(m, "key") == "mark");
    if !meta_mark && !ct_mark {
        // Header rewrites (dscp, ttl, ...) do not decide verdicts here.
        return Stmt::Nothing;
    }
    match body.get("value") {
        Some(Value::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
            Some(value) => Stmt::SetMark { ct: ct_mark, value, mask: u32::MAX },
            None => Stmt::Unknown(format!("mark set to {n}")),
        },
        Some(v) if meta_mark && v.get("ct").is_some_and(|c| str_of(c, "key") == "mark") => Stmt::RestoreMark,
        Some(v) => Stmt::Unknown(format!("mark set to the expression {v}")),
        None => Stmt::Unknown("mark set without a value".into()),
    }
}

fn dnat(kind: &str, body: &Value) -> Stmt {
    let port = match body.get("port") {
        None => None,
        Some(p) => match p.as_u64().and_then(|v| u16::try_from(v).ok()) {
            Some(p) => Some(p),
            None => return Stmt::Unknown(format!("{kind} to port {p}")),
        },
    };
    if kind == "redirect" {
        return Stmt::Dnat(Dnat { addr: None, port });
    }
    match body.get("addr").and_then(Value::as_str).and_then(values::address) {
        Some(a) => Stmt::Dnat(Dnat { addr: Some(a), port }),
        None => Stmt::Unknown(format!("dnat to {}", body.get("addr").unwrap_or(&Value::Null))),
    }
}

fn match_stmt(m: &Value, named: &Named) -> Vec<Stmt> {
    let op = str_of(m, "op");
    let right = m.get("right").unwrap_or(&Value::Null);
    let (key, mut out) = match left(m.get("left").unwrap_or(&Value::Null)) {
        Left::Implied(implied) => return implied,
        Left::Key(k, implied) => (k, implied),
        Left::Either(what) => return vec![Stmt::Either(what)],
        Left::Undecided(what) => return vec![Stmt::Undecided(what)],
    };
    match rhs(&key, op, right, named) {
        Ok((key, negate, set)) => out.push(Stmt::Match { key, negate, set }),
        Err(why) => out.push(Stmt::Undecided(why)),
    }
    out
}

/// The right side with the operator, as set membership.
fn rhs(key: &Key, op: &str, right: &Value, named: &Named) -> Result<(Key, bool, Tuples), String> {
    let bitfield = |f: Field| matches!(f, Field::CtState | Field::CtStatus | Field::TcpFlags);
    match (op, key) {
        ("in", Key::Field(f)) if bitfield(*f) && !is_set(right) => {
            // Any of the bits set: (value & bits) != 0.
            let b = bits(*f, right).ok_or_else(|| format!("flags {right}"))?;
            Ok((Key::Masked(*f, b), true, vec![vec![Elem::Range(0, 0)]]))
        }
        ("==" | "in" | "!=", _) => {
            let set = elements(key, right, named)?;
            Ok((key.clone(), op == "!=", set))
        }
        ("<" | "<=" | ">" | ">=", Key::Field(f) | Key::Masked(f, _)) => {
            let v = scalar(*f, right).ok_or_else(|| format!("comparison with {right}"))?;
            let range = match op {
                "<" if v == 0 => return Ok((key.clone(), false, Vec::new())),
                "<" => (0, v - 1),
                "<=" => (0, v),
                ">" => (v.saturating_add(1), u128::MAX),
                _ => (v, u128::MAX),
            };
            Ok((key.clone(), false, vec![vec![Elem::Range(range.0, range.1)]]))
        }
        _ => Err(format!("operator `{op}`")),
    }
}

fn is_set(v: &Value) -> bool {
    v.get("set").is_some() || v.as_str().is_some_and(|s| s.starts_with('@'))
}

fn scalar(field: Field, v: &Value) -> Option<u128> {
    match v {
        Value::Number(n) => n.as_u64().map(u128::from),
        Value::String(s) => values::scalar(field, s),
        Value::Bool(b) => Some(u128::from(*b)),
        Value::Array(_) => bits(field, v),
        _ => None,
    }
}

/// The elements a right side stands for, as tuples over the key's fields.
fn elements(key: &Key, right: &Value, named: &Named) -> Result<Tuples, String> {
    let fields = key.fields();
    if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
        if named.dynamic.contains(name) {
            return Err(format!("set @{name}, which rules fill from packets"));
        }
        let elems = named.sets.get(name).ok_or_else(|| format!("set @{name} not listed"))?;
        return elems.iter().map(|e| tuple(&fields, e)).collect();
    }
    if let Some(Value::Array(list)) = right.get("set") {
        return list.iter().map(|e| tuple(&fields, e)).collect();
    }
    Ok(vec![tuple(&fields, right)?])
}

/// One element: a scalar, range, prefix or concatenation.
pub(super) fn tuple(fields: &[Field], e: &Value) -> Result<Vec<Elem>, String> {
    let e = e.get("elem").and_then(|x| x.get("val")).unwrap_or(e);
    if let Some(Value::Array(parts)) = e.get("concat") {
        if parts.len() != fields.len() {
            return Err(format!("element {e} does not fit the key"));
        }
        return fields.iter().zip(parts).map(|(f, p)| elem(*f, p)).collect();
    }
    match fields {
        [f] => Ok(vec![elem(*f, e)?]),
        // A merged raw load compares one number: source port, then destination port.
        [Field::Sport, Field::Dport] if e.is_u64() => {
            let v = e.as_u64().unwrap_or(0);
            Ok(vec![
                Elem::Range(u128::from(v >> 16), u128::from(v >> 16)),
                Elem::Range(u128::from(v & 0xffff), u128::from(v & 0xffff)),
            ])
        }
        _ => Err(format!("element {e} does not fit the key")),
    }
}

fn elem(field: Field, v: &Value) -> Result<Elem, String> {
    if values::is_name(field) {
        return v.as_str().map(|s| Elem::Name(s.to_string())).ok_or_else(|| format!("interface {v}"));
    }
    if let Some(p) = v.get("prefix") {
        let len = p.get("len").and_then(Value::as_u64).and_then(|l| u32::try_from(l).ok());
        let addr = p.get("addr").and_then(Value::as_str);
        return addr
            .zip(len)
            .and_then(|(a, l)| values::prefix(a, l))
            .map(|(lo, hi)| Elem::Range(lo, hi))
            .ok_or_else(|| format!("prefix {v}"));
    }
    if let Some(Value::Array(r)) = v.get("range")
        && let [a, b] = r.as_slice()
    {
        let (lo, hi) = scalar(field, a).zip(scalar(field, b)).ok_or_else(|| format!("range {v}"))?;
        return Ok(Elem::Range(lo.min(hi), lo.max(hi)));
    }
    scalar(field, v).map(|x| Elem::Range(x, x)).ok_or_else(|| format!("value {v}"))
}

fn vmap(body: &Value, named: &Named) -> Vec<Stmt> {
    let (key, mut out) = match left(body.get("key").unwrap_or(&Value::Null)) {
        Left::Key(k, implied) => (k, implied),
        Left::Either(w) | Left::Undecided(w) => return vec![Stmt::Unknown(format!("verdict map on {w}"))],
        Left::Implied(_) => return vec![Stmt::Unknown("verdict map on a header field".into())],
    };
    let data = body.get("data").unwrap_or(&Value::Null);
    let pairs: &[Value] = match data.as_str().and_then(|s| s.strip_prefix('@')) {
        Some(name) if named.dynamic.contains(name) => {
            out.push(Stmt::Unknown(format!("verdict map @{name}, which rules fill from packets")));
            return out;
        }
        Some(name) => named.maps.get(name).copied().unwrap_or(&[]),
        None => data.get("set").and_then(Value::as_array).map_or(&[], Vec::as_slice),
    };
    let fields = key.fields();
    let mut entries = Vec::new();
    for pair in pairs {
        let parsed = pair.as_array().and_then(|p| match p.as_slice() {
            [k, v] => Some((tuple(&fields, k).ok()?, verdict(v)?)),
            _ => None,
        });
        match parsed {
            Some(entry) => entries.push(entry),
            None => {
                out.push(Stmt::Unknown(format!("verdict map entry {pair}")));
                return out;
            }
        }
    }
    out.push(Stmt::Vmap { key, entries });
    out
}

fn verdict(v: &Value) -> Option<Verdict> {
    let (k, body) = v.as_object()?.iter().next()?;
    Some(match k.as_str() {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "reject" => Verdict::Reject,
        "continue" => Verdict::Continue,
        "return" => Verdict::Return,
        "jump" => Verdict::Jump(str_of(body, "target").into()),
        "goto" => Verdict::Goto(str_of(body, "target").into()),
        _ => return None,
    })
}
