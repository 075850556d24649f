//! The Custos contract shared by agent and server.
//!
//! - [`v1`]: the protobuf wire contract (package `custos.v1`), generated at build time.
//! - [`checks`]: the ids of the checks, the one list every part is held to.
//! - [`time`]: the one RFC 3339 formatter.
//! - [`evidence`]: the signed evidence format: DSSE envelopes carrying in-toto
//!   Statements, Ed25519 signing and strict verification, and the per-agent hash-chain rules.
//!
//! Everything evidence-related is plain Rust over bytes; only [`v1`] knows protobuf.

pub mod checks;
pub mod evidence;
pub mod time;

/// The message an agent's evidence key signs at enrollment, proving
/// possession of the key and binding it to this CSR and token:
/// `"custos.v1.enroll" || 0x00 || SHA-256(csr_der) || SHA-256(token)`.
pub fn enrollment_proof_message(csr_der: &[u8], token: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut msg = b"custos.v1.enroll\0".to_vec();
    msg.extend_from_slice(&Sha256::digest(csr_der));
    msg.extend_from_slice(&Sha256::digest(token.as_bytes()));
    msg
}

/// Generated protobuf types and gRPC stubs for `custos.v1` (feature `grpc`).
#[cfg(feature = "grpc")]
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("custos.v1");
}
