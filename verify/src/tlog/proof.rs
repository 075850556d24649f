//! Inclusion and consistency proofs and their verification, with the
//! algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 as written.
//!
//! Before running the RFC algorithm each verifier compares the proof's length
//! with the length the tree sizes call for, so a truncated or padded proof is
//! reported as such rather than as a hash mismatch.

use super::Hash;
use super::merkle::{EMPTY_ROOT, node_hash, split};

/// Proof that a leaf is in a tree: the sibling hashes from the leaf up
/// (RFC 9162 `PATH(m, D[n])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub path: Vec<Hash>,
}

/// Proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves (RFC 9162 `PROOF(m, D[n])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub path: Vec<Hash>,
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },
    #[error("proof too short: {actual} hashes where the tree sizes call for {expected}")]
    TooShort { expected: usize, actual: usize },
    #[error("proof too long: {actual} hashes where the tree sizes call for {expected}")]
    TooLong { expected: usize, actual: usize },
    #[error(
        "root mismatch: the proof leads to {} for tree size {size}, the tree head is {}",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    RootMismatch { size: u64, computed: Hash, expected: Hash },
    #[error(
        "old root mismatch: the proof leads to {} for tree size {size}, the old tree head is {}",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    OldRootMismatch { size: u64, computed: Hash, expected: Hash },
    #[error(
        "new root mismatch: the proof leads to {} for tree size {size}, the new tree head is {}",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    NewRootMismatch { size: u64, computed: Hash, expected: Hash },
    #[error("two tree heads of the same size {size} differ: {} and {}", hex::encode(.old), hex::encode(.new))]
    SameSizeDifferentRoots { size: u64, old: Hash, new: Hash },
    #[error("a tree of size 0 has head {}, not the empty-tree hash", hex::encode(.found))]
    EmptyTreeRoot { found: Hash },
}

/// Number of hashes in `PATH(index, D[size])`.
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (mut m, mut n, mut len) = (index, size, 0);
    while n > 1 {
        let k = split(n);
        if m < k {
            n = k;
        } else {
            m -= k;
            n -= k;
        }
        len += 1;
    }
    len
}

/// Number of hashes in `PROOF(old_size, D[new_size])`; 0 when `old_size` is 0
/// or equals `new_size`.
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    let (mut m, mut n, mut whole, mut len) = (old_size, new_size, true, 0);
    while m != n {
        let k = split(n);
        if m <= k {
            n = k;
        } else {
            m -= k;
            n -= k;
            whole = false;
        }
        len += 1;
    }
    len + usize::from(!whole)
}

fn check_len(expected: usize, actual: usize) -> Result<(), ProofError> {
    match actual.cmp(&expected) {
        std::cmp::Ordering::Less => Err(ProofError::TooShort { expected, actual }),
        std::cmp::Ordering::Greater => Err(ProofError::TooLong { expected, actual }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

impl InclusionProof {
    /// Verifies that the leaf whose hash is `leaf` is leaf number
    /// `leaf_index` of the tree of `tree_size` leaves whose head is `root`.
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), ProofError> {
        let (index, size) = (self.leaf_index, self.tree_size);
        // Step 1.
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let expected = inclusion_proof_len(index, size);
        check_len(expected, self.path.len())?;
        // Steps 2 to 4.
        let (mut f_n, mut s_n) = (index, size - 1);
        let mut r = *leaf;
        for p in &self.path {
            if s_n == 0 {
                return Err(ProofError::TooLong { expected, actual: self.path.len() });
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = node_hash(p, &r);
                if f_n & 1 == 0 {
                    while f_n & 1 == 0 && f_n != 0 {
                        f_n >>= 1;
                        s_n >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        // Step 5.
        if s_n != 0 {
            return Err(ProofError::TooShort { expected, actual: self.path.len() });
        }
        if r != *root {
            return Err(ProofError::RootMismatch { size, computed: r, expected: *root });
        }
        Ok(())
    }
}

impl ConsistencyProof {
    /// Verifies that the tree of `old_size` leaves with head `old_root` is a
    /// prefix of the tree of `new_size` leaves with head `new_root`.
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        let (m, n) = (self.old_size, self.new_size);
        if m > n {
            return Err(ProofError::SizesOutOfOrder { old_size: m, new_size: n });
        }
        let expected = consistency_proof_len(m, n);
        check_len(expected, self.path.len())?;
        // Every tree extends the empty one, but only the empty-tree hash is the
        // head of a tree of size 0.
        if m == 0 {
            if *old_root != EMPTY_ROOT {
                return Err(ProofError::EmptyTreeRoot { found: *old_root });
            }
            if n == 0 && *new_root != EMPTY_ROOT {
                return Err(ProofError::EmptyTreeRoot { found: *new_root });
            }
            return Ok(());
        }
        if m == n {
            if old_root != new_root {
                return Err(ProofError::SameSizeDifferentRoots { size: m, old: *old_root, new: *new_root });
            }
            return Ok(());
        }
        // Step 2: when the old tree is a complete subtree its head starts the path.
        let seed = m.is_power_of_two().then_some(old_root);
        let mut path = seed.into_iter().chain(self.path.iter());
        // Step 3 and 4.
        let (mut f_n, mut s_n) = (m - 1, n - 1);
        while f_n & 1 == 1 {
            f_n >>= 1;
            s_n >>= 1;
        }
        // Step 5: the length check above guarantees a first element.
        let first = path.next().copied().unwrap_or(EMPTY_ROOT);
        let (mut f_r, mut s_r) = (first, first);
        // Step 6.
        for c in path {
            if s_n == 0 {
                return Err(ProofError::TooLong { expected, actual: self.path.len() });
            }
            if f_n & 1 == 1 || f_n == s_n {
                f_r = node_hash(c, &f_r);
                s_r = node_hash(c, &s_r);
                if f_n & 1 == 0 {
                    while f_n & 1 == 0 && f_n != 0 {
                        f_n >>= 1;
                        s_n >>= 1;
                    }
                }
            } else {
                s_r = node_hash(&s_r, c);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        // Step 7.
        if s_n != 0 {
            return Err(ProofError::TooShort { expected, actual: self.path.len() });
        }
        if f_r != *old_root {
            return Err(ProofError::OldRootMismatch { size: m, computed: f_r, expected: *old_root });
        }
        if s_r != *new_root {
            return Err(ProofError::NewRootMismatch { size: n, computed: s_r, expected: *new_root });
        }
        Ok(())
    }
}
