//! Known-answer and tampering tests of the transparency log core
//! (`custos_verify::tlog`): RFC 6962 tree heads and proofs against the
//! published vectors and a naive implementation of the RFC's definitions,
//! and C2SP signed notes and checkpoints against notes made by other
//! implementations (Go's example note, `tlog/make_notes.py`).

use std::cell::Cell;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use custos_verify::tlog::merkle::{self, hashes_to_append};
use custos_verify::tlog::note::{MAX_NOTE_BYTES, MAX_SIGNATURES};
use custos_verify::tlog::proof::{consistency_proof_len, inclusion_proof_len};
use custos_verify::tlog::{
    Checkpoint, CheckpointError, ConsistencyProof, EMPTY_ROOT, Hash, InclusionProof, MemoryTree, Note,
    NoteError, NoteSigner, ProofError, TreeError, TreeStore, VerifierKey, check_consistent, leaf_hash,
    node_hash,
};
use ed25519_dalek::SigningKey;
use serde::Deserialize;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tlog").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn h(hex_str: &str) -> Hash {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

#[derive(Deserialize)]
struct Vectors {
    leaves: Vec<String>,
    roots: Vec<String>,
    inclusion: Vec<InclusionVector>,
    consistency: Vec<ConsistencyVector>,
}

#[derive(Deserialize)]
struct InclusionVector {
    index: u64,
    size: u64,
    path: Vec<String>,
}

#[derive(Deserialize)]
struct ConsistencyVector {
    old: u64,
    new: u64,
    path: Vec<String>,
}

fn vectors() -> Vectors {
    toml::from_str(&read("rfc6962.toml")).unwrap()
}

fn vector_leaves() -> Vec<Vec<u8>> {
    vectors().leaves.iter().map(|l| hex::decode(l).unwrap()).collect()
}

// ---- The RFC's definitions, as literally as possible (RFC 9162 §2.1.1, 2.1.3.1, 2.1.4.1) ----

fn naive_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn naive_mth(d: &[Vec<u8>]) -> Hash {
    use sha2::{Digest, Sha256};
    match d.len() {
        0 => Sha256::digest(b"").into(),
        1 => {
            let mut x = vec![0u8];
            x.extend_from_slice(&d[0]);
            Sha256::digest(&x).into()
        }
        n => {
            let k = naive_k(n);
            let mut x = vec![1u8];
            x.extend_from_slice(&naive_mth(&d[..k]));
            x.extend_from_slice(&naive_mth(&d[k..]));
            Sha256::digest(&x).into()
        }
    }
}

fn naive_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = naive_k(n);
    if m < k {
        let mut p = naive_path(m, &d[..k]);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &d[k..]);
        p.push(naive_mth(&d[..k]));
        p
    }
}

fn naive_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![naive_mth(d)] };
    }
    let k = naive_k(n);
    if m <= k {
        let mut p = naive_subproof(m, &d[..k], b);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &d[k..], false);
        p.push(naive_mth(&d[..k]));
        p
    }
}

fn naive_proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    if m == 0 || m == d.len() { vec![] } else { naive_subproof(m, d, true) }
}

/// 64 distinct leaves: the eight RFC inputs, then more of varying length.
fn leaves64() -> Vec<Vec<u8>> {
    let mut d = vector_leaves();
    for i in 8..64u8 {
        d.push((0..=i % 7).map(|j| i.wrapping_mul(31).wrapping_add(j)).collect());
    }
    d
}

fn tree_of(d: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for (i, x) in d.iter().enumerate() {
        assert_eq!(t.append_data(x).unwrap(), i as u64);
    }
    t
}

// ---- Merkle tree ----

#[test]
fn roots_match_the_published_rfc6962_vectors() {
    let v = vectors();
    let d = vector_leaves();
    let t = tree_of(&d);
    for (n, want) in v.roots.iter().enumerate() {
        let got = merkle::root(&t, n as u64).unwrap();
        assert_eq!(hex::encode(got), *want, "tree head at size {n}");
        assert_eq!(naive_mth(&d[..n]), got, "naive tree head at size {n}");
    }
    assert_eq!(hex::encode(EMPTY_ROOT), v.roots[0]);
    assert_eq!(hex::encode(leaf_hash(b"")), v.roots[1]);
    assert_eq!(t.root(), h(&v.roots[8]));
}

#[test]
fn roots_agree_with_the_naive_definition_up_to_64_leaves() {
    let d = leaves64();
    let t = tree_of(&d);
    for n in 0..=64 {
        assert_eq!(merkle::root(&t, n as u64).unwrap(), naive_mth(&d[..n]), "size {n}");
        // A tree built only up to n agrees with the larger tree's history.
        assert_eq!(tree_of(&d[..n]).root(), naive_mth(&d[..n]), "fresh tree of size {n}");
    }
}

