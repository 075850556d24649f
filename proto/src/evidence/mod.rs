//! The signed evidence format, shared by the agent (which builds and signs
//! records) and the server (which verifies them and enforces the chain).
//!
//! A record is a DSSE v1 envelope ([`dsse`]) whose payload is an in-toto
//! Statement v1 ([`statement`]) carrying our endpoint-evidence predicate.
//! Records of one agent form a hash chain ([`chain`]).
//!
//! Invariants:
//! - Signatures are always over PAE(type, payload bytes), never over a
//!   re-serialization; verification takes the bytes exactly as received.
//! - Verification is strict Ed25519 (`verify_strict`) and refuses weak keys.
//! - Nothing here does I/O or reads the clock.

pub mod chain;
pub mod depth;
pub mod dsse;
pub mod statement;

pub use chain::{ChainHead, ChainVerdict, judge};
pub use dsse::{Envelope, EnvelopeSignature, key_id, pae, payload_digest, sign_envelope, verify_envelope};
pub use statement::{
    CheckResult, CheckStatus, EvidencePredicate, Gap, HostInfo, MAX_PAYLOAD_BYTES, Observation, PAYLOAD_TYPE,
    PREDICATE_TYPE, STATEMENT_TYPE, Statement, StatementError, StatementRaw, StatementSummary,
};

/// Errors from building, parsing or verifying evidence.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("envelope payload type is {found:?}, expected {expected:?}")]
    PayloadType { found: String, expected: &'static str },
    #[error("envelope carries {0} signatures, expected exactly one")]
    SignatureCount(usize),
    #[error("signature key id {found:?} does not match the agent's key {expected:?}")]
    KeyIdMismatch { found: String, expected: String },
    #[error("signature is {0} bytes, expected 64")]
    SignatureLength(usize),
    #[error("public key is weak (small order) and is refused")]
    WeakKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error(transparent)]
    Statement(#[from] StatementError),
}
