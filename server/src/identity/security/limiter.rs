//! A token bucket per source address (see [`super::source_key`]) for
//! enrollment attempts: an attempt takes a token, a successful enrollment
//! gives it back, so only refusals use up a source's allowance while a
//! fleet enrolling from behind one address is not held back. Tokens are
//! taken before the work, so concurrent guesses cannot overtake the count.
//!
//! Memory is bounded: at most `max_sources` sources are remembered; a new
//! one beyond that forgets the least recently seen. Forgetting gives that
//! source a full bucket again, the price of a bound an attacker with many
//! addresses cannot push up. Time is passed in, so the tests step it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::source_key;

/// An attempt refused: the bucket is empty until `retry_after` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

pub struct RateLimiter {
    burst: f64,
    /// Tokens added per minute.
    per_minute: f64,
    max_sources: usize,
    sources: Mutex<Sources>,
}

#[derive(Default)]
struct Sources {
    buckets: HashMap<IpAddr, Bucket>,
    /// Sources by the tick they were last seen at, oldest first.
    by_age: BTreeMap<u64, IpAddr>,
    tick: u64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    seen: u64,
}

impl RateLimiter {
    /// `burst` attempts at once, `per_minute` after that, `max_sources` remembered.
    pub fn new(burst: u32, per_minute: u32, max_sources: usize) -> Self {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_minute: f64::from(per_minute.max(1)),
            max_sources: max_sources.max(1),
            sources: Mutex::new(Sources::default()),
        }
    }

    pub fn from_limits(l: &crate::identity::security::Limits) -> Self {
        Self::new(l.enroll_burst, l.enroll_attempts_per_minute, l.enroll_tracked_sources)
    }

    /// Takes one attempt for `ip` at `now`; refused when its bucket is empty.
    pub fn try_take(&self, ip: IpAddr, now: Instant) -> Result<(), Throttled> {
        let mut s = self.lock();
        let bucket = s.touch(source_key(ip), now, self.burst, self.max_sources);
        bucket.tokens = (bucket.tokens
            + now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_minute / 60.0)
            .min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Throttled {
            retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) * 60.0 / self.per_minute),
        })
    }

    /// Gives an attempt back (the enrollment succeeded).
    pub fn give_back(&self, ip: IpAddr) {
        let mut s = self.lock();
        if let Some(b) = s.buckets.get_mut(&source_key(ip)) {
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }

    /// Sources remembered now.
    pub fn tracked(&self) -> usize {
        self.lock().buckets.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        // The map stays consistent whatever panicked while holding it.
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sources {
    /// The bucket of `key`, marked as seen now; a new source gets a full
    /// bucket, forgetting the least recently seen one when at `max`.
    fn touch(&mut self, key: IpAddr, now: Instant, burst: f64, max: usize) -> &mut Bucket {
        self.tick += 1;
        let tick = self.tick;
        if let Some(b) = self.buckets.get(&key) {
            self.by_age.remove(&b.seen);
        } else {
            while self.buckets.len() >= max {
                let Some((_, oldest)) = self.by_age.pop_first() else { break };
                self.buckets.remove(&oldest);
            }
        }
        self.by_age.insert(tick, key);
        let bucket = self.buckets.entry(key).or_insert(Bucket { tokens: burst, at: now, seen: tick });
        bucket.seen = tick;
        bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate_and_successes_give_back() {
        let l = RateLimiter::new(10, 10, 100);
        let t0 = Instant::now();
        for _ in 0..10 {
            l.try_take(ip("192.0.2.1"), t0).unwrap();
        }
        let refused = l.try_take(ip("192.0.2.1"), t0).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(6), "10 a minute: one every 6 s");
        // Another source is not affected.
        l.try_take(ip("192.0.2.2"), t0).unwrap();
        // One token back after 6 s, and only one.
        let t6 = t0 + Duration::from_secs(6);
        l.try_take(ip("192.0.2.1"), t6).unwrap();
        assert!(l.try_take(ip("192.0.2.1"), t6).is_err());
        // A success gives its attempt back.
        l.give_back(ip("192.0.2.1"));
        l.try_take(ip("192.0.2.1"), t6).unwrap();
        // A long pause refills to the burst, not beyond.
        let later = t6 + Duration::from_secs(3600);
        for _ in 0..10 {
            l.try_take(ip("192.0.2.1"), later).unwrap();
        }
        assert!(l.try_take(ip("192.0.2.1"), later).is_err());
    }

    #[test]
    fn memory_is_bounded_by_forgetting_the_least_recently_seen() {
        let l = RateLimiter::new(1, 1, 3);
        let t = Instant::now();
        for a in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            l.try_take(ip(a), t).unwrap();
        }
        // .1 seen again (refused): now .2 is the oldest.
        assert!(l.try_take(ip("192.0.2.1"), t).is_err());
        l.try_take(ip("192.0.2.4"), t).unwrap();
        assert_eq!(l.tracked(), 3);
        assert!(l.try_take(ip("192.0.2.1"), t).is_err(), ".1 is still remembered");
        assert!(l.try_take(ip("192.0.2.3"), t).is_err(), ".3 is still remembered");
        l.try_take(ip("192.0.2.2"), t).expect(".2 was forgotten: a full bucket again");
        for i in 0..10_000u32 {
            let _ = l.try_take(IpAddr::from(i.to_be_bytes()), t);
        }
        assert_eq!(l.tracked(), 3);
    }

    #[test]
    fn one_ipv6_64_is_one_source() {
        let l = RateLimiter::new(2, 1, 10);
        let t = Instant::now();
        l.try_take(ip("2001:db8::1"), t).unwrap();
        l.try_take(ip("2001:db8::ffff:2"), t).unwrap();
        assert!(l.try_take(ip("2001:db8::3"), t).is_err());
        l.try_take(ip("2001:db8:0:1::1"), t).unwrap();
    }
}
