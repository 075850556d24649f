//! Time limits on every exchange with the server, and the pause between
//! failed attempts.
//!
//! A server that accepts TCP connections but never answers (hung, paused,
//! behind a stuck load balancer) must cost the agent a bounded wait per
//! attempt, never its collection schedule. Each phase of an exchange has its
//! own limit, so the log line that reports a timeout can name the phase.
//!
//! Invariant: every await on the network in `transport`, `enroll` and
//! `courier` goes through [`within`] or [`within_until`].

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

/// The limits, from `[network]` in agent.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deadlines {
    /// TCP connect plus TLS handshake, seconds.
    pub connect_secs: u64,
    /// One request and its answer (enrollment, policy, renewal), seconds.
    pub call_secs: u64,
    /// Longest silence on the evidence stream while answers are owed, seconds.
    pub stream_progress_secs: u64,
    /// One whole delivery attempt, however many records it carries, seconds.
    pub delivery_secs: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        // The server closes idle handshakes after 10 s; a healthy server
        // answers a call in milliseconds and a stream round of 1,000
        // records in well under a second.
        Deadlines { connect_secs: 10, call_secs: 30, stream_progress_secs: 60, delivery_secs: 600 }
    }
}

impl Deadlines {
    pub fn connect(&self) -> Duration {
        Duration::from_secs(self.connect_secs.max(1))
    }
    pub fn call(&self) -> Duration {
        Duration::from_secs(self.call_secs.max(1))
    }
    pub fn stream_progress(&self) -> Duration {
        Duration::from_secs(self.stream_progress_secs.max(1))
    }
    pub fn delivery(&self) -> Duration {
        Duration::from_secs(self.delivery_secs.max(1))
    }
}

/// The part of an exchange that took too long, as the log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect and TLS handshake.
    Connect,
    Enrollment,
    PolicyFetch,
    Renewal,
    /// Opening the evidence stream (the server's first answer).
    StreamOpen,
    /// Waiting for the answer to a record sent.
    StreamProgress,
    /// The whole delivery attempt.
    Delivery,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "TCP connect and TLS handshake",
            Phase::Enrollment => "enrollment call",
            Phase::PolicyFetch => "policy fetch",
            Phase::Renewal => "certificate renewal call",
            Phase::StreamOpen => "opening the evidence stream",
            Phase::StreamProgress => "answer on the evidence stream",
            Phase::Delivery => "delivery attempt",
        })
    }
}

/// A phase that did not finish in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server did not answer in time: {phase} exceeded {}", secs(*.after))]
pub struct TimedOut {
    pub phase: Phase,
    pub after: Duration,
}

fn secs(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64().max(1.0))
}

/// Runs `fut` for at most `limit`.
pub async fn within<T>(phase: Phase, limit: Duration, fut: impl Future<Output = T>) -> Result<T, TimedOut> {
    tokio::time::timeout(limit, fut).await.map_err(|_| TimedOut { phase, after: limit })
}

/// Runs `fut` for at most `limit`, and not past `deadline`; a timeout names
/// `overall` when the deadline was the nearer of the two.
pub async fn within_until<T>(
    phase: Phase,
    limit: Duration,
    (overall, deadline, total): (Phase, tokio::time::Instant, Duration),
    fut: impl Future<Output = T>,
) -> Result<T, TimedOut> {
    let own = tokio::time::Instant::now() + limit;
    let (until, named) = if deadline < own {
        (deadline, TimedOut { phase: overall, after: total })
    } else {
        (own, TimedOut { phase, after: limit })
    };
    tokio::time::timeout_at(until, fut).await.map_err(|_| named)
}

/// Exponential backoff between failed attempts with "equal jitter": half
/// the current step fixed, half random, so a fleet that lost its server at
/// the same moment does not come back at the same moment.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { step: min, min, max: max.max(min) }
    }

    /// The pause before the next attempt; each call doubles the step up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.step / 2 + self.step.mul_f64(random_share() / 2.0);
        self.step = (self.step * 2).min(self.max);
        delay
    }

    /// After a success: the next failure waits the shortest step again.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// A uniform share in [0, 1); 0 when the system has no randomness to give.
fn random_share() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_half_of_each_step_random() {
        let mut b = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
        let mut delays = Vec::new();
        for _ in 0..8 {
            delays.push(b.next_delay());
        }
        let steps = [4, 8, 16, 32, 60, 60, 60, 60].map(Duration::from_secs);
        for (d, s) in delays.iter().zip(steps) {
            assert!(*d >= s / 2 && *d < s, "{d:?} outside [{:?}, {s:?})", s / 2);
        }
        // Forty draws from a continuous range are not all equal.
        let mut c = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let draws: std::collections::BTreeSet<_> = (0..40).map(|_| c.next_delay()).collect();
        assert!(draws.len() > 30, "no jitter: {draws:?}");
        b.reset();
        assert!(b.next_delay() < Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_phase_that_hangs_is_named_in_the_error() {
        let hang = std::future::pending::<()>();
        let e = within(Phase::Connect, Duration::from_secs(10), hang).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server did not answer in time: TCP connect and TLS handshake exceeded 10 s"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let e = within_until(
            Phase::StreamProgress,
            Duration::from_secs(60),
            (Phase::Delivery, deadline, Duration::from_secs(5)),
            std::future::pending::<()>(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.phase, Phase::Delivery, "the overall deadline came first");
        let ok = within(Phase::PolicyFetch, Duration::from_secs(1), async { 7 }).await;
        assert_eq!(ok, Ok(7));
    }
}
