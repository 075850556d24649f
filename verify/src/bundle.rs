//! The export bundle's format, shared by the server's writer and the
//! offline verifier (this crate): where each file lives in the
//! tar.gz, the manifest, the proof files and the evidence CSV's columns.
//!
//! Layout (format `custos-export/v2`):
//!
//! - `records/<agent>/<seq>.dsse.json`: a record's DSSE envelope, byte for
//!   byte its log leaf (and what `GET /api/v1/records/{agent}/{seq}` serves):
//!   the window's records, the records the standings rest on, and per agent
//!   the context that anchors its chain (listed in [`Manifest::context`]);
//! - `keys/<agent>/<leaf index>.json`: a key-binding leaf's data as logged;
//! - `proofs/records/<agent>/<seq>.json`, `proofs/keys/<agent>/<leaf>.json`:
//!   the RFC 9162 inclusion proof of that leaf against `log/checkpoint`;
//! - `log/checkpoint` (C2SP signed note), `log/key` (its verifier key in the
//!   note key format);
//! - `evidence.csv` (RFC 4180, columns [`CSV_HEADER`]);
//! - `assessment-results.json`: OSCAL Assessment Results built from the same
//!   rows (`super::assessment_results`);
//! - `manifest.json`: the query, who and when, counts, the context records,
//!   and the SHA-256 of every other file. Each document is named in
//!   [`Documents`].
//!
//! v2 (after v1) adds the context records: without them a deleted first
//! record of a chain could not be told from a chain that starts later.

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "custos-export/v2";

/// A Unix time as the bundle writes times (RFC 3339, UTC); the bare number
/// where it has no calendar date.
pub fn rfc3339_unix(t: i64) -> String {
    custos_proto::time::unix_rfc3339(t).unwrap_or_else(|| t.to_string())
}
pub const MANIFEST: &str = "manifest.json";
pub const CHECKPOINT: &str = "log/checkpoint";
pub const LOG_KEY: &str = "log/key";
pub const EVIDENCE_CSV: &str = "evidence.csv";
pub const ASSESSMENT_RESULTS: &str = "assessment-results.json";

/// How the sample is drawn, as the manifest states it so anyone can redo it.
pub const SAMPLE_METHOD: &str =
    "the N hosts of the population with the smallest SHA-256(seed || 0x00 || agent id), hex-compared";

/// Columns of `evidence.csv`, one row per host and requirement.
pub const CSV_HEADER: [&str; 12] = [
    "framework",
    "requirement",
    "requirement_title",
    "host",
    "host_name",
    "status",
    "evidence_time",
    "record_seq",
    "record_digest",
    "checks",
    "policy_version",
    "mapping_version",
];

pub fn record_path(agent: &str, seq: u64) -> String {
    format!("records/{agent}/{seq}.dsse.json")
}

pub fn key_binding_path(agent: &str, leaf: u64) -> String {
    format!("keys/{agent}/{leaf}.json")
}

pub fn record_proof_path(agent: &str, seq: u64) -> String {
    format!("proofs/records/{agent}/{seq}.json")
}

pub fn key_proof_path(agent: &str, leaf: u64) -> String {
    format!("proofs/keys/{agent}/{leaf}.json")
}

/// What a path in a bundle is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundlePath {
    Manifest,
    Checkpoint,
    LogKey,
    EvidenceCsv,
    AssessmentResults,
    Record {
        agent: String,
        seq: u64,
    },
    KeyBinding {
        agent: String,
        leaf: u64,
    },
    RecordProof {
        agent: String,
        seq: u64,
    },
    KeyProof {
        agent: String,
        leaf: u64,
    },
    /// Not part of the format.
    Unknown,
}

/// `<agent>/<number><suffix>` with a token agent id and a canonical decimal.
fn agent_and_number(rest: &str, suffix: &str) -> Option<(String, u64)> {
    let (agent, file) = rest.split_once('/')?;
    let number = file.strip_suffix(suffix)?;
    let canonical = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && (number == "0" || !number.starts_with('0'));
    if !custos_proto::evidence::statement::is_token(agent, 64) || !canonical {
        return None;
    }
    Some((agent.to_string(), number.parse().ok()?))
}

impl BundlePath {
    pub fn parse(path: &str) -> BundlePath {
        let parsed = match path {
            MANIFEST => Some(BundlePath::Manifest),
            CHECKPOINT => Some(BundlePath::Checkpoint),
            LOG_KEY => Some(BundlePath::LogKey),
            EVIDENCE_CSV => Some(BundlePath::EvidenceCsv),
            ASSESSMENT_RESULTS => Some(BundlePath::AssessmentResults),
            _ => {
                if let Some(rest) = path.strip_prefix("records/") {
                    agent_and_number(rest, ".dsse.json").map(|(agent, seq)| BundlePath::Record { agent, seq })
                } else if let Some(rest) = path.strip_prefix("keys/") {
                    agent_and_number(rest, ".json")
                        .map(|(agent, leaf)| BundlePath::KeyBinding { agent, leaf })
                } else if let Some(rest) = path.strip_prefix("proofs/records/") {
                    agent_and_number(rest, ".json").map(|(agent, seq)| BundlePath::RecordProof { agent, seq })
                } else if let Some(rest) = path.strip_prefix("proofs/keys/") {
                    agent_and_number(rest, ".json").map(|(agent, leaf)| BundlePath::KeyProof { agent, leaf })
                } else {
                    None
                }
            }
        };
        parsed.unwrap_or(BundlePath::Unknown)
    }
}

