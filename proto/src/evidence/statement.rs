//! The in-toto Statement v1 that every record's payload carries, and the
//! Custos endpoint-evidence predicate inside it.
//!
//! Parsing is strict and bounded: a payload over [`MAX_PAYLOAD_BYTES`] or
//! nested deeper than [`MAX_JSON_DEPTH`], a wrong `_type` / `predicateType`, unknown fields in the predicate, or values
//! outside their ranges are refused with a reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::depth::{MAX_JSON_DEPTH, nesting_depth};

/// DSSE payload type of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The Custos endpoint-evidence predicate, version 1.
pub const PREDICATE_TYPE: &str = "https://custos.dev/attestation/endpoint-evidence/v1";
/// Largest payload a record may have (a record of ~20 checks is a few KiB).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Most checks one record may carry.
pub const MAX_CHECKS: usize = 256;
/// Longest raw-observation excerpt kept in a record, in bytes.
pub const MAX_EXCERPT_BYTES: usize = 2048;

/// The typed facts of a check.
pub type Facts = serde_json::Map<String, serde_json::Value>;

/// A statement parsed without materialising the facts (they are checked to
/// be well-formed JSON and skipped): what the server's ingest path needs.
pub type StatementSummary = Statement<serde::de::IgnoredAny>;
/// A statement whose facts are kept as their JSON text, unparsed: what the
/// server stores for its policy without building every map.
pub type StatementRaw = Statement<Box<serde_json::value::RawValue>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement<F = Facts> {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: EvidencePredicate<F>,
}

