//! Export bundles (`custos-server export`): one tar.gz an auditor verifies
//! offline (`custos-server verify`, [`crate::verify`]) and with tools we did
//! not write. The layout is in [`format`].
//!
//! What goes in: the records collected in the window of the selected hosts
//! (exactly the bytes of their log leaves), every key-binding leaf of those
//! agents, the records before the window that the standings in
//! `evidence.csv` rest on, each agent's chain context (its record just
//! before the window and, when the log holds one, just after it; see
//! [`Store::chain_context`]), an inclusion proof per leaf against one signed
//! checkpoint (freshly signed through [`Store::sign_checkpoint`], which
//! refuses inconsistent checkpoints, when the latest one does not cover every
//! exported leaf), the log's verifier key, the evidence CSV, the OSCAL
//! assessment results over the same rows ([`assessment_results`]) and a
//! manifest.
//!
//! Invariants: every leaf is checked against the stored leaf hash and every
//! proof against the checkpoint's root before it is written, so an export
//! never hands out a bundle that its own store contradicts; a failed export
//! leaves no file under the target name. `--host`, `--control` (hosts with
//! a record in the window carrying a mapped check) and `--sample` (seeded,
//! over hosts) all select hosts, and then every record of theirs in the
//! window goes in with its chain context, so each exported chain is whole
//! and anchored at both ends of the window.

pub mod assessment_results;
pub mod bundle;
mod contents;
pub mod csv;
mod evidence;
pub mod progress;
mod proofs;
pub mod select;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::compliance::catalog::Catalog;
use crate::compliance::policy::Policy;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::store::{Store, StoreError};
use bundle::BundleWriter;
use contents::Leaves;
use custos_verify::bundle as format;
use custos_verify::tlog::TreeError;
use evidence::Evidence;
use format::{
    ASSESSMENT_RESULTS, ContextRecord, Counts, Documents, EVIDENCE_CSV, EvaluationInfo, FORMAT, LogInfo,
    Manifest, Query, SAMPLE_METHOD, Sample,
};
use proofs::Prover;

