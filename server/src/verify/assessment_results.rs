//! Checks `assessment-results.json` against the bundle: every observation's
//! evidence is a record of the bundle, of the observed host, with the digest,
//! collection time and signed status the observation states; every finding
//! names the same hosts with the same standings as `evidence.csv` has for its
//! requirement, its status follows from them by the format's rule (never
//! satisfied on undecided evidence, [`finding_state`]) and it relates the
//! observation of every signed check the CSV lists; the document pins the
//! bundle's `evidence.csv` by its SHA-256. Its own digest is checked against
//! the manifest with every other file's.
//!
//! The document is untrusted input: anything missing or malformed is a
//! failure naming the file, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::RecInfo;
use super::report::Failure;
use crate::export::assessment_results::{
    NS, PROP_AGENT, PROP_CHECK, PROP_DIGEST, PROP_HOST_STANDING, PROP_REQUIREMENT, PROP_SEQ, PROP_STATUS,
    control_token, finding_state, host_uuid,
};
use crate::export::format::{
    ASSESSMENT_RESULTS, BundlePath, CSV_HEADER, EVIDENCE_CSV, record_path, undefuse,
};

/// What the document held, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OscalSummary {
    pub observations: usize,
    pub findings: usize,
    pub risks: usize,
}

/// An observation as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    agent: String,
    check: String,
    seq: u64,
    status: String,
}

/// One `evidence.csv` row's part the findings are checked against.
#[derive(Debug, Clone, Default)]
struct CsvHost {
    standing: String,
    /// `(check, status, seq)` of each signed check cell.
    signed: Vec<(String, String, u64)>,
}

fn fail(reason: String) -> Failure {
    Failure::Oscal { file: ASSESSMENT_RESULTS.into(), reason }
}

fn items<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// The values of the Custos properties named `name`.
fn props<'v>(v: &'v Value, name: &str) -> Vec<&'v str> {
    items(v, "props")
        .iter()
        .filter(|p| text(p, "name") == Some(name) && text(p, "ns") == Some(NS))
        .filter_map(|p| text(p, "value"))
        .collect()
}

fn one_prop<'v>(v: &'v Value, name: &str) -> Result<&'v str, String> {
    match props(v, name).as_slice() {
        [one] => Ok(one),
        [] => Err(format!("has no {name} property")),
        _ => Err(format!("has more than one {name} property")),
    }
}

fn results(doc: &Value) -> &[Value] {
    items(&doc["assessment-results"], "results")
}

/// The records (agent, seq) the observations name, so the record pass keeps
/// their check statuses. Anything unreadable is left to [`check`].
pub(crate) fn named_records(bytes: &[u8]) -> BTreeSet<(String, u64)> {
    let Ok(doc) = serde_json::from_slice::<Value>(bytes) else { return BTreeSet::new() };
    let mut out = BTreeSet::new();
    for r in results(&doc) {
        for o in items(r, "observations") {
            for e in items(o, "relevant-evidence") {
                if let Some(BundlePath::Record { agent, seq }) = text(e, "href").map(BundlePath::parse) {
                    out.insert((agent, seq));
                }
            }
        }
    }
    out
}

/// `evidence.csv` by requirement and host; `None` when it cannot be read
/// (the CSV check reports why).
fn csv_standings(bytes: &[u8]) -> Option<BTreeMap<String, BTreeMap<String, CsvHost>>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    if !reader.headers().ok()?.iter().eq(CSV_HEADER.iter().copied()) {
        return None;
    }
    let mut out: BTreeMap<String, BTreeMap<String, CsvHost>> = BTreeMap::new();
    for record in reader.records() {
        let record = record.ok()?;
        let cell = |i: usize| undefuse(record.get(i).unwrap_or("")).to_string();
        let mut host = CsvHost { standing: cell(5), signed: Vec::new() };
        let checks = cell(9);
        for part in checks.split(';').filter(|p| !p.is_empty()) {
            let (check, ev) = part.split_once('=')?;
            if ev == "missing" {
                continue;
            }
            let (status, seq) = ev.split_once('@')?;
            host.signed.push((check.to_string(), status.to_string(), seq.parse().ok()?));
        }
        out.entry(cell(1)).or_default().insert(cell(3), host);
    }
    Some(out)
}

