//! Linux packet filtering judged by its meaning: what the kernel's
//! netfilter rules accept of new inbound connections from outside.
//!
//! - [`ruleset`]: one form for every rule source.
//! - [`nft_json`] (+ `nft_left` for what a match reads, [`nft_text`] to
//!   name rules, [`nft_bytecode`] to settle what nft's listing leaves
//!   ambiguous) and [`iptables`]: the readers of `nft -j list ruleset` and
//!   `iptables-save`; [`values`] the constants both share; [`routes`] the
//!   host's routes.
//! - [`region`] and [`interpret`]: the semantics, over regions of the packet
//!   space; [`summary`]: regions to [`Exposure`]s.
//!
//! [`analyse`] is the entry point: for IPv4 and (when enabled) IPv6, for a
//! TCP connection attempt and a UDP datagram, every part of the space that
//! ends delivered to the host or forwarded. The kernel agrees with it on
//! every probe the property test `agent/tests/firewall_kernel.rs` sends.

pub mod interpret;
pub mod iptables;
pub mod nft_bytecode;
pub mod nft_json;
mod nft_left;
pub mod nft_text;
pub mod region;
pub mod routes;
pub mod ruleset;
pub mod summary;
pub mod values;

use interpret::{Env, Evaluator, Outcome, TooLarge};
use region::{Ifaces, Region, whole};
use ruleset::Ruleset;

use super::exposure::Exposure;

/// The protocols judged: a new TCP connection and a UDP datagram.
pub const PROTOCOLS: [(u8, &str); 2] = [(6, "tcp"), (17, "udp")];

/// Every exposure of the ruleset, sorted; `families` says which of IPv4
/// (false) and IPv6 (true) to judge.
pub fn analyse(ruleset: &Ruleset, env: &Env, families: &[bool]) -> Result<Vec<Exposure>, TooLarge> {
    let ifaces = Ifaces::of(ruleset, &env.routes.devices());
    let mut out = Vec::new();
    for &v6 in families {
        for (proto, name) in PROTOCOLS {
            let outcomes =
                Evaluator::new(ruleset, env, &ifaces, v6, proto).run(whole(v6, proto == 6, &ifaces))?;
            out.extend(summary::exposures(&outcomes, v6, name, &ifaces));
        }
    }
    summary::sort(&mut out);
    Ok(out)
}

/// One concrete packet: where it ends (for the property test against the
/// kernel, and for explaining one probe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub v6: bool,
    pub proto: u8,
    pub saddr: u128,
    pub daddr: u128,
    pub sport: u16,
    pub dport: u16,
    /// The interface it arrives on.
    pub iif: String,
}

/// Where `p` ends: the outcomes covering it (one, unless undecided
/// expressions split its path).
pub fn evaluate_packet(ruleset: &Ruleset, env: &Env, p: &Packet) -> Result<Vec<Outcome>, TooLarge> {
    use super::intervals::{IntervalSet, PORT_MAX, V4_MAX, V6_MAX};
    let ifaces = Ifaces::of(ruleset, &env.routes.devices());
    let max = if p.v6 { V6_MAX } else { V4_MAX };
    let iif = ifaces.atom_for(&p.iif, 1).into_iter().collect();
    let region = Region {
        saddr: IntervalSet::single(max, p.saddr),
        daddr: IntervalSet::single(max, p.daddr),
        sport: IntervalSet::single(PORT_MAX, u128::from(p.sport)),
        dport: IntervalSet::single(PORT_MAX, u128::from(p.dport)),
        iifs: iif,
    };
    Evaluator::new(ruleset, env, &ifaces, p.v6, p.proto).run(region)
}
