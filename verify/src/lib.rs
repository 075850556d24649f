//! `custos-verify`: offline verification of export bundles, in a crate an
//! auditor can build alone (no database, no TLS stack, no gRPC, no HTTP
//! server, no policy engine). No store, no network, only the bundle file
//! and optionally a pinned log key. `custos-server verify` is the same
//! code under the server's name.
//!
//! Besides the verifier, the crate holds what it shares with the server's
//! writer, so each has one source: the bundle layout and manifest
//! ([`bundle`]), the transparency log's pure core ([`tlog`]: RFC 9162
//! hashing and proofs, C2SP signed notes and checkpoints), the log's
//! non-record leaves ([`leaf`]), the sampling rule ([`sample`]) and the
//! OSCAL names ([`oscal_ids`]). It never reuses the writer's decisions:
//! where it re-checks one, it decides from the records with its own code.
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
//! time (see [`read`]): first everything but the records ([`first`]), then
//! the records and the two documents ([`records`]). Each pass hashes and
//! checks files on every core and merges the results in archive order, so
//! the report never depends on scheduling.
//!
//! The bundle is a stranger's file: it is read under [`Limits`] (expanded
//! size, expansion ratio, each entry's declared or kind cap), the documents
//! are parsed as they stream, and every piece of it a message repeats is
//! cut to an [`excerpt`](report::excerpt), so neither memory nor the report
//! grows with what a small file expands to.

pub mod assessment_results;
pub mod bundle;
mod chain;
pub mod cli;
pub mod csv;
mod first;
pub mod leaf;
pub mod limits;
pub mod oscal_ids;
pub mod read;
mod records;
pub mod report;
pub mod sample;
pub mod tlog;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use custos_proto::evidence::CheckStatus;
use custos_proto::evidence::statement::Gap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use assessment_results::OscalSummary;
pub use limits::Limits;
pub use read::BundleError;
pub use report::{
    AgentSummary, ChainEnd, ChainStart, Failure, Finding, Outcome, Report, TrustedKey, excerpt,
};

