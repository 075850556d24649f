//! What goes into the bundle's archive before the manifest, and in which
//! order: the log key, the checkpoint, every key binding, the window's
//! records, the records behind the standings and each chain's context
//! records, each leaf with its inclusion proof, then `evidence.csv` and
//! `assessment-results.json`. [`Leaves`] gathers the leaves besides the
//! window's records, and how far into the log a checkpoint must reach to
//! prove them all.

use std::collections::BTreeSet;

use custos_verify::bundle::{
    self as format, ASSESSMENT_RESULTS, CHECKPOINT, ContextRecord, ContextRole, Counts, EVIDENCE_CSV, LOG_KEY,
};

use super::bundle::BundleWriter;
use super::evidence::Evidence;
use super::progress::Progress;
use super::proofs::Prover;
use super::{ExportError, Reports};
use crate::store::Store;
use crate::store::export::KeyBindingLeaf;
use crate::store::queries::StoredRecord;

/// The leaves an export writes besides the window's records.
pub(super) struct Leaves<'e> {
    /// The selected hosts.
    hosts: &'e [String],
    /// Collection-time window, Unix seconds, both ends included.
    window: (i64, i64),
    /// Records the rows name from outside the window.
    behind: Vec<&'e StoredRecord>,
    /// Each selected agent's logged neighbours at the window's edges.
    context: Vec<(StoredRecord, ContextRole)>,
    bindings: Vec<KeyBindingLeaf>,
    /// How many records the window holds.
    in_window: u64,
    /// The highest leaf index to be written: the checkpoint must cover it.
    pub(super) needed: u64,
}

impl<'e> Leaves<'e> {
    /// Step 6: the key bindings of `hosts`, the records behind the
    /// standings and each agent's chain context, and the highest leaf of
    /// those and of the window's records. A record behind the standings
    /// without a leaf cannot be proven, and an export with no leaf at all
    /// has nothing to say: both are errors.
    pub(super) fn gather(
        store: &Store,
        evidence: &'e Evidence,
        hosts: &'e [String],
        window: (i64, i64),
    ) -> Result<Leaves<'e>, ExportError> {
        let (from, to) = window;
        let behind = evidence.behind(from, to);
        let context: Vec<(StoredRecord, ContextRole)> = store
            .chain_context(hosts, from, to)?
            .into_iter()
            .flat_map(|c| {
                let p = c.predecessor.map(|r| (r, ContextRole::Predecessor));
                let s = c.successor.map(|r| (r, ContextRole::Successor));
                p.into_iter().chain(s)
            })
            // A record stored before the log existed cannot be proven: left
            // out, so the verifier says the chain is not anchored.
            .filter(|(r, _)| r.leaf_index.is_some())
            .collect();
        let bindings = store.key_binding_leaves(hosts)?;
        let (in_window, window_max) = store.window_extent(hosts, from, to)?;
        let needed = bindings
            .iter()
            .map(|b| Some(b.leaf_index))
            .chain(behind.iter().map(|r| r.leaf_index))
            .chain(context.iter().map(|(r, _)| r.leaf_index))
            .fold(window_max, std::cmp::max);
        if let Some(r) = behind.iter().find(|r| r.leaf_index.is_none()) {
            return Err(ExportError::NoLeaf { agent: r.agent_id.clone(), seq: r.seq });
        }
        let Some(needed) = needed else {
            return Err(ExportError::Invalid(
                "nothing to export: the selected hosts have no key bindings and no records in the window"
                    .into(),
            ));
        };
        Ok(Leaves { hosts, window, behind, context, bindings, in_window, needed })
    }

    /// How many records the export writes, for the progress bar.
    fn records(&self) -> u64 {
        self.in_window + self.behind.len() as u64 + self.context.len() as u64
    }
}

/// Step 8: writes every file but the manifest into `w`, with a progress bar
/// over the records when `progress`; returns the counts and the manifest's
/// context list.
pub(super) fn write(
    w: &mut BundleWriter,
    progress: bool,
    store: &Store,
    leaves: &Leaves<'_>,
    prover: &Prover,
    reports: &Reports,
) -> Result<(Counts, Vec<ContextRecord>), ExportError> {
    let bar = Progress::new(progress, leaves.records());
    let mut filler = Filler { w, prover, bar: &bar, counts: reports.counts(), agents: BTreeSet::new() };
    let written = filler.fill(store, leaves, reports);
    bar.finish();
    written
}

