//! Checks `assessment-results.json` against the bundle: every observation's
//! evidence is a record of the bundle, of the observed host, with the digest,
//! collection time and signed status the observation states; every finding
//! names the same hosts with the same standings as `evidence.csv` has for its
//! requirement, its status follows from them by the format's rule (never
//! satisfied on undecided evidence, [`required_state`]) and it relates the
//! observation of every signed check the CSV lists; the document pins the
//! bundle's `evidence.csv` by its SHA-256. Its own digest is checked against
//! the manifest with every other file's.
//!
//! The document is untrusted input: anything missing or malformed is a
//! failure naming the file, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::RecInfo;
use super::csv::{CheckCell, Parsed};
use super::limits::{Site, buffered};
use super::read::BundleError;
use super::report::{Capped, Failure, excerpt};
use crate::bundle::{ASSESSMENT_RESULTS, BundlePath, EVIDENCE_CSV, record_path};
use crate::oscal_ids::{
    NS, PROP_AGENT, PROP_CHECK, PROP_DIGEST, PROP_HOST_STANDING, PROP_REQUIREMENT, PROP_SEQ, PROP_STATUS,
    control_token, host_uuid,
};

/// What the document held, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OscalSummary {
    pub observations: usize,
    pub findings: usize,
    pub risks: usize,
}

/// The state the format requires of a finding whose hosts stand as
/// `standings` (`evidence.csv`'s values): `satisfied` only when some host
/// is satisfied and none is anything but satisfied or not applicable.
/// Decided here, not by the exporter's code, so that a wrong rule there is
/// caught rather than repeated.
fn required_state<'s>(standings: impl IntoIterator<Item = &'s str>) -> &'static str {
    let standings: Vec<&str> = standings.into_iter().collect();
    let only_settled = standings.iter().all(|s| matches!(*s, "satisfied" | "not_applicable"));
    if only_settled && standings.contains(&"satisfied") { "satisfied" } else { "not-satisfied" }
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

/// The document as it streams from `body`: `Ok(Err(why))` when it is not
/// JSON, `Err` only for a limit.
pub(crate) fn parse(body: impl Read, site: &Site) -> Result<Result<Value, String>, BundleError> {
    match serde_json::from_reader(buffered(body)) {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match site.tripped() {
            Some(limit) => Err(limit),
            None if e.is_io() => Err(site.error(e)),
            None => Ok(Err(format!("not JSON: {}", excerpt(&e.to_string())))),
        },
    }
}

/// Only what [`named_records`] reads of the document: everything else is
/// skipped as it streams, never built.
#[derive(serde::Deserialize)]
struct Hrefs {
    #[serde(rename = "assessment-results")]
    ar: HrefsResults,
}

#[derive(serde::Deserialize)]
struct HrefsResults {
    #[serde(default)]
    results: Vec<HrefsResult>,
}

#[derive(serde::Deserialize)]
struct HrefsResult {
    #[serde(default)]
    observations: Vec<HrefsObservation>,
}

#[derive(serde::Deserialize)]
struct HrefsObservation {
    #[serde(default, rename = "relevant-evidence")]
    evidence: Vec<HrefsEvidence>,
}

#[derive(serde::Deserialize)]
struct HrefsEvidence {
    href: Option<String>,
}

/// The records (agent, seq) the observations of the document streaming
/// from `body` name, so the record pass keeps their check statuses. A
/// document not of this shape names none (its check says why); `Err` only
/// for a limit.
pub(crate) fn named_records(body: impl Read, site: &Site) -> Result<BTreeSet<(String, u64)>, BundleError> {
    let doc: Hrefs = match serde_json::from_reader(buffered(body)) {
        Ok(doc) => doc,
        Err(e) => {
            return match site.tripped() {
                Some(limit) => Err(limit),
                None if e.is_io() => Err(site.error(e)),
                None => Ok(BTreeSet::new()),
            };
        }
    };
    let hrefs = doc.ar.results.into_iter().flat_map(|r| r.observations).flat_map(|o| o.evidence);
    Ok(hrefs
        .filter_map(|e| match BundlePath::parse(e.href.as_deref()?) {
            BundlePath::Record { agent, seq } => Some((agent, seq)),
            _ => None,
        })
        .collect())
}

