//! The first reading of a bundle, and the checks that need nothing more:
//! every file's SHA-256, the small files kept (checkpoint, log key, key
//! bindings; proofs decoded), the manifest parsed as it streams, and the
//! records `evidence.csv` and `assessment-results.json` name (so the
//! second reading keeps their check statuses); then the manifest's listing,
//! the checkpoint's signature and the key bindings.
//!
//! The manifest is the archive's last file, so nothing read here has a
//! declared size yet: every entry is read under its kind's cap and its own
//! expansion ratio ([`super::limits`]). The documents are only streamed
//! through (a parser and a hasher), never held.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::limits::{Body, Limits, Site, buffered, kind_cap, stream_hashed};
use super::read::{self, BundleError};
use super::records::{Binding, decode_proof};
use super::report::{Failure, TrustedKey, excerpt};
use super::{Verifier, assessment_results, csv};
use crate::bundle::{BundlePath, CHECKPOINT, FORMAT, LOG_KEY, MANIFEST, Manifest, key_proof_path};
use crate::leaf::{KEY_BINDING_TYPE, KeyBinding};
use crate::tlog::{Checkpoint, InclusionProof, VerifierKey};

/// What the first reading keeps.
#[derive(Default)]
pub(crate) struct First {
    /// Every file's SHA-256 (the first, when a name appears twice).
    pub digests: BTreeMap<String, String>,
    pub duplicates: Vec<String>,
    /// Checkpoint, log key and key bindings.
    pub small: BTreeMap<String, Vec<u8>>,
    pub proofs: HashMap<String, Result<InclusionProof, String>>,
    pub unknown: Vec<String>,
    manifest: Option<Result<Manifest, String>>,
    /// The records the CSV and the OSCAL document name.
    pub named: BTreeSet<(String, u64)>,
}

/// An entry as the reading thread hands it on: its bytes (hashed on the
/// workers), or already hashed and parsed as it streamed.
enum Item {
    Bytes(Vec<u8>),
    Streamed(String, Kept),
}

/// What is kept of a file besides its digest.
enum Kept {
    Nothing,
    Unknown,
    Proof(Result<InclusionProof, String>),
    Bytes(Vec<u8>),
    /// Boxed: entries pass through the queues as `Kept`, one is a manifest.
    Manifest(Box<Result<Manifest, String>>),
    Named(BTreeSet<(String, u64)>),
}

/// Reads the bundle the first time.
pub(crate) fn read(path: &Path, limits: &Limits) -> Result<First, BundleError> {
    let mut first = First::default();
    read::each_entry_parallel(
        path,
        limits,
        |name| kind_cap(name, limits),
        read_entry,
        work,
        |name, kept| {
            first.merge(name, kept);
            Ok(())
        },
    )?;
    Ok(first)
}

/// On the reading thread: the documents streamed, the rest in memory
/// (within its kind's cap).
fn read_entry(body: &mut Body<'_>) -> Result<Item, BundleError> {
    let streamed = |body: &mut Body<'_>, parse: fn(&mut dyn Read, &Site) -> Result<Kept, BundleError>| {
        stream_hashed(body, parse).map(|(digest, kept)| Item::Streamed(digest, kept))
    };
    match BundlePath::parse(body.name()) {
        BundlePath::Manifest => {
            streamed(body, |r, site| parse_manifest(r, site).map(|m| Kept::Manifest(Box::new(m))))
        }
        BundlePath::EvidenceCsv => streamed(body, |r, site| csv::named_records(r, site).map(Kept::Named)),
        BundlePath::AssessmentResults => {
            streamed(body, |r, site| assessment_results::named_records(r, site).map(Kept::Named))
        }
        BundlePath::Unknown => streamed(body, |_, _| Ok(Kept::Unknown)),
        _ => Ok(Item::Bytes(body.bytes()?)),
    }
}

