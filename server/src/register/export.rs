//! The register as CSV (RFC 4180 quoting by the `csv` crate), one row per
//! entry, for spreadsheets and audit files.
//!
//! Cells that a spreadsheet would run as a formula (starting with `=`, `+`,
//! `-`, `@`, tab or carriage return) get a leading `'`: titles, owners and
//! justifications come from people.

use super::{Matrix, Rating, RiskEntry};

pub const HEADER: [&str; 24] = [
    "id",
    "origin",
    "requirement",
    "scope",
    "title",
    "status",
    "treatment",
    "owner",
    "inherent_level",
    "current_likelihood",
    "current_impact",
    "current_level",
    "residual_level",
    "affected_host_count",
    "in_scope_host_count",
    "affected_hosts",
    "checks",
    "threats",
    "goals",
    "opened_at",
    "due_at",
    "closed_at",
    "accepted_by",
    "acceptance_expires_at",
];

fn time(t: Option<i64>) -> String {
    t.and_then(custos_proto::time::unix_rfc3339).unwrap_or_default()
}

fn defuse(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell }
}

fn level(r: Option<&Rating>) -> String {
    r.map(|r| r.level.to_string()).unwrap_or_default()
}

/// Writes `entries` as CSV with a header row.
pub fn to_csv(entries: &[RiskEntry], matrix: &Matrix) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(HEADER)?;
    for e in entries {
        let row = [
            e.id.to_string(),
            e.origin.to_string(),
            e.requirement.clone().unwrap_or_default(),
            e.scope.clone(),
            e.title.clone(),
            e.status.to_string(),
            e.treatment.map(|t| t.to_string()).unwrap_or_default(),
            e.owner.clone().unwrap_or_default(),
            level(Some(&e.inherent)),
            matrix.likelihood_label(e.current.likelihood).to_string(),
            matrix.impact_label(e.current.impact).to_string(),
            level(Some(&e.current)),
            level(e.residual.as_ref()),
            e.affected_hosts.len().to_string(),
            e.in_scope_hosts.to_string(),
            e.affected_hosts.iter().cloned().collect::<Vec<_>>().join(";"),
            e.checks.iter().cloned().collect::<Vec<_>>().join(";"),
            e.threats.join(";"),
            e.goals.join(";"),
            time(e.opened_at),
            time(e.due_at),
            time(e.closed_at),
            e.acceptance.as_ref().map(|a| a.approver.clone()).unwrap_or_default(),
            time(e.acceptance.as_ref().map(|a| a.expires_at)),
        ];
        w.write_record(row.map(defuse))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::lifecycle::{ManualRisk, create_manual};
    use crate::register::{MatrixKind, RiskPolicy};
    use time::macros::datetime;

    #[test]
    fn quotes_and_defuses_what_people_typed() {
        let policy = RiskPolicy::default();
        let t = create_manual(
            ManualRisk {
                title: "=HYPERLINK(\"x\"), \"quoted\", and\nnewline".into(),
                likelihood: 2,
                impact: 5,
                owner: Some("Doe, Jane".into()),
                goals: vec!["availability".into()],
                ..Default::default()
            },
            &policy,
            "ciso",
            datetime!(2026-11-23 12:00 UTC),
        )
        .unwrap();
        let mut e = t.entry;
        e.id = 7;
        let csv_bytes = to_csv(&[e], &Matrix::new(MatrixKind::Iso27005)).unwrap();
        let text = String::from_utf8(csv_bytes.clone()).unwrap();
        assert!(text.starts_with("id,origin,requirement,"));
        assert!(text.contains("\r\n"));
        // Read back with an independent reader configuration: every field survives.
        let mut r = csv::ReaderBuilder::new().from_reader(csv_bytes.as_slice());
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), HEADER.len());
        assert_eq!(&rows[0][0], "7");
        assert_eq!(&rows[0][4], "'=HYPERLINK(\"x\"), \"quoted\", and\nnewline");
        assert_eq!(&rows[0][7], "Doe, Jane");
        assert_eq!(&rows[0][11], "high");
        assert_eq!(&rows[0][18], "availability");
        assert_eq!(&rows[0][19], "2026-11-23T12:00:00Z");
    }
}
