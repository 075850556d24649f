//! RFC 6962 Merkle tree hashing over a store of complete-subtree hashes: what
//! to store on append, tree heads at any size, and proof generation.
//!
//! Every function here reads hashes only through [`TreeStore::subtree`], so
//! the same code serves the in-memory [`MemoryTree`] and the database. See the
//! module documentation of [`crate::tlog`] for the storage design.

use sha2::{Digest, Sha256};

use super::Hash;
use super::proof::{ConsistencyProof, InclusionProof};

/// The head of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27,
    0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Subtrees are at most 2^63 leaves wide: a level fits in a byte with room.
const MAX_LEVEL: u8 = 63;

/// Hash of a leaf: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a tree computation failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("tree size {size} is beyond the log's {available} leaves")]
    SizeBeyondLog { size: u64, available: u64 },
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder { old_size: u64, new_size: u64 },
    #[error("the log is full (2^63 leaves)")]
    LogFull,
    #[error("the store has no hash for the subtree at level {level}, index {index}")]
    Missing { level: u8, index: u64 },
    #[error("reading the subtree at level {level}, index {index}: {source}")]
    Store {
        level: u8,
        index: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The read side of a log's stored hashes.
pub trait TreeStore {
    /// Number of leaves appended so far.
    fn size(&self) -> u64;

    /// Hash of the complete subtree covering leaves `[index·2^level,
    /// (index+1)·2^level)`; level 0 is the leaf hashes. Only asked for
    /// subtrees that lie entirely below [`TreeStore::size`].
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, TreeError>;
}

/// One hash the store has to keep: the complete subtree at `(level, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHash {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// The hashes to store when appending a leaf whose hash is `leaf` as leaf
/// number `store.size()`: the leaf hash itself and every subtree it completes,
/// lowest level first. Reads the left sibling of each completed subtree.
pub fn hashes_to_append<S: TreeStore + ?Sized>(store: &S, leaf: Hash) -> Result<Vec<StoredHash>, TreeError> {
    let n = store.size();
    if n >= 1 << MAX_LEVEL {
        return Err(TreeError::LogFull);
    }
    let mut out = vec![StoredHash { level: 0, index: n, hash: leaf }];
    let (mut level, mut index, mut hash) = (0u8, n, leaf);
    // A right child (odd index) completes its parent.
    while index & 1 == 1 {
        let left = store.subtree(level, index - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        index >>= 1;
        out.push(StoredHash { level, index, hash });
    }
    Ok(out)
}

/// The tree head over the first `size` leaves (`size` ≤ the store's size).
pub fn root<S: TreeStore + ?Sized>(store: &S, size: u64) -> Result<Hash, TreeError> {
    check_size(store, size)?;
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(store, 0, size)
}

/// The inclusion proof (RFC 9162 §2.1.3.1 `PATH`) of leaf `index` in the tree
/// of the first `size` leaves.
pub fn prove_inclusion<S: TreeStore + ?Sized>(
    store: &S,
    index: u64,
    size: u64,
) -> Result<InclusionProof, TreeError> {
    check_size(store, size)?;
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    // Walk down from the root recording each sibling, then reverse: the RFC
    // lists the path from the leaf up.
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            path.push(range_hash(store, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(range_hash(store, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(InclusionProof { leaf_index: index, tree_size: size, path })
}

/// The consistency proof (RFC 9162 §2.1.4.1 `SUBPROOF`) that the tree of the
/// first `old_size` leaves is a prefix of the tree of the first `new_size`.
/// Empty when `old_size` is 0 or equals `new_size`.
pub fn prove_consistency<S: TreeStore + ?Sized>(
    store: &S,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, TreeError> {
    check_size(store, new_size)?;
    if old_size > new_size {
        return Err(TreeError::SizesOutOfOrder { old_size, new_size });
    }
    let mut path = Vec::new();
    if old_size > 0 && old_size < new_size {
        // SUBPROOF(m, D[lo:hi], b), unrolled: each step descends into one half
        // and records the other half's hash; deeper hashes come first.
        let (mut m, mut lo, mut hi, mut whole) = (old_size, 0u64, new_size, true);
        while m != hi - lo {
            let k = split(hi - lo);
            if m <= k {
                path.push(range_hash(store, lo + k, hi)?);
                hi = lo + k;
            } else {
                path.push(range_hash(store, lo, lo + k)?);
                m -= k;
                lo += k;
                whole = false;
            }
        }
        // The old tree is a complete subtree of the new one only while we
        // never went right; otherwise its last piece must be given.
        if !whole {
            path.push(range_hash(store, lo, hi)?);
        }
        path.reverse();
    }
    Ok(ConsistencyProof { old_size, new_size, path })
}

/// The largest power of two strictly below `n` (n ≥ 2): where RFC 6962 splits.
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

fn check_size<S: TreeStore + ?Sized>(store: &S, size: u64) -> Result<(), TreeError> {
    let available = store.size();
    if size > available {
        return Err(TreeError::SizeBeyondLog { size, available });
    }
    Ok(())
}

/// MTH(D[lo:hi]) for a range the RFC recursion reaches: `lo` is a multiple of
/// a power of two at least `hi - lo`. Such a range is a run of complete
/// subtrees of decreasing size (the binary digits of its width), and its head
/// is their fold from the right.
fn range_hash<S: TreeStore + ?Sized>(store: &S, lo: u64, hi: u64) -> Result<Hash, TreeError> {
    debug_assert!(lo < hi);
    let mut parts = Vec::with_capacity(64);
    let mut at = lo;
    while at < hi {
        let fits = 63 - (hi - at).leading_zeros();
        let aligned = at.trailing_zeros();
        let level = fits.min(aligned);
        // level ≤ 63: `fits` is the index of a bit of a u64.
        let level = level as u8;
        parts.push(store.subtree(level, at >> level)?);
        at += 1 << level;
    }
    let mut parts = parts.into_iter().rev();
    let mut hash = parts.next().unwrap_or(EMPTY_ROOT);
    for left in parts {
        hash = node_hash(&left, &hash);
    }
    Ok(hash)
}

/// A log held in memory: one vector of complete-subtree hashes per level.
/// 1,000,000 leaves take about 64 MB.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf by its leaf hash (see [`leaf_hash`]); returns its index.
    pub fn append(&mut self, leaf: Hash) -> Result<u64, TreeError> {
        let index = self.size();
        for stored in hashes_to_append(self, leaf)? {
            let level = usize::from(stored.level);
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(stored.hash);
        }
        Ok(index)
    }

    /// Appends an entry: hashes `data` as a leaf first.
    pub fn append_data(&mut self, data: &[u8]) -> Result<u64, TreeError> {
        self.append(leaf_hash(data))
    }

    /// The tree head at the current size.
    pub fn root(&self) -> Hash {
        // The current size is always in range, and memory has every subtree.
        root(self, self.size()).unwrap_or(EMPTY_ROOT)
    }
}

impl TreeStore for MemoryTree {
    fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    fn subtree(&self, level: u8, index: u64) -> Result<Hash, TreeError> {
        self.levels
            .get(usize::from(level))
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .ok_or(TreeError::Missing { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest(b"").into();
        assert_eq!(h, EMPTY_ROOT);
        assert_eq!(MemoryTree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn split_is_largest_power_of_two_below() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(8), 4);
        assert_eq!(split(9), 8);
        assert_eq!(split(u64::MAX), 1 << 63);
    }

    #[test]
    fn append_stores_each_completed_subtree_once() {
        let mut t = MemoryTree::new();
        for i in 0..8u8 {
            t.append_data(&[i]).unwrap();
        }
        let counts: Vec<usize> = t.levels.iter().map(Vec::len).collect();
        assert_eq!(counts, vec![8, 4, 2, 1]);
        assert_eq!(t.subtree(3, 0).unwrap(), t.root());
        assert!(matches!(t.subtree(3, 1), Err(TreeError::Missing { level: 3, index: 1 })));
    }

    #[test]
    fn sizes_beyond_the_log_are_refused() {
        let mut t = MemoryTree::new();
        t.append_data(b"a").unwrap();
        assert!(matches!(root(&t, 2), Err(TreeError::SizeBeyondLog { size: 2, available: 1 })));
        assert!(matches!(prove_inclusion(&t, 1, 1), Err(TreeError::IndexOutOfRange { .. })));
        assert!(matches!(prove_consistency(&t, 1, 2), Err(TreeError::SizeBeyondLog { .. })));
        assert!(matches!(prove_consistency(&t, 1, 0), Err(TreeError::SizesOutOfOrder { .. })));
    }
}