#[test]
fn published_inclusion_proofs_are_generated_and_verify() {
    let v = vectors();
    let d = vector_leaves();
    let t = tree_of(&d);
    for iv in &v.inclusion {
        let proof = merkle::prove_inclusion(&t, iv.index, iv.size).unwrap();
        let want: Vec<Hash> = iv.path.iter().map(|p| h(p)).collect();
        assert_eq!(proof.path, want, "PATH({}, D[{}])", iv.index, iv.size);
        let leaf = leaf_hash(&d[iv.index as usize]);
        proof.verify(&leaf, &h(&v.roots[iv.size as usize])).unwrap();
    }
}

#[test]
fn published_consistency_proofs_are_generated_and_verify() {
    let v = vectors();
    let t = tree_of(&vector_leaves());
    for cv in &v.consistency {
        let proof = merkle::prove_consistency(&t, cv.old, cv.new).unwrap();
        let want: Vec<Hash> = cv.path.iter().map(|p| h(p)).collect();
        assert_eq!(proof.path, want, "PROOF({}, D[{}])", cv.old, cv.new);
        proof.verify(&h(&v.roots[cv.old as usize]), &h(&v.roots[cv.new as usize])).unwrap();
    }
}

#[test]
fn every_inclusion_proof_up_to_64_leaves_verifies_and_every_change_fails() {
    let d = leaves64();
    let t = tree_of(&d);
    let roots: Vec<Hash> = (0..=64).map(|n| naive_mth(&d[..n])).collect();
    for n in 1..=64usize {
        for m in 0..n {
            let proof = merkle::prove_inclusion(&t, m as u64, n as u64).unwrap();
            assert_eq!(proof.path, naive_path(m, &d[..n]), "PATH({m}, D[{n}])");
            assert_eq!(proof.path.len(), inclusion_proof_len(m as u64, n as u64));
            let leaf = leaf_hash(&d[m]);
            proof.verify(&leaf, &roots[n]).unwrap();

            // Any changed byte of any proof hash.
            for i in 0..proof.path.len() {
                for byte in 0..32 {
                    let mut bad = proof.clone();
                    bad.path[i][byte] ^= 0x01;
                    assert!(
                        matches!(bad.verify(&leaf, &roots[n]), Err(ProofError::RootMismatch { .. })),
                        "PATH({m}, D[{n}]) hash {i} byte {byte} changed"
                    );
                }
            }
            // Any changed byte of the leaf or of the tree head.
            for byte in 0..32 {
                let (mut l, mut r) = (leaf, roots[n]);
                l[byte] ^= 0x80;
                r[byte] ^= 0x80;
                assert!(proof.verify(&l, &roots[n]).is_err(), "leaf byte {byte}");
                assert!(proof.verify(&leaf, &r).is_err(), "root byte {byte}");
            }
            // Another index in the same tree.
            for m2 in (0..n).filter(|&x| x != m) {
                let bad = InclusionProof { leaf_index: m2 as u64, ..proof.clone() };
                assert!(bad.verify(&leaf, &roots[n]).is_err(), "PATH({m}, D[{n}]) claimed for index {m2}");
            }
            // Another size, checked against that size's head (a checkpoint
            // signs size and head together).
            for n2 in (1..=64usize).filter(|&x| x != n) {
                let bad = InclusionProof { tree_size: n2 as u64, ..proof.clone() };
                assert!(bad.verify(&leaf, &roots[n2]).is_err(), "PATH({m}, D[{n}]) claimed for size {n2}");
            }
            // A hash dropped or added.
            if !proof.path.is_empty() {
                let mut short = proof.clone();
                short.path.pop();
                assert!(matches!(short.verify(&leaf, &roots[n]), Err(ProofError::TooShort { .. })));
            }
            let mut long = proof.clone();
            long.path.push([0; 32]);
            assert!(matches!(long.verify(&leaf, &roots[n]), Err(ProofError::TooLong { .. })));
        }
        let out = InclusionProof { leaf_index: n as u64, tree_size: n as u64, path: vec![] };
        assert_eq!(
            out.verify(&leaf_hash(b"x"), &roots[n]),
            Err(ProofError::IndexOutOfRange { index: n as u64, size: n as u64 })
        );
    }
}

