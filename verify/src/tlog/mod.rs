//! The transparency log's pure core: RFC 6962 / RFC 9162 Merkle tree hashing,
//! inclusion and consistency proofs, and C2SP signed notes and checkpoints.
//! No I/O and no clock: the store persists what [`merkle`] says to persist and
//! the API serves what it computes.
//!
//! # Formats
//!
//! - Hashing ([`merkle`]): leaf = SHA-256(0x00 || data), node = SHA-256(0x01 ||
//!   left || right), the tree head over n leaves splits at the largest power of
//!   two below n, the empty tree's head is SHA-256("") (RFC 6962 §2.1).
//! - Proofs ([`proof`]): inclusion proofs are RFC 9162 §2.1.3 `PATH`, consistency
//!   proofs §2.1.4 `SUBPROOF`, both verified with the RFC's own algorithms.
//! - Notes ([`note`]): c2sp.org/signed-note with Ed25519 (signature type 0x01),
//!   verifier keys in the `<name>+<hex key id>+<base64(0x01 || key)>` form of
//!   Go's `golang.org/x/mod/sumdb/note`, so Go tooling reads our checkpoints.
//! - Checkpoints ([`checkpoint`]): c2sp.org/tlog-checkpoint bodies
//!   `<origin>\n<size>\n<base64 root>\n[extension lines]`.
//!
//! # Storage design
//!
//! A log keeps, besides its entries, the hash of every *complete* subtree: the
//! subtree at `(level, index)` covers leaves `[index·2^level, (index+1)·2^level)`.
//! Such a hash never changes once written, so the table is append-only
//! (`(level, index) → 32 bytes`, about 2n rows for n leaves: n leaf hashes,
//! n/2 at level 1, ...). This is the layout of Go's `sumdb/tlog` "stored
//! hashes" and of C2SP tlog-tiles, so the log can later be served as tiles.
//!
//! - Appending leaf n writes its leaf hash at `(0, n)` and one more hash per
//!   subtree it completes (the number of trailing one bits of n; 1 on
//!   average), reading the left sibling of each: O(log n) reads and writes.
//! - Any range the RFC recursion needs, `[lo, hi)` with `lo` aligned, is the
//!   fold of at most log2(n) complete subtrees, so the root at *any* size ≤ n
//!   (not only the latest: proofs are served against the size of a published
//!   checkpoint) costs O(log n) reads.
//! - An inclusion proof needs at most one incomplete sibling range (all other
//!   siblings are complete subtrees), a consistency proof at most two: each
//!   proof costs O(log n) reads, at most 26 in a 1,000,000-leaf log (39 in the
//!   worst size below 2^20), and never reads leaves other than their hashes.
//!
//! [`merkle::TreeStore`] is the read side of that table; [`merkle::MemoryTree`]
//! is the in-memory implementation (tests, offline tools); SQLite implements
//! the same trait with a `WITHOUT ROWID` table keyed by `(level, index)`.
//!
//! # Why no crate
//!
//! The crates that exist were evaluated: `signed_note` 0.2 / `tlog_tiles` 0.2
//! (Cloudflare's ports of Go's note and tlog; unreleased since April 2025) pull
//! a second Ed25519 and SHA-2 stack (ed25519-dalek 2, sha2 0.10, base64 0.21,
//! thiserror 1, url), report every failure as one opaque error ("malformed
//! note", "invalid transparency proof") and panic on some inputs; `ct-merkle`
//! 0.3 only proves against its current size and addresses right-edge nodes
//! whose hashes change as the tree grows, which does not fit an append-only
//! table. The algorithms are short; they are implemented here from the RFC and
//! C2SP texts and checked against the published RFC 6962 vectors and a note
//! signed by Go's implementation (`verify/tests/tlog_vectors.rs`).

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod proof;

/// A SHA-256 hash: a leaf, an interior node or a tree head.
pub type Hash = [u8; 32];

pub use checkpoint::{Checkpoint, CheckpointError, check_consistent};
pub use merkle::{EMPTY_ROOT, MemoryTree, StoredHash, TreeError, TreeStore, leaf_hash, node_hash};
pub use note::{Note, NoteError, NoteSignature, NoteSigner, VerifierKey};
pub use proof::{ConsistencyProof, InclusionProof, ProofError};
