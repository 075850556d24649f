//! What arrives from agents: the gRPC services (enrollment, renewal, the
//! policy an agent collects under, the record stream) and the ingest writer
//! that verifies each signed record and commits it.
//!
//! Invariants: a record is acknowledged only once it is verified (signature,
//! key, chain, sequence) and committed; a refused record is recorded as a
//! security event with the reason and never stored as evidence; one peer's
//! malformed input never stops the service for others.

pub mod grpc;
pub mod ingest;