/// `evidence.csv` by requirement and host; `None` when it could not be read
/// whole (the CSV check reports why).
fn csv_standings(csv: &Parsed) -> Option<BTreeMap<String, BTreeMap<String, CsvHost>>> {
    if !csv.complete {
        return None;
    }
    let mut out: BTreeMap<String, BTreeMap<String, CsvHost>> = BTreeMap::new();
    for row in &csv.rows {
        let signed = row
            .checks
            .iter()
            .filter_map(|(check, c)| match c {
                CheckCell::Signed { status, seq } => Some((check.clone(), status.clone(), *seq)),
                CheckCell::Missing => None,
            })
            .collect();
        let host = CsvHost { standing: row.status.clone(), signed };
        out.entry(row.requirement.clone()).or_default().insert(row.host.clone(), host);
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
    failures: &mut Capped,
) -> Option<Observed> {
    let uuid = excerpt(text(o, "uuid").unwrap_or("(no uuid)"));
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
                    bad(format!("has record-seq {:?}, not a number", excerpt(q)));
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
    let collected = text(o, "collected").unwrap_or("");
    let observed = Observed { agent: agent.clone(), check: check.into(), seq, status: status.into() };
    for e in evidence {
        evidence_holds(e, &observed, collected, records, &mut bad);
    }
    Some(observed)
}

/// One piece of an observation's evidence: the record it observes, with
/// the record's digest, collection time and signed status.
fn evidence_holds(
    e: &Value,
    o: &Observed,
    collected: &str,
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    bad: &mut impl FnMut(String),
) {
    let href = text(e, "href").unwrap_or("");
    let shown = excerpt(href);
    let (agent, check, status) = (excerpt(&o.agent), excerpt(&o.check), excerpt(&o.status));
    match BundlePath::parse(href) {
        BundlePath::Record { agent: a, seq } if a == o.agent && seq == o.seq => {}
        BundlePath::Record { .. } => {
            return bad(format!("observes {agent} seq {}, its evidence is {shown}", o.seq));
        }
        _ => return bad(format!("has relevant-evidence {shown:?}, not a record of the bundle")),
    }
    let Some(rec) = records.get(&o.agent).and_then(|m| m.get(&o.seq)) else {
        return bad(format!("names {shown}, which is not in the bundle (or could not be read)"));
    };
    let digest = format!("sha256:{}", hex::encode(rec.digest));
    match one_prop(e, PROP_DIGEST) {
        Ok(d) if d == digest => {}
        Ok(d) => bad(format!("gives {shown} digest {}, the record's is {digest}", excerpt(d))),
        Err(reason) => bad(format!("evidence {shown} {reason}")),
    }
    if !same_time(collected, rec.collected_at) {
        bad(format!(
            "was collected {:?}, {shown} was signed as collected at unix {}",
            excerpt(collected),
            rec.collected_at
        ));
    }
    match rec.statuses.as_ref().map(|s| s.get(&o.check)) {
        None => bad(format!("names {shown}, whose checks could not be read")),
        Some(None) => bad(format!("observes check {check}, which {shown} does not carry")),
        Some(Some(s)) if s.as_str() != o.status => {
            bad(format!("says check {check} is {status}, {shown} signed {s}"))
        }
        Some(Some(_)) => {}
    }
}

/// Checks one finding against the CSV's rows of its requirement; returns its requirement.
fn finding(
    f: &Value,
    observed: &BTreeMap<String, Observed>,
    risks: &BTreeSet<&str>,
    csv: Option<&BTreeMap<String, BTreeMap<String, CsvHost>>>,
    failures: &mut Capped,
) -> Option<String> {
    let uuid = excerpt(text(f, "uuid").unwrap_or("(no uuid)"));
    let requirement = match one_prop(f, PROP_REQUIREMENT) {
        Ok(r) => r.to_string(),
        Err(reason) => {
            failures.push(fail(format!("finding {uuid} {reason}")));
            return None;
        }
    };
    let shown = excerpt(&requirement);
    let mut bad = |reason: String| failures.push(fail(format!("finding for {shown} {reason}")));
    let target = &f["target"];
    let token = control_token(&requirement);
    if text(target, "target-id") != Some(token.as_str()) {
        let found = text(target, "target-id").map(excerpt);
        bad(format!("targets {found:?}, not {:?}", excerpt(&token)));
    }
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for hs in props(f, PROP_HOST_STANDING) {
        match hs.split_once(' ') {
            Some((host, standing)) => {
                if claimed.insert(host.to_string(), standing.to_string()).is_some() {
                    bad(format!("names host {} twice", excerpt(host)));
                }
            }
            None => bad(format!("has host-standing {:?}, not \"<host> <standing>\"", excerpt(hs))),
        }
    }
    let related: BTreeSet<&str> =
        items(f, "related-observations").iter().filter_map(|r| text(r, "observation-uuid")).collect();
    for r in related.iter().filter(|r| !observed.contains_key(**r)) {
        bad(format!("relates observation {}, which the document does not hold", excerpt(r)));
    }
    for r in items(f, "related-risks").iter().filter_map(|r| text(r, "risk-uuid")) {
        if !risks.contains(r) {
            bad(format!("relates risk {}, which the document does not hold", excerpt(r)));
        }
    }
    let Some(csv) = csv else { return Some(requirement) };
    let Some(rows) = csv.get(&requirement) else {
        bad(format!("has no rows in {EVIDENCE_CSV}"));
        return Some(requirement);
    };
    let state = text(&target["status"], "state").unwrap_or("(none)");
    let related_obs: BTreeMap<(&str, &str, u64), &str> = related
        .iter()
        .filter_map(|r| observed.get(*r))
        .map(|o| ((o.agent.as_str(), o.check.as_str(), o.seq), o.status.as_str()))
        .collect();
    against_csv(rows, &claimed, state, &related_obs, &mut bad);
    Some(requirement)
}

/// A finding against its requirement's rows in the CSV: the same hosts with
/// the same standings, the state they make, and an observation related for
/// every signed check. `related` is what the related observations say, by
/// (host, check, seq).
fn against_csv(
    rows: &BTreeMap<String, CsvHost>,
    claimed: &BTreeMap<String, String>,
    state: &str,
    related: &BTreeMap<(&str, &str, u64), &str>,
    bad: &mut impl FnMut(String),
) {
    for (host, row) in rows {
        let (shown, standing) = (excerpt(host), excerpt(&row.standing));
        match claimed.get(host) {
            None => bad(format!("does not name host {shown}, which {EVIDENCE_CSV} has on it")),
            Some(s) if *s != row.standing => {
                bad(format!("says host {shown} is {}, {EVIDENCE_CSV} says {standing}", excerpt(s)))
            }
            Some(_) => {}
        }
    }
    for host in claimed.keys().filter(|h| !rows.contains_key(*h)) {
        bad(format!("names host {}, which {EVIDENCE_CSV} does not have on it", excerpt(host)));
    }
    let expected = required_state(rows.values().map(|r| r.standing.as_str()));
    if state != expected {
        let standings: Vec<String> = rows.iter().map(|(h, r)| format!("{h} {}", r.standing)).collect();
        bad(format!(
            "is {}, but the standings in {EVIDENCE_CSV} ({}) make it {expected}",
            excerpt(state),
            excerpt(&standings.join(", "))
        ));
    }
    for (host, row) in rows {
        for (check, status, seq) in &row.signed {
            let (h, c, st) = (excerpt(host), excerpt(check), excerpt(status));
            match related.get(&(host.as_str(), check.as_str(), *seq)) {
                None => bad(format!(
                    "relates no observation of check {c} on {h} ({}), which {EVIDENCE_CSV} lists",
                    excerpt(&record_path(host, *seq))
                )),
                Some(o) if o != status => {
                    bad(format!("relates check {c} on {h} as {}, {EVIDENCE_CSV} says {st}", excerpt(o)))
                }
                Some(_) => {}
            }
        }
    }
}

/// The document's pin of `evidence.csv` (its SHA-256 in the back matter)
/// against the bundle's, and the CSV's rows by requirement when it could be
/// read whole.
fn pinned_csv(
    ar: &Value,
    csv: Option<(&Parsed, &str)>,
    failures: &mut Capped,
) -> Option<BTreeMap<String, BTreeMap<String, CsvHost>>> {
    let (parsed, digest) = csv?;
    let pinned: Vec<&str> = items(&ar["back-matter"], "resources")
        .iter()
        .flat_map(|r| items(r, "rlinks"))
        .filter(|l| text(l, "href") == Some(EVIDENCE_CSV))
        .flat_map(|l| items(l, "hashes"))
        .filter(|h| text(h, "algorithm") == Some("SHA-256"))
        .filter_map(|h| text(h, "value"))
        .collect();
    if pinned.is_empty() {
        failures.push(fail(format!("does not pin {EVIDENCE_CSV} by SHA-256")));
    }
    for p in pinned.iter().filter(|p| !p.eq_ignore_ascii_case(digest)) {
        let p = excerpt(p);
        failures.push(fail(format!("pins {EVIDENCE_CSV} with SHA-256 {p}, the bundle's is {digest}")));
    }
    let rows = csv_standings(parsed);
    if rows.is_none() {
        failures.push(fail(format!(
            "its findings cannot be compared with {EVIDENCE_CSV}, which could not be read"
        )));
    }
    rows
}

/// Checks the document (as [`parse`] read it); returns what it holds and
/// the failures. `csv` is the bundle's `evidence.csv` and its SHA-256.
pub(crate) fn check(
    doc: Result<Value, String>,
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    csv: Option<(&Parsed, &str)>,
) -> (OscalSummary, Vec<Failure>) {
    let mut failures = Capped::default();
    let mut summary = OscalSummary::default();
    let doc = match doc {
        Ok(v) => v,
        Err(reason) => return (summary, vec![fail(reason)]),
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
    let csv_rows = pinned_csv(ar, csv, &mut failures);
    for result in results(&doc) {
        check_result(result, records, csv_rows.as_ref(), &mut summary, &mut failures);
    }
    (summary, failures.finish(ASSESSMENT_RESULTS))
}

/// Hosts: inventory items whose UUID is the one the agent id gives.
fn inventory(result: &Value, failures: &mut Capped) -> BTreeMap<String, String> {
    let mut hosts: BTreeMap<String, String> = BTreeMap::new();
    for item in items(&result["local-definitions"], "inventory-items") {
        let uuid = text(item, "uuid").unwrap_or("(no uuid)");
        match one_prop(item, PROP_AGENT) {
            Ok(agent) if host_uuid(agent).to_string() == uuid => {
                hosts.insert(uuid.to_string(), agent.to_string());
            }
            Ok(agent) => failures.push(fail(format!(
                "inventory item {} is agent {}, whose UUID is {}",
                excerpt(uuid),
                excerpt(agent),
                host_uuid(agent)
            ))),
            Err(reason) => failures.push(fail(format!("inventory item {} {reason}", excerpt(uuid)))),
        }
    }
    hosts
}

/// One result: its observations, risks and findings.
fn check_result(
    result: &Value,
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    csv_rows: Option<&BTreeMap<String, BTreeMap<String, CsvHost>>>,
    summary: &mut OscalSummary,
    failures: &mut Capped,
) {
    let hosts = inventory(result, failures);
    let mut uuids = BTreeSet::new();
    let mut duplicate = |u: Option<&str>, failures: &mut Capped| {
        if let Some(u) = u
            && !uuids.insert(u.to_string())
        {
            failures.push(fail(format!("uses UUID {} twice", excerpt(u))));
        }
    };
    let mut observed: BTreeMap<String, Observed> = BTreeMap::new();
    for o in items(result, "observations") {
        summary.observations += 1;
        duplicate(text(o, "uuid"), failures);
        if let Some(seen) = observation(o, &hosts, records, failures)
            && let Some(u) = text(o, "uuid")
        {
            observed.insert(u.to_string(), seen);
        }
    }
    let mut risk_ids = BTreeSet::new();
    for r in items(result, "risks") {
        summary.risks += 1;
        duplicate(text(r, "uuid"), failures);
        risk_ids.extend(text(r, "uuid"));
        for o in items(r, "related-observations").iter().filter_map(|o| text(o, "observation-uuid")) {
            if !observed.contains_key(o) {
                let title = excerpt(text(r, "title").unwrap_or("(untitled)"));
                let o = excerpt(o);
                failures.push(fail(format!(
                    "risk {title:?} relates observation {o}, which the document does not hold"
                )));
            }
        }
    }
    let mut found = BTreeSet::new();
    for f in items(result, "findings") {
        summary.findings += 1;
        duplicate(text(f, "uuid"), failures);
        if let Some(req) = finding(f, &observed, &risk_ids, csv_rows, failures)
            && !found.insert(req.clone())
        {
            failures.push(fail(format!("has two findings for {}", excerpt(&req))));
        }
    }
    for req in csv_rows.into_iter().flat_map(|rows| rows.keys()).filter(|r| !found.contains(*r)) {
        failures
            .push(fail(format!("has no finding for {}, which {EVIDENCE_CSV} has rows for", excerpt(req))));
    }
}

#[cfg(test)]
mod tests {
    use super::required_state;

    #[test]
    fn a_finding_is_satisfied_only_on_settled_evidence() {
        let cases: &[(&[&str], &str)] = &[
            (&["satisfied"], "satisfied"),
            (&["satisfied", "not_applicable"], "satisfied"),
            (&["not_applicable"], "not-satisfied"),
            (&[], "not-satisfied"),
            (&["satisfied", "not_satisfied"], "not-satisfied"),
            (&["satisfied", "unknown"], "not-satisfied"),
            (&["satisfied", "stale"], "not-satisfied"),
            (&["satisfied", "excepted"], "not-satisfied"),
            (&["satisfied", "no_evidence"], "not-satisfied"),
        ];
        for (standings, expected) in cases {
            assert_eq!(required_state(standings.iter().copied()), *expected, "{standings:?}");
        }
    }
}
