//! Checks `evidence.csv` against the records of the bundle: every record a
//! row names is in the bundle and belongs to the row's host, the evidence
//! time is that record's signed collection time, each check's status is the
//! one its record signed, and the standing claims nothing the signed
//! statuses rule out (the policy may turn a signed pass or fail into the
//! other, but never unknown, error or not applicable into a verdict, and
//! never invents a result that is missing).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::rc::Rc;

use custos_proto::evidence::CheckStatus;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::RecInfo;
use super::limits::Site;
use super::read::BundleError;
use super::report::{Capped, Failure, excerpt};
use crate::bundle::{CSV_HEADER, EVIDENCE_CSV, record_path, undefuse};

/// The longest row read: a real row is a few hundred bytes (the checks cell
/// lists each check behind a requirement); without a bound, one endless
/// line would be held whole by the CSV reader.
pub const MAX_ROW_BYTES: u64 = 64 * 1024;

/// A check as a row names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckCell {
    Missing,
    Signed { status: String, seq: u64 },
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub line: u64,
    pub requirement: String,
    pub host: String,
    pub status: String,
    evidence_time: String,
    record_seq: Option<u64>,
    /// `record_seq` is not a number: a failure already, not checked further.
    bad_seq: bool,
    record_digest: String,
    pub checks: Vec<(String, CheckCell)>,
}

/// `evidence.csv` as read: its rows, and the failures of reading it.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub rows: Vec<Row>,
    failures: Capped,
    /// The header and every row could be read (`record_seq` aside), so the
    /// rows are the whole table.
    pub complete: bool,
}

const STANDINGS: [&str; 7] =
    ["satisfied", "not_satisfied", "unknown", "no_evidence", "stale", "excepted", "not_applicable"];

fn parse_checks(cell: &str) -> Result<Vec<(String, CheckCell)>, String> {
    if cell.is_empty() {
        return Ok(Vec::new());
    }
    cell.split(';')
        .map(|part| {
            let quoted = excerpt(part);
            let (check, ev) =
                part.split_once('=').ok_or_else(|| format!("checks entry {quoted:?} has no '='"))?;
            if ev == "missing" {
                return Ok((check.to_string(), CheckCell::Missing));
            }
            let (status, seq) = ev
                .split_once('@')
                .ok_or_else(|| format!("checks entry {quoted:?} is not check=status@seq"))?;
            let seq = seq
                .parse()
                .map_err(|_| format!("checks entry {quoted:?}: seq {:?} is not a number", excerpt(seq)))?;
            Ok((check.to_string(), CheckCell::Signed { status: status.to_string(), seq }))
        })
        .collect()
}

/// Counts the bytes the CSV reader pulls since the last row it gave, and
/// refuses to go past [`MAX_ROW_BYTES`] of them: the reader buffers a whole
/// row, so this bounds its memory (within its own 8 KiB buffer).
struct RowLimit<R> {
    inner: R,
    since_row: Rc<Cell<u64>>,
}

impl<R: Read> Read for RowLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.since_row.set(self.since_row.get() + n as u64);
        if self.since_row.get() > MAX_ROW_BYTES + buf.len() as u64 {
            return Err(std::io::Error::other("row too long"));
        }
        Ok(n)
    }
}

/// Why a row could not be read: a limit (the reading stops) or bad content.
/// `line` is where the reader stands, the line the row began on.
fn row_error(site: &Site, e: &::csv::Error, since_row: u64, line: u64) -> Result<String, BundleError> {
    if let Some(limit) = site.tripped() {
        return Err(limit);
    }
    if since_row > MAX_ROW_BYTES {
        let (path, entry) = (site.path().to_path_buf(), excerpt(site.name()).to_string());
        return Err(BundleError::RowTooLong { path, entry, line, max: MAX_ROW_BYTES });
    }
    if let ::csv::ErrorKind::Io(io) = e.kind() {
        return Err(site.error(io));
    }
    Ok(format!("unreadable row: {}", excerpt(&e.to_string())))
}

