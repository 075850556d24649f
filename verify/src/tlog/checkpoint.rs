//! C2SP transparency log checkpoints (c2sp.org/tlog-checkpoint): the signed
//! statement "the log `origin` has `size` leaves with root hash `root`".
//!
//! The body is `<origin>\n<size>\n<base64 root hash>\n` and optional non-empty
//! extension lines, carried as the text of a signed note. A log must never
//! sign two checkpoints that are inconsistent with each other; the server
//! calls [`check_consistent`] against its latest signed checkpoint before it
//! signs a new one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::Hash;
use super::note::{Note, NoteError, NoteSigner, VerifierKey, check_note_bytes};
use super::proof::{ConsistencyProof, ProofError};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    #[error("checkpoint has {lines} lines, at least 3 (origin, size, root hash) are needed")]
    TooFewLines { lines: usize },
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    #[error("checkpoint origin {origin:?} is not usable: {reason}")]
    BadOrigin { origin: String, reason: &'static str },
    #[error("checkpoint tree size {line:?} is not a decimal number without leading zeros: {reason}")]
    BadSize { line: String, reason: &'static str },
    #[error("checkpoint root hash {line:?} is not the base64 of 32 bytes: {reason}")]
    BadRootHash { line: String, reason: String },
    #[error("checkpoint extension line {line} is empty")]
    EmptyExtension { line: usize },
    #[error("checkpoint extension {extension:?} is not a single line of text")]
    BadExtension { extension: String },
    #[error("checkpoint is for the log {found:?}, not {expected:?}")]
    OriginMismatch { expected: String, found: String },
    #[error("checkpoint tree size went down from {old_size} to {new_size}")]
    Shrunk { old_size: u64, new_size: u64 },
    #[error(
        "consistency proof is between sizes {proof_old} and {proof_new}, the checkpoints are at {old_size} and {new_size}"
    )]
    ProofForOtherSizes { proof_old: u64, proof_new: u64, old_size: u64, new_size: u64 },
    #[error("checkpoint at size {new_size} is inconsistent with the one at size {old_size}: {source}")]
    Inconsistent {
        old_size: u64,
        new_size: u64,
        #[source]
        source: ProofError,
    },
}

/// A tree head of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint this log is about to sign. Our own origins follow the
    /// spec's recommendation (no spaces, no `+`), so the origin can also be
    /// the key name.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        if let Some(reason) = origin_problem(origin) {
            return Err(CheckpointError::BadOrigin { origin: origin.to_string(), reason });
        }
        Ok(Self { origin: origin.to_string(), size, root, extensions: Vec::new() })
    }

    /// Adds extension lines (opaque to auditors; the spec advises against them).
    pub fn with_extensions(mut self, extensions: Vec<String>) -> Result<Self, CheckpointError> {
        for (i, e) in extensions.iter().enumerate() {
            if e.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: 4 + i });
            }
            if e.chars().any(char::is_control) {
                return Err(CheckpointError::BadExtension { extension: e.clone() });
            }
        }
        self.extensions = extensions;
        Ok(self)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: origin, size, base64 root hash and extensions, one per line.
    pub fn body(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parses a checkpoint body (a note's text). Origins of other logs are
    /// taken as they are: the spec forbids assuming their form.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        check_note_bytes(text.as_bytes())?;
        let Some(body) = text.strip_suffix('\n') else {
            return Err(NoteError::TextNotTerminated.into());
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        }
        let origin = lines[0];
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(lines[1])?;
        let root = parse_root(lines[2])?;
        let mut extensions = Vec::new();
        for (i, line) in lines[3..].iter().enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: 4 + i });
            }
            extensions.push((*line).to_string());
        }
        let cp = Self { origin: origin.to_string(), size, root, extensions };
        Ok(cp)
    }

    /// Signs the checkpoint: the published signed note.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        Ok(Note::sign(&self.body(), &[signer])?.encode())
    }

    /// Reads a signed checkpoint of the log `origin`: the note must carry a
    /// valid signature by `verifier` (signatures by other keys, such as
    /// witnesses, are ignored) and its body must be a checkpoint of `origin`.
    pub fn open(signed: &[u8], origin: &str, verifier: &VerifierKey) -> Result<Self, CheckpointError> {
        let note = Note::parse(signed)?;
        note.verify(std::slice::from_ref(verifier))?;
        let cp = Self::parse_body(note.text())?;
        if cp.origin != origin {
            return Err(CheckpointError::OriginMismatch { expected: origin.to_string(), found: cp.origin });
        }
        Ok(cp)
    }
}

/// What keeps `origin` from being an origin (and key name) of ours.
fn origin_problem(origin: &str) -> Option<&'static str> {
    if origin.chars().any(char::is_control) {
        Some("contains a control character")
    } else if origin.chars().any(char::is_whitespace) {
        Some("contains a space")
    } else if origin.contains('+') {
        Some("contains '+'")
    } else {
        None
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let bad = |reason| Err(CheckpointError::BadSize { line: line.to_string(), reason });
    if line.is_empty() {
        return bad("empty");
    }
    if !line.bytes().all(|b| b.is_ascii_digit()) {
        return bad("not all decimal digits");
    }
    if line.len() > 1 && line.starts_with('0') {
        return bad("leading zero");
    }
    match line.parse::<u64>() {
        Ok(size) => Ok(size),
        Err(_) => bad("larger than 2^64 - 1"),
    }
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let bad = |reason: String| CheckpointError::BadRootHash { line: line.to_string(), reason };
    let raw = B64.decode(line).map_err(|e| bad(format!("not canonical base64 ({e})")))?;
    let len = raw.len();
    raw.try_into().map_err(|_| bad(format!("{len} bytes")))
}

/// Succeeds when `new` extends `old`: same log, size not smaller, and `proof`
/// (between exactly their sizes) shows `old`'s tree is a prefix of `new`'s.
/// Extension lines are not compared (they are outside the tree).
pub fn check_consistent(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: &ConsistencyProof,
) -> Result<(), CheckpointError> {
    if old.origin != new.origin {
        return Err(CheckpointError::OriginMismatch {
            expected: old.origin.clone(),
            found: new.origin.clone(),
        });
    }
    if new.size < old.size {
        return Err(CheckpointError::Shrunk { old_size: old.size, new_size: new.size });
    }
    if proof.old_size != old.size || proof.new_size != new.size {
        return Err(CheckpointError::ProofForOtherSizes {
            proof_old: proof.old_size,
            proof_new: proof.new_size,
            old_size: old.size,
            new_size: new.size,
        });
    }
    proof.verify(&old.root, &new.root).map_err(|source| CheckpointError::Inconsistent {
        old_size: old.size,
        new_size: new.size,
        source,
    })
}
