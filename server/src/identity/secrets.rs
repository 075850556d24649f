//! Random secrets and their at-rest form: enrollment tokens, API tokens, ids.
//!
//! Invariant: a token is shown once and stored only as its SHA-256 hash. The
//! tokens carry 256 random bits, so a plain hash is not open to guessing.

use sha2::{Digest, Sha256};

/// Bytes from the operating system's CSPRNG.
pub fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // Without an OS random source no secret can be made safely: stop.
    getrandom::fill(&mut out).expect("the operating system's random source is unavailable");
    out
}

/// A new token: a readable prefix and 256 random bits in hex.
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random::<32>()))
}

/// The at-rest form of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new agent id: 128 random bits in hex.
pub fn new_agent_id() -> String {
    hex::encode(random::<16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hash_stably() {
        let a = new_token("cet");
        let b = new_token("cet");
        assert_ne!(a, b);
        assert!(a.starts_with("cet_") && a.len() == 4 + 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(new_agent_id().len(), 32);
    }
}