/// What the statement is about: the agent, named by its id and pinned by the
/// SHA-256 of its evidence public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidencePredicate<F = Facts> {
    pub agent_id: String,
    /// 1, 2, 3, ... per agent, never reused.
    pub seq: u64,
    /// Hex SHA-256 of the previous record's payload bytes; `None` for seq 1.
    pub prev: Option<String>,
    /// When the agent collected the evidence (RFC 3339, UTC).
    pub collected_at: String,
    pub agent_version: String,
    pub host: HostInfo,
    /// Collections the agent skipped since its previous record (spool full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    pub checks: Vec<CheckResult<F>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    pub os: String,
    #[serde(default)]
    pub os_version: String,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub arch: String,
    /// Display name as configured on the agent (may be pseudonymised or absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Host-group tags from the agent's configuration (e.g. `laptop`),
    /// which the server's scopes read next to the tags it assigns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// An explicit declaration that evidence is missing for a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    pub missed_collections: u64,
    pub first_missed_at: String,
    pub last_missed_at: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    Unknown,
    NotApplicable,
    Error,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Unknown => "unknown",
            CheckStatus::NotApplicable => "not_applicable",
            CheckStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pass" => CheckStatus::Pass,
            "fail" => CheckStatus::Fail,
            "unknown" => CheckStatus::Unknown,
            "not_applicable" => CheckStatus::NotApplicable,
            "error" => CheckStatus::Error,
            _ => return None,
        })
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad` honours width and alignment, for tables.
        f.pad(self.as_str())
    }
}

/// One check's outcome with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult<F = Facts> {
    /// Stable check id, e.g. `firewall`.
    pub id: String,
    pub status: CheckStatus,
    /// What produced the observation, e.g. `nftables`, `apt`, `lsblk`.
    pub backend: String,
    /// Typed facts the status was derived from.
    pub facts: F,
    pub observation: Observation,
    /// Why the status is not `pass` (required then), or a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The raw observation: its digest and a short excerpt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// Hex SHA-256 of the full raw output the facts were parsed from.
    pub sha256: String,
    pub excerpt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("payload is {0} bytes, more than the limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    #[error("payload nests {0} levels of arrays and objects, more than the limit of {MAX_JSON_DEPTH}")]
    TooDeep(usize),
    #[error("payload is not a valid statement: {0}")]
    Json(#[from] serde_json::Error),
    #[error("statement {field} is {found:?}, expected {expected:?}")]
    WrongType { field: &'static str, found: String, expected: &'static str },
    #[error("invalid statement: {0}")]
    Invalid(String),
}

impl Statement {
    /// Builds a statement for `predicate` about the agent holding `evidence_key`.
    pub fn new(predicate: EvidencePredicate, evidence_key: &[u8; 32]) -> Self {
        use sha2::Digest as _;
        let digest = hex::encode(sha2::Sha256::digest(evidence_key));
        Statement {
            type_: STATEMENT_TYPE.to_string(),
            subject: vec![Subject {
                name: subject_name(&predicate.agent_id),
                digest: BTreeMap::from([("sha256".to_string(), digest)]),
            }],
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate,
        }
    }

    pub fn to_payload(&self) -> Vec<u8> {
        // Serializing plain structs and maps with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates a payload. Never panics on hostile input.
    pub fn from_payload(payload: &[u8]) -> Result<Self, StatementError> {
        parse(payload)
    }
}

impl StatementSummary {
    /// Parses and validates a payload like [`Statement::from_payload`], but
    /// skips over the facts instead of building them.
    pub fn summary_from_payload(payload: &[u8]) -> Result<Self, StatementError> {
        parse(payload)
    }
}

impl StatementRaw {
    /// Parses and validates a payload like [`Statement::from_payload`],
    /// keeping each result's facts as JSON text; facts that are not a JSON
    /// object are refused.
    pub fn raw_from_payload(payload: &[u8]) -> Result<Self, StatementError> {
        let st: StatementRaw = parse(payload)?;
        if let Some(c) = st.predicate.checks.iter().find(|c| !c.facts.get().trim_start().starts_with('{')) {
            return Err(StatementError::Invalid(format!("facts of check {:?} must be a JSON object", c.id)));
        }
        Ok(st)
    }
}

fn parse<F: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<Statement<F>, StatementError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(StatementError::TooLarge(payload.len()));
    }
    let depth = nesting_depth(payload);
    if depth > MAX_JSON_DEPTH {
        return Err(StatementError::TooDeep(depth));
    }
    let st: Statement<F> = serde_json::from_slice(payload)?;
    st.validate()?;
    Ok(st)
}

impl<F> Statement<F> {
    fn validate(&self) -> Result<(), StatementError> {
        if self.type_ != STATEMENT_TYPE {
            return Err(StatementError::WrongType {
                field: "_type",
                found: self.type_.clone(),
                expected: STATEMENT_TYPE,
            });
        }
        if self.predicate_type != PREDICATE_TYPE {
            return Err(StatementError::WrongType {
                field: "predicateType",
                found: self.predicate_type.clone(),
                expected: PREDICATE_TYPE,
            });
        }
        let p = &self.predicate;
        let invalid = |m: String| Err(StatementError::Invalid(m));
        if !is_token(&p.agent_id, 64) {
            return invalid(format!("agent_id {:?} is not a short token", p.agent_id));
        }
        let [subject] = self.subject.as_slice() else {
            return invalid(format!("{} subjects, expected one", self.subject.len()));
        };
        if subject.name != subject_name(&p.agent_id) {
            return invalid(format!("subject {:?} does not name agent {}", subject.name, p.agent_id));
        }
        if p.seq == 0 {
            return invalid("seq must start at 1".into());
        }
        match (&p.prev, p.seq) {
            (None, 1) => {}
            (None, _) => return invalid(format!("seq {} has no prev digest", p.seq)),
            (Some(_), 1) => return invalid("seq 1 must not have a prev digest".into()),
            (Some(prev), _) if !is_hex_digest(prev) => {
                return invalid(format!("prev {prev:?} is not a hex SHA-256"));
            }
            _ => {}
        }
        if p.host.tags.len() > MAX_TAGS {
            return invalid(format!("{} host tags, limit {MAX_TAGS}", p.host.tags.len()));
        }
        if let Some(t) = p.host.tags.iter().find(|t| !is_tag(t)) {
            return invalid(format!(
                "host tag {t:?} is not 1 to 64 lowercase letters, digits, '-', '_' or '.'"
            ));
        }
        if p.checks.len() > MAX_CHECKS {
            return invalid(format!("{} checks, limit {MAX_CHECKS}", p.checks.len()));
        }
        for c in &p.checks {
            if !is_token(&c.id, 64) {
                return invalid(format!("check id {:?} is not a short token", c.id));
            }
            if c.status != CheckStatus::Pass && c.reason.as_deref().unwrap_or("").is_empty() {
                return invalid(format!("check {} is {} without a reason", c.id, c.status));
            }
            if !c.observation.sha256.is_empty() && !is_hex_digest(&c.observation.sha256) {
                return invalid(format!("check {} observation digest is not hex SHA-256", c.id));
            }
            if c.observation.excerpt.len() > MAX_EXCERPT_BYTES {
                return invalid(format!("check {} excerpt exceeds {MAX_EXCERPT_BYTES} bytes", c.id));
            }
        }
        Ok(())
    }

    /// The `prev` digest as bytes, if present.
    pub fn prev_digest(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        let prev = self.predicate.prev.as_ref()?;
        hex::decode_to_slice(prev, &mut out).ok()?;
        Some(out)
    }
}

/// The in-toto subject name of an agent.
pub fn subject_name(agent_id: &str) -> String {
    format!("urn:custos:agent:{agent_id}")
}

/// Letters, digits, `-`, `_`, `.`; 1..=max bytes.
/// Most host tags one record may carry.
pub const MAX_TAGS: usize = 32;

/// A host tag: 1 to 64 lowercase letters, digits, `-`, `_` or `.`.
pub fn is_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

pub fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Shortens `raw` to at most `MAX_EXCERPT_BYTES / 4` bytes on a char boundary,
/// for the excerpt kept in a record (the digest covers the whole output).
pub fn excerpt(raw: &str) -> String {
    let limit = MAX_EXCERPT_BYTES / 4;
    if raw.len() <= limit {
        return raw.to_string();
    }
    let mut end = limit;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}