/// One row's cells as a [`Row`], or why not.
fn row(record: &::csv::StringRecord, line: u64) -> Result<Row, String> {
    let cell = |i: usize| undefuse(record.get(i).unwrap_or("")).to_string();
    let (record_seq, bad_seq) = match cell(7).as_str() {
        "" => (None, false),
        s => s.parse().map_or((None, true), |n| (Some(n), false)),
    };
    Ok(Row {
        line,
        requirement: cell(1),
        host: cell(3),
        status: cell(5),
        evidence_time: cell(6),
        record_seq,
        bad_seq,
        record_digest: cell(8),
        checks: parse_checks(&cell(9))?,
    })
}

/// Reads the CSV as it streams from `body`, handing each row to `on_row`;
/// rows that cannot be read become failures. Returns the failures and
/// whether the header and every row could be read. `Err` only for a limit
/// (the entry's, or [`MAX_ROW_BYTES`]).
fn read_rows(
    body: impl Read,
    site: &Site,
    mut on_row: impl FnMut(Row),
) -> Result<(Capped, bool), BundleError> {
    let fail = |line: u64, reason: String| Failure::Csv { file: EVIDENCE_CSV.into(), line, reason };
    let since_row = Rc::new(Cell::new(0));
    let limited = RowLimit { inner: body, since_row: since_row.clone() };
    let mut reader = ::csv::ReaderBuilder::new().has_headers(true).from_reader(limited);
    let mut failures = Capped::default();
    match reader.headers() {
        Ok(h) if h.iter().eq(CSV_HEADER.iter().copied()) => {}
        Ok(h) => {
            let found = h.iter().collect::<Vec<_>>().join(",");
            let expected = CSV_HEADER.join(",");
            failures.push(fail(1, format!("header is {:?}, expected {expected:?}", excerpt(&found))));
            return Ok((failures, false));
        }
        Err(e) => {
            let reason = row_error(site, &e, since_row.get(), reader.position().line())?;
            failures.push(fail(1, reason.replace("unreadable row", "unreadable header")));
            return Ok((failures, false));
        }
    }
    since_row.set(0);
    let mut complete = true;
    let mut record = ::csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                since_row.set(0);
                let line = record.position().map_or(0, |p| p.line());
                match row(&record, line) {
                    Ok(r) => {
                        if r.bad_seq {
                            let s = excerpt(record.get(7).unwrap_or(""));
                            failures.push(fail(line, format!("record_seq {s:?} is not a number")));
                        }
                        on_row(r);
                    }
                    Err(reason) => {
                        complete = false;
                        failures.push(fail(line, reason));
                    }
                }
            }
            Err(e) => {
                let reason = row_error(site, &e, since_row.get(), reader.position().line())?;
                complete = false;
                failures.push(fail(e.position().map_or(0, |p| p.line()), reason));
            }
        }
    }
    Ok((failures, complete))
}

/// Reads the CSV as it streams from `body` (see [`read_rows`]).
pub(crate) fn parse(body: impl Read, site: &Site) -> Result<Parsed, BundleError> {
    let mut rows = Vec::new();
    let (failures, complete) = read_rows(body, site, |r| rows.push(r))?;
    Ok(Parsed { rows, failures, complete })
}

/// The records (agent, seq) a row names.
fn named_by(r: &Row, out: &mut BTreeSet<(String, u64)>) {
    if let Some(seq) = r.record_seq {
        out.insert((r.host.clone(), seq));
    }
    for (_, c) in &r.checks {
        if let CheckCell::Signed { seq, .. } = c {
            out.insert((r.host.clone(), *seq));
        }
    }
}

/// The records (agent, seq) the CSV streaming from `body` names, so the
/// record pass keeps their check statuses; no row is kept. Unreadable rows
/// are left to [`check`]; `Err` only for a limit.
pub(crate) fn named_records(body: impl Read, site: &Site) -> Result<BTreeSet<(String, u64)>, BundleError> {
    let mut out = BTreeSet::new();
    read_rows(body, site, |r| named_by(&r, &mut out))?;
    Ok(out)
}

