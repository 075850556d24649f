//! The Custos contract shared by agent and server.
//!
//! - [`v1`]: the protobuf wire contract (package `custos.v1`), generated at build time.
//! - [`evidence`]: the signed evidence format: DSSE envelopes carrying in-toto
//!   Statements, Ed25519 signing and strict verification, and the per-agent hash-chain rules.
//!
//! Everything evidence-related is plain Rust over bytes; only [`v1`] knows protobuf.

pub mod evidence;

/// Generated protobuf types and gRPC stubs for `custos.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("custos.v1");
}
