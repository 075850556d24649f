//! Sets of integers as sorted, disjoint, inclusive ranges inside a domain
//! `0..=max`: port numbers (`max` 65535), IPv4 addresses (`u32::MAX`) and
//! IPv6 addresses (`u128::MAX`), all held as `u128`.
//!
//! The firewall evaluators judge whole regions of the packet space at once
//! (a destination port set, a source address set), so a match splits a
//! region into the part it selects and the rest: [`IntervalSet::intersect`]
//! and [`IntervalSet::minus`]. Pure and total: no operation panics on any
//! input.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The domain maximum of TCP and UDP ports.
pub const PORT_MAX: u128 = u16::MAX as u128;
/// The domain maximum of IPv4 addresses.
pub const V4_MAX: u128 = u32::MAX as u128;
/// The domain maximum of IPv6 addresses.
pub const V6_MAX: u128 = u128::MAX;

/// A set of integers in `0..=max`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntervalSet {
    max: u128,
    /// Sorted, disjoint, non-adjacent, each `lo <= hi <= max`.
    ranges: Vec<(u128, u128)>,
}

impl fmt::Debug for IntervalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, (lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            if lo == hi { write!(f, "{lo}")? } else { write!(f, "{lo}-{hi}")? }
        }
        write!(f, "}}")
    }
}

impl IntervalSet {
    /// The empty set in `0..=max`.
    pub fn empty(max: u128) -> Self {
        IntervalSet { max, ranges: Vec::new() }
    }

    /// The whole domain `0..=max`.
    pub fn full(max: u128) -> Self {
        IntervalSet { max, ranges: vec![(0, max)] }
    }

    /// One value (clamped out when above `max`).
    pub fn single(max: u128, v: u128) -> Self {
        Self::from_ranges(max, [(v, v)])
    }

    /// The union of the given ranges; reversed ranges are turned round and
    /// the parts above `max` dropped.
    pub fn from_ranges(max: u128, ranges: impl IntoIterator<Item = (u128, u128)>) -> Self {
        let mut v: Vec<(u128, u128)> = ranges
            .into_iter()
            .map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
            .filter(|(lo, _)| *lo <= max)
            .map(|(lo, hi)| (lo, hi.min(max)))
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        IntervalSet { max, ranges: out }
    }

    pub fn domain_max(&self) -> u128 {
        self.max
    }

    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.ranges == [(0, self.max)]
    }

    /// The smallest member.
    pub fn first(&self) -> Option<u128> {
        self.ranges.first().map(|r| r.0)
    }

    pub fn contains(&self, v: u128) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < v);
        self.ranges.get(i).is_some_and(|r| r.0 <= v)
    }

    /// How many members, saturating at `u128::MAX`.
    pub fn count(&self) -> u128 {
        self.ranges.iter().fold(0u128, |n, (lo, hi)| n.saturating_add(hi - lo).saturating_add(1))
    }

    pub fn union(&self, other: &IntervalSet) -> IntervalSet {
        Self::from_ranges(self.max, self.ranges.iter().chain(&other.ranges).copied())
    }

    pub fn intersect(&self, other: &IntervalSet) -> IntervalSet {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a, b) = (self.ranges[i], other.ranges[j]);
            let lo = a.0.max(b.0);
            let hi = a.1.min(b.1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 { i += 1 } else { j += 1 }
        }
        IntervalSet { max: self.max, ranges: out }
    }

    /// Everything in the domain that is not in `self`.
    pub fn complement(&self) -> IntervalSet {
        let mut out = Vec::new();
        let mut next: Option<u128> = Some(0);
        for &(lo, hi) in &self.ranges {
            if let Some(n) = next
                && n < lo
            {
                out.push((n, lo - 1));
            }
            next = hi.checked_add(1);
        }
        if let Some(n) = next
            && n <= self.max
        {
            out.push((n, self.max));
        }
        IntervalSet { max: self.max, ranges: out }
    }

    pub fn minus(&self, other: &IntervalSet) -> IntervalSet {
        self.intersect(&other.complement())
    }

    pub fn is_subset(&self, other: &IntervalSet) -> bool {
        self.minus(other).is_empty()
    }

    /// Ports as people write them: `any`, `22`, `22,80,443`, `1000-2000`.
    pub fn port_text(&self) -> String {
        if self.is_full() {
            return "any".into();
        }
        self.ranges
            .iter()
            .map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The set as the fewest CIDR prefixes (IPv4 when `max` is
    /// [`V4_MAX`], IPv6 otherwise), computed by `ipnet`.
    pub fn prefixes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for &(lo, hi) in &self.ranges {
            if self.max == V4_MAX {
                let (a, b) = (Ipv4Addr::from(lo as u32), Ipv4Addr::from(hi as u32));
                out.extend(ipnet::Ipv4Subnets::new(a, b, 0).map(|n| n.to_string()));
            } else {
                let (a, b) = (Ipv6Addr::from(lo), Ipv6Addr::from(hi));
                out.extend(ipnet::Ipv6Subnets::new(a, b, 0).map(|n| n.to_string()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_algebra_on_ports() {
        let a = IntervalSet::from_ranges(PORT_MAX, [(22, 22), (80, 90), (85, 100), (101, 101)]);
        assert_eq!(a.ranges(), &[(22, 22), (80, 101)]);
        assert_eq!(a.count(), 23);
        assert!(a.contains(22) && a.contains(101) && !a.contains(23));
        let c = a.complement();
        assert_eq!(c.ranges(), &[(0, 21), (23, 79), (102, 65535)]);
        assert_eq!(a.union(&c), IntervalSet::full(PORT_MAX));
        assert!(a.intersect(&c).is_empty());
        assert_eq!(a.minus(&IntervalSet::single(PORT_MAX, 90)).port_text(), "22,80-89,91-101");
        assert_eq!(IntervalSet::full(PORT_MAX).port_text(), "any");
        assert!(IntervalSet::from_ranges(PORT_MAX, [(70000, 80000)]).is_empty());
    }

    #[test]
    fn the_top_of_a_u128_domain_is_handled() {
        let top = IntervalSet::from_ranges(V6_MAX, [(u128::MAX - 1, u128::MAX)]);
        assert_eq!(top.complement().ranges(), &[(0, u128::MAX - 2)]);
        assert_eq!(IntervalSet::full(V6_MAX).count(), u128::MAX);
        assert!(IntervalSet::full(V6_MAX).complement().is_empty());
    }

    #[test]
    fn addresses_print_as_prefixes() {
        let ten = IntervalSet::from_ranges(V4_MAX, [(0x0a00_0000, 0x0aff_ffff)]);
        assert_eq!(ten.prefixes(), vec!["10.0.0.0/8"]);
        let not_loopback = IntervalSet::from_ranges(V4_MAX, [(0x7f00_0000, 0x7fff_ffff)]).complement();
        assert_eq!(not_loopback.prefixes().len(), 8);
        let v6 = IntervalSet::single(V6_MAX, 1);
        assert_eq!(v6.prefixes(), vec!["::1/128"]);
    }
}
