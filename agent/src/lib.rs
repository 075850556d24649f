//! `custos-agent`: gathers technical control evidence on an endpoint, signs
//! each record (Ed25519, DSSE), keeps it in a durable spool and streams it to
//! the Custos server over mutual-TLS gRPC.

pub mod collect;
pub mod config;
pub mod courier;
pub mod deadlines;
pub mod enroll;
pub mod first_start;
pub mod footprint;
pub mod host;
pub mod host_info;
pub mod policy;
pub mod privacy;
pub mod recording;
pub mod runner;
pub mod schedule;
pub mod signing;
pub mod spool;
pub mod state;
pub mod transport;
