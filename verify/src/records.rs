//! The second reading of a bundle: each record checked on every core
//! (inclusion, envelope, statement identity, key and signature), and
//! `evidence.csv` and `assessment-results.json` parsed as they stream, for
//! the checks that need the records.
//!
//! The manifest is known by now, so each entry is read under the size the
//! manifest declares for it: an entry larger than that is refused from its
//! tar header, at most the declared size is ever read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use custos_proto::evidence::{Envelope, StatementSummary, payload_digest, verify_envelope};
use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::csv::Parsed;
use super::first::First;
use super::limits::{Body, Cap, Limits, kind_cap, stream_hashed};
use super::read::{self, BundleError};
use super::report::{Failure, excerpt};
use super::{RecInfo, assessment_results, csv};
use crate::bundle::{BundlePath, Manifest, ProofFile, record_proof_path};
use crate::tlog::{Checkpoint, Hash, InclusionProof, leaf_hash};

/// A key binding that passed its checks.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub leaf: u64,
    pub event: String,
    pub key: VerifyingKey,
}

pub(crate) fn decode_proof(bytes: &[u8]) -> Result<InclusionProof, String> {
    let file: ProofFile = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a proof file: {}", excerpt(&e.to_string())))?;
    let path = file
        .hashes
        .iter()
        .map(|h| {
            let raw = B64.decode(h).map_err(|e| format!("hash {:?} is not base64: {e}", excerpt(h)))?;
            <Hash>::try_from(raw.as_slice()).map_err(|_| format!("hash {:?} is not 32 bytes", excerpt(h)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InclusionProof { leaf_index: file.leaf_index, tree_size: file.tree_size, path })
}

/// What inclusion is checked against: the bundle's proofs and the
/// checkpoint that verified. Shared by the threads checking records.
pub(crate) struct Proofs<'a> {
    pub proofs: &'a HashMap<String, Result<InclusionProof, String>>,
    pub checkpoint: Option<&'a Checkpoint>,
}

impl Proofs<'_> {
    /// Checks the inclusion of `file` (leaf `data`) through its proof file;
    /// returns the proof's leaf index when the proof could be read. `leaf`
    /// is the index the file name states, when it states one.
    pub fn inclusion(
        &self,
        failures: &mut Vec<Failure>,
        file: &str,
        proof_path: &str,
        data: &[u8],
        leaf: Option<u64>,
    ) -> Option<u64> {
        let proof = match self.proofs.get(proof_path) {
            None => {
                failures.push(Failure::NoProof { file: file.into(), proof: proof_path.into() });
                return None;
            }
            Some(Err(reason)) => {
                let reason = reason.clone();
                failures.push(Failure::Proof { file: proof_path.into(), reason });
                return None;
            }
            Some(Ok(p)) => p,
        };
        if let Some(leaf) = leaf.filter(|l| *l != proof.leaf_index) {
            failures.push(Failure::Proof {
                file: proof_path.into(),
                reason: format!("proof is for leaf {}, the file name says leaf {leaf}", proof.leaf_index),
            });
        }
        let Some(cp) = self.checkpoint else {
            failures.push(Failure::Inclusion {
                file: file.into(),
                reason: "no verified checkpoint to check the proof against".into(),
            });
            return Some(proof.leaf_index);
        };
        if proof.tree_size != cp.size() {
            let reason = format!(
                "proof is for tree size {}, the checkpoint is at size {}",
                proof.tree_size,
                cp.size()
            );
            failures.push(Failure::Proof { file: proof_path.into(), reason });
            return Some(proof.leaf_index);
        }
        if let Err(e) = proof.verify(&leaf_hash(data), cp.root()) {
            failures.push(Failure::Inclusion {
                file: file.into(),
                reason: format!("leaf {}: {e}", proof.leaf_index),
            });
        }
        Some(proof.leaf_index)
    }
}

/// The sizes the manifest declares, looked up by path. An index sorted by
/// path rather than a map: a bundle of a million records lists two million
/// files.
struct Declared<'m> {
    files: &'m [crate::bundle::FileEntry],
    order: Vec<usize>,
}