#[test]
fn every_consistency_proof_up_to_64_leaves_verifies_and_every_change_fails() {
    let d = leaves64();
    let t = tree_of(&d);
    let roots: Vec<Hash> = (0..=64).map(|n| naive_mth(&d[..n])).collect();
    for n in 0..=64usize {
        for m in 0..=n {
            let proof = merkle::prove_consistency(&t, m as u64, n as u64).unwrap();
            assert_eq!(proof.path, naive_proof(m, &d[..n]), "PROOF({m}, D[{n}])");
            assert_eq!(proof.path.len(), consistency_proof_len(m as u64, n as u64));
            proof.verify(&roots[m], &roots[n]).unwrap();

            for i in 0..proof.path.len() {
                for byte in 0..32 {
                    let mut bad = proof.clone();
                    bad.path[i][byte] ^= 0x01;
                    assert!(
                        bad.verify(&roots[m], &roots[n]).is_err(),
                        "PROOF({m}, D[{n}]) hash {i} byte {byte}"
                    );
                }
            }
            for byte in 0..32 {
                let (mut old, mut new) = (roots[m], roots[n]);
                old[byte] ^= 0x80;
                new[byte] ^= 0x80;
                assert!(proof.verify(&old, &roots[n]).is_err(), "PROOF({m}, D[{n}]) old root byte {byte}");
                if m > 0 {
                    assert!(
                        proof.verify(&roots[m], &new).is_err(),
                        "PROOF({m}, D[{n}]) new root byte {byte}"
                    );
                }
            }
            // Other sizes, checked against those sizes' heads.
            for m2 in (0..=n).filter(|&x| x != m) {
                let bad = ConsistencyProof { old_size: m2 as u64, ..proof.clone() };
                // An empty proof is a true claim from the empty tree and
                // between equal sizes.
                if proof.path.is_empty() && (m2 == 0 || m2 == n) {
                    continue;
                }
                assert!(bad.verify(&roots[m2], &roots[n]).is_err(), "PROOF({m}, D[{n}]) claimed from {m2}");
            }
            for n2 in (m.max(1)..=64).filter(|&x| x != n) {
                // Anything extends the empty tree.
                if m == 0 {
                    continue;
                }
                let bad = ConsistencyProof { new_size: n2 as u64, ..proof.clone() };
                assert!(bad.verify(&roots[m], &roots[n2]).is_err(), "PROOF({m}, D[{n}]) claimed to {n2}");
            }
        }
    }
}

#[test]
fn consistency_errors_are_precise() {
    let d = leaves64();
    let t = tree_of(&d);
    let r = |n: usize| naive_mth(&d[..n]);
    let p = merkle::prove_consistency(&t, 6, 8).unwrap();

    let mut old = r(6);
    old[0] ^= 1;
    assert!(matches!(p.verify(&old, &r(8)), Err(ProofError::OldRootMismatch { size: 6, .. })));
    let mut new = r(8);
    new[0] ^= 1;
    let err = p.verify(&r(6), &new).unwrap_err();
    assert!(matches!(err, ProofError::NewRootMismatch { size: 8, .. }), "{err}");
    assert!(err.to_string().starts_with("new root mismatch: the proof leads to "), "{err}");

    let mut short = p.clone();
    short.path.pop();
    assert_eq!(short.verify(&r(6), &r(8)), Err(ProofError::TooShort { expected: 3, actual: 2 }));
    let mut long = p.clone();
    long.path.push([0; 32]);
    let err = long.verify(&r(6), &r(8)).unwrap_err();
    assert_eq!(err, ProofError::TooLong { expected: 3, actual: 4 });
    assert_eq!(err.to_string(), "proof too long: 4 hashes where the tree sizes call for 3");

    let backwards = ConsistencyProof { old_size: 8, new_size: 6, path: vec![] };
    assert_eq!(backwards.verify(&r(8), &r(6)), Err(ProofError::SizesOutOfOrder { old_size: 8, new_size: 6 }));
    let same = ConsistencyProof { old_size: 5, new_size: 5, path: vec![] };
    assert!(matches!(same.verify(&r(5), &r(6)), Err(ProofError::SameSizeDifferentRoots { size: 5, .. })));
    let from_empty = ConsistencyProof { old_size: 0, new_size: 5, path: vec![] };
    assert_eq!(from_empty.verify(&r(1), &r(5)), Err(ProofError::EmptyTreeRoot { found: r(1) }));
    from_empty.verify(&EMPTY_ROOT, &r(5)).unwrap();
}

