//! Refusals as security events, and the limit that keeps a flood of them
//! cheap: [`events`] records the refusals made outside the ingest writer's
//! transaction (enrollment, TLS handshakes, calls, streams) and answers
//! once they are committed; [`limiter`] caps enrollment attempts per source.
//! Record refusals are written by the ingest writer itself (see `ingest`).
//!
//! Event kinds: records `bad_signature`, `wrong_key`, `wrong_agent`,
//! `malformed_record`, `oversized_record`, `equivocation`, `replay`,
//! `chain_mismatch`, `sequence_gap`, `clock_skew` (source: the agent);
//! calls `revoked_agent`, `unknown_agent` (the agent), `no_client_certificate`
//! (the peer); enrollment `enrollment_refused` (token unknown, used up or
//! expired), `enrollment_invalid` (a malformed request), `enrollment_throttled`;
//! handshakes `tls_certificate_refused`, `revoked_agent`, `tls_handshake_failed`,
//! `tls_handshake_timeout` (the peer); the server's own `policy_rejected`,
//! `mappings_rejected`, `checkpoint_refused` (source `server`).

pub mod events;
pub mod limiter;
mod limits;

use std::net::{IpAddr, Ipv6Addr};

pub use events::SecurityEvents;
pub use limiter::RateLimiter;
pub use limits::Limits;

/// The source a peer address counts as: an IPv4 address (IPv4-mapped IPv6
/// included) as it is, an IPv6 address as its /64, the block one host
/// usually holds whole, so that walking through it is one source.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// [`source_key`] as events name it: `192.0.2.7`, `2001:db8:1:2::/64`.
pub fn source_name(ip: IpAddr) -> String {
    match source_key(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_peers_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_eq!(source_name(a), "2001:db8:1:2::/64");
        assert_eq!(source_name("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(source_name("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