use crate::bundle::{ASSESSMENT_RESULTS, MANIFEST, Manifest, SAMPLE_METHOD};
use crate::tlog::{Checkpoint, InclusionProof, VerifierKey};
use records::Proofs;

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
    // The manifest's lists can be as long as its author likes: excerpts.
    let list = |l: &[String]| excerpt(&l.join(", ")).to_string();
    let chosen: Option<BTreeSet<&String>> = match &q.sample {
        Some(s) => {
            if s.method != SAMPLE_METHOD {
                fail(format!("the sample's method is {:?}, not {SAMPLE_METHOD:?}", excerpt(&s.method)));
            }
            let drawn = crate::sample::sample(&s.population, s.size, &s.seed);
            if drawn != s.chosen {
                fail(format!(
                    "the sample chose {}, but seed {:?} draws {} from its population",
                    list(&s.chosen),
                    excerpt(&s.seed),
                    list(&drawn)
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
            fail(format!("host {} was selected, but the bundle holds nothing of it", excerpt(host)));
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

/// State shared by the checks.
pub(crate) struct Verifier {
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

/// Verifies the bundle at `path` under the default [`Limits`], each
/// overridden by its environment variable ([`Limits::from_env`]).
pub fn verify_bundle(path: &Path, pinned: Option<&VerifierKey>) -> Result<Report, BundleError> {
    verify_bundle_with(path, pinned, &Limits::from_env()?)
}

/// Verifies the bundle at `path` under `limits`. `Err` only when the bundle
/// cannot be read as a bundle at all, or breaks a limit; every check that
/// fails is in the report.
pub fn verify_bundle_with(
    path: &Path,
    pinned: Option<&VerifierKey>,
    limits: &Limits,
) -> Result<Report, BundleError> {
    let mut first = first::read(path, limits)?;
    let manifest = first.manifest(path)?;
    let proofs = std::mem::take(&mut first.proofs);
    let mut v = Verifier { failures: Vec::new(), checkpoint: None, proofs, used_proofs: BTreeSet::new() };
    first::check_listing(&mut v, &manifest, &first);
    let trusted = first::check_checkpoint(&mut v, pinned, &first.small);
    let (bindings, binding_count) = first::key_bindings(&mut v, &first.small);

    let proofs = Proofs { proofs: &v.proofs, checkpoint: v.checkpoint.as_ref() };
    let cx = records::Context { first: &first, proofs, bindings: &bindings };
    let mut second = records::read(path, limits, &manifest, &cx)?;
    v.failures.append(&mut second.failures);
    v.used_proofs.extend(std::mem::take(&mut second.used_proofs));
    // A record is verified only when nothing about it (nor its proof) failed.
    let failed_now: BTreeSet<String> = v.failures.iter().map(|f| f.file().to_string()).collect();
    second.failed_files.extend(failed_now.into_iter().filter(|f| f.starts_with("records/")));
    // Proofs for leaves the bundle does not hold.
    let unused: Vec<String> = v.proofs.keys().filter(|p| !v.used_proofs.contains(*p)).cloned().collect();
    for p in unused {
        let reason = "a proof for a file the bundle does not hold".to_string();
        v.fail(Failure::Proof { file: p, reason });
    }
    let bindings_per_agent: BTreeMap<String, usize> =
        bindings.iter().map(|(a, l)| (a.clone(), l.len())).collect();
    let mut report = conclude(&mut v, path, &manifest, &first, second, &bindings_per_agent);
    report.trusted = trusted;
    report.key_bindings = binding_count;
    report.failures = v.failures;
    Ok(report)
}

/// Chains, selection, the CSV and the OSCAL document, and the report (its
/// key and failures filled in by the caller).
fn conclude(
    v: &mut Verifier,
    path: &Path,
    manifest: &Manifest,
    first: &first::First,
    mut second: records::Second,
    bindings: &BTreeMap<String, usize>,
) -> Report {
    let window = window(v, manifest);
    let in_bundle: BTreeSet<String> = bindings.keys().chain(second.present.keys()).cloned().collect();
    let chains = chain::check(&chain::Input {
        present: &second.present,
        records: &second.records,
        failed: &second.failed_files,
        agents: &in_bundle,
        window,
        listed: &manifest.context,
    });
    v.failures.extend(chains.failures);
    second.failed_files.extend(chains.broken);
    let mut agents = chains.agents;
    for (agent, n) in bindings {
        agents.entry(agent.clone()).or_default().key_bindings = *n;
    }
    check_selection(v, manifest, &in_bundle);
    let (csv_rows, oscal) = documents(v, manifest, first, &mut second);
    let q = &manifest.query;
    let records_failed = second.failed_files.iter().filter(|f| f.starts_with("records/")).count() as u64;
    Report {
        bundle: path.display().to_string(),
        exported_at: manifest.exported_at.clone(),
        exported_by: manifest.exported_by.clone(),
        window: (q.from.clone(), q.to.clone()),
        query: describe_query(manifest),
        trusted: TrustedKey::None,
        checkpoint: v.checkpoint.as_ref().map(|c| (c.origin().to_string(), c.size())),
        records: second.record_count,
        records_verified: second.record_count.saturating_sub(records_failed),
        key_bindings: 0,
        proofs: v.proofs.len(),
        csv_rows,
        oscal,
        agents,
        failures: Vec::new(),
        findings: chains.findings,
    }
}

/// The window the manifest states, in Unix seconds (all time when it
/// cannot be read, which is a failure).
fn window(v: &mut Verifier, manifest: &Manifest) -> (i64, i64) {
    let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).map(|t| t.unix_timestamp());
    match (parse(&manifest.query.from), parse(&manifest.query.to)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            v.fail(Failure::Manifest {
                file: MANIFEST.into(),
                reason: "query.from or query.to is not an RFC 3339 time".into(),
            });
            (i64::MIN, i64::MAX)
        }
    }
}

/// `evidence.csv` and `assessment-results.json` against the records;
/// returns the CSV's row count and what the OSCAL document held.
fn documents(
    v: &mut Verifier,
    manifest: &Manifest,
    first: &first::First,
    second: &mut records::Second,
) -> (u64, Option<OscalSummary>) {
    let mut csv_rows = 0;
    let mut csv = second.csv.take();
    match (&manifest.documents.evidence_csv, csv.as_mut()) {
        (Some(_), Some(parsed)) => {
            let (n, failures) = csv::check(parsed, &second.records, &second.by_digest);
            csv_rows = n;
            v.failures.extend(failures);
        }
        (Some(name), None) => v.fail(Failure::Missing { file: excerpt(name).to_string() }),
        (None, _) => {}
    }
    let csv_digest = first.digests.get(crate::bundle::EVIDENCE_CSV);
    // The OSCAL document (absent from bundles written before it existed).
    let mut oscal = None;
    match (&manifest.documents.oscal_assessment_results, second.oscal.take()) {
        (Some(name), _) if name != ASSESSMENT_RESULTS => v.fail(Failure::Manifest {
            file: MANIFEST.into(),
            reason: format!(
                "documents.oscal_assessment_results is {:?}, the format's file is {ASSESSMENT_RESULTS}",
                excerpt(name)
            ),
        }),
        (_, Some(doc)) => {
            let pinned = csv.as_ref().zip(csv_digest).map(|(c, d)| (c, d.as_str()));
            let (summary, failures) = assessment_results::check(doc, &second.records, pinned);
            oscal = Some(summary);
            v.failures.extend(failures);
        }
        (Some(name), None) => v.fail(Failure::Missing { file: name.clone() }),
        (None, None) => {}
    }
    (csv_rows, oscal)
}

/// The query as the report states it; the manifest's lists as excerpts.
fn describe_query(manifest: &Manifest) -> String {
    let q = &manifest.query;
    let list =
        |l: &[String]| if l.is_empty() { "all".to_string() } else { excerpt(&l.join(", ")).to_string() };
    let mut query = format!("controls: {}; hosts: {}", list(&q.controls), list(&q.hosts));
    if let Some(s) = &q.sample {
        query.push_str(&format!(
            "; sample of {} (seed {:?}) from {} hosts",
            s.size,
            excerpt(&s.seed),
            s.population.len()
        ));
    }
    query
}
