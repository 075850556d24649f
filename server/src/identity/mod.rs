//! Who may connect, and how much they may take: the CA that issues agent
//! certificates, TLS for both ports, the registry of enrolled agents and
//! their keys, secrets (tokens, random values), and the refusals recorded
//! as security events with the limits that keep a flood of them cheap.
//!
//! Invariants: an agent is trusted only through a certificate this CA
//! issued and the registry has not revoked; a refusal is recorded once and
//! answered the same way whether the peer is hostile or mistaken; nothing
//! here decides what evidence means.

pub mod ca;
pub mod registry;
pub mod secrets;
pub mod security;
pub mod tls;
