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
pub mod csv;
pub mod progress;
pub mod select;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use custos_proto::evidence::{CheckStatus, StatementSummary};
use time::OffsetDateTime;

use crate::config::{Config, DataDir};
use crate::evaluate::{evaluate, requirement_standings};
use crate::store::queries::StoredRecord;
use crate::store::tlog::Signed;
use crate::store::{Store, StoreError};
use bundle::BundleWriter;
use csv::EvidenceRow;
use custos_verify::bundle as format;
use custos_verify::tlog::merkle::{prove_inclusion, root};
use custos_verify::tlog::{Checkpoint, MemoryTree, TreeError, VerifierKey, leaf_hash};
use format::{
    ASSESSMENT_RESULTS, CHECKPOINT, ContextRecord, ContextRole, Counts, Documents, EVIDENCE_CSV,
    EvaluationInfo, FORMAT, LOG_KEY, LogInfo, Manifest, ProofFile, Query, SAMPLE_METHOD, Sample,
    rfc3339_unix,
};

/// Why an export failed. Nothing is left under the target name.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub manifest: Manifest,
    pub bytes: u64,
}

/// The bundle's rule for times: RFC 3339, the bare number where there is none.
fn rfc3339(t: OffsetDateTime) -> String {
    custos_proto::time::rfc3339(t).unwrap_or_else(|| t.unix_timestamp().to_string())
}

/// The signed status of each check in a record.
fn signed_statuses(r: &StoredRecord) -> Result<BTreeMap<String, CheckStatus>, ExportError> {
    let st = StatementSummary::summary_from_payload(&r.payload).map_err(|e| ExportError::Record {
        agent: r.agent_id.clone(),
        seq: r.seq,
        message: format!("stored payload does not parse: {e}"),
    })?;
    Ok(st.predicate.checks.into_iter().map(|c| (c.id, c.status)).collect())
}

/// The log's verifier key, from the data dir's log key (never created here).
fn log_key(opts: &ExportOptions, config: &Config) -> Result<custos_verify::tlog::NoteSigner, ExportError> {
    let path = DataDir(opts.data_dir.clone()).log_key();
    if !path.exists() {
        return Err(ExportError::DataDir {
            path,
            message: "no log key: start the server once so it creates the log and its key".into(),
        });
    }
    crate::datadir::log_signer(&opts.data_dir, config)
        .map_err(|e| ExportError::DataDir { path, message: e.to_string() })
}