/// An inclusion proof file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    pub leaf_index: u64,
    pub tree_size: u64,
    /// RFC 9162 `PATH`, leaf to root, each hash in standard base64.
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    pub query: Query,
    /// RFC 3339.
    pub exported_at: String,
    pub exported_by: String,
    pub log: LogInfo,
    pub evaluation: EvaluationInfo,
    pub documents: Documents,
    pub counts: Counts,
    /// The records outside the window that anchor each agent's chain, by
    /// agent and seq. Not evidence: not in the CSV or the OSCAL document.
    /// (Defaulted so a v1 manifest is refused for its format, by name.)
    #[serde(default)]
    pub context: Vec<ContextRecord>,
    /// Every file of the bundle but the manifest, sorted by path.
    pub files: Vec<FileEntry>,
}

/// Where a context record stands in its agent's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextRole {
    /// The agent's last record before the window: the first record in the
    /// window (or, with none, the successor) names its digest as `prev`.
    Predecessor,
    /// The agent's first record after the window, when the log held one at
    /// export time: it names the last record in the window as `prev`.
    Successor,
}

impl ContextRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextRole::Predecessor => "predecessor",
            ContextRole::Successor => "successor",
        }
    }
}

/// A record in the bundle only to anchor its agent's chain at the window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextRecord {
    pub agent: String,
    pub seq: u64,
    pub role: ContextRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Collection times, RFC 3339, both ends included.
    pub from: String,
    pub to: String,
    /// Control ids (or prefixes) asked for; empty: all.
    pub controls: Vec<String>,
    /// Agent ids asked for; empty: all.
    pub hosts: Vec<String>,
    pub sample: Option<Sample>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub size: usize,
    pub seed: String,
    /// [`SAMPLE_METHOD`].
    pub method: String,
    /// The hosts the sample was drawn from.
    pub population: Vec<String>,
    pub chosen: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogInfo {
    pub origin: String,
    pub tree_size: u64,
    /// Whether the export signed this checkpoint because the latest stored
    /// one did not cover every exported leaf.
    pub checkpoint_signed_for_export: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationInfo {
    /// The time the standings in `evidence.csv` hold at (RFC 3339): the end
    /// of the window, or the export time when the window reaches past it.
    pub at: String,
    pub policy_version: String,
    pub mapping_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Documents {
    pub evidence_csv: Option<String>,
    /// OSCAL Assessment Results ([`ASSESSMENT_RESULTS`]); `None` in bundles
    /// written before it existed.
    #[serde(default)]
    pub oscal_assessment_results: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub agents: usize,
    pub records: u64,
    /// Records collected inside the window.
    pub records_in_window: u64,
    /// Records before the window that the standings in `evidence.csv` rest on.
    pub records_behind_standings: u64,
    /// Context records ([`Manifest::context`]); a predecessor the standings
    /// also rest on is counted in both.
    #[serde(default)]
    pub predecessors: u64,
    #[serde(default)]
    pub successors: u64,
    pub key_bindings: usize,
    pub proofs: u64,
    pub csv_rows: usize,
    /// What `assessment-results.json` holds.
    #[serde(default)]
    pub oscal_observations: usize,
    #[serde(default)]
    pub oscal_findings: usize,
    #[serde(default)]
    pub oscal_risks: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
}

/// A CSV cell as written: spreadsheet formulas defused with a leading `'`
/// (see `risk/export.rs`); the verifier takes it off again with [`undefuse`].
pub fn defuse(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell }
}

pub fn undefuse(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_and_odd_names_are_unknown() {
        assert_eq!(
            BundlePath::parse(&record_path("a-1", 12)),
            BundlePath::Record { agent: "a-1".into(), seq: 12 }
        );
        assert_eq!(
            BundlePath::parse(&key_proof_path("a", 0)),
            BundlePath::KeyProof { agent: "a".into(), leaf: 0 }
        );
        for odd in [
            "records/a/012.dsse.json",
            "records/../x/1.dsse.json",
            "records/a/1.json",
            "keys/a/b/1.json",
            "x",
        ] {
            assert_eq!(BundlePath::parse(odd), BundlePath::Unknown, "{odd}");
        }
        assert_eq!(undefuse(&defuse("=1+1".into())), "=1+1");
        assert_eq!(undefuse("'plain"), "'plain");
    }
}
