//! The sampling rule an export draws hosts by and the verifier redraws
//! them by: a host's key is a hash of the seed and its agent id, and the
//! sample is the hosts with the smallest keys. Pure; the order of the
//! population never matters.

use sha2::{Digest, Sha256};

/// The sampling key of a host: hex SHA-256(seed || 0x00 || agent id).
pub fn sample_key(seed: &str, agent: &str) -> String {
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update([0u8]);
    h.update(agent.as_bytes());
    hex::encode(h.finalize())
}

/// The `n` hosts of `population` with the smallest sampling keys (all of
/// them when there are fewer), sorted by agent id. The order of
/// `population` does not matter.
pub fn sample(population: &[String], n: usize, seed: &str) -> Vec<String> {
    let mut keyed: Vec<(String, &String)> = population.iter().map(|a| (sample_key(seed, a), a)).collect();
    keyed.sort();
    let mut chosen: Vec<String> = keyed.into_iter().take(n).map(|(_, a)| a.clone()).collect();
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_depends_on_the_seed_not_on_the_order() {
        let hosts: Vec<String> = (0..50).map(|i| format!("agent-{i:02}")).collect();
        let a = sample(&hosts, 5, "audit-2026");
        let mut reversed = hosts.clone();
        reversed.reverse();
        assert_eq!(a, sample(&reversed, 5, "audit-2026"));
        assert_eq!(a.len(), 5);
        assert_ne!(a, sample(&hosts, 5, "audit-2027"));
        assert_eq!(sample(&hosts[..3], 5, "x").len(), 3);
    }
}
