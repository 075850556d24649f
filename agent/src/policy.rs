//! What the server asks this agent to collect, and the copy of it kept in
//! the state directory so that collection never waits for the server.
//!
//! Invariant: the agent always has a policy: the last one the server sent
//! (saved at enrollment and after every change), or the defaults of its
//! settings before the first.

use std::collections::BTreeMap;
use std::time::Duration;

/// What the server currently asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivePolicy {
    /// Interval of checks without their own.
    pub interval: Duration,
    pub collector_timeout: Duration,
    /// Checks to run; empty means every check the agent knows.
    pub checks: Vec<String>,
    pub check_intervals: BTreeMap<String, Duration>,
    pub jitter_percent: u32,
    /// How often to ask for the policy again.
    pub poll: Duration,
    /// The server's collect-now counter as last seen.
    pub collect_now_generation: u64,
}

impl ActivePolicy {
    /// The policy of an agent that has not heard from its server yet.
    pub fn initial(interval: Duration, collector_timeout: Duration) -> ActivePolicy {
        ActivePolicy {
            interval,
            collector_timeout,
            checks: Vec::new(),
            check_intervals: BTreeMap::new(),
            jitter_percent: 0,
            poll: Duration::from_secs(60),
            collect_now_generation: 0,
        }
    }

    /// The checks this policy runs.
    pub fn active_checks(&self) -> Vec<String> {
        if self.checks.is_empty() {
            crate::collect::CHECKS.iter().map(|c| c.id.to_string()).collect()
        } else {
            self.checks.clone()
        }
    }

    pub fn interval_of(&self, check: &str) -> Duration {
        self.check_intervals.get(check).copied().unwrap_or(self.interval)
    }
}

/// A policy as the server sent it, with the bytes that are saved.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub policy: ActivePolicy,
    /// The message as received, decoded again at the next start.
    pub saved_form: Vec<u8>,
}