/// Why an export failed. Nothing is left under the target name.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data dir's policy, refused or unreadable (path and line inside).
    #[error(transparent)]
    Policy(#[from] crate::datadir::PolicyLoadError),
    #[error(
        "record {agent}/{seq} has no leaf in the transparency log (stored before the log existed); it cannot be exported with a proof"
    )]
    NoLeaf { agent: String, seq: u64 },
    #[error(
        "leaf {index} (record {what}) does not hash to the stored leaf hash: the store is inconsistent, nothing exported"
    )]
    LeafMismatch { index: u64, what: String },
    #[error(
        "the stored leaf hashes do not lead to the root of checkpoint {size}: the store is inconsistent, nothing exported"
    )]
    RootMismatch { size: u64 },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("inclusion proof of leaf {index}: {source}")]
    Proof {
        index: u64,
        #[source]
        source: TreeError,
    },
    #[error("record {agent}/{seq}: {message}")]
    Record { agent: String, seq: u64, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("evidence.csv: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("assessment-results.json: {0}")]
    Oscal(#[from] assessment_results::AssessmentError),
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub data_dir: PathBuf,
    /// Collection-time window, both ends included.
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// Control ids or prefixes; empty: all.
    pub controls: Vec<String>,
    /// Agent ids; empty: all.
    pub hosts: Vec<String>,
    /// `(n, seed)`: a deterministic sample of n hosts.
    pub sample: Option<(usize, String)>,
    /// Who exports (named in the manifest).
    pub by: String,
    pub out: PathBuf,
    pub now: OffsetDateTime,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

impl ExportOptions {
    /// The window in Unix seconds, as the store's queries take it.
    fn window(&self) -> (i64, i64) {
        (self.from.unix_timestamp(), self.to.unix_timestamp())
    }
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub manifest: Manifest,
    pub bytes: u64,
}

/// RFC 3339, or Unix seconds for a time RFC 3339 cannot hold.
fn rfc3339(t: OffsetDateTime) -> String {
    custos_proto::time::rfc3339(t).unwrap_or_else(|| t.unix_timestamp().to_string())
}

/// Writes the bundle `opts` asks for, in these steps:
/// 1. check the query (`validate`);
/// 2. open the data dir: its config, catalog, policy and store (`Sources::open`);
/// 3. select the hosts: `--host`, `--control`, then the seeded `--sample` (`select`);
/// 4. evaluate at the window's end: a row per host and requirement and the
///    signed records it rests on (`Evidence::collect`);
/// 5. build `evidence.csv` and the OSCAL document over the same rows (`Reports::build`);
/// 6. gather the leaves besides the window's records: key bindings, records
///    behind the standings, chain context (`Leaves::gather`);
/// 7. take a checkpoint covering them all, signed now when the latest does
///    not, and rebuild the tree to prove them against (`Prover::new`);
/// 8. write every file, each leaf checked before it goes in (`contents::write`);
/// 9. write the manifest and move the bundle into place (`BundleWriter::finish`);
///    after a failure no file is left under the target name;
/// 10. put the export into the audit trail (`record_audit`).
pub fn export(opts: &ExportOptions) -> Result<ExportSummary, ExportError> {
    validate(opts)?;
    let src = Sources::open(opts)?;
    let selection = select(opts, &src)?;
    let evidence = Evidence::collect(opts, &src, &selection)?;
    let reports = Reports::build(opts, &src, &selection, &evidence)?;
    let leaves = Leaves::gather(&src.store, &evidence, &selection.hosts, opts.window())?;
    let prover = Prover::new(opts, &src, leaves.needed)?;
    let mut w = BundleWriter::create(&opts.out, opts.now.unix_timestamp())?;
    let (counts, context) =
        match contents::write(&mut w, opts.progress, &src.store, &leaves, &prover, &reports) {
            Ok(written) => written,
            Err(e) => {
                w.abandon();
                return Err(e);
            }
        };
    let (manifest, bytes) = w.finish(reports.manifest(&opts.by, &prover, counts, context))?;
    record_audit(&src.store, opts, &manifest)?;
    Ok(ExportSummary { manifest, bytes })
}

/// Step 1: refuses a window that ends before it starts and an empty sample,
/// before anything is opened.
fn validate(opts: &ExportOptions) -> Result<(), ExportError> {
    if opts.from > opts.to {
        return Err(ExportError::Invalid(format!(
            "--from {} is after --to {}",
            rfc3339(opts.from),
            rfc3339(opts.to)
        )));
    }
    if let Some((0, _)) = opts.sample {
        return Err(ExportError::Invalid("--sample must be at least 1".into()));
    }
    Ok(())
}

/// What an export reads from the data dir.
struct Sources {
    config: Config,
    catalog: Catalog,
    rules: Policy,
    store: Store,
}

impl Sources {
    /// Step 2: the data dir's config, catalog, policy and store; a missing
    /// database is an error, never created here.
    fn open(opts: &ExportOptions) -> Result<Sources, ExportError> {
        let data = DataDir(opts.data_dir.clone());
        let config = Config::load(&data.config())
            .map_err(|e| ExportError::DataDir { path: data.config(), message: e.to_string() })?;
        if !data.database().exists() {
            return Err(ExportError::DataDir { path: data.database(), message: "no database".into() });
        }
        let catalog = crate::datadir::load_catalog(&opts.data_dir)
            .map_err(|e| ExportError::DataDir { path: opts.data_dir.clone(), message: e.to_string() })?;
        let rules = crate::datadir::load_policy(&opts.data_dir)?;
        let store = Store::open(&data.database())?;
        Ok(Sources { config, catalog, rules, store })
    }
}

/// The hosts and requirements an export covers.
struct Selection {
    /// Every enrolled host's display name, by agent id.
    names: BTreeMap<String, String>,
    /// The controls `--control` resolved to; empty: all.
    controls: Vec<String>,
    /// The hosts whose records go in, sorted.
    hosts: Vec<String>,
    /// How they were drawn, when `--sample` drew them.
    sample: Option<Sample>,
}

/// Step 3: the hosts `--host` names (all enrolled ones when none), of those
/// the ones with a record in the window carrying a check mapped to a
/// `--control`, and of those the seeded `--sample`.
fn select(opts: &ExportOptions, src: &Sources) -> Result<Selection, ExportError> {
    let (from, to) = opts.window();
    let all_hosts = src.store.hosts()?;
    let known: BTreeSet<&str> = all_hosts.iter().map(|h| h.agent_id.as_str()).collect();
    if let Some(h) = opts.hosts.iter().find(|h| !known.contains(h.as_str())) {
        return Err(ExportError::Invalid(format!("--host {h:?} is not an enrolled agent")));
    }
    let mut population: Vec<String> = if opts.hosts.is_empty() {
        all_hosts.iter().map(|h| h.agent_id.clone()).collect()
    } else {
        opts.hosts.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect()
    };
    population.sort();
    let controls = select::resolve_controls(&src.catalog, &opts.controls)?;
    if !controls.is_empty() {
        population = src.store.agents_with_checks_between(
            &population,
            from,
            to,
            &select::checks_of(&src.catalog, &controls),
        )?;
    }
    let (hosts, sample) = match &opts.sample {
        Some((n, seed)) => {
            let chosen = custos_verify::sample::sample(&population, *n, seed);
            let s = Sample {
                size: *n,
                seed: seed.clone(),
                method: SAMPLE_METHOD.into(),
                population,
                chosen: chosen.clone(),
            };
            (chosen, Some(s))
        }
        None => (population, None),
    };
    let names = all_hosts.into_iter().map(|h| (h.agent_id, h.display_name)).collect();
    Ok(Selection { names, controls, hosts, sample })
}

/// The evidence table and the OSCAL document over it, and what the manifest
/// says of them.
struct Reports {
    csv: Vec<u8>,
    assessment: assessment_results::Built,
    csv_rows: usize,
    query: Query,
    evaluation: EvaluationInfo,
    /// RFC 3339.
    exported_at: String,
}

impl Reports {
    /// Step 5: `evidence.csv` from the rows, and the OSCAL document over the
    /// same rows, the records they name and the risk register as it stands.
    fn build(
        opts: &ExportOptions,
        src: &Sources,
        selection: &Selection,
        evidence: &Evidence,
    ) -> Result<Reports, ExportError> {
        let csv = csv::to_csv(&evidence.rows)?;
        let query = Query {
            from: rfc3339(opts.from),
            to: rfc3339(opts.to),
            controls: opts.controls.clone(),
            hosts: opts.hosts.clone(),
            sample: selection.sample.clone(),
        };
        let evaluation = EvaluationInfo {
            at: rfc3339(evidence.at),
            policy_version: src.rules.version().to_string(),
            mapping_version: src.catalog.mapping_version().to_string(),
        };
        let records = evidence.record_refs();
        let register = src.store.risks(&crate::store::risks::RiskFilter::default())?;
        let csv_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&csv));
        let exported_at = rfc3339(opts.now);
        let assessment = assessment_results::build(&assessment_results::Input {
            exported_at: &exported_at,
            exported_by: &opts.by,
            query: &query,
            evaluation: &evaluation,
            rows: &evidence.rows,
            records: &records,
            risks: &register,
            matrix: &src.config.risk.policy().matrix,
            csv_sha256: &csv_sha256,
        })?;
        let csv_rows = evidence.rows.len();
        Ok(Reports { csv, assessment, csv_rows, query, evaluation, exported_at })
    }

    /// The counts the reports set; `contents::write` adds the rest.
    fn counts(&self) -> Counts {
        Counts {
            csv_rows: self.csv_rows,
            oscal_observations: self.assessment.observations,
            oscal_findings: self.assessment.findings,
            oscal_risks: self.assessment.risks,
            ..Counts::default()
        }
    }

    /// Step 9's manifest, its file list left to `BundleWriter::finish`.
    fn manifest(self, by: &str, prover: &Prover, counts: Counts, context: Vec<ContextRecord>) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            query: self.query,
            exported_at: self.exported_at,
            exported_by: by.to_string(),
            log: LogInfo {
                origin: prover.origin.clone(),
                tree_size: prover.size(),
                checkpoint_signed_for_export: prover.signed_now,
            },
            evaluation: self.evaluation,
            documents: Documents {
                evidence_csv: Some(EVIDENCE_CSV.into()),
                oscal_assessment_results: Some(ASSESSMENT_RESULTS.into()),
            },
            counts,
            context,
            files: Vec::new(),
        }
    }
}

/// Step 10: the export goes into the audit trail, and so into the log.
fn record_audit(store: &Store, opts: &ExportOptions, manifest: &Manifest) -> Result<(), ExportError> {
    let target = serde_json::to_string(&manifest.query).map_err(|e| ExportError::Invalid(e.to_string()))?;
    store.record_audit(&crate::store::tokens::AuditEntry {
        at: opts.now.unix_timestamp(),
        token_id: 0,
        name: opts.by.clone(),
        action: "export".into(),
        target,
        status: 200,
    })?;
    Ok(())
}
