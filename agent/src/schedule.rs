//! When each check is next due: per-check intervals from the server's
//! policy, each next run put off by a random share of its interval (jitter)
//! so a fleet does not collect and report in lockstep, and "collect now"
//! making every check due at once.
//!
//! Pure: time is passed in, randomness is passed in as a fraction.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Schedule {
    next: BTreeMap<String, Instant>,
}

impl Schedule {
    /// The checks among `active` that are due at `now` (never run counts as due).
    pub fn due(&self, active: &[String], now: Instant) -> Vec<String> {
        active.iter().filter(|c| self.next.get(*c).is_none_or(|t| *t <= now)).cloned().collect()
    }

    /// Records that `check` ran at `now`; `jitter` is the extra delay as a
    /// share of the interval (0.0 ..= 0.5).
    pub fn collected(&mut self, check: &str, now: Instant, interval: Duration, jitter: f64) {
        let extra = interval.mul_f64(jitter.clamp(0.0, 0.5));
        self.next.insert(check.to_string(), now + interval + extra);
    }

    /// Makes every check due now.
    pub fn all_due(&mut self) {
        self.next.clear();
    }

    /// The earliest time one of `active` falls due (`None`: one is due already).
    pub fn next_due(&self, active: &[String]) -> Option<Instant> {
        let mut earliest = None;
        for c in active {
            let t = self.next.get(c)?;
            earliest = Some(earliest.map_or(*t, |e: Instant| e.min(*t)));
        }
        earliest
    }
}

/// A uniformly random share in `0 .. percent/100` (0 when the OS gives no
/// randomness: no jitter is better than no collection).
pub fn jitter_share(percent: u32) -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0) * f64::from(percent.min(50)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_fall_due_by_their_own_interval_plus_jitter() {
        let t0 = Instant::now();
        let active: Vec<String> = ["firewall", "software_inventory"].map(String::from).to_vec();
        let mut s = Schedule::default();
        assert_eq!(s.due(&active, t0), active);
        assert_eq!(s.next_due(&active), None);
        s.collected("firewall", t0, Duration::from_secs(300), 0.1);
        s.collected("software_inventory", t0, Duration::from_secs(86_400), 0.0);
        assert!(s.due(&active, t0 + Duration::from_secs(329)).is_empty());
        assert_eq!(s.due(&active, t0 + Duration::from_secs(330)), vec!["firewall"]);
        assert_eq!(s.next_due(&active), Some(t0 + Duration::from_secs(330)));
        // A check added by a new policy is due at once.
        let more: Vec<String> = ["firewall", "time_sync"].map(String::from).to_vec();
        assert_eq!(s.due(&more, t0), vec!["time_sync"]);
        s.all_due();
        assert_eq!(s.due(&active, t0), active);
    }

    #[test]
    fn jitter_stays_within_its_share() {
        for _ in 0..1000 {
            let j = jitter_share(10);
            assert!((0.0..0.1).contains(&j), "{j}");
        }
        assert_eq!(jitter_share(0), 0.0);
        let spread: std::collections::BTreeSet<u64> =
            (0..50).map(|_| (jitter_share(50) * 1e6) as u64).collect();
        assert!(spread.len() > 40, "jitter is not random: {spread:?}");
    }
}