/// Writes the bundle `opts` asks for.
#[allow(clippy::too_many_lines, reason = "issue 14: being split into the steps of its checklist")]
pub fn export(opts: &ExportOptions) -> Result<ExportSummary, ExportError> {
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
    let data = DataDir(opts.data_dir.clone());
    let config = Config::load(&data.config())
        .map_err(|e| ExportError::DataDir { path: data.config(), message: e.to_string() })?;
    if !data.database().exists() {
        return Err(ExportError::DataDir { path: data.database(), message: "no database".into() });
    }
    let catalog = crate::datadir::load_catalog(&opts.data_dir)
        .map_err(|e| ExportError::DataDir { path: opts.data_dir.clone(), message: e.to_string() })?;
    let rules = crate::datadir::load_policy(&opts.data_dir)
        .map_err(|message| ExportError::DataDir { path: data.policy(), message })?;
    let store = Store::open(&data.database())?;
    let (from, to) = (opts.from.unix_timestamp(), opts.to.unix_timestamp());

    // Hosts.
    let all_hosts = store.hosts()?;
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
    let controls = select::resolve_controls(&catalog, &opts.controls)?;
    if !controls.is_empty() {
        population = store.agents_with_checks_between(
            &population,
            from,
            to,
            &select::checks_of(&catalog, &controls),
        )?;
    }
    let (selected, sample) = match &opts.sample {
        Some((n, seed)) => {
            let chosen = custos_verify::sample::sample(&population, *n, seed);
            let s = Sample {
                size: *n,
                seed: seed.clone(),
                method: SAMPLE_METHOD.into(),
                population: population.clone(),
                chosen: chosen.clone(),
            };
            (chosen, Some(s))
        }
        None => (population, None),
    };
    let selected_set: BTreeSet<&str> = selected.iter().map(String::as_str).collect();

    // Standings at the end of the window (now, when the window reaches past it).
    let at = opts.to.min(opts.now);
    let as_of = (opts.to < opts.now).then_some(opts.to);
    let hosts_ev = crate::views::fleet_evidence_at(&store, &rules, as_of)?;
    let eval_policy = crate::views::policy_at(&config, &rules, &store.exceptions()?, at);
    let evaluation = evaluate(&catalog, &hosts_ev, at, &eval_policy);
    let standings = requirement_standings(&evaluation, &hosts_ev);
    let wanted_controls: BTreeSet<&str> = controls.iter().map(String::as_str).collect();
    let names: BTreeMap<&str, &str> =
        all_hosts.iter().map(|h| (h.agent_id.as_str(), h.display_name.as_str())).collect();
    let ev_by_agent: BTreeMap<&str, &crate::evaluate::HostEvidence> =
        hosts_ev.iter().map(|h| (h.agent_id.as_str(), h)).collect();
    // The records the standings name, read once each.
    let mut named: BTreeMap<(String, u64), (StoredRecord, BTreeMap<String, CheckStatus>)> = BTreeMap::new();
    let mut rows = Vec::new();
    for ((agent, control_id), standing) in &standings {
        if !selected_set.contains(agent.as_str())
            || (!wanted_controls.is_empty() && !wanted_controls.contains(control_id.as_str()))
        {
            continue;
        }
        let Some(control) = catalog.control(control_id) else { continue };
        let host_ev = ev_by_agent.get(agent.as_str());
        let mut checks = Vec::new();
        for check in catalog.checks_for_control(control_id) {
            let ev = host_ev.and_then(|h| h.checks.iter().find(|c| &c.check_id == check));
            let Some(ev) = ev else {
                checks.push((check.clone(), None));
                continue;
            };
            let key = (agent.clone(), ev.record_seq);
            if !named.contains_key(&key) {
                let rec = store.record(agent, ev.record_seq)?.ok_or_else(|| ExportError::Record {
                    agent: agent.clone(),
                    seq: ev.record_seq,
                    message: "named by the evaluation but not stored".into(),
                })?;
                let statuses = signed_statuses(&rec)?;
                named.insert(key.clone(), (rec, statuses));
            }
            let status = named[&key].1.get(check).ok_or_else(|| ExportError::Record {
                agent: agent.clone(),
                seq: ev.record_seq,
                message: format!("the evaluation reads check {check} from it, the record does not carry it"),
            })?;
            checks.push((check.clone(), Some((status.as_str().to_string(), ev.record_seq))));
        }
        let newest = standing.record_seq.and_then(|s| named.get(&(agent.clone(), s)).map(|(r, _)| r));
        rows.push(EvidenceRow {
            framework: control.framework().to_string(),
            requirement: control_id.clone(),
            requirement_title: control.title.clone(),
            host: agent.clone(),
            host_name: names.get(agent.as_str()).map(|n| n.to_string()).unwrap_or_default(),
            status: standing.state.to_string(),
            evidence_time: newest.map(|r| rfc3339_unix(r.collected_at)),
            record_seq: newest.map(|r| r.seq),
            record_digest: newest.map(|r| hex::encode(&r.digest)),
            checks,
            policy_version: rules.version().to_string(),
            mapping_version: catalog.mapping_version().to_string(),
        });
    }
    rows.sort_by(|a, b| {
        (&a.framework, &a.requirement, &a.host).cmp(&(&b.framework, &b.requirement, &b.host))
    });
    let csv_bytes = csv::to_csv(&rows)?;
    // The OSCAL document over the same rows, the records they name and the register.
    let query = Query {
        from: rfc3339(opts.from),
        to: rfc3339(opts.to),
        controls: opts.controls.clone(),
        hosts: opts.hosts.clone(),
        sample,
    };
    let evaluation = EvaluationInfo {
        at: rfc3339(at),
        policy_version: rules.version().to_string(),
        mapping_version: catalog.mapping_version().to_string(),
    };
    let ar_records: BTreeMap<(String, u64), assessment_results::RecordRef> = named
        .iter()
        .map(|(key, (r, _))| {
            let digest = hex::encode(&r.digest);
            (
                key.clone(),
                assessment_results::RecordRef { digest, collected_at: rfc3339_unix(r.collected_at) },
            )
        })
        .collect();
    let register = store.risks(&crate::store::risks::RiskFilter::default())?;
    let csv_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&csv_bytes));
    let exported_at = rfc3339(opts.now);
    let ar = assessment_results::build(&assessment_results::Input {
        exported_at: &exported_at,
        exported_by: &opts.by,
        query: &query,
        evaluation: &evaluation,
        rows: &rows,
        records: &ar_records,
        risks: &register,
        matrix: &config.risk.policy().matrix,
        csv_sha256: &csv_sha256,
    })?;
    // Records the CSV names that the window does not hold.
    let behind: Vec<&StoredRecord> =
        named.values().map(|(r, _)| r).filter(|r| r.collected_at < from || r.collected_at > to).collect();

    // Each agent's chain neighbours at the window's edges.
    let chains = store.chain_context(&selected, from, to)?;
    let context_records: Vec<(&StoredRecord, ContextRole)> = chains
        .iter()
        .flat_map(|c| {
            let p = c.predecessor.as_ref().map(|r| (r, ContextRole::Predecessor));
            let s = c.successor.as_ref().map(|r| (r, ContextRole::Successor));
            p.into_iter().chain(s)
        })
        // A record stored before the log existed cannot be proven: left
        // out, so the verifier says the chain is not anchored.
        .filter(|(r, _)| r.leaf_index.is_some())
        .collect();

    // Key bindings and the leaves to cover.
    let bindings = store.key_binding_leaves(&selected)?;
    let (in_window, window_max) = store.window_extent(&selected, from, to)?;
    let mut needed: Option<u64> = window_max;
    let leaves = bindings
        .iter()
        .map(|b| Some(b.leaf_index))
        .chain(behind.iter().map(|r| r.leaf_index))
        .chain(context_records.iter().map(|(r, _)| r.leaf_index));
    for leaf in leaves {
        needed = needed.max(leaf);
    }
    if let Some(r) = behind.iter().find(|r| r.leaf_index.is_none()) {
        return Err(ExportError::NoLeaf { agent: r.agent_id.clone(), seq: r.seq });
    }

    if needed.is_none() {
        return Err(ExportError::Invalid(
            "nothing to export: the selected hosts have no key bindings and no records in the window".into(),
        ));
    }

    // The checkpoint: the latest, or a fresh one when it does not cover them.
    let signer = log_key(opts, &config)?;
    let origin = config.log_origin();
    let latest = store.latest_checkpoint()?;
    let covers = |size: u64| needed.is_none_or(|n| n < size);
    let (stored, signed_now) = match latest {
        Some(cp) if covers(cp.size) => (cp, false),
        _ => match store.sign_checkpoint(&signer, &origin, opts.now.unix_timestamp())? {
            Signed::New(cp) => (cp, true),
            Signed::Unchanged => match store.latest_checkpoint()? {
                Some(cp) if covers(cp.size) => (cp, false),
                _ => {
                    return Err(ExportError::Checkpoint(
                        "the log holds no checkpoint covering the exported leaves".into(),
                    ));
                }
            },
        },
    };
    let vkey: VerifierKey = signer.verifier_key();
    let checkpoint = Checkpoint::open(stored.note.as_bytes(), &origin, &vkey).map_err(|e| {
        ExportError::Checkpoint(format!("the stored checkpoint at size {} does not verify: {e}", stored.size))
    })?;
    let size = checkpoint.size();
    let mut tree = MemoryTree::new();
    for h in store.leaf_hashes(size)? {
        let index = custos_verify::tlog::TreeStore::size(&tree);
        tree.append(h).map_err(|source| ExportError::Proof { index, source })?;
    }
    let tree_root = root(&tree, size).map_err(|source| ExportError::Proof { index: size, source })?;
    if tree_root != *checkpoint.root() {
        return Err(ExportError::RootMismatch { size });
    }
    let proof_of = |index: u64, data: &[u8], what: &str| -> Result<Vec<u8>, ExportError> {
        let leaf = custos_verify::tlog::TreeStore::subtree(&tree, 0, index)
            .map_err(|source| ExportError::Proof { index, source })?;
        if leaf != leaf_hash(data) {
            return Err(ExportError::LeafMismatch { index, what: what.to_string() });
        }
        let proof =
            prove_inclusion(&tree, index, size).map_err(|source| ExportError::Proof { index, source })?;
        let file = ProofFile {
            leaf_index: index,
            tree_size: size,
            hashes: proof.path.iter().map(|h| B64.encode(h)).collect(),
        };
        serde_json::to_vec(&file).map_err(|e| ExportError::Invalid(format!("proof file: {e}")))
    };

    // Write.
    let mut w = BundleWriter::create(&opts.out, opts.now.unix_timestamp())?;
    let total = in_window + behind.len() as u64 + context_records.len() as u64;
    let bar = progress::Progress::new(opts.progress, total);
    let mut counts = Counts {
        csv_rows: rows.len(),
        oscal_observations: ar.observations,
        oscal_findings: ar.findings,
        oscal_risks: ar.risks,
        ..Counts::default()
    };
    let mut context = Vec::new();
    let written = (|| -> Result<(), ExportError> {
        w.add(LOG_KEY, format!("{vkey}\n").as_bytes())?;
        w.add(CHECKPOINT, stored.note.as_bytes())?;
        for b in &bindings {
            let proof = proof_of(b.leaf_index, &b.data, &format!("key binding of {}", b.agent_id))?;
            w.add(&format::key_binding_path(&b.agent_id, b.leaf_index), &b.data)?;
            w.add(&format::key_proof_path(&b.agent_id, b.leaf_index), &proof)?;
            counts.key_bindings += 1;
            counts.proofs += 1;
        }
        let mut agents = BTreeSet::new();
        // Whether the record was written: one accepted after the checkpoint
        // (a race with ingest) is outside this export.
        let mut write_record =
            |r: &StoredRecord, w: &mut BundleWriter, counts: &mut Counts| -> Result<bool, ExportError> {
                let index = r
                    .leaf_index
                    .ok_or_else(|| ExportError::NoLeaf { agent: r.agent_id.clone(), seq: r.seq })?;
                if index >= size {
                    return Ok(false);
                }
                let json = r.envelope_json();
                let proof = proof_of(index, json.as_bytes(), &format!("{}/{}", r.agent_id, r.seq))?;
                w.add(&format::record_path(&r.agent_id, r.seq), json.as_bytes())?;
                w.add(&format::record_proof_path(&r.agent_id, r.seq), &proof)?;
                agents.insert(r.agent_id.clone());
                counts.records += 1;
                counts.proofs += 1;
                bar.inc();
                Ok(true)
            };
        store.each_record_between(&selected, from, to, |r| {
            if write_record(&r, &mut w, &mut counts)? {
                counts.records_in_window += 1;
            }
            Ok::<(), ExportError>(())
        })?;
        let mut outside = BTreeSet::new();
        for r in &behind {
            if write_record(r, &mut w, &mut counts)? {
                counts.records_behind_standings += 1;
                outside.insert((r.agent_id.as_str(), r.seq));
            }
        }
        for &(r, role) in &context_records {
            // A successor logged after the checkpoint is not provable here:
            // the bundle then says it holds none.
            if r.leaf_index.is_none_or(|i| i >= size) {
                continue;
            }
            if !outside.contains(&(r.agent_id.as_str(), r.seq)) {
                write_record(r, &mut w, &mut counts)?;
            }
            match role {
                ContextRole::Predecessor => counts.predecessors += 1,
                ContextRole::Successor => counts.successors += 1,
            }
            context.push(ContextRecord { agent: r.agent_id.clone(), seq: r.seq, role });
        }
        context.sort();
        counts.agents = agents.len();
        w.add(EVIDENCE_CSV, &csv_bytes)?;
        w.add(ASSESSMENT_RESULTS, &ar.json)?;
        Ok(())
    })();
    bar.finish();
    if let Err(e) = written {
        w.abandon();
        return Err(e);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        query,
        exported_at,
        exported_by: opts.by.clone(),
        log: LogInfo { origin, tree_size: size, checkpoint_signed_for_export: signed_now },
        evaluation,
        documents: Documents {
            evidence_csv: Some(EVIDENCE_CSV.into()),
            oscal_assessment_results: Some(ASSESSMENT_RESULTS.into()),
        },
        counts,
        context,
        files: Vec::new(),
    };
    let (manifest, bytes) = w.finish(manifest)?;
    // The export goes into the audit trail, and so into the log.
    let target = serde_json::to_string(&manifest.query).map_err(|e| ExportError::Invalid(e.to_string()))?;
    store.record_audit(&crate::store::tokens::AuditEntry {
        at: opts.now.unix_timestamp(),
        token_id: 0,
        name: opts.by.clone(),
        action: "export".into(),
        target,
        status: 200,
    })?;
    Ok(ExportSummary { manifest, bytes })
}