#[test]
fn store_errors_and_bounds_are_reported() {
    let t = tree_of(&leaves64()[..5]);
    assert!(matches!(merkle::root(&t, 6), Err(TreeError::SizeBeyondLog { size: 6, available: 5 })));
    assert!(matches!(
        merkle::prove_inclusion(&t, 5, 5),
        Err(TreeError::IndexOutOfRange { index: 5, size: 5 })
    ));
    assert!(matches!(merkle::prove_consistency(&t, 3, 6), Err(TreeError::SizeBeyondLog { .. })));

    /// A store whose level-1 rows cannot be read, and that lost leaf 0.
    struct Failing(MemoryTree);
    impl TreeStore for Failing {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn subtree(&self, level: u8, index: u64) -> Result<Hash, TreeError> {
            match (level, index) {
                (1, _) => Err(TreeError::Store { level, index, source: "disk on fire".into() }),
                (0, 0) => Err(TreeError::Missing { level, index }),
                _ => self.0.subtree(level, index),
            }
        }
    }
    let failing = Failing(tree_of(&leaves64()[..7]));
    let err = merkle::prove_inclusion(&failing, 0, 4).unwrap_err();
    assert_eq!(err.to_string(), "reading the subtree at level 1, index 1: disk on fire");
    let err = merkle::prove_inclusion(&failing, 1, 2).unwrap_err();
    assert_eq!(err.to_string(), "the store has no hash for the subtree at level 0, index 0");
    // Appending leaf 7 completes subtrees at levels 1 and 2: it reads (0, 6), then (1, 2).
    assert!(matches!(hashes_to_append(&failing, [0; 32]), Err(TreeError::Store { level: 1, index: 2, .. })));
}

/// A store that counts its reads, to hold the O(log n) claim of the design.
struct Counting<'a> {
    tree: &'a MemoryTree,
    reads: Cell<u64>,
}

impl TreeStore for Counting<'_> {
    fn size(&self) -> u64 {
        self.tree.size()
    }
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, TreeError> {
        self.reads.set(self.reads.get() + 1);
        self.tree.subtree(level, index)
    }
}

#[test]
fn proofs_read_a_logarithmic_number_of_stored_hashes() {
    let n: u64 = 100_003;
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.append_data(&i.to_be_bytes()).unwrap();
    }
    let log2 = 64 - u64::from(n.leading_zeros()); // 17
    let c = Counting { tree: &t, reads: Cell::new(0) };
    let root = merkle::root(&c, n).unwrap();
    assert!(c.reads.get() <= log2, "root read {} hashes", c.reads.get());
    let mut worst_incl = 0;
    let mut worst_cons = 0;
    for i in (0..n).step_by(997).chain([0, n - 1]) {
        c.reads.set(0);
        let p = merkle::prove_inclusion(&c, i, n).unwrap();
        worst_incl = worst_incl.max(c.reads.get());
        p.verify(&leaf_hash(&i.to_be_bytes()), &root).unwrap();

        c.reads.set(0);
        let p = merkle::prove_consistency(&c, i + 1, n).unwrap();
        worst_cons = worst_cons.max(c.reads.get());
        p.verify(&merkle::root(&t, i + 1).unwrap(), &root).unwrap();
    }
    assert!(worst_incl <= 2 * log2, "an inclusion proof read {worst_incl} hashes");
    assert!(worst_cons <= 3 * log2, "a consistency proof read {worst_cons} hashes");

    // Appending reads one left sibling per completed subtree.
    c.reads.set(0);
    let stored = hashes_to_append(&c, leaf_hash(b"next")).unwrap();
    assert_eq!(c.reads.get() as usize, stored.len() - 1);
    assert_eq!(stored[0].level, 0);
    assert_eq!(stored[0].index, n);
}

#[test]
fn interior_nodes_are_domain_separated_from_leaves() {
    // A leaf whose data is two hashes must not collide with their parent.
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let mut both = a.to_vec();
    both.extend_from_slice(&b);
    assert_ne!(leaf_hash(&both), node_hash(&a, &b));
}

/// 1,000,000 appends and 1,000 inclusion proofs (generated and verified) in
/// memory. Run: `cargo test --release -p custos-server --test tlog_vectors --
/// --ignored --nocapture`.
#[test]
#[ignore = "timing; run by hand in release mode"]
fn timing_one_million_leaves() {
    use std::time::Instant;
    let n: u64 = 1_000_000;
    let start = Instant::now();
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.append_data(&i.to_le_bytes()).unwrap();
    }
    let appended = start.elapsed();
    let start = Instant::now();
    let root = t.root();
    for k in 0..1_000u64 {
        let i = (k * 7_919 * 127) % n;
        let p = merkle::prove_inclusion(&t, i, n).unwrap();
        p.verify(&leaf_hash(&i.to_le_bytes()), &root).unwrap();
    }
    let proved = start.elapsed();
    let start = Instant::now();
    for k in 1..=1_000u64 {
        let p = merkle::prove_consistency(&t, k * 997, n).unwrap();
        p.verify(&merkle::root(&t, k * 997).unwrap(), &root).unwrap();
    }
    let consistent = start.elapsed();
    println!(
        "1,000,000 appends: {appended:?}; 1,000 inclusion proofs + verification: {proved:?}; \
         1,000 consistency proofs + verification: {consistent:?}"
    );
}

