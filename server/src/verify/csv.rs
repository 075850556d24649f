//! Checks `evidence.csv` against the records of the bundle: every record a
//! row names is in the bundle and belongs to the row's host, the evidence
//! time is that record's signed collection time, each check's status is the
//! one its record signed, and the standing claims nothing the signed
//! statuses rule out (the policy may turn a signed pass or fail into the
//! other, but never unknown, error or not applicable into a verdict, and
//! never invents a result that is missing).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use custos_proto::evidence::CheckStatus;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::RecInfo;
use super::report::Failure;
use crate::export::format::{CSV_HEADER, EVIDENCE_CSV, record_path, undefuse};

/// A check as a row names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckCell {
    Missing,
    Signed { status: String, seq: u64 },
}

#[derive(Debug, Clone)]
struct Row {
    line: u64,
    host: String,
    status: String,
    evidence_time: String,
    record_seq: Option<u64>,
    record_digest: String,
    checks: Vec<(String, CheckCell)>,
}

const STANDINGS: [&str; 7] =
    ["satisfied", "not_satisfied", "unknown", "no_evidence", "stale", "excepted", "not_applicable"];

fn parse_checks(cell: &str) -> Result<Vec<(String, CheckCell)>, String> {
    if cell.is_empty() {
        return Ok(Vec::new());
    }
    cell.split(';')
        .map(|part| {
            let (check, ev) =
                part.split_once('=').ok_or_else(|| format!("checks entry {part:?} has no '='"))?;
            if ev == "missing" {
                return Ok((check.to_string(), CheckCell::Missing));
            }
            let (status, seq) =
                ev.split_once('@').ok_or_else(|| format!("checks entry {part:?} is not check=status@seq"))?;
            let seq =
                seq.parse().map_err(|_| format!("checks entry {part:?}: seq {seq:?} is not a number"))?;
            Ok((check.to_string(), CheckCell::Signed { status: status.to_string(), seq }))
        })
        .collect()
}

/// Parses the CSV; rows that cannot be read become failures.
fn parse(bytes: &[u8]) -> (Vec<Row>, Vec<Failure>) {
    let fail = |line: u64, reason: String| Failure::Csv { file: EVIDENCE_CSV.into(), line, reason };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let mut failures = Vec::new();
    match reader.headers() {
        Ok(h) if h.iter().eq(CSV_HEADER.iter().copied()) => {}
        Ok(h) => {
            let found = h.iter().collect::<Vec<_>>().join(",");
            return (
                Vec::new(),
                vec![fail(1, format!("header is {found:?}, expected {:?}", CSV_HEADER.join(",")))],
            );
        }
        Err(e) => return (Vec::new(), vec![fail(1, format!("unreadable header: {e}"))]),
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                failures.push(fail(line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: usize| undefuse(record.get(i).unwrap_or("")).to_string();
        let record_seq = match cell(7).as_str() {
            "" => None,
            s => match s.parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    failures.push(fail(line, format!("record_seq {s:?} is not a number")));
                    continue;
                }
            },
        };
        let checks = match parse_checks(&cell(9)) {
            Ok(c) => c,
            Err(reason) => {
                failures.push(fail(line, reason));
                continue;
            }
        };
        rows.push(Row {
            line,
            host: cell(3),
            status: cell(5),
            evidence_time: cell(6),
            record_seq,
            record_digest: cell(8),
            checks,
        });
    }
    (rows, failures)
}

/// The records (agent, seq) the CSV names, so the record pass keeps their
/// check statuses. Unreadable rows are left to [`check`].
pub(crate) fn named_records(bytes: &[u8]) -> BTreeSet<(String, u64)> {
    let (rows, _) = parse(bytes);
    let mut out = BTreeSet::new();
    for r in rows {
        if let Some(seq) = r.record_seq {
            out.insert((r.host.clone(), seq));
        }
        for (_, c) in r.checks {
            if let CheckCell::Signed { seq, .. } = c {
                out.insert((r.host.clone(), seq));
            }
        }
    }
    out
}