impl<'m> Declared<'m> {
    fn new(manifest: &'m Manifest) -> Declared<'m> {
        let files = manifest.files.as_slice();
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by(|a, b| files[*a].path.cmp(&files[*b].path));
        Declared { files, order }
    }

    /// The declared size of `name` when the manifest declares one under
    /// its kind's cap (a declaration only ever tightens), else that cap.
    fn cap(&self, name: &str, limits: &Limits) -> Cap {
        let kind = kind_cap(name, limits);
        match self.order.binary_search_by(|i| self.files[*i].path.as_str().cmp(name)) {
            Ok(i) if self.files[self.order[i]].size <= kind.max => {
                Cap::declared(self.files[self.order[i]].size)
            }
            _ => kind,
        }
    }
}

/// What the second reading finds.
#[derive(Default)]
pub(crate) struct Second {
    pub records: BTreeMap<String, BTreeMap<u64, RecInfo>>,
    pub by_digest: HashMap<[u8; 32], (String, u64)>,
    pub record_count: u64,
    /// Every record file, readable or not: a gap is a seq with no file at all.
    pub present: BTreeMap<String, BTreeSet<u64>>,
    /// Record files some check failed for.
    pub failed_files: BTreeSet<String>,
    pub used_proofs: Vec<String>,
    pub failures: Vec<Failure>,
    /// `evidence.csv` and `assessment-results.json` as parsed (the first of
    /// each, when a name appears twice).
    pub csv: Option<Parsed>,
    pub oscal: Option<Result<Value, String>>,
}

/// An entry as the reading thread hands it on, and as a worker returns it.
enum Item {
    Record(Vec<u8>),
    Checked { agent: String, seq: u64, info: Option<RecInfo>, failures: Vec<Failure> },
    Csv(String, Parsed),
    Oscal(String, Result<Value, String>),
    Skip,
}

/// What a worker needs to check records.
pub(crate) struct Context<'a> {
    pub first: &'a First,
    pub proofs: Proofs<'a>,
    pub bindings: &'a BTreeMap<String, Vec<Binding>>,
}

/// Reads the bundle the second time.
pub(crate) fn read(
    path: &Path,
    limits: &Limits,
    manifest: &Manifest,
    cx: &Context<'_>,
) -> Result<Second, BundleError> {
    let declared = Declared::new(manifest);
    let mut second = Second::default();
    read::each_entry_parallel(
        path,
        limits,
        |name| declared.cap(name, limits),
        read_entry,
        |name, item| work(cx, path, name, item),
        |name, item| second.merge(cx.first, path, name, item?),
    )?;
    Ok(second)
}

/// On the reading thread: records in memory, the documents parsed as they
/// stream, the rest only read through.
fn read_entry(body: &mut Body<'_>) -> Result<Item, BundleError> {
    match BundlePath::parse(body.name()) {
        BundlePath::Record { .. } => Ok(Item::Record(body.bytes()?)),
        BundlePath::EvidenceCsv => {
            stream_hashed(body, |r, site| csv::parse(r, site)).map(|(digest, csv)| Item::Csv(digest, csv))
        }
        BundlePath::AssessmentResults => stream_hashed(body, |r, site| assessment_results::parse(r, site))
            .map(|(digest, doc)| Item::Oscal(digest, doc)),
        _ => Ok(Item::Skip),
    }
}

/// On a worker: a record checked, after making sure it is the file the
/// first reading hashed.
fn work(cx: &Context<'_>, path: &Path, name: &str, item: Item) -> Result<Item, BundleError> {
    let bytes = match item {
        Item::Record(bytes) => bytes,
        // The documents pass through to the merge.
        other => return Ok(other),
    };
    let BundlePath::Record { agent, seq } = BundlePath::parse(name) else { return Ok(Item::Skip) };
    let digest = hex::encode(Sha256::digest(&bytes));
    if cx.first.digests.get(name) != Some(&digest) {
        return Err(BundleError::Changed { path: path.to_path_buf(), entry: name.to_string() });
    }
    let keep = cx.first.named.contains(&(agent.clone(), seq));
    let (info, failures) = check_record(&cx.proofs, name, &agent, seq, &bytes, cx.bindings, keep);
    Ok(Item::Checked { agent, seq, info, failures })
}

