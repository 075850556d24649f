//! Offline verification of export bundles (`custos-server verify`): no
//! store, no network, only the bundle file and optionally a pinned log key.
//!
//! Checks, each failure naming the file inside the bundle:
//! - the checkpoint's signature, against the pinned key when one is given,
//!   else against the bundle's own `log/key`; only the first can give
//!   [`Outcome::Verified`], the second at best [`Outcome::Unpinned`] (a
//!   forger who rewrites the checkpoint writes the key too);
//! - every file's SHA-256 against the manifest, and no file unlisted;
//! - the inclusion proof of every record and key binding against the
//!   checkpoint's root, at the checkpoint's tree size;
//! - each record's DSSE signature against the key bound to its agent at
//!   the record's place in the log (the last key-binding leaf before the
//!   record's leaf; a record logged after a revocation fails), and that the
//!   signed statement is the agent and seq its file name says;
//! - each agent's chain (`prev` is the digest of the previous record; a
//!   missing seq range is a finding, not a forgery) and its anchoring at
//!   both edges of the window through the context records ([`chain`]);
//! - that the hosts the query selected (a sample redrawn from its seed) are
//!   the hosts the bundle holds;
//! - `evidence.csv` against the records ([`csv`]);
//! - `assessment-results.json` against the records and the CSV
//!   ([`assessment_results`]).
//!
//! The bundle is read twice, a bounded number of files in memory at a
//! time (see [`read`]): first everything but the records, then the
//! records. Each pass hashes and checks files on every core and merges the
//! results in archive order, so the report never depends on scheduling.

pub mod assessment_results;
mod chain;
pub mod csv;
pub mod read;
pub mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use custos_proto::evidence::statement::Gap;
use custos_proto::evidence::{CheckStatus, Envelope, StatementSummary, payload_digest, verify_envelope};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use assessment_results::OscalSummary;
pub use read::BundleError;
pub use report::{AgentSummary, ChainEnd, ChainStart, Failure, Finding, Outcome, Report, TrustedKey};

use crate::export::format::{
    ASSESSMENT_RESULTS, BundlePath, CHECKPOINT, EVIDENCE_CSV, FORMAT, LOG_KEY, MANIFEST, Manifest, ProofFile,
    SAMPLE_METHOD, key_proof_path, record_proof_path,
};
use crate::store::tlog::{KEY_BINDING_TYPE, KeyBinding};
use crate::tlog::{Checkpoint, Hash, InclusionProof, VerifierKey, leaf_hash};

/// What the record pass keeps of each record: enough for the chain and the CSV.
#[derive(Debug, Clone)]
pub(crate) struct RecInfo {
    pub digest: [u8; 32],
    pub prev: Option<[u8; 32]>,
    pub collected_at: i64,
    /// Collections the agent declared skipped before this record.
    pub declared_gap: Option<Gap>,
    /// Signed check statuses; kept only for records the CSV names.
    pub statuses: Option<BTreeMap<String, CheckStatus>>,
}

/// A key binding that passed its checks.
#[derive(Debug, Clone)]
struct Binding {
    leaf: u64,
    event: String,
    key: VerifyingKey,
}

/// The pinned log key `--log-key` names: a file holding the note verifier
/// key (as `GET /api/v1/log/key` serves it and `log/key` in a bundle holds
/// it), or the key string itself.
pub fn load_pinned_key(arg: &str) -> Result<VerifierKey, BundleError> {
    let err = |reason: String| BundleError::PinnedKey { path: arg.into(), reason };
    match std::fs::read_to_string(arg) {
        Ok(text) => VerifierKey::parse(text.trim()).map_err(|e| err(e.to_string())),
        // Not a file: the key itself, or a mistyped path.
        Err(read) if read.kind() == std::io::ErrorKind::NotFound => VerifierKey::parse(arg.trim())
            .map_err(|e| err(format!("neither a file ({read}) nor a verifier key ({e})"))),
        Err(read) => Err(err(read.to_string())),
    }
}