fn same_time(claimed: &str, signed: i64) -> bool {
    OffsetDateTime::parse(claimed, &Rfc3339).is_ok_and(|t| t.unix_timestamp() == signed)
}

/// Checks one observation; returns what it observes when it holds together.
fn observation(
    o: &Value,
    hosts: &BTreeMap<String, String>,
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    failures: &mut Vec<Failure>,
) -> Option<Observed> {
    let uuid = text(o, "uuid").unwrap_or("(no uuid)");
    let mut bad = |reason: String| failures.push(fail(format!("observation {uuid} {reason}")));
    let subject = items(o, "subjects").iter().find(|s| text(s, "type") == Some("inventory-item"));
    let Some(agent) = subject.and_then(|s| text(s, "subject-uuid")).and_then(|u| hosts.get(u)) else {
        bad("has no subject that is an inventory item of the document".into());
        return None;
    };
    let (check, status, seq) =
        match (one_prop(o, PROP_CHECK), one_prop(o, PROP_STATUS), one_prop(o, PROP_SEQ)) {
            (Ok(c), Ok(s), Ok(q)) => match q.parse::<u64>() {
                Ok(q) => (c, s, q),
                Err(_) => {
                    bad(format!("has record-seq {q:?}, not a number"));
                    return None;
                }
            },
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                bad(e);
                return None;
            }
        };
    let evidence = items(o, "relevant-evidence");
    if evidence.is_empty() {
        bad("has no relevant-evidence".into());
    }
    for e in evidence {
        let href = text(e, "href").unwrap_or("");
        let (e_agent, e_seq) = match BundlePath::parse(href) {
            BundlePath::Record { agent, seq } => (agent, seq),
            _ => {
                bad(format!("has relevant-evidence {href:?}, not a record of the bundle"));
                continue;
            }
        };
        if e_agent != *agent || e_seq != seq {
            bad(format!("observes {agent} seq {seq}, its evidence is {href}"));
            continue;
        }
        let Some(rec) = records.get(agent).and_then(|m| m.get(&seq)) else {
            bad(format!("names {href}, which is not in the bundle (or could not be read)"));
            continue;
        };
        let digest = format!("sha256:{}", hex::encode(rec.digest));
        match one_prop(e, PROP_DIGEST) {
            Ok(d) if d == digest => {}
            Ok(d) => bad(format!("gives {href} digest {d}, the record's is {digest}")),
            Err(reason) => bad(format!("evidence {href} {reason}")),
        }
        let collected = text(o, "collected").unwrap_or("");
        if !same_time(collected, rec.collected_at) {
            bad(format!(
                "was collected {collected:?}, {href} was signed as collected at unix {}",
                rec.collected_at
            ));
        }
        match rec.statuses.as_ref().map(|s| s.get(check)) {
            None => bad(format!("names {href}, whose checks could not be read")),
            Some(None) => bad(format!("observes check {check}, which {href} does not carry")),
            Some(Some(s)) if s.as_str() != status => {
                bad(format!("says check {check} is {status}, {href} signed {s}"))
            }
            Some(Some(_)) => {}
        }
    }
    Some(Observed { agent: agent.clone(), check: check.into(), seq, status: status.into() })
}