// ---- Signed notes and checkpoints ----

#[derive(Deserialize)]
struct Keys {
    log_verifier_key: String,
    witness_verifier_key: String,
}

#[derive(Deserialize)]
struct GoKeys {
    private_key: String,
    verifier_key: String,
}

const LOG: &str = "custos.example/tlog-test";

fn log_signer() -> NoteSigner {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    NoteSigner::new(LOG, SigningKey::from_bytes(&seed)).unwrap()
}

fn log_key() -> VerifierKey {
    let keys: Keys = toml::from_str(&read("keys.toml")).unwrap();
    VerifierKey::parse(&keys.log_verifier_key).unwrap()
}

fn checkpoint8() -> Checkpoint {
    Checkpoint::new(LOG, 8, h(&vectors().roots[8])).unwrap()
}

#[test]
fn go_example_note_parses_verifies_and_is_reproduced() {
    let go: GoKeys = toml::from_str(&read("go-note.toml")).unwrap();
    let msg = read("go-peterneumann.note");
    let key = VerifierKey::parse(&go.verifier_key).unwrap();
    assert_eq!(key.to_string(), go.verifier_key);
    assert_eq!((key.name(), key.key_id()), ("PeterNeumann", 0xc74f20a3));

    let note = Note::parse(msg.as_bytes()).unwrap();
    assert_eq!(
        note.text(),
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    );
    let verified = note.verify(std::slice::from_ref(&key)).unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(note.encode(), msg);

    // Go's private key string gives the same key, and Ed25519 being
    // deterministic, the same note byte for byte.
    let signer = NoteSigner::from_private_key_string(&go.private_key).unwrap();
    assert_eq!(signer.verifier_key(), key);
    assert_eq!(signer.private_key_string(), go.private_key);
    assert_eq!(Note::sign(note.text(), &[&signer]).unwrap().encode(), msg);
}

#[test]
fn signing_a_checkpoint_gives_the_exact_text_another_implementation_wrote() {
    let signer = log_signer();
    let keys: Keys = toml::from_str(&read("keys.toml")).unwrap();
    assert_eq!(signer.verifier_key().to_string(), keys.log_verifier_key);

    let cp = checkpoint8();
    assert_eq!(cp.body(), "custos.example/tlog-test\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n");
    let signed = cp.sign(&signer).unwrap();
    assert_eq!(signed, read("checkpoint-8.note"));
    assert_eq!(Checkpoint::open(signed.as_bytes(), LOG, &log_key()).unwrap(), cp);
}

#[test]
fn a_witnessed_checkpoint_with_an_extension_verifies_ignoring_the_unknown_witness() {
    let msg = read("checkpoint-8-witnessed.note");
    let cp = Checkpoint::open(msg.as_bytes(), LOG, &log_key()).unwrap();
    assert_eq!(cp.size(), 8);
    assert_eq!(cp.extensions(), ["custos-extension-line".to_string()]);
    assert_eq!(*cp.root(), h(&vectors().roots[8]));

    // Both keys known: both verify.
    let keys: Keys = toml::from_str(&read("keys.toml")).unwrap();
    let witness = VerifierKey::parse(&keys.witness_verifier_key).unwrap();
    let note = Note::parse(msg.as_bytes()).unwrap();
    assert_eq!(note.verify(&[log_key(), witness.clone()]).unwrap().len(), 2);
    // Re-signing reproduces the log's line exactly.
    let ours = cp.sign(&log_signer()).unwrap();
    let log_line = msg.lines().last().unwrap();
    assert_eq!(ours.lines().last().unwrap(), log_line);
}

/// Replaces the first occurrence of `from` in the signed checkpoint.
fn tampered(from: &str, to: &str) -> String {
    let msg = read("checkpoint-8.note");
    assert!(msg.contains(from), "{from:?} not in the note");
    msg.replacen(from, to, 1)
}