/// Checks every row; returns the number of rows read and the failures.
/// The rows stay in `parsed` for the OSCAL check; its failures move out.
pub(crate) fn check(
    parsed: &mut Parsed,
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    by_digest: &HashMap<[u8; 32], (String, u64)>,
) -> (u64, Vec<Failure>) {
    let mut failures = std::mem::take(&mut parsed.failures);
    let rows = &parsed.rows;
    let n = rows.iter().filter(|r| !r.bad_seq).count() as u64 + failures.len();
    for row in rows.iter().filter(|r| !r.bad_seq) {
        let mut fail = |reason: String| {
            failures.push(Failure::Csv { file: EVIDENCE_CSV.into(), line: row.line, reason })
        };
        if !STANDINGS.contains(&row.status.as_str()) {
            fail(format!("status {:?} is not a standing ({})", excerpt(&row.status), STANDINGS.join(", ")));
        }
        check_newest(row, records, by_digest, &mut fail);
        check_cells(row, records, &mut fail);
    }
    (n, failures.finish(EVIDENCE_CSV))
}

/// The newest record behind the standing: in the bundle, of the row's host
/// and seq, collected at the row's evidence time.
fn check_newest(
    row: &Row,
    records: &BTreeMap<String, BTreeMap<u64, RecInfo>>,
    by_digest: &HashMap<[u8; 32], (String, u64)>,
    fail: &mut impl FnMut(String),
) {
    let host = excerpt(&row.host);
    let named = excerpt(&row.record_digest);
    if row.record_digest.is_empty() {
        if row.record_seq.is_some() {
            fail("record_seq without record_digest".into());
        }
        return;
    }
    let mut digest = [0u8; 32];
    if hex::decode_to_slice(&row.record_digest, &mut digest).is_err() {
        return fail(format!("record_digest {named:?} is not a hex SHA-256"));
    }
    match by_digest.get(&digest) {
        None => fail(format!("names record digest {named}, which is not in the bundle")),
        Some((agent, seq)) if *agent != row.host || Some(*seq) != row.record_seq => fail(format!(
            "record digest {named} is {}, the row says host {host} seq {}",
            record_path(agent, *seq),
            row.record_seq.map_or("(none)".into(), |s| s.to_string())
        )),
        Some((_, seq)) => {
            let signed = records.get(&row.host).and_then(|m| m.get(seq)).map(|r| r.collected_at);
            let claimed =
                OffsetDateTime::parse(&row.evidence_time, &Rfc3339).ok().map(|t| t.unix_timestamp());
            if signed != claimed || signed.is_none() {
                fail(format!(
                    "evidence_time {:?} is not the collection time {} signed in {}",
                    excerpt(&row.evidence_time),
                    signed.map_or_else(|| "(unknown)".into(), crate::bundle::rfc3339_unix),
                    record_path(&row.host, *seq)
                ));
            }
        }
    }
}

/// Each check against the record it names, and the standing against the
/// signed statuses.
fn check_cells(row: &Row, records: &BTreeMap<String, BTreeMap<u64, RecInfo>>, fail: &mut impl FnMut(String)) {
    // Host and check come from the CSV: a record path built from them is input too.
    let at = |seq: u64| excerpt(&record_path(&row.host, seq)).to_string();
    let mut signed = Vec::new();
    let mut missing = false;
    for (check, cell) in &row.checks {
        let CheckCell::Signed { status, seq } = cell else {
            missing = true;
            continue;
        };
        let (shown, said) = (excerpt(check), excerpt(status));
        let Some(r) = records.get(&row.host).and_then(|m| m.get(seq)) else {
            fail(format!("check {shown} names {}, which is not in the bundle", at(*seq)));
            continue;
        };
        let Some(statuses) = &r.statuses else {
            fail(format!("check {shown}: {} could not be read", at(*seq)));
            continue;
        };
        match statuses.get(check) {
            None => fail(format!("check {shown} is not in {}", at(*seq))),
            Some(s) if s.as_str() != status => {
                fail(format!("check {shown} is {s} in {}, the CSV says {said}", at(*seq)))
            }
            Some(s) => signed.push(*s),
        }
        if row.record_seq.is_some_and(|newest| *seq > newest) {
            fail(format!("check {shown} rests on seq {seq}, newer than the row's record_seq"));
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