/// Checks one finding against the CSV's rows of its requirement; returns its requirement.
fn finding(
    f: &Value,
    observed: &BTreeMap<String, Observed>,
    risks: &BTreeSet<&str>,
    csv: Option<&BTreeMap<String, BTreeMap<String, CsvHost>>>,
    failures: &mut Vec<Failure>,
) -> Option<String> {
    let uuid = text(f, "uuid").unwrap_or("(no uuid)");
    let requirement = match one_prop(f, PROP_REQUIREMENT) {
        Ok(r) => r.to_string(),
        Err(reason) => {
            failures.push(fail(format!("finding {uuid} {reason}")));
            return None;
        }
    };
    let mut bad = |reason: String| failures.push(fail(format!("finding for {requirement} {reason}")));
    let target = &f["target"];
    if text(target, "target-id") != Some(control_token(&requirement).as_str()) {
        bad(format!("targets {:?}, not {:?}", text(target, "target-id"), control_token(&requirement)));
    }
    let state = text(&target["status"], "state").unwrap_or("(none)");
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for hs in props(f, PROP_HOST_STANDING) {
        match hs.split_once(' ') {
            Some((host, standing)) => {
                if claimed.insert(host.to_string(), standing.to_string()).is_some() {
                    bad(format!("names host {host} twice"));
                }
            }
            None => bad(format!("has host-standing {hs:?}, not \"<host> <standing>\"")),
        }
    }
    let related: BTreeSet<&str> =
        items(f, "related-observations").iter().filter_map(|r| text(r, "observation-uuid")).collect();
    for r in &related {
        if !observed.contains_key(*r) {
            bad(format!("relates observation {r}, which the document does not hold"));
        }
    }
    for r in items(f, "related-risks").iter().filter_map(|r| text(r, "risk-uuid")) {
        if !risks.contains(r) {
            bad(format!("relates risk {r}, which the document does not hold"));
        }
    }
    let Some(csv) = csv else { return Some(requirement) };
    let Some(rows) = csv.get(&requirement) else {
        bad(format!("has no rows in {EVIDENCE_CSV}"));
        return Some(requirement);
    };
    for (host, row) in rows {
        match claimed.get(host) {
            None => bad(format!("does not name host {host}, which {EVIDENCE_CSV} has on it")),
            Some(s) if *s != row.standing => {
                bad(format!("says host {host} is {s}, {EVIDENCE_CSV} says {}", row.standing))
            }
            Some(_) => {}
        }
    }
    for host in claimed.keys().filter(|h| !rows.contains_key(*h)) {
        bad(format!("names host {host}, which {EVIDENCE_CSV} does not have on it"));
    }
    let (expected, _) = finding_state(rows.values().map(|r| r.standing.as_str()));
    if state != expected {
        let standings: Vec<String> = rows.iter().map(|(h, r)| format!("{h} {}", r.standing)).collect();
        bad(format!(
            "is {state}, but the standings in {EVIDENCE_CSV} ({}) make it {expected}",
            standings.join(", ")
        ));
    }
    // What the related observations say, by (host, check, seq).
    let related_obs: BTreeMap<(&str, &str, u64), &str> = related
        .iter()
        .filter_map(|r| observed.get(*r))
        .map(|o| ((o.agent.as_str(), o.check.as_str(), o.seq), o.status.as_str()))
        .collect();
    for (host, row) in rows {
        for (check, status, seq) in &row.signed {
            match related_obs.get(&(host.as_str(), check.as_str(), *seq)) {
                None => bad(format!(
                    "relates no observation of check {check} on {host} ({}), which {EVIDENCE_CSV} lists",
                    record_path(host, *seq)
                )),
                Some(o) if o != status => {
                    bad(format!("relates check {check} on {host} as {o}, {EVIDENCE_CSV} says {status}"))
                }
                Some(_) => {}
            }
        }
    }
    Some(requirement)
}