/// The hosts the manifest says were chosen are the ones the bundle holds:
/// a sample is what its seed draws from its population, every chosen or
/// named host is in the bundle (so dropping a whole host shows), and no
/// other host is.
fn check_selection(v: &mut Verifier, manifest: &Manifest, in_bundle: &BTreeSet<String>) {
    let q = &manifest.query;
    let mut fail = |reason: String| v.fail(Failure::Manifest { file: MANIFEST.into(), reason });
    let chosen: Option<BTreeSet<&String>> = match &q.sample {
        Some(s) => {
            if s.method != SAMPLE_METHOD {
                fail(format!("the sample's method is {:?}, not {SAMPLE_METHOD:?}", s.method));
            }
            let drawn = crate::export::select::sample(&s.population, s.size, &s.seed);
            if drawn != s.chosen {
                fail(format!(
                    "the sample chose {}, but seed {:?} draws {} from its population",
                    s.chosen.join(", "),
                    s.seed,
                    drawn.join(", ")
                ));
            }
            Some(s.chosen.iter().collect())
        }
        // With --control, the named hosts without a mapped check are left out.
        None if !q.hosts.is_empty() && q.controls.is_empty() => Some(q.hosts.iter().collect()),
        None => None,
    };
    if let Some(chosen) = &chosen {
        for host in chosen.iter().filter(|h| !in_bundle.contains(**h)) {
            fail(format!("host {host} was selected, but the bundle holds nothing of it"));
        }
    }
    let allowed: Option<BTreeSet<&String>> = match (&q.sample, q.hosts.is_empty()) {
        (Some(_), _) => chosen,
        (None, false) => Some(q.hosts.iter().collect()),
        (None, true) => None,
    };
    if let Some(allowed) = allowed {
        for agent in in_bundle.iter().filter(|a| !allowed.contains(a)) {
            fail(format!("the bundle holds agent {agent}, which the query did not select"));
        }
    }
}