/// Checks every row; returns the number of rows read and the failures.
pub(crate) fn check(
    bytes: &[u8],
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    by_digest: &HashMap<[u8; 32], (String, u64)>,
) -> (u64, Vec<Failure>) {
    let (rows, mut failures) = parse(bytes);
    let n = rows.len() as u64 + failures.len() as u64;
    for row in rows {
        let mut fail = |reason: String| {
            failures.push(Failure::Csv { file: EVIDENCE_CSV.into(), line: row.line, reason })
        };
        let rec = |seq: u64| records.get(&row.host).and_then(|m| m.get(&seq));
        if !STANDINGS.contains(&row.status.as_str()) {
            fail(format!("status {:?} is not a standing ({})", row.status, STANDINGS.join(", ")));
        }
        // The newest record behind the standing.
        if !row.record_digest.is_empty() {
            let mut digest = [0u8; 32];
            match hex::decode_to_slice(&row.record_digest, &mut digest) {
                Err(_) => fail(format!("record_digest {:?} is not a hex SHA-256", row.record_digest)),
                Ok(()) => match by_digest.get(&digest) {
                    None => {
                        fail(format!("names record digest {}, which is not in the bundle", row.record_digest))
                    }
                    Some((agent, seq)) if *agent != row.host || Some(*seq) != row.record_seq => {
                        fail(format!(
                            "record digest {} is {}, the row says host {} seq {}",
                            row.record_digest,
                            record_path(agent, *seq),
                            row.host,
                            row.record_seq.map_or("(none)".into(), |s| s.to_string())
                        ))
                    }
                    Some((_, seq)) => {
                        let signed = rec(*seq).map(|r| r.collected_at);
                        let claimed = OffsetDateTime::parse(&row.evidence_time, &Rfc3339)
                            .ok()
                            .map(|t| t.unix_timestamp());
                        if signed != claimed || signed.is_none() {
                            fail(format!(
                                "evidence_time {:?} is not the collection time {} signed in {}",
                                row.evidence_time,
                                signed
                                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                                    .and_then(|t| t.format(&Rfc3339).ok())
                                    .unwrap_or_else(|| "(unknown)".into()),
                                record_path(&row.host, *seq)
                            ));
                        }
                    }
                },
            }
        } else if row.record_seq.is_some() {
            fail("record_seq without record_digest".into());
        }
        // Each check against the record it names.
        let mut signed = Vec::new();
        let mut missing = false;
        for (check, cell) in &row.checks {
            let CheckCell::Signed { status, seq } = cell else {
                missing = true;
                continue;
            };
            let Some(r) = rec(*seq) else {
                fail(format!(
                    "check {check} names {}, which is not in the bundle",
                    record_path(&row.host, *seq)
                ));
                continue;
            };
            let Some(statuses) = &r.statuses else {
                fail(format!("check {check}: {} could not be read", record_path(&row.host, *seq)));
                continue;
            };
            match statuses.get(check) {
                None => fail(format!("check {check} is not in {}", record_path(&row.host, *seq))),
                Some(s) if s.as_str() != status => fail(format!(
                    "check {check} is {s} in {}, the CSV says {status}",
                    record_path(&row.host, *seq)
                )),
                Some(s) => signed.push(*s),
            }
            if row.record_seq.is_some_and(|newest| *seq > newest) {
                fail(format!("check {check} rests on seq {seq}, newer than the row's record_seq"));
            }
        }
        let verdict = signed.iter().any(|s| matches!(s, CheckStatus::Pass | CheckStatus::Fail));
        let undecided = signed.iter().any(|s| matches!(s, CheckStatus::Unknown | CheckStatus::Error));
        match row.status.as_str() {
            "satisfied" if missing || undecided || !verdict => fail(
                "status satisfied, but a check is missing, unknown or in error, or none passed or failed in the signed records".into(),
            ),
            "not_satisfied" if !verdict => {
                fail("status not_satisfied, but no check passed or failed in the signed records".into())
            }
            "no_evidence" if !missing => fail("status no_evidence, but every check has a signed result".into()),
            _ => {}
        }
    }
    (n, failures)
}