#[test]
fn tampered_checkpoints_fail_with_a_precise_message() {
    let key = log_key();
    let open = |msg: &str| Checkpoint::open(msg.as_bytes(), LOG, &key).unwrap_err().to_string();
    let bad_sig = "checkpoint note: the signature by custos.example/tlog-test+b2a57def does not verify: \
                   Ed25519 verification failed";

    // Changed root, size or origin: the signature no longer covers the text.
    assert_eq!(open(&tampered("XcnaeacG", "XcnaeacH")), bad_sig);
    assert_eq!(open(&tampered("\n8\n", "\n9\n")), bad_sig);
    assert_eq!(open(&tampered("custos.example/tlog-test\n", "custos.example/tlog-tesT\n")), bad_sig);
    // Changed signature bytes.
    assert_eq!(open(&tampered("sqV973Pj", "sqV973Pk")), bad_sig);
    // Changed key name or key ID in the signature line: no trusted signature.
    assert_eq!(
        open(&tampered("— custos.example/tlog-test ", "— custos.example/tlog-tesT ")),
        "checkpoint note: no signature by a trusted key (custos.example/tlog-test+b2a57def); \
         the note is signed by custos.example/tlog-tesT+b2a57def"
    );
    // "sqV9" carries the key ID's first three bytes.
    assert!(open(&tampered("sqV973Pj", "sqV873Pj")).contains("no signature by a trusted key"));
    // A valid checkpoint of another log.
    let err = Checkpoint::open(read("checkpoint-8.note").as_bytes(), "other.example/log", &key).unwrap_err();
    assert_eq!(
        err,
        CheckpointError::OriginMismatch { expected: "other.example/log".to_string(), found: LOG.to_string() }
    );
    // A signature that is not 64 bytes.
    let short = B64.encode([0xb2, 0xa5, 0x7d, 0xef, 1, 2, 3]);
    let line = read("checkpoint-8.note").lines().last().unwrap().to_string();
    let sig = line.rsplit(' ').next().unwrap();
    assert!(open(&tampered(sig, &short)).ends_with("it is 3 bytes, an Ed25519 signature is 64"));
}

#[test]
fn malformed_notes_are_refused_with_the_reason() {
    let good = read("checkpoint-8.note");
    let parse = |msg: &str| Note::parse(msg.as_bytes()).unwrap_err();

    assert_eq!(parse(&good.replace("\n\n", "\n")), NoteError::NoSeparator);
    assert_eq!(
        parse(&good.replace('—', "-")).to_string(),
        "line 5 of the note is not a valid signature line: it does not start with an em dash (U+2014) and a space"
    );
    assert!(matches!(parse(&format!("{good}junk")), NoteError::BadSignatureLine { line: 6, .. }));
    assert_eq!(parse(&format!("{good}\n")), NoteError::NoSignatures);
    assert_eq!(parse(&good.replace('\n', "\r\n")), NoteError::ControlCharacter { byte: b'\r', offset: 24 });
    assert!(matches!(
        parse(&good.replace("tlog-test\n8", "tlog-test\t\n8")),
        NoteError::ControlCharacter { byte: b'\t', .. }
    ));
    let two_spaces = good.replace("tlog-test sqV", "tlog-test  sqV");
    assert!(parse(&two_spaces).to_string().ends_with("more than one space"));
    let no_space = good.replace("tlog-test sqV", "tlog-testsqV");
    assert!(parse(&no_space).to_string().ends_with("no space between the key name and the signature"));
    let plus = good.replace("— custos.example/tlog-test", "— custos.example+tlog-test");
    assert!(parse(&plus).to_string().contains("contains '+'"));
    // Base64 without padding, and with non-zero trailing bits (another
    // encoding of the same bytes): both refused.
    assert!(parse(&good.replace("CCGDqA0=", "CCGDqA0")).to_string().contains("not canonical base64"));
    assert!(parse(&good.replace("CCGDqA0=", "CCGDqA1=")).to_string().contains("not canonical base64"));
    let tiny =
        good.replace(good.lines().last().unwrap().rsplit(' ').next().unwrap(), &B64.encode([1, 2, 3, 4]));
    assert!(parse(&tiny).to_string().ends_with("the signature is shorter than a key ID and one byte"));
    let mut bytes = good.clone().into_bytes();
    bytes[3] = 0xff;
    assert_eq!(Note::parse(&bytes).unwrap_err(), NoteError::NotUtf8 { offset: 3 });
    let huge = format!("{}\n{good}", "x".repeat(MAX_NOTE_BYTES));
    assert!(matches!(parse(&huge), NoteError::TooLarge { .. }));
    let line = good.lines().last().unwrap();
    let many = format!("{}{}", good, format!("{line}\n").repeat(MAX_SIGNATURES));
    assert_eq!(parse(&many), NoteError::TooManySignatures { count: MAX_SIGNATURES + 1, max: MAX_SIGNATURES });

    // Two signatures by the trusted key.
    let twice = format!("{good}{line}\n");
    assert!(matches!(
        Note::parse(twice.as_bytes()).unwrap().verify(&[log_key()]),
        Err(NoteError::DuplicateSignature { .. })
    ));
}