impl Second {
    fn merge(&mut self, first: &First, path: &Path, name: String, item: Item) -> Result<(), BundleError> {
        let changed = |digest: &String| {
            let same = first.digests.get(&name) == Some(digest);
            if same {
                Ok(())
            } else {
                Err(BundleError::Changed { path: path.to_path_buf(), entry: name.clone() })
            }
        };
        match item {
            Item::Checked { agent, seq, info, failures } => {
                self.record_count += 1;
                self.used_proofs.push(record_proof_path(&agent, seq));
                self.present.entry(agent.clone()).or_default().insert(seq);
                if let Some(info) = info {
                    self.by_digest.insert(info.digest, (agent.clone(), seq));
                    self.records.entry(agent).or_default().insert(seq, info);
                }
                if !failures.is_empty() {
                    self.failed_files.insert(name);
                    self.failures.extend(failures);
                }
            }
            Item::Csv(digest, csv) if self.csv.is_none() => {
                changed(&digest)?;
                self.csv = Some(csv);
            }
            Item::Oscal(digest, doc) if self.oscal.is_none() => {
                changed(&digest)?;
                self.oscal = Some(doc);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Checks one record file: inclusion, envelope, statement identity, key and
/// signature. Returns what the chain and CSV checks need, when the signed
/// statement could be read, with the record's failures.
fn check_record(
    check: &Proofs<'_>,
    name: &str,
    agent: &str,
    seq: u64,
    bytes: &[u8],
    bindings: &BTreeMap<String, Vec<Binding>>,
    keep_statuses: bool,
) -> (Option<RecInfo>, Vec<Failure>) {
    let mut failures = Vec::new();
    let leaf = check.inclusion(&mut failures, name, &record_proof_path(agent, seq), bytes, None);
    let record = |reason: String| Failure::Record { file: name.into(), reason };
    let parsed = std::str::from_utf8(bytes)
        .map_err(|_| "not UTF-8 text".to_string())
        .and_then(|text| {
            Envelope::from_json(text).map_err(|e| format!("not a DSSE envelope: {}", excerpt(&e)))
        })
        .and_then(|env| match StatementSummary::summary_from_payload(&env.payload) {
            Ok(st) => Ok((env, st)),
            Err(e) => Err(excerpt(&e.to_string()).to_string()),
        });
    let (env, st) = match parsed {
        Ok(p) => p,
        Err(reason) => {
            failures.push(record(reason));
            return (None, failures);
        }
    };
    let p = &st.predicate;
    if p.agent_id != agent || p.seq != seq {
        failures.push(Failure::Identity {
            file: name.into(),
            reason: format!(
                "the signed statement is agent {} seq {}, the file name says agent {agent} seq {seq}",
                excerpt(&p.agent_id),
                p.seq
            ),
        });
    }
    check_key(&mut failures, name, agent, leaf, &env, &st, bindings);
    let collected_at = match OffsetDateTime::parse(&p.collected_at, &Rfc3339) {
        Ok(t) => t.unix_timestamp(),
        Err(e) => {
            failures.push(record(format!("collected_at {:?}: {e}", excerpt(&p.collected_at))));
            return (None, failures);
        }
    };
    let info = RecInfo {
        digest: payload_digest(&env.payload),
        prev: st.prev_digest(),
        collected_at,
        declared_gap: p.gap.clone(),
        statuses: keep_statuses.then(|| p.checks.iter().map(|c| (c.id.clone(), c.status)).collect()),
    };
    (Some(info), failures)
}

/// The record's signature against the key bound to its agent where it
/// entered the log (the last binding before its leaf), and its subject
/// pinning that key.
fn check_key(
    failures: &mut Vec<Failure>,
    name: &str,
    agent: &str,
    leaf: Option<u64>,
    env: &Envelope,
    st: &StatementSummary,
    bindings: &BTreeMap<String, Vec<Binding>>,
) {
    let position = leaf.unwrap_or(u64::MAX);
    let binding = bindings.get(agent).and_then(|l| l.iter().rev().find(|b| b.leaf < position));
    let b = match binding {
        None => {
            let reason = match leaf {
                Some(l) => format!("no key binding of agent {agent} in the bundle precedes its leaf {l}"),
                None => format!("no key binding of agent {agent} in the bundle"),
            };
            return failures.push(Failure::Key { file: name.into(), reason });
        }
        Some(b) if b.event == "revoked" => {
            let reason =
                format!("logged at leaf {position}, after agent {agent}'s key was revoked (leaf {})", b.leaf);
            return failures.push(Failure::Key { file: name.into(), reason });
        }
        Some(b) => b,
    };
    if let Err(e) = verify_envelope(env, &b.key) {
        failures.push(Failure::Signature {
            file: name.into(),
            reason: format!(
                "{} (agent {agent}'s key {} bound at leaf {})",
                excerpt(&e.to_string()),
                custos_proto::evidence::key_id(&b.key),
                b.leaf
            ),
        });
    }
    let expected = hex::encode(Sha256::digest(b.key.as_bytes()));
    if st.subject.first().and_then(|s| s.digest.get("sha256")) != Some(&expected) {
        failures.push(Failure::Identity {
            file: name.into(),
            reason: format!("the statement's subject does not pin agent {agent}'s key (sha256 {expected})"),
        });
    }
}
