//! The `firewall` check: is inbound traffic actually filtered?
//!
//! Measures the rules loaded in the kernel, not the presence of a tool:
//! nftables (`nft -j list ruleset`, which also shows rules made by
//! iptables-nft, ufw and firewalld) and legacy x_tables (`iptables-save`,
//! `ip6tables-save` when they report the legacy backend). A family (IPv4,
//! IPv6) counts as filtered when some input-hook filter chain covering it
//! denies by default: policy drop with no unconditional accept, or a final
//! unconditional drop/reject. Pass needs both families filtered (IPv6 only
//! when enabled). ufw and firewalld are reported as facts: they manage the
//! rules but their "active" flag is not the effective state.

pub mod linux;
pub mod macos;
pub mod windows;
