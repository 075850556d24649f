//! What `nft --debug=netlink list ruleset` shows of each rule's kernel
//! bytecode, read for one purpose: undoing where nft's listing (text and
//! JSON alike) says something else than the bytecode the kernel runs.
//! Both cases below were found by the kernel property test
//! (`agent/tests/firewall_kernel.rs`); the second is nft compiling a rule
//! wrongly, so only the bytecode tells the truth.
//!
//! nft (1.0.6, and its JSON output alike) lists the bytecode `cmp lt A;
//! cmp gt B` on one field, which matches B < x < A (what `tcp dport < 10
//! tcp dport > 5` loads), as `tcp dport != 10-5`, the form of the `range
//! neq` instruction, which matches x < A or x > B. Read as listed, a drop
//! rule `tcp dport < 5 tcp dport > 10 drop`, which drops nothing, would seem
//! to drop every port but 5-10: a false pass. The listing alone cannot tell
//! the two apart; the bytecode can.
//!
//! It is worse than that: `tcp sport < 80 th dport > 1` is listed as
//! `tcp dport != 80-1`, the first field lost. So a listed `!=` range in a
//! rule whose bytecode holds such a pair is rewritten into the two
//! comparisons, on the fields the bytecode loads.
//!
//! And nft compiles `tcp sport != 53 tcp dport != 1` into one compare of
//! both ports, which matches when either differs, while listing the two
//! matches as written (which match only when both differ); an accept rule
//! of that form admits more than its listing says. Such a pair is read as
//! the kernel runs it ([`unmerge`]).
//!
//! The debug listing is nft's and not a stable interface, so it is read
//! tolerantly: a rule whose bytecode is missing or unclear keeps its
//! ambiguous matches undecided, never read the way that could pass.

use std::collections::HashMap;

use serde_json::{Value, json};

/// What matters of one rule's bytecode.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Code {
    /// Each `cmp lt` followed (after a load) by `cmp gt`, in order: the
    /// fields the two compared, as nft JSON payload expressions (`None`
    /// for a load not decoded here).
    lt_gt: Vec<(Option<Value>, Option<Value>)>,
    /// `range neq` instructions.
    range_neq: usize,
    /// `cmp neq` on one load spanning two fields: the two fields.
    neq_merged: Vec<(Value, Value)>,
}

/// Rules by (family, table, chain, handle).
#[derive(Debug, Default)]
pub struct Bytecode {
    rules: HashMap<(String, String, String, u64), Code>,
}

/// The payload field a load reads, for the loads nft merges.
fn field(load: &str) -> Option<Value> {
    let (proto, field) = match load.split(" => ").next()?.trim() {
        "payload load 2b @ transport header + 0" => ("th", "sport"),
        "payload load 2b @ transport header + 2" => ("th", "dport"),
        "payload load 4b @ network header + 12" => ("ip", "saddr"),
        "payload load 4b @ network header + 16" => ("ip", "daddr"),
        "payload load 16b @ network header + 8" => ("ip6", "saddr"),
        "payload load 16b @ network header + 24" => ("ip6", "daddr"),
        _ => return None,
    };
    Some(json!({"payload": {"protocol": proto, "field": field}}))
}

/// The two fields of a load nft made of two adjacent matches.
fn two_fields(load: &str) -> Option<(Value, Value)> {
    let (proto, a, b) = match load.split(" => ").next()?.trim() {
        "payload load 4b @ transport header + 0" => ("th", "sport", "dport"),
        "payload load 8b @ network header + 12" => ("ip", "saddr", "daddr"),
        "payload load 32b @ network header + 8" => ("ip6", "saddr", "daddr"),
        _ => return None,
    };
    let f = |name: &str| json!({"payload": {"protocol": proto, "field": name}});
    Some((f(a), f(b)))
}