/// On a worker: the digest, and a proof decoded.
fn work(name: &str, item: Item) -> (String, Kept) {
    let bytes = match item {
        Item::Streamed(digest, kept) => return (digest, kept),
        Item::Bytes(bytes) => bytes,
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    let kept = match BundlePath::parse(name) {
        BundlePath::Record { .. } => Kept::Nothing,
        BundlePath::RecordProof { .. } | BundlePath::KeyProof { .. } => Kept::Proof(decode_proof(&bytes)),
        _ => Kept::Bytes(bytes),
    };
    (digest, kept)
}

/// The manifest as it streams: `Ok(Err(why))` when it is not one.
fn parse_manifest(body: &mut dyn Read, site: &Site) -> Result<Result<Manifest, String>, BundleError> {
    match serde_json::from_reader(buffered(body)) {
        Ok(m) => Ok(Ok(m)),
        Err(e) => match site.tripped() {
            Some(limit) => Err(limit),
            None if e.is_io() => Err(site.error(e)),
            None => Ok(Err(excerpt(&e.to_string()).to_string())),
        },
    }
}

impl First {
    fn merge(&mut self, name: String, (digest, kept): (String, Kept)) {
        if self.digests.insert(name.clone(), digest).is_some() {
            self.duplicates.push(name);
            return;
        }
        match kept {
            Kept::Proof(p) => {
                self.proofs.insert(name, p);
            }
            Kept::Bytes(b) => {
                self.small.insert(name, b);
            }
            Kept::Manifest(m) => self.manifest = Some(*m),
            Kept::Named(named) => self.named.extend(named),
            Kept::Unknown => self.unknown.push(name),
            Kept::Nothing => {}
        }
    }

    /// The manifest, or why the file is no bundle of this format.
    pub fn manifest(&mut self, path: &Path) -> Result<Manifest, BundleError> {
        let manifest = match self.manifest.take() {
            None => return Err(BundleError::NoManifest { path: path.to_path_buf() }),
            Some(Err(reason)) => return Err(BundleError::Manifest { path: path.to_path_buf(), reason }),
            Some(Ok(m)) => m,
        };
        if manifest.format != FORMAT {
            return Err(BundleError::Manifest {
                path: path.to_path_buf(),
                reason: format!("format {:?} is not {FORMAT:?}", excerpt(&manifest.format)),
            });
        }
        Ok(manifest)
    }
}

/// Every file listed once with its digest, none unlisted, none twice or of
/// no known kind.
pub(crate) fn check_listing(v: &mut Verifier, manifest: &Manifest, first: &First) {
    // File names from the bundle or the manifest are the sender's: excerpts.
    let shown = |f: &str| excerpt(f).to_string();
    for file in &first.duplicates {
        v.fail(Failure::Duplicate { file: shown(file) });
    }
    for file in &first.unknown {
        v.fail(Failure::Unknown { file: shown(file) });
    }
    let mut listed = BTreeSet::new();
    for entry in &manifest.files {
        if !listed.insert(entry.path.as_str()) {
            let reason = format!("lists {} twice", excerpt(&entry.path));
            v.fail(Failure::Manifest { file: MANIFEST.into(), reason });
        }
        match first.digests.get(&entry.path) {
            None => v.fail(Failure::Missing { file: shown(&entry.path) }),
            Some(found) if *found != entry.sha256.to_lowercase() => v.fail(Failure::Digest {
                file: shown(&entry.path),
                expected: shown(&entry.sha256),
                found: found.clone(),
            }),
            Some(_) => {}
        }
    }
    for file in first.digests.keys().filter(|f| f.as_str() != MANIFEST && !listed.contains(f.as_str())) {
        v.fail(Failure::NotListed { file: shown(file) });
    }
}

/// The checkpoint, against the pinned key or the bundle's own; returns the
/// key it was checked against.
pub(crate) fn check_checkpoint(
    v: &mut Verifier,
    pinned: Option<&VerifierKey>,
    small: &BTreeMap<String, Vec<u8>>,
) -> TrustedKey {
    let bundle_key = match small.get(LOG_KEY).map(|b| std::str::from_utf8(b).map(str::trim)) {
        None => {
            v.fail(Failure::Missing { file: LOG_KEY.into() });
            None
        }
        Some(Err(_)) => {
            v.fail(Failure::LogKey { file: LOG_KEY.into(), reason: "not UTF-8 text".into() });
            None
        }
        Some(Ok(text)) => VerifierKey::parse(text)
            .map_err(|e| {
                let reason = excerpt(&e.to_string()).to_string();
                v.fail(Failure::LogKey { file: LOG_KEY.into(), reason })
            })
            .ok(),
    };
    let (trusted_key, trusted) = match (pinned, &bundle_key) {
        (Some(k), _) => (Some(k.clone()), TrustedKey::Pinned(k.to_string())),
        (None, Some(k)) => (Some(k.clone()), TrustedKey::Bundle(k.to_string())),
        (None, None) => (None, TrustedKey::None),
    };
    match (small.get(CHECKPOINT), &trusted_key) {
        (None, _) => v.fail(Failure::Missing { file: CHECKPOINT.into() }),
        (Some(_), None) => v.fail(Failure::Checkpoint {
            file: CHECKPOINT.into(),
            reason: "no usable log key to check its signature".into(),
        }),
        (Some(note), Some(key)) => match Checkpoint::open(note, key.name(), key) {
            Ok(cp) => v.checkpoint = Some(cp),
            Err(e) => {
                let whose = if pinned.is_some() { "the pinned log key" } else { "the bundle's log key" };
                let (key, e) = (excerpt(&key.to_string()).to_string(), excerpt(&e.to_string()).to_string());
                v.fail(Failure::Checkpoint {
                    file: CHECKPOINT.into(),
                    reason: format!("not a checkpoint signed by {whose} {key}: {e}"),
                });
            }
        },
    }
    trusted
}

/// The key bindings that hold, per agent in log order, and how many files
/// the bundle has of them.
pub(crate) fn key_bindings(
    v: &mut Verifier,
    small: &BTreeMap<String, Vec<u8>>,
) -> (BTreeMap<String, Vec<Binding>>, usize) {
    let mut bindings: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
    let mut count = 0;
    for (name, bytes) in small {
        let BundlePath::KeyBinding { agent, leaf } = BundlePath::parse(name) else { continue };
        count += 1;
        let before = v.failures.len();
        let included = v.inclusion(name, &key_proof_path(&agent, leaf), bytes, Some(leaf));
        match parse_binding(bytes, &agent, leaf) {
            Err(reason) => v.fail(Failure::KeyBinding { file: name.clone(), reason }),
            // Only bindings the log proves (or all, when nothing can be proven) speak for an agent.
            Ok(b) if v.failures.len() == before && included.is_some() || v.checkpoint.is_none() => {
                bindings.entry(agent).or_default().push(b)
            }
            Ok(_) => {}
        }
    }
    for list in bindings.values_mut() {
        list.sort_by_key(|b| b.leaf);
    }
    (bindings, count)
}

/// A key-binding file of agent `agent` at leaf `leaf`, or why it is none.
fn parse_binding(bytes: &[u8], agent: &str, leaf: u64) -> Result<Binding, String> {
    let b = serde_json::from_slice::<KeyBinding>(bytes).map_err(|e| excerpt(&e.to_string()).to_string())?;
    if b.type_ != KEY_BINDING_TYPE {
        return Err(format!("type {:?} is not {KEY_BINDING_TYPE:?}", excerpt(&b.type_)));
    }
    if b.agent_id != agent {
        return Err(format!("it binds agent {}, the file name says agent {agent}", excerpt(&b.agent_id)));
    }
    if !["enrolled", "renewed", "revoked"].contains(&b.event.as_str()) {
        return Err(format!("event {:?} is not enrolled, renewed or revoked", excerpt(&b.event)));
    }
    let mut raw = [0u8; 32];
    hex::decode_to_slice(&b.evidence_key, &mut raw)
        .map_err(|_| "evidence_key is not 32 bytes of hex".to_string())?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| "evidence_key is not an Ed25519 key".to_string())?;
    if key.is_weak() {
        return Err("evidence_key is a weak (small-order) key".into());
    }
    Ok(Binding { leaf, event: b.event, key })
}
