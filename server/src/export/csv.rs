//! `evidence.csv`: one row per host and requirement with the standing, the
//! newest record behind it and each of the requirement's checks with the
//! status its record signed, RFC 4180 (the `csv` crate, CRLF) with formulas
//! defused like the risk register's export.
//!
//! The `checks` cell lists `check=status@seq` (the status as the agent
//! signed it in record `seq`) or `check=missing`, joined by `;`, so the
//! verifier can compare every cell with the records in the bundle.

use custos_verify::bundle::{CSV_HEADER, defuse};

/// One row of `evidence.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRow {
    pub framework: String,
    pub requirement: String,
    pub requirement_title: String,
    pub host: String,
    pub host_name: String,
    /// `satisfied`, `not_satisfied`, `unknown`, `no_evidence`, `stale`,
    /// `excepted` or `not_applicable`.
    pub status: String,
    /// RFC 3339 collection time of the newest record behind the standing.
    pub evidence_time: Option<String>,
    pub record_seq: Option<u64>,
    /// Hex SHA-256 of that record's payload (its chain digest).
    pub record_digest: Option<String>,
    /// `(check, Some((signed status, seq)))`, or `None` when the host never reported it.
    pub checks: Vec<(String, Option<(String, u64)>)>,
    pub policy_version: String,
    pub mapping_version: String,
}

/// The `checks` cell of a row.
pub fn checks_cell(checks: &[(String, Option<(String, u64)>)]) -> String {
    checks
        .iter()
        .map(|(check, ev)| match ev {
            Some((status, seq)) => format!("{check}={status}@{seq}"),
            None => format!("{check}=missing"),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Writes the rows with a header.
pub fn to_csv(rows: &[EvidenceRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for r in rows {
        let cells = [
            r.framework.clone(),
            r.requirement.clone(),
            r.requirement_title.clone(),
            r.host.clone(),
            r.host_name.clone(),
            r.status.clone(),
            r.evidence_time.clone().unwrap_or_default(),
            r.record_seq.map(|s| s.to_string()).unwrap_or_default(),
            r.record_digest.clone().unwrap_or_default(),
            checks_cell(&r.checks),
            r.policy_version.clone(),
            r.mapping_version.clone(),
        ];
        w.write_record(cells.map(defuse))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_defuses_and_reads_back() {
        let row = EvidenceRow {
            framework: "iso27001:2022".into(),
            requirement: "iso27001:2022/A.8.20".into(),
            requirement_title: "Networks security, \"quoted\"".into(),
            host: "a1".into(),
            host_name: "=cmd|' /C calc'!A0".into(),
            status: "satisfied".into(),
            evidence_time: Some("2026-11-23T12:00:00Z".into()),
            record_seq: Some(3),
            record_digest: Some("ab".repeat(32)),
            checks: vec![("firewall".into(), Some(("pass".into(), 3))), ("ssh_server".into(), None)],
            policy_version: "p1".into(),
            mapping_version: "m1".into(),
        };
        let bytes = to_csv(&[row]).unwrap();
        let mut r = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][2], "Networks security, \"quoted\"");
        assert_eq!(&rows[0][4], "'=cmd|' /C calc'!A0");
        assert_eq!(&rows[0][9], "firewall=pass@3;ssh_server=missing");
    }
}
