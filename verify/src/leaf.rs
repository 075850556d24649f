//! The leaves of the transparency log besides records: key bindings
//! (which evidence key spoke for which agent from when) and audit-trail
//! entries (who read or exported what). The store writes them; the
//! verifier reads key bindings back to know which key signed a record.
//! A leaf's JSON is its logged bytes, so these types are its one source.

use serde::{Deserialize, Serialize};

/// A key-binding event as logged: which evidence key spoke for which agent from when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyBinding {
    #[serde(rename = "type")]
    pub type_: String,
    /// `enrolled`, `renewed` or `revoked`.
    pub event: String,
    pub agent_id: String,
    /// Hex of the raw Ed25519 evidence public key.
    pub evidence_key: String,
    pub at: i64,
}

pub const KEY_BINDING_TYPE: &str = "https://custos.dev/tlog/key-binding/v1";

/// What the audit trail keeps of one read or export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at: i64,
    /// The API token's id (0: the command line).
    pub token_id: i64,
    /// Who: the token's name, or the person named on the command line.
    pub name: String,
    /// What: the HTTP method, or `export`.
    pub action: String,
    /// The request path and query, or the export's query.
    pub target: String,
    pub status: u16,
}

/// An audit-trail row as logged: its entry under the leaf's type.
#[derive(Debug, Serialize)]
pub struct AuditLeaf<'a> {
    #[serde(rename = "type")]
    pub type_: &'static str,
    #[serde(flatten)]
    pub entry: &'a AuditEntry,
}

pub const AUDIT_TYPE: &str = "https://custos.dev/tlog/audit/v1";