/// Reads the debug listing: a header line `FAMILY TABLE CHAIN HANDLE [POS]`
/// then one `  [ instruction ]` line per instruction.
pub fn parse(text: &str) -> Bytecode {
    let mut out = Bytecode::default();
    let mut current: Option<(String, String, String, u64)> = None;
    // The last load, and the load before a `cmp lt` still waiting for its `cmp gt`.
    let (mut load, mut lt): (Option<String>, Option<Option<String>>) = (None, None);
    for line in text.lines() {
        let t = line.trim();
        if let Some(ins) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let Some(key) = &current else { continue };
            let code = out.rules.entry(key.clone()).or_default();
            let ins = ins.trim();
            // Every load (payload, meta, ct ...) replaces the register; any
            // other operation on it (bitwise, lookup) leaves no plain field.
            if ins.split_whitespace().nth(1) == Some("load") {
                load = Some(ins.to_string());
                continue;
            }
            if !ins.starts_with("cmp ") && !ins.starts_with("range ") {
                load = None;
            }
            if ins.starts_with("cmp gt")
                && let Some(first) = lt.take()
            {
                let decode = |l: &Option<String>| l.as_deref().and_then(field);
                code.lt_gt.push((decode(&first), decode(&load)));
            }
            if ins.starts_with("range neq") {
                code.range_neq += 1;
            }
            if ins.starts_with("cmp neq")
                && let Some(pair) = load.as_deref().and_then(two_fields)
            {
                code.neq_merged.push(pair);
            }
            lt = ins.starts_with("cmp lt").then(|| load.clone());
            continue;
        }
        (load, lt) = (None, None);
        let words: Vec<&str> = t.split_whitespace().collect();
        current = match words.as_slice() {
            [fam, table, chain, handle, ..] if !line.starts_with(char::is_whitespace) => {
                handle.parse().ok().map(|h| (fam.to_string(), table.to_string(), chain.to_string(), h))
            }
            _ => None,
        };
    }
    out
}

/// Rewrites, in the `nft -j` document, every `!=` match on a range that
/// may stand for `cmp lt A; cmp gt B`: into the two comparisons the
/// bytecode holds (on the fields it loads, which the listing may not even
/// name), or into an undecided marker (`custos-undecided`) when that
/// cannot be told.
pub fn correct(doc: &mut Value, code: Option<&Bytecode>) {
    let Some(items) = doc.get_mut("nftables").and_then(Value::as_array_mut) else { return };
    for rule in items.iter_mut().filter_map(|i| i.get_mut("rule")) {
        let key = (
            text(rule, "family"),
            text(rule, "table"),
            text(rule, "chain"),
            rule.get("handle").and_then(Value::as_u64).unwrap_or(u64::MAX),
        );
        let found = code.map(|c| c.rules.get(&key));
        let Some(exprs) = rule.get_mut("expr").and_then(Value::as_array_mut) else { continue };
        if let Some(Some(c)) = found {
            for (a, b) in &c.neq_merged {
                unmerge(exprs, a, b);
            }
        }
        let mut seen = 0;
        let mut out = Vec::with_capacity(exprs.len());
        for e in exprs.drain(..) {
            match merged_range(&e) {
                Some((a, b)) => {
                    out.extend(fix(&e, a, b, found, seen));
                    seen += 1;
                }
                None => out.push(e),
            }
        }
        *exprs = out;
    }
}

