//! The `firewall` check: what does the host let in?
//!
//! Judged by the meaning of the rules the kernel (or the OS firewall)
//! enforces, not by the presence of a tool or a default policy alone: the
//! result is the set of [`exposure::Exposure`]s, the services new inbound
//! connections from outside reach, per address family, with the rule that
//! admits each. `pass` when they are only specific services (at most
//! [`exposure::MAX_SERVICE_PORTS`] ports for any program); `fail` when the
//! port space is certainly open; `unknown` when it may be (a match the
//! evaluator cannot decide, an unreadable source). Which services are
//! acceptable is the organisation's policy (`firewall_allowed_inbound`).
//!
//! - Linux ([`linux`], [`netfilter`]): nftables (also what iptables-nft,
//!   ufw, firewalld, Docker and libvirt load), the legacy x_tables tables
//!   whatever the `iptables` alternative says, and the routes, evaluated
//!   over regions of the packet space.
//! - Windows ([`windows`]): the profiles and every inbound rule of the
//!   ActiveStore (netsh as a fallback).
//! - macOS ([`macos`]): the application firewall and pf, anchors included.

pub mod alf;
pub mod exposure;
pub mod intervals;
pub mod linux;
pub mod macos;
pub mod netfilter;
pub mod pf;
pub mod pf_addr;
pub mod pf_region;
pub mod pf_rule;
pub mod windows;
pub mod windows_reach;
pub mod windows_rules;
pub mod windows_values;