#[test]
fn sixteen_signatures_are_accepted() {
    let text = checkpoint8().body();
    let signers: Vec<NoteSigner> = (0..16u8)
        .map(|i| {
            NoteSigner::new(&format!("witness.example/w{i}"), SigningKey::from_bytes(&[i + 1; 32])).unwrap()
        })
        .collect();
    let refs: Vec<&NoteSigner> = signers.iter().collect();
    let msg = Note::sign(&text, &refs).unwrap().encode();
    let keys: Vec<VerifierKey> = signers.iter().map(NoteSigner::verifier_key).collect();
    let note = Note::parse(msg.as_bytes()).unwrap();
    assert_eq!(note.signatures().len(), 16);
    assert_eq!(note.verify(&keys).unwrap().len(), 16);
    assert!(matches!(
        Note::sign(&text, &[&signers[0], &signers[0]]),
        Err(NoteError::DuplicateSignature { .. })
    ));
    assert_eq!(Note::sign("no newline", &[&signers[0]]).unwrap_err(), NoteError::TextNotTerminated);
    assert_eq!(Note::sign(&text, &[]).unwrap_err(), NoteError::NoSignatures);
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let root = B64.encode(h(&vectors().roots[8]));
    let body = |size: &str, root: &str, rest: &str| format!("o.example/log\n{size}\n{root}\n{rest}");
    let parse = |text: String| Checkpoint::parse_body(&text).unwrap_err();

    let ok = Checkpoint::parse_body(&body("8", &root, "")).unwrap();
    assert_eq!((ok.origin(), ok.size()), ("o.example/log", 8));
    Checkpoint::parse_body(&body("0", &B64.encode(EMPTY_ROOT), "")).unwrap();
    Checkpoint::parse_body(&body("18446744073709551615", &root, "")).unwrap();
    // Origins of other logs may hold spaces: the spec forbids assuming a form.
    Checkpoint::parse_body(&format!("a log with spaces\n1\n{root}\n")).unwrap();

    assert!(matches!(parse(body("08", &root, "")), CheckpointError::BadSize { reason: "leading zero", .. }));
    assert!(matches!(
        parse(body("+8", &root, "")),
        CheckpointError::BadSize { reason: "not all decimal digits", .. }
    ));
    assert!(matches!(parse(body(" 8", &root, "")), CheckpointError::BadSize { .. }));
    assert!(matches!(parse(body("", &root, "")), CheckpointError::BadSize { reason: "empty", .. }));
    assert!(matches!(parse(body("18446744073709551616", &root, "")), CheckpointError::BadSize { .. }));
    let short_root = B64.encode([7u8; 31]);
    assert_eq!(
        parse(body("8", &short_root, "")).to_string(),
        format!("checkpoint root hash {short_root:?} is not the base64 of 32 bytes: 31 bytes")
    );
    assert!(matches!(parse(body("8", &hex::encode([0u8; 32]), "")), CheckpointError::BadRootHash { .. }));
    assert!(matches!(parse(body("8", root.trim_end_matches('='), "")), CheckpointError::BadRootHash { .. }));
    assert_eq!(parse(body("8", &root, "\next\n")), CheckpointError::EmptyExtension { line: 4 });
    assert_eq!(parse(format!("\n8\n{root}\n")), CheckpointError::EmptyOrigin);
    assert_eq!(parse("o\n8\n".to_string()), CheckpointError::TooFewLines { lines: 2 });
    assert_eq!(parse(format!("o\n8\n{root}")), CheckpointError::Note(NoteError::TextNotTerminated));

    // Our own origins double as key names.
    assert!(matches!(Checkpoint::new("a b", 1, EMPTY_ROOT), Err(CheckpointError::BadOrigin { .. })));
    assert!(matches!(Checkpoint::new("a+b", 1, EMPTY_ROOT), Err(CheckpointError::BadOrigin { .. })));
    assert_eq!(Checkpoint::new("", 1, EMPTY_ROOT), Err(CheckpointError::EmptyOrigin));
    assert!(matches!(
        Checkpoint::new("o", 1, EMPTY_ROOT).unwrap().with_extensions(vec!["a\nb".into()]),
        Err(CheckpointError::BadExtension { .. })
    ));
}