/// nft compiles `tcp sport != 53 tcp dport != 1` into one compare of both
/// ports, `(sport, dport) != (53, 1)`, which matches when either differs,
/// yet lists the two matches it was written as. Puts the meaning the kernel
/// runs back: one negated concatenation; undecided where the two listed
/// matches are not found.
fn unmerge(exprs: &mut Vec<Value>, a: &Value, b: &Value) {
    let same = |left: &Value, f: &Value| {
        let (p, q) = (&left["payload"], &f["payload"]);
        p["field"] == q["field"]
            && (p["protocol"] == q["protocol"]
                || (q["protocol"] == "th" && !matches!(p["protocol"].as_str(), Some("ip" | "ip6"))))
    };
    let find = |exprs: &[Value], f: &Value| {
        exprs.iter().position(|e| {
            let m = &e["match"];
            m["op"] == "!=" && same(&m["left"], f) && (m["right"].is_u64() || m["right"].is_string())
        })
    };
    match (find(exprs, a), find(exprs, b)) {
        (Some(i), Some(j)) if i != j => {
            let (first, second) = (exprs[i]["match"].clone(), exprs[j]["match"].clone());
            exprs[i] = json!({"match": {"op": "!=",
                "left": {"concat": [first["left"].clone(), second["left"].clone()]},
                "right": {"concat": [first["right"].clone(), second["right"].clone()]}}});
            exprs.remove(j);
        }
        // Listed as the raw load it is (`@th,0,32 != ...`): read right as it stands.
        _ if exprs
            .iter()
            .any(|e| e["match"]["op"] == "!=" && e["match"]["left"]["payload"].get("base").is_some()) => {}
        _ => {
            let why = "nft compiled two `!=` matches into one compare that it lists as two";
            exprs.insert(0, json!({"custos-undecided": why}));
        }
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The bounds of a `!=` match on a range, the form nft also lists merged
/// comparisons in.
fn merged_range(e: &Value) -> Option<(Value, Value)> {
    let m = e.get("match")?;
    let range = m.get("right")?.get("range")?.as_array()?;
    (m.get("op")?.as_str()? == "!=" && range.len() == 2).then(|| (range[0].clone(), range[1].clone()))
}

/// What the `index`-th `!=` range match `e` of its rule stands for.
/// `found`: `None` when no bytecode was read, `Some(None)` when this
/// rule's is missing.
fn fix(e: &Value, a: Value, b: Value, found: Option<Option<&Code>>, index: usize) -> Vec<Value> {
    let listed = format!("`!= {a}-{b}`");
    let undecided = |why: &str| vec![json!({"custos-undecided": format!("{listed} ({why})")})];
    let code = match found {
        None => {
            return undecided("nft lists `< A > B` and `!= A-B` alike, and the bytecode could not be read");
        }
        Some(None) => return undecided("the rule's bytecode was not listed"),
        Some(Some(c)) => c,
    };
    if code.lt_gt.is_empty() {
        return vec![e.clone()];
    }
    if code.range_neq > 0 {
        return undecided("nft lists `< A > B` and `!= A-B` alike, and the rule holds both");
    }
    let listed_proto = e["match"]["left"]["payload"]["protocol"].as_str().unwrap_or("th");
    // A transport field keeps the protocol the listing names (`tcp`).
    let named = |mut f: Value| {
        if f["payload"]["protocol"] == "th" && !matches!(listed_proto, "ip" | "ip6") {
            f["payload"]["protocol"] = json!(listed_proto);
        }
        f
    };
    match code.lt_gt.get(index) {
        Some((Some(first), Some(second))) => vec![
            json!({"match": {"op": "<", "left": named(first.clone()), "right": a}}),
            json!({"match": {"op": ">", "left": named(second.clone()), "right": b}}),
        ],
        _ => undecided("the fields nft merged into it could not be told"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft --debug=netlink list ruleset` of nft 1.0.6 for
    /// `tcp dport < 10 tcp dport > 5 accept`, `tcp dport != 5-10 accept` and
    /// `tcp sport < 80 th dport > 1 accept`.
    const LISTING: &str = "inet t c 2\n  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x00000006 ]\n  \
        [ payload load 2b @ transport header + 2 => reg 1 ]\n  [ cmp lt reg 1 0x00000a00 ]\n  \
        [ payload load 2b @ transport header + 2 => reg 1 ]\n  [ cmp gt reg 1 0x00000500 ]\n  \
        [ immediate reg 0 accept ]\n\ninet t c 3 2\n  [ meta load l4proto => reg 1 ]\n  \
        [ cmp eq reg 1 0x00000006 ]\n  [ payload load 2b @ transport header + 2 => reg 1 ]\n  \
        [ range neq reg 1 0x00000500 0x00000a00 ]\n  [ immediate reg 0 accept ]\n\n\
        inet t c 4 3\n  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x00000006 ]\n  \
        [ payload load 2b @ transport header + 0 => reg 1 ]\n  [ cmp lt reg 1 0x00005000 ]\n  \
        [ payload load 2b @ transport header + 2 => reg 1 ]\n  [ cmp gt reg 1 0x00000100 ]\n  \
        [ immediate reg 0 accept ]\n\ntable inet t {\n\tchain c {\n\t}\n}\n";

    fn doc(handle: u64, a: u64, b: u64) -> Value {
        json!({"nftables": [{"rule": {"family": "inet", "table": "t", "chain": "c", "handle": handle,
            "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                "right": {"range": [a, b]}}}, {"accept": null}]}}]})
    }

    fn exprs(d: &Value) -> &Vec<Value> {
        d["nftables"][0]["rule"]["expr"].as_array().unwrap()
    }

    fn compare(op: &str, field: &str, v: u64) -> Value {
        json!({"match": {"op": op, "left": {"payload": {"protocol": "tcp", "field": field}}, "right": v}})
    }

    #[test]
    fn the_bytecode_tells_a_listed_not_equal_range_from_two_comparisons() {
        let code = parse(LISTING);
        let mut merged = doc(2, 10, 5);
        correct(&mut merged, Some(&code));
        assert_eq!(exprs(&merged)[..2], [compare("<", "dport", 10), compare(">", "dport", 5)]);
        let mut real = doc(3, 5, 10);
        correct(&mut real, Some(&code));
        assert_eq!(exprs(&real)[0]["match"]["op"], "!=", "a real `range neq` stays");
        // Two fields merged into one listed match: the bytecode names both.
        let mut two = doc(4, 80, 1);
        correct(&mut two, Some(&code));
        assert_eq!(exprs(&two)[..2], [compare("<", "sport", 80), compare(">", "dport", 1)]);
    }

    #[test]
    fn two_not_equal_matches_compiled_into_one_compare_are_read_as_the_kernel_runs_them() {
        let listing = "inet t c 2\n  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x00000006 ]\n  \
            [ payload load 4b @ transport header + 0 => reg 1 ]\n  [ cmp neq reg 1 0x01003500 ]\n  \
            [ immediate reg 0 drop ]\n";
        let mut d = json!({"nftables": [{"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 2,
            "expr": [compare("!=", "sport", 53), compare("!=", "dport", 1), {"drop": null}]}}]});
        correct(&mut d, Some(&parse(listing)));
        let e = exprs(&d);
        assert_eq!(e.len(), 2, "{d}");
        assert_eq!(e[0]["match"]["left"]["concat"][1]["payload"]["field"], "dport");
        assert_eq!(e[0]["match"]["right"], json!({"concat": [53, 1]}));
    }

    #[test]
    fn without_the_bytecode_a_listed_not_equal_range_is_undecided() {
        for (handle, code) in [(2, None), (7, Some(parse(LISTING)))] {
            let mut d = doc(handle, 5, 10);
            correct(&mut d, code.as_ref());
            assert!(exprs(&d)[0]["custos-undecided"].as_str().unwrap().contains("`!= 5-10`"), "{d}");
        }
    }

    /// nft 1.0.6 for `tcp dport != 1 th sport != 1 ct state != established
    /// accept`: the `cmp neq` on the conntrack state is not a third port.
    #[test]
    fn a_compare_pairs_with_its_own_load() {
        let listing = "inet t0 b0 2\n  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x00000006 ]\n  \
            [ payload load 4b @ transport header + 0 => reg 1 ]\n  [ cmp neq reg 1 0x01000100 ]\n  \
            [ ct load state => reg 1 ]\n  [ cmp neq reg 1 0x00000002 ]\n  [ immediate reg 0 accept ]\n";
        let code = parse(listing);
        let c = code.rules.values().next().unwrap();
        assert_eq!(c.neq_merged.len(), 1);
    }
}