fn decode_proof(bytes: &[u8]) -> Result<InclusionProof, String> {
    let file: ProofFile = serde_json::from_slice(bytes).map_err(|e| format!("not a proof file: {e}"))?;
    let path = file
        .hashes
        .iter()
        .map(|h| {
            let raw = B64.decode(h).map_err(|e| format!("hash {h:?} is not base64: {e}"))?;
            <Hash>::try_from(raw.as_slice()).map_err(|_| format!("hash {h:?} is not 32 bytes"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InclusionProof { leaf_index: file.leaf_index, tree_size: file.tree_size, path })
}

/// State shared by the checks.
struct Verifier {
    failures: Vec<Failure>,
    /// The checkpoint that verified: its size and root.
    checkpoint: Option<Checkpoint>,
    proofs: HashMap<String, Result<InclusionProof, String>>,
    used_proofs: BTreeSet<String>,
}

impl Verifier {
    fn fail(&mut self, f: Failure) {
        self.failures.push(f);
    }

    /// [`Proofs::inclusion`], noting the proof as used.
    fn inclusion(&mut self, file: &str, proof_path: &str, data: &[u8], leaf: Option<u64>) -> Option<u64> {
        self.used_proofs.insert(proof_path.to_string());
        let check = Proofs { proofs: &self.proofs, checkpoint: self.checkpoint.as_ref() };
        let mut failures = Vec::new();
        let included = check.inclusion(&mut failures, file, proof_path, data, leaf);
        self.failures.extend(failures);
        included
    }
}

/// What inclusion is checked against: the bundle's proofs and the
/// checkpoint that verified. Shared by the threads checking records.
struct Proofs<'a> {
    proofs: &'a HashMap<String, Result<InclusionProof, String>>,
    checkpoint: Option<&'a Checkpoint>,
}

impl Proofs<'_> {
    /// Checks the inclusion of `file` (leaf `data`) through its proof file;
    /// returns the proof's leaf index when the proof could be read. `leaf`
    /// is the index the file name states, when it states one.
    fn inclusion(
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

/// What pass 1 keeps of a file besides its digest.
enum Kept {
    Nothing,
    Unknown,
    Proof(Result<InclusionProof, String>),
    Bytes(Vec<u8>),
}

/// Verifies the bundle at `path`. `Err` only when the bundle cannot be read
/// as a bundle at all; every check that fails is in the report.
pub fn verify_bundle(path: &Path, pinned: Option<&VerifierKey>) -> Result<Report, BundleError> {
    // Pass 1: digests of every file; everything but the records kept.
    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut proofs: HashMap<String, Result<InclusionProof, String>> = HashMap::new();
    let mut unknown = Vec::new();
    read::each_entry_parallel(
        path,
        |_| true,
        |name, bytes| {
            let bytes = bytes.unwrap_or_default();
            let digest = hex::encode(Sha256::digest(&bytes));
            let kept = match BundlePath::parse(name) {
                BundlePath::Record { .. } => Kept::Nothing,
                BundlePath::Unknown => Kept::Unknown,
                BundlePath::RecordProof { .. } | BundlePath::KeyProof { .. } => {
                    Kept::Proof(decode_proof(&bytes))
                }
                _ => Kept::Bytes(bytes),
            };
            (digest, kept)
        },
        |name, (digest, kept)| {
            if digests.insert(name.clone(), digest).is_some() {
                duplicates.push(name);
                return Ok(());
            }
            match kept {
                Kept::Proof(p) => {
                    proofs.insert(name, p);
                }
                Kept::Bytes(b) => {
                    small.insert(name, b);
                }
                Kept::Unknown => unknown.push(name),
                Kept::Nothing => {}
            }
            Ok(())
        },
    )?;
    let manifest_bytes =
        small.get(MANIFEST).ok_or_else(|| BundleError::NoManifest { path: path.to_path_buf() })?;
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| BundleError::Manifest { path: path.to_path_buf(), reason: e.to_string() })?;
    if manifest.format != FORMAT {
        return Err(BundleError::Manifest {
            path: path.to_path_buf(),
            reason: format!("format {:?} is not {FORMAT:?}", manifest.format),
        });
    }
    let mut v = Verifier { failures: Vec::new(), checkpoint: None, proofs, used_proofs: BTreeSet::new() };
    for file in duplicates {
        v.fail(Failure::Duplicate { file });
    }
    for file in unknown {
        v.fail(Failure::Unknown { file });
    }

    // The manifest's digests.
    let mut listed = BTreeSet::new();
    for entry in &manifest.files {
        if !listed.insert(entry.path.clone()) {
            v.fail(Failure::Manifest {
                file: MANIFEST.into(),
                reason: format!("lists {} twice", entry.path),
            });
        }
        match digests.get(&entry.path) {
            None => v.fail(Failure::Missing { file: entry.path.clone() }),
            Some(found) if *found != entry.sha256.to_lowercase() => v.fail(Failure::Digest {
                file: entry.path.clone(),
                expected: entry.sha256.clone(),
                found: found.clone(),
            }),
            Some(_) => {}
        }
    }
    for file in digests.keys().filter(|f| f.as_str() != MANIFEST && !listed.contains(*f)) {
        v.fail(Failure::NotListed { file: file.clone() });
    }

    // The checkpoint, against the pinned key or the bundle's own.
    let bundle_key = match small.get(LOG_KEY).map(|b| std::str::from_utf8(b).map(str::trim)) {
        None => {
            v.fail(Failure::Missing { file: LOG_KEY.into() });
            None
        }
        Some(Err(_)) => {
            v.fail(Failure::LogKey { file: LOG_KEY.into(), reason: "not UTF-8 text".into() });
            None
        }
        Some(Ok(text)) => match VerifierKey::parse(text) {
            Ok(k) => Some(k),
            Err(e) => {
                v.fail(Failure::LogKey { file: LOG_KEY.into(), reason: e.to_string() });
                None
            }
        },
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
                v.fail(Failure::Checkpoint {
                    file: CHECKPOINT.into(),
                    reason: format!("not a checkpoint signed by {whose} {}: {e}", key),
                });
            }
        },
    }

    // Key bindings.
    let mut bindings: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
    let mut binding_count = 0;
    for (name, bytes) in &small {
        let BundlePath::KeyBinding { agent, leaf } = BundlePath::parse(name) else { continue };
        binding_count += 1;
        let before = v.failures.len();
        let included = v.inclusion(name, &key_proof_path(&agent, leaf), bytes, Some(leaf));
        let parsed = serde_json::from_slice::<KeyBinding>(bytes).map_err(|e| e.to_string()).and_then(|b| {
            if b.type_ != KEY_BINDING_TYPE {
                return Err(format!("type {:?} is not {KEY_BINDING_TYPE:?}", b.type_));
            }
            if b.agent_id != agent {
                return Err(format!("it binds agent {}, the file name says agent {agent}", b.agent_id));
            }
            if !["enrolled", "renewed", "revoked"].contains(&b.event.as_str()) {
                return Err(format!("event {:?} is not enrolled, renewed or revoked", b.event));
            }
            let mut raw = [0u8; 32];
            hex::decode_to_slice(&b.evidence_key, &mut raw)
                .map_err(|_| "evidence_key is not 32 bytes of hex".to_string())?;
            let key = VerifyingKey::from_bytes(&raw)
                .map_err(|_| "evidence_key is not an Ed25519 key".to_string())?;
            if key.is_weak() {
                return Err("evidence_key is a weak (small-order) key".into());
            }
            Ok(Binding { leaf, event: b.event, key })
        });
        match parsed {
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

    let mut csv_named = match small.get(EVIDENCE_CSV) {
        Some(bytes) => csv::named_records(bytes),
        None => BTreeSet::new(),
    };
    if let Some(bytes) = small.get(ASSESSMENT_RESULTS) {
        csv_named.extend(assessment_results::named_records(bytes));
    }

    // Pass 2: the records.
    let mut records: BTreeMap<String, BTreeMap<u64, RecInfo>> = BTreeMap::new();
    let mut by_digest: HashMap<[u8; 32], (String, u64)> = HashMap::new();
    let mut record_count = 0u64;
    // Every record file, readable or not: a gap is a seq with no file at all.
    let mut present: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut failed_files = BTreeSet::new();
    let mut used_proofs = Vec::new();
    let check = Proofs { proofs: &v.proofs, checkpoint: v.checkpoint.as_ref() };
    let mut checked_failures = Vec::new();
    read::each_entry_parallel(
        path,
        |name| matches!(BundlePath::parse(name), BundlePath::Record { .. }),
        |name, bytes| {
            let (Some(bytes), BundlePath::Record { agent, seq }) = (bytes, BundlePath::parse(name)) else {
                return Ok(None);
            };
            if digests.get(name).map(String::as_str) != Some(hex::encode(Sha256::digest(&bytes)).as_str()) {
                return Err(BundleError::Changed { path: path.to_path_buf(), entry: name.to_string() });
            }
            let keep = csv_named.contains(&(agent.clone(), seq));
            let (info, failures) = check_record(&check, name, &agent, seq, &bytes, &bindings, keep);
            Ok(Some((agent, seq, info, failures)))
        },
        |name, checked| {
            let Some((agent, seq, info, failures)) = checked? else { return Ok(()) };
            record_count += 1;
            used_proofs.push(record_proof_path(&agent, seq));
            present.entry(agent.clone()).or_default().insert(seq);
            if let Some(info) = info {
                by_digest.insert(info.digest, (agent.clone(), seq));
                records.entry(agent).or_default().insert(seq, info);
            }
            if !failures.is_empty() {
                failed_files.insert(name);
                checked_failures.extend(failures);
            }
            Ok(())
        },
    )?;
    v.failures.extend(checked_failures);
    v.used_proofs.extend(used_proofs);
    // A record is verified only when nothing about it (nor its proof) failed.
    let failed_now: BTreeSet<String> = v.failures.iter().map(|f| f.file().to_string()).collect();
    failed_files.extend(failed_now.iter().filter(|f| f.starts_with("records/")).cloned());

    // Proofs for leaves the bundle does not hold.
    let unused: Vec<String> = v.proofs.keys().filter(|p| !v.used_proofs.contains(*p)).cloned().collect();
    for p in unused {
        let reason = "a proof for a file the bundle does not hold".to_string();
        v.fail(Failure::Proof { file: p, reason });
    }

    // Chains, and what the window holds.
    let window = (
        OffsetDateTime::parse(&manifest.query.from, &Rfc3339).map(|t| t.unix_timestamp()),
        OffsetDateTime::parse(&manifest.query.to, &Rfc3339).map(|t| t.unix_timestamp()),
    );
    let window = match window {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            v.fail(Failure::Manifest {
                file: MANIFEST.into(),
                reason: "query.from or query.to is not an RFC 3339 time".into(),
            });
            (i64::MIN, i64::MAX)
        }
    };
    let in_bundle: BTreeSet<String> = bindings.keys().chain(present.keys()).cloned().collect();
    let chains = chain::check(&chain::Input {
        present: &present,
        records: &records,
        failed: &failed_files,
        agents: &in_bundle,
        window,
        listed: &manifest.context,
    });
    v.failures.extend(chains.failures);
    failed_files.extend(chains.broken);
    let findings = chains.findings;
    let mut agents = chains.agents;
    for (agent, list) in &bindings {
        agents.entry(agent.clone()).or_default().key_bindings = list.len();
    }
    check_selection(&mut v, &manifest, &in_bundle);

    // The CSV.
    let mut csv_rows = 0;
    match (&manifest.documents.evidence_csv, small.get(EVIDENCE_CSV)) {
        (Some(_), Some(bytes)) => {
            let (n, failures) = csv::check(bytes, &records, &by_digest);
            csv_rows = n;
            v.failures.extend(failures);
        }
        (Some(name), None) => v.fail(Failure::Missing { file: name.clone() }),
        (None, _) => {}
    }
    // The OSCAL document (absent from bundles written before it existed).
    let mut oscal = None;
    match (&manifest.documents.oscal_assessment_results, small.get(ASSESSMENT_RESULTS)) {
        (Some(name), _) if name != ASSESSMENT_RESULTS => v.fail(Failure::Manifest {
            file: MANIFEST.into(),
            reason: format!(
                "documents.oscal_assessment_results is {name:?}, the format's file is {ASSESSMENT_RESULTS}"
            ),
        }),
        (_, Some(bytes)) => {
            let csv = small
                .get(EVIDENCE_CSV)
                .zip(digests.get(EVIDENCE_CSV))
                .map(|(c, d)| (c.as_slice(), d.as_str()));
            let (summary, failures) = assessment_results::check(bytes, &records, csv);
            oscal = Some(summary);
            v.failures.extend(failures);
        }
        (Some(name), None) => v.fail(Failure::Missing { file: name.clone() }),
        (None, None) => {}
    }

    let q = &manifest.query;
    let list = |l: &[String]| if l.is_empty() { "all".to_string() } else { l.join(", ") };
    let mut query = format!("controls: {}; hosts: {}", list(&q.controls), list(&q.hosts));
    if let Some(s) = &q.sample {
        query.push_str(&format!(
            "; sample of {} (seed {:?}) from {} hosts",
            s.size,
            s.seed,
            s.population.len()
        ));
    }
    Ok(Report {
        bundle: path.display().to_string(),
        exported_at: manifest.exported_at.clone(),
        exported_by: manifest.exported_by.clone(),
        window: (q.from.clone(), q.to.clone()),
        query,
        trusted,
        checkpoint: v.checkpoint.as_ref().map(|c| (c.origin().to_string(), c.size())),
        records: record_count,
        records_verified: record_count
            .saturating_sub(failed_files.iter().filter(|f| f.starts_with("records/")).count() as u64),
        key_bindings: binding_count,
        proofs: v.proofs.len(),
        csv_rows,
        oscal,
        agents,
        failures: v.failures,
        findings,
    })
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
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            failures.push(record("not UTF-8 text".into()));
            return (None, failures);
        }
    };
    let env = match Envelope::from_json(text) {
        Ok(e) => e,
        Err(e) => {
            failures.push(record(format!("not a DSSE envelope: {e}")));
            return (None, failures);
        }
    };
    let st = match StatementSummary::summary_from_payload(&env.payload) {
        Ok(s) => s,
        Err(e) => {
            failures.push(record(e.to_string()));
            return (None, failures);
        }
    };
    let p = &st.predicate;
    if p.agent_id != agent || p.seq != seq {
        failures.push(Failure::Identity {
            file: name.into(),
            reason: format!(
                "the signed statement is agent {} seq {}, the file name says agent {agent} seq {seq}",
                p.agent_id, p.seq
            ),
        });
    }
    // The key bound to the agent where the record entered the log.
    let position = leaf.unwrap_or(u64::MAX);
    let binding = bindings.get(agent).and_then(|l| l.iter().rev().find(|b| b.leaf < position));
    match binding {
        None => failures.push(Failure::Key {
            file: name.into(),
            reason: match leaf {
                Some(l) => format!("no key binding of agent {agent} in the bundle precedes its leaf {l}"),
                None => format!("no key binding of agent {agent} in the bundle"),
            },
        }),
        Some(b) if b.event == "revoked" => failures.push(Failure::Key {
            file: name.into(),
            reason: format!(
                "logged at leaf {position}, after agent {agent}'s key was revoked (leaf {})",
                b.leaf
            ),
        }),
        Some(b) => {
            if let Err(e) = verify_envelope(&env, &b.key) {
                failures.push(Failure::Signature {
                    file: name.into(),
                    reason: format!(
                        "{e} (agent {agent}'s key {} bound at leaf {})",
                        custos_proto::evidence::key_id(&b.key),
                        b.leaf
                    ),
                });
            }
            let expected = hex::encode(Sha256::digest(b.key.as_bytes()));
            if st.subject.first().and_then(|s| s.digest.get("sha256")) != Some(&expected) {
                failures.push(Failure::Identity {
                    file: name.into(),
                    reason: format!(
                        "the statement's subject does not pin agent {agent}'s key (sha256 {expected})"
                    ),
                });
            }
        }
    }
    let collected_at = match OffsetDateTime::parse(&p.collected_at, &Rfc3339) {
        Ok(t) => t.unix_timestamp(),
        Err(e) => {
            failures.push(record(format!("collected_at {:?}: {e}", p.collected_at)));
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