#[test]
fn verifier_keys_are_checked() {
    let good = log_key().to_string();
    let parse = |s: &str| VerifierKey::parse(s).unwrap_err().to_string();
    assert!(
        parse(&good.replace("+b2a57def+", "+b2a57dee+"))
            .contains("key ID b2a57dee does not match the key (b2a57def)")
    );
    assert!(parse(&good.replace("+b2a57def+", "+b2a57de+")).contains("not 8 hexadecimal digits"));
    assert!(parse("custos.example/tlog-test+b2a57def").contains("no key after the key ID"));
    assert!(parse(&good.replace("+AQ", "+Ag")).contains("signature type 0x02 is not Ed25519"));
    let short = format!("n+00000000+{}", B64.encode([1u8; 10]));
    assert!(parse(&short).contains("an Ed25519 key is 32 bytes, not 9"));
    // The identity point: a small-order key.
    let mut weak = vec![1u8, 1];
    weak.extend_from_slice(&[0u8; 31]);
    assert!(parse(&format!("n+00000000+{}", B64.encode(weak))).contains("weak"));
    assert!(NoteSigner::from_private_key_string("PRIVATE+KEY+n+00000000+AQ==").is_err());
    let go: GoKeys = toml::from_str(&read("go-note.toml")).unwrap();
    let wrong_id = go.private_key.replace("c74f20a3", "c74f20a4");
    assert_eq!(
        NoteSigner::from_private_key_string(&wrong_id).unwrap_err().to_string(),
        "invalid private key string: the key ID does not match the key"
    );
    // The signer's debug form shows no secret.
    assert_eq!(format!("{:?}", log_signer()), "NoteSigner(custos.example/tlog-test+b2a57def)");
}

#[test]
fn the_server_refuses_to_sign_an_inconsistent_checkpoint() {
    let d = leaves64();
    let t = tree_of(&d);
    let cp = |n: u64| Checkpoint::new(LOG, n, merkle::root(&t, n).unwrap()).unwrap();
    for (m, n) in [(0, 0), (0, 5), (3, 3), (5, 8), (6, 8), (8, 64), (13, 37)] {
        check_consistent(&cp(m), &cp(n), &merkle::prove_consistency(&t, m, n).unwrap()).unwrap();
    }

    // A log that rewrote its 6th leaf after publishing sizes 6 and 8.
    let mut forked = d[..16].to_vec();
    forked[5] = b"rewritten".to_vec();
    let f = tree_of(&forked);
    let new = Checkpoint::new(LOG, 16, f.root()).unwrap();
    let err = check_consistent(&cp(6), &new, &merkle::prove_consistency(&f, 6, 16).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::Inconsistent {
                old_size: 6,
                new_size: 16,
                source: ProofError::OldRootMismatch { .. }
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("checkpoint at size 16 is inconsistent with the one at size 6: old root mismatch")
    );
    let err = check_consistent(&cp(8), &new, &merkle::prove_consistency(&f, 8, 16).unwrap()).unwrap_err();
    assert!(matches!(err, CheckpointError::Inconsistent { source: ProofError::NewRootMismatch { .. }, .. }));
    // The honest proof does not connect the old head to the forked one either.
    let err = check_consistent(&cp(8), &new, &merkle::prove_consistency(&t, 8, 16).unwrap()).unwrap_err();
    assert!(matches!(err, CheckpointError::Inconsistent { source: ProofError::NewRootMismatch { .. }, .. }));

    // Same size, other head.
    let other = Checkpoint::new(LOG, 8, f.subtree(3, 0).unwrap()).unwrap();
    let same = merkle::prove_consistency(&t, 8, 8).unwrap();
    assert!(matches!(
        check_consistent(&cp(8), &other, &same),
        Err(CheckpointError::Inconsistent { source: ProofError::SameSizeDifferentRoots { size: 8, .. }, .. })
    ));
    // Shrinking, another log, a proof for other sizes.
    assert_eq!(
        check_consistent(&cp(8), &cp(5), &same),
        Err(CheckpointError::Shrunk { old_size: 8, new_size: 5 })
    );
    let elsewhere = Checkpoint::new("other.example/log", 16, t.subtree(4, 0).unwrap()).unwrap();
    assert!(matches!(
        check_consistent(&cp(8), &elsewhere, &same),
        Err(CheckpointError::OriginMismatch { .. })
    ));
    assert!(matches!(
        check_consistent(&cp(5), &cp(8), &merkle::prove_consistency(&t, 6, 8).unwrap()),
        Err(CheckpointError::ProofForOtherSizes { proof_old: 6, proof_new: 8, old_size: 5, new_size: 8 })
    ));
}