/// Checks the document; returns what it holds and the failures.
pub(crate) fn check(
    bytes: &[u8],
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    csv: Option<(&[u8], &str)>,
) -> (OscalSummary, Vec<Failure>) {
    let mut failures = Vec::new();
    let mut summary = OscalSummary::default();
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return (summary, vec![fail(format!("not JSON: {e}"))]),
    };
    let ar = &doc["assessment-results"];
    if !ar.is_object() {
        return (summary, vec![fail("has no assessment-results object".into())]);
    }
    if !text(&ar["metadata"], "oscal-version").is_some_and(|v| v.starts_with("1.")) {
        failures.push(fail("metadata has no OSCAL 1.x oscal-version".into()));
    }
    if results(&doc).is_empty() {
        failures.push(fail("holds no results".into()));
    }

    // The table the document summarises, pinned by digest.
    let pinned: Vec<&str> = items(&ar["back-matter"], "resources")
        .iter()
        .flat_map(|r| items(r, "rlinks"))
        .filter(|l| text(l, "href") == Some(EVIDENCE_CSV))
        .flat_map(|l| items(l, "hashes"))
        .filter(|h| text(h, "algorithm") == Some("SHA-256"))
        .filter_map(|h| text(h, "value"))
        .collect();
    let csv_rows = match csv {
        Some((csv_bytes, digest)) => {
            match pinned.as_slice() {
                [] => failures.push(fail(format!("does not pin {EVIDENCE_CSV} by SHA-256"))),
                list => {
                    for p in list.iter().filter(|p| !p.eq_ignore_ascii_case(digest)) {
                        failures.push(fail(format!(
                            "pins {EVIDENCE_CSV} with SHA-256 {p}, the bundle's is {digest}"
                        )));
                    }
                }
            }
            let rows = csv_standings(csv_bytes);
            if rows.is_none() {
                failures.push(fail(format!(
                    "its findings cannot be compared with {EVIDENCE_CSV}, which could not be read"
                )));
            }
            rows
        }
        None => None,
    };

    for result in results(&doc) {
        // Hosts: inventory items whose UUID is the one the agent id gives.
        let mut hosts: BTreeMap<String, String> = BTreeMap::new();
        for item in items(&result["local-definitions"], "inventory-items") {
            let uuid = text(item, "uuid").unwrap_or("(no uuid)");
            match one_prop(item, PROP_AGENT) {
                Ok(agent) if host_uuid(agent).to_string() == uuid => {
                    hosts.insert(uuid.to_string(), agent.to_string());
                }
                Ok(agent) => failures.push(fail(format!(
                    "inventory item {uuid} is agent {agent}, whose UUID is {}",
                    host_uuid(agent)
                ))),
                Err(reason) => failures.push(fail(format!("inventory item {uuid} {reason}"))),
            }
        }
        let mut uuids = BTreeSet::new();
        let mut duplicate = |u: Option<&str>, failures: &mut Vec<Failure>| {
            if let Some(u) = u
                && !uuids.insert(u.to_string())
            {
                failures.push(fail(format!("uses UUID {u} twice")));
            }
        };
        let mut observed: BTreeMap<String, Observed> = BTreeMap::new();
        for o in items(result, "observations") {
            summary.observations += 1;
            duplicate(text(o, "uuid"), &mut failures);
            if let Some(seen) = observation(o, &hosts, records, &mut failures)
                && let Some(u) = text(o, "uuid")
            {
                observed.insert(u.to_string(), seen);
            }
        }
        let mut risk_ids = BTreeSet::new();
        for r in items(result, "risks") {
            summary.risks += 1;
            duplicate(text(r, "uuid"), &mut failures);
            risk_ids.extend(text(r, "uuid"));
            for o in items(r, "related-observations").iter().filter_map(|o| text(o, "observation-uuid")) {
                if !observed.contains_key(o) {
                    let title = text(r, "title").unwrap_or("(untitled)");
                    failures.push(fail(format!(
                        "risk {title:?} relates observation {o}, which the document does not hold"
                    )));
                }
            }
        }
        let mut found = BTreeSet::new();
        for f in items(result, "findings") {
            summary.findings += 1;
            duplicate(text(f, "uuid"), &mut failures);
            if let Some(req) = finding(f, &observed, &risk_ids, csv_rows.as_ref(), &mut failures)
                && !found.insert(req.clone())
            {
                failures.push(fail(format!("has two findings for {req}")));
            }
        }
        if let Some(rows) = &csv_rows {
            for req in rows.keys().filter(|r| !found.contains(*r)) {
                failures.push(fail(format!("has no finding for {req}, which {EVIDENCE_CSV} has rows for")));
            }
        }
    }
    (summary, failures)
}
