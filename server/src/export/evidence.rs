//! The standings an export reports: the fleet evaluated at the window's end
//! (now, when the window reaches past it), one `evidence.csv` row per
//! selected host and requirement, and the signed records those rows rest on,
//! each read once and its check statuses taken from what the agent signed.

use std::collections::{BTreeMap, BTreeSet};

use custos_proto::evidence::{CheckStatus, StatementSummary};
use time::OffsetDateTime;

use super::assessment_results::RecordRef;
use super::csv::EvidenceRow;
use super::{ExportError, ExportOptions, Selection, Sources};
use crate::compliance::evaluate::{HostEvidence, RequirementStanding, evaluate, requirement_standings};
use crate::store::queries::StoredRecord;
use custos_verify::bundle::rfc3339_unix;

/// The records the rows name, by (agent, seq), with the status each of
/// their checks was signed with.
type Named = BTreeMap<(String, u64), (StoredRecord, BTreeMap<String, CheckStatus>)>;

/// A row's `checks` cells: `(check, Some((signed status, seq)))`, or `None`
/// when the host never reported the check.
type CheckCells = Vec<(String, Option<(String, u64)>)>;

/// The standings at the end of the window, as rows of `evidence.csv`.
pub(super) struct Evidence {
    /// When the standings were taken: the window's end, or now when it reaches past it.
    pub(super) at: OffsetDateTime,
    /// Sorted by framework, requirement and host.
    pub(super) rows: Vec<EvidenceRow>,
    named: Named,
}

/// The fleet's evaluation the rows are taken from.
struct Evaluated {
    at: OffsetDateTime,
    hosts: Vec<HostEvidence>,
    standings: BTreeMap<(String, String), RequirementStanding>,
}

impl Evidence {
    /// Step 4: evaluates the fleet at the window's end and makes a row per
    /// selected host and requirement (on the `--control` ones only, when
    /// given), reading the records the rows name.
    pub(super) fn collect(
        opts: &ExportOptions,
        src: &Sources,
        selection: &Selection,
    ) -> Result<Evidence, ExportError> {
        let evaluated = evaluate_at_end(opts, src)?;
        let selected: BTreeSet<&str> = selection.hosts.iter().map(String::as_str).collect();
        let wanted_controls: BTreeSet<&str> = selection.controls.iter().map(String::as_str).collect();
        let ev_by_agent: BTreeMap<&str, &HostEvidence> =
            evaluated.hosts.iter().map(|h| (h.agent_id.as_str(), h)).collect();
        let mut named = Named::new();
        let mut rows = Vec::new();
        for ((agent, control_id), standing) in &evaluated.standings {
            if !selected.contains(agent.as_str())
                || (!wanted_controls.is_empty() && !wanted_controls.contains(control_id.as_str()))
            {
                continue;
            }
            let Some(control) = src.catalog.control(control_id) else { continue };
            let host_ev = ev_by_agent.get(agent.as_str()).copied();
            let checks = row_checks(src, agent, control_id, host_ev, &mut named)?;
            let newest = standing.record_seq.and_then(|s| named.get(&(agent.clone(), s)).map(|(r, _)| r));
            rows.push(EvidenceRow {
                framework: control.framework().to_string(),
                requirement: control_id.clone(),
                requirement_title: control.title.clone(),
                host: agent.clone(),
                host_name: selection.names.get(agent).cloned().unwrap_or_default(),
                status: standing.state.to_string(),
                evidence_time: newest.map(|r| rfc3339_unix(r.collected_at)),
                record_seq: newest.map(|r| r.seq),
                record_digest: newest.map(|r| hex::encode(&r.digest)),
                checks,
                policy_version: src.rules.version().to_string(),
                mapping_version: src.catalog.mapping_version().to_string(),
            });
        }
        rows.sort_by(|a, b| {
            (&a.framework, &a.requirement, &a.host).cmp(&(&b.framework, &b.requirement, &b.host))
        });
        Ok(Evidence { at: evaluated.at, rows, named })
    }

    /// The records the rows name that the window (`from`, `to`, Unix
    /// seconds) does not hold: a standing may rest on an older record.
    pub(super) fn behind(&self, from: i64, to: i64) -> Vec<&StoredRecord> {
        self.named.values().map(|(r, _)| r).filter(|r| r.collected_at < from || r.collected_at > to).collect()
    }

    /// What the OSCAL document needs of each record the rows name.
    pub(super) fn record_refs(&self) -> BTreeMap<(String, u64), RecordRef> {
        self.named
            .iter()
            .map(|(key, (r, _))| {
                let digest = hex::encode(&r.digest);
                (key.clone(), RecordRef { digest, collected_at: rfc3339_unix(r.collected_at) })
            })
            .collect()
    }
}

/// The fleet's evidence and requirement standings at the window's end, or
/// now when the window reaches past it (then from the current evidence).
fn evaluate_at_end(opts: &ExportOptions, src: &Sources) -> Result<Evaluated, ExportError> {
    let at = opts.to.min(opts.now);
    let as_of = (opts.to < opts.now).then_some(opts.to);
    let hosts = crate::keeper::evaluation_inputs::fleet_evidence_at(&src.store, &src.rules, as_of)?;
    let eval_policy =
        crate::keeper::evaluation_inputs::settings_at(&src.config, &src.rules, &src.store.exceptions()?, at);
    let evaluation = evaluate(&src.catalog, &hosts, at, &eval_policy);
    let standings = requirement_standings(&evaluation, &hosts);
    Ok(Evaluated { at, hosts, standings })
}

/// The `checks` cells of `agent`'s row on `control_id`: each check mapped to
/// the requirement with the status the agent signed in the record the
/// evaluation read it from. Each record is read once into `named`; one the
/// evaluation names that is not stored, or that lacks the check, is an error.
fn row_checks(
    src: &Sources,
    agent: &str,
    control_id: &str,
    host_ev: Option<&HostEvidence>,
    named: &mut Named,
) -> Result<CheckCells, ExportError> {
    let mut checks = Vec::new();
    for check in src.catalog.checks_for_control(control_id) {
        let ev = host_ev.and_then(|h| h.checks.iter().find(|c| &c.check_id == check));
        let Some(ev) = ev else {
            checks.push((check.clone(), None));
            continue;
        };
        let key = (agent.to_string(), ev.record_seq);
        if !named.contains_key(&key) {
            let rec = src.store.record(agent, ev.record_seq)?.ok_or_else(|| ExportError::Record {
                agent: agent.to_string(),
                seq: ev.record_seq,
                message: "named by the evaluation but not stored".into(),
            })?;
            let statuses = signed_statuses(&rec)?;
            named.insert(key.clone(), (rec, statuses));
        }
        let status = named[&key].1.get(check).ok_or_else(|| ExportError::Record {
            agent: agent.to_string(),
            seq: ev.record_seq,
            message: format!("the evaluation reads check {check} from it, the record does not carry it"),
        })?;
        checks.push((check.clone(), Some((status.as_str().to_string(), ev.record_seq))));
    }
    Ok(checks)
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