/// Adds files to a bundle and counts them.
struct Filler<'a> {
    w: &'a mut BundleWriter,
    prover: &'a Prover,
    bar: &'a Progress,
    counts: Counts,
    /// The agents with a record in the bundle.
    agents: BTreeSet<String>,
}

impl Filler<'_> {
    /// Every file but the manifest, in the order the module comment lists.
    fn fill(
        &mut self,
        store: &Store,
        leaves: &Leaves<'_>,
        reports: &Reports,
    ) -> Result<(Counts, Vec<ContextRecord>), ExportError> {
        self.w.add(LOG_KEY, format!("{}\n", self.prover.vkey).as_bytes())?;
        self.w.add(CHECKPOINT, self.prover.stored.note.as_bytes())?;
        self.key_bindings(&leaves.bindings)?;
        self.window(store, leaves)?;
        let outside = self.behind(&leaves.behind)?;
        let mut context = self.context(&leaves.context, &outside)?;
        context.sort();
        self.counts.agents = self.agents.len();
        self.w.add(EVIDENCE_CSV, &reports.csv)?;
        self.w.add(ASSESSMENT_RESULTS, &reports.assessment.json)?;
        Ok((std::mem::take(&mut self.counts), context))
    }

    /// Each key binding with its proof.
    fn key_bindings(&mut self, bindings: &[KeyBindingLeaf]) -> Result<(), ExportError> {
        for b in bindings {
            let proof =
                self.prover.proof(b.leaf_index, &b.data, &format!("key binding of {}", b.agent_id))?;
            self.w.add(&format::key_binding_path(&b.agent_id, b.leaf_index), &b.data)?;
            self.w.add(&format::key_proof_path(&b.agent_id, b.leaf_index), &proof)?;
            self.counts.key_bindings += 1;
            self.counts.proofs += 1;
        }
        Ok(())
    }

    /// A record with its proof. Whether it was written: one accepted after
    /// the checkpoint (a race with ingest) is outside this export.
    fn record(&mut self, r: &StoredRecord) -> Result<bool, ExportError> {
        let index =
            r.leaf_index.ok_or_else(|| ExportError::NoLeaf { agent: r.agent_id.clone(), seq: r.seq })?;
        if index >= self.prover.size() {
            return Ok(false);
        }
        let json = r.envelope_json();
        let proof = self.prover.proof(index, json.as_bytes(), &format!("{}/{}", r.agent_id, r.seq))?;
        self.w.add(&format::record_path(&r.agent_id, r.seq), json.as_bytes())?;
        self.w.add(&format::record_proof_path(&r.agent_id, r.seq), &proof)?;
        self.agents.insert(r.agent_id.clone());
        self.counts.records += 1;
        self.counts.proofs += 1;
        self.bar.inc();
        Ok(true)
    }

    /// Every record of the selected hosts in the window, streamed from the store.
    fn window(&mut self, store: &Store, leaves: &Leaves<'_>) -> Result<(), ExportError> {
        let (from, to) = leaves.window;
        store.each_record_between(leaves.hosts, from, to, |r| {
            if self.record(&r)? {
                self.counts.records_in_window += 1;
            }
            Ok::<(), ExportError>(())
        })
    }

    /// The records behind the standings; returns those written, by (agent, seq).
    fn behind<'r>(&mut self, behind: &[&'r StoredRecord]) -> Result<BTreeSet<(&'r str, u64)>, ExportError> {
        let mut outside = BTreeSet::new();
        for r in behind {
            if self.record(r)? {
                self.counts.records_behind_standings += 1;
                outside.insert((r.agent_id.as_str(), r.seq));
            }
        }
        Ok(outside)
    }

    /// Each chain's context records (once: one may be behind a standing
    /// too, then it is in `outside` already); returns the manifest's list.
    fn context(
        &mut self,
        context: &[(StoredRecord, ContextRole)],
        outside: &BTreeSet<(&str, u64)>,
    ) -> Result<Vec<ContextRecord>, ExportError> {
        let mut listed = Vec::new();
        for (r, role) in context {
            // A successor logged after the checkpoint is not provable here:
            // the bundle then says it holds none.
            if r.leaf_index.is_none_or(|i| i >= self.prover.size()) {
                continue;
            }
            if !outside.contains(&(r.agent_id.as_str(), r.seq)) {
                self.record(r)?;
            }
            match role {
                ContextRole::Predecessor => self.counts.predecessors += 1,
                ContextRole::Successor => self.counts.successors += 1,
            }
            listed.push(ContextRecord { agent: r.agent_id.clone(), seq: r.seq, role: *role });
        }
        Ok(listed)
    }
}
