//! `assessment-results.json`: the export's evidence as an OSCAL 1.1
//! Assessment Results document, so GRC tools that read OSCAL take it in
//! without knowing Custos. Pure: built from the rows of `evidence.csv`, the
//! records they name and the register's entries; no store, no clock.
//!
//! One `results` entry covers the export window:
//! - `observations`: one per host, check and record a standing rests on
//!   (method `TEST`), the host as an `inventory-item` and the signed record
//!   in the bundle as `relevant-evidence` with its digest;
//! - `findings`: one per requirement, `satisfied` only when every exported
//!   host it applies to is satisfied; unknown, missing, stale or excepted
//!   evidence is `not-satisfied` with reason `other` and says why, never a
//!   pass;
//! - `risks`: the register's entries on the exported requirements and hosts,
//!   as the register stands at export time ([`risks`]).
//!
//! Identifiers are name-based UUIDs (v5) under one namespace and every list
//! is sorted, so the same bundle content gives the same document byte for
//! byte (the names are `custos_verify::oscal_ids`, which the verifier
//! reads them back by). The verifier decides each finding again from the
//! records with its own code, not with [`finding_state`].

mod risks;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use uuid::Uuid;

use custos_verify::bundle::{EVIDENCE_CSV, EvaluationInfo, FORMAT, MANIFEST, Query, record_path};
use custos_verify::oscal_ids::{
    NS, PROP_AGENT, PROP_CHECK, PROP_DIGEST, PROP_HOST_STANDING, PROP_REQUIREMENT, PROP_SEQ, PROP_STATUS,
    control_token, host_uuid, named_uuid, observation_uuid,
};

use super::csv::EvidenceRow;
use crate::register::{Matrix, RiskEntry};

/// The OSCAL version the document is written against.
pub const OSCAL_VERSION: &str = "1.1.2";
/// Why the document could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssessmentError {
    #[error("row {requirement} / {host} names record seq {seq}, which the export did not read")]
    MissingRecord { requirement: String, host: String, seq: u64 },
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
}

/// What the document needs of a record a row names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    /// Hex SHA-256 of the payload (the chain digest, as in `evidence.csv`).
    pub digest: String,
    /// RFC 3339 signed collection time.
    pub collected_at: String,
}

/// Everything the document is built from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// RFC 3339.
    pub exported_at: &'a str,
    pub exported_by: &'a str,
    pub query: &'a Query,
    pub evaluation: &'a EvaluationInfo,
    /// The rows of `evidence.csv`.
    pub rows: &'a [EvidenceRow],
    /// Every record a row's checks name, by (agent, seq).
    pub records: &'a BTreeMap<(String, u64), RecordRef>,
    /// Register entries; those not on the exported requirements and hosts are left out.
    pub risks: &'a [RiskEntry],
    pub matrix: &'a Matrix,
    /// Hex SHA-256 of `evidence.csv`, so the document pins the table it summarises.
    pub csv_sha256: &'a str,
}

/// The document and what it holds.
#[derive(Debug, Clone)]
pub struct Built {
    pub json: Vec<u8>,
    pub observations: usize,
    pub findings: usize,
    pub risks: usize,
}

/// A finding's state and reason from its hosts' standings (as in
/// `evidence.csv`): `satisfied`/`pass` only when at least one host is
/// satisfied and every other one is satisfied or out of scope
/// (`not_applicable`); `not-satisfied`/`fail` when a host is not satisfied;
/// otherwise `not-satisfied`/`other`, since unknown, missing, stale or
/// excepted evidence proves nothing.
pub fn finding_state<'s>(standings: impl IntoIterator<Item = &'s str>) -> (&'static str, &'static str) {
    let (mut satisfied, mut failing, mut undecided) = (false, false, false);
    for s in standings {
        match s {
            "satisfied" => satisfied = true,
            "not_satisfied" => failing = true,
            "not_applicable" => {}
            _ => undecided = true,
        }
    }
    if failing {
        ("not-satisfied", "fail")
    } else if undecided || !satisfied {
        ("not-satisfied", "other")
    } else {
        ("satisfied", "pass")
    }
}

/// A property in [`NS`].
fn prop(name: &str, value: impl AsRef<str>) -> Value {
    json!({ "name": name, "ns": NS, "value": clean_value(value.as_ref()) })
}

/// OSCAL `string`: no whitespace at either end, never empty.
fn clean_value(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() { "(none)".into() } else { t.to_string() }
}

/// OSCAL `markup-line`: one line, never empty.
fn line(s: &str) -> String {
    clean_value(&s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The bundle's rule for times (`custos_verify::bundle::rfc3339_unix`).
fn unix_rfc3339(t: i64) -> String {
    custos_verify::bundle::rfc3339_unix(t)
}

/// Inserts `key: list` only when the list is not empty (OSCAL arrays hold at least one item).
fn put(obj: &mut Value, key: &str, list: Vec<Value>) {
    if !list.is_empty()
        && let Some(map) = obj.as_object_mut()
    {
        map.insert(key.to_string(), Value::Array(list));
    }
}

fn related(uuids: impl IntoIterator<Item = Uuid>, key: &str) -> Vec<Value> {
    let set: BTreeSet<Uuid> = uuids.into_iter().collect();
    set.into_iter().map(|u| json!({ key: u.to_string() })).collect()
}

/// One signed check result the standings rest on.
struct Observed<'a> {
    agent: &'a str,
    check: &'a str,
    seq: u64,
    status: &'a str,
    record: &'a RecordRef,
}

fn observation(o: &Observed<'_>) -> Value {
    // A signed fail is a weakness; any other result is evidence about the objective.
    let kind = if o.status == "fail" { "finding" } else { "control-objective" };
    let path = record_path(o.agent, o.seq);
    json!({
        "uuid": observation_uuid(o.agent, o.check, o.seq).to_string(),
        "title": line(&format!("Check {} on {}: {}", o.check, o.agent, o.status)),
        "description": format!(
            "The agent {} measured check {} and signed the result {} in record seq {} ({}).",
            o.agent, o.check, o.status, o.seq, path
        ),
        "props": [
            prop(PROP_CHECK, o.check),
            prop(PROP_STATUS, o.status),
            prop(PROP_SEQ, o.seq.to_string()),
        ],
        "methods": ["TEST"],
        "types": [kind],
        "subjects": [{
            "subject-uuid": host_uuid(o.agent).to_string(),
            "type": "inventory-item",
            "title": line(o.agent),
        }],
        "relevant-evidence": [{
            "href": path,
            "description": "The signed record (DSSE envelope over an in-toto statement) carrying this result; its digest is the SHA-256 of the envelope's payload.",
            "props": [prop(PROP_DIGEST, format!("sha256:{}", o.record.digest))],
        }],
        "collected": o.record.collected_at,
    })
}

/// The back-matter resource that states the export query (see `import_ap`).
fn query_resource() -> Uuid {
    named_uuid("resource", "export-query")
}

/// The Custos server, the tool behind every risk rating.
fn tool() -> Uuid {
    named_uuid("component", "custos-server")
}

/// The signed check results the rows rest on, by (agent, check, seq).
type Observations<'a> = BTreeMap<(&'a str, &'a str, u64), Observed<'a>>;

/// The parts of the one `results` entry.
struct Parts {
    inventory: Vec<Value>,
    observations: Vec<Value>,
    risks: Vec<Value>,
    findings: Vec<Value>,
}

/// Builds the document: the metadata (`metadata`), the plan reference
/// (`import_ap`), one result over the window (`result`) holding the
/// inventory (`inventory`), the observations (`observed`), the register's
/// risks (`risks::on_export`, `risks::values`) and a finding per requirement
/// (`findings`), and the back matter (`back_matter`).
pub fn build(input: &Input<'_>) -> Result<Built, AssessmentError> {
    let observed = observed(input)?;
    let hosts = hosts(input.rows);
    let by_requirement = by_requirement(input.rows);
    let entries = risks::on_export(input.risks, &by_requirement, &hosts);
    let parts = Parts {
        inventory: inventory(&hosts),
        observations: observed.values().map(observation).collect(),
        risks: risks::values(&entries, &observed, input.matrix),
        findings: findings(input, &by_requirement, &entries),
    };
    let (observations, findings, risks) = (parts.observations.len(), parts.findings.len(), parts.risks.len());
    let window = format!("{} to {}", input.query.from, input.query.to);
    let doc = json!({ "assessment-results": {
        "uuid": named_uuid(
            "assessment-results",
            &format!("{}|{}|{window}|{}", input.exported_at, input.exported_by, input.csv_sha256)
        ).to_string(),
        "metadata": metadata(input, &window),
        "import-ap": import_ap(),
        "results": [result(input, &window, &by_requirement, parts)],
        "back-matter": back_matter(input, &window),
    } });
    Ok(Built { json: serde_json::to_vec_pretty(&doc)?, observations, findings, risks })
}

/// The document's metadata: its title, version and who prepared it.
fn metadata(input: &Input<'_>, window: &str) -> Value {
    let exporter = named_uuid("party", input.exported_by);
    json!({
        "title": line(&format!("Custos assessment results: endpoint evidence {window}")),
        "last-modified": input.exported_at,
        "version": FORMAT,
        "oscal-version": OSCAL_VERSION,
        "roles": [{ "id": "prepared-by", "title": "Prepared By" }],
        "parties": [{ "uuid": exporter.to_string(), "type": "person", "name": clean_value(input.exported_by) }],
        "responsible-parties": [{ "role-id": "prepared-by", "party-uuids": [exporter.to_string()] }],
    })
}

/// The assessment plan reference. OSCAL requires import-ap, but there is
/// no assessment plan: the export query selected the evidence, so the
/// reference points at the back-matter resource that states that query.
fn import_ap() -> Value {
    json!({
        "href": format!("#{}", query_resource()),
        "remarks": "No separate assessment plan: the export query (back matter) selected the hosts, requirements and window.",
    })
}

/// Each signed check result a row rests on, once; a row naming a record the
/// export did not read is an error.
fn observed<'a>(input: &Input<'a>) -> Result<Observations<'a>, AssessmentError> {
    let mut observed = Observations::new();
    for row in input.rows {
        for (check, ev) in &row.checks {
            let Some((status, seq)) = ev else { continue };
            let record = input.records.get(&(row.host.clone(), *seq)).ok_or_else(|| {
                AssessmentError::MissingRecord {
                    requirement: row.requirement.clone(),
                    host: row.host.clone(),
                    seq: *seq,
                }
            })?;
            observed.entry((row.host.as_str(), check.as_str(), *seq)).or_insert(Observed {
                agent: &row.host,
                check,
                seq: *seq,
                status,
                record,
            });
        }
    }
    Ok(observed)
}

/// Every host a row names, with its display name.
fn hosts(rows: &[EvidenceRow]) -> BTreeMap<&str, &str> {
    let mut hosts: BTreeMap<&str, &str> = BTreeMap::new();
    for row in rows {
        hosts.entry(&row.host).or_insert(&row.host_name);
    }
    hosts
}

/// The rows of each requirement, its hosts in the order of the rows.
fn by_requirement(rows: &[EvidenceRow]) -> BTreeMap<&str, Vec<&EvidenceRow>> {
    let mut by_requirement: BTreeMap<&str, Vec<&EvidenceRow>> = BTreeMap::new();
    for row in rows {
        by_requirement.entry(&row.requirement).or_default().push(row);
    }
    by_requirement
}

/// The local definitions' inventory items: each host, as its agent signs for it.
fn inventory(hosts: &BTreeMap<&str, &str>) -> Vec<Value> {
    hosts
        .iter()
        .map(|(agent, name)| {
            let mut props = vec![json!({ "name": "asset-id", "value": agent })];
            props.push(prop(PROP_AGENT, agent));
            json!({
                "uuid": host_uuid(agent).to_string(),
                "description": format!(
                    "Endpoint {} (Custos agent {agent}), whose evidence its agent signed.",
                    if name.trim().is_empty() { "(name not collected)" } else { name.trim() }
                ),
                "props": props,
            })
        })
        .collect()
}

/// The `findings`: one per requirement.
fn findings(
    input: &Input<'_>,
    by_requirement: &BTreeMap<&str, Vec<&EvidenceRow>>,
    risks: &[(&RiskEntry, &str)],
) -> Vec<Value> {
    by_requirement
        .iter()
        .map(|(requirement, rows)| finding(input.evaluation, requirement, rows, risks))
        .collect()
}

/// The finding on `requirement` from its `rows`: its state by
/// [`finding_state`], each host's standing, the observations it rests on
/// and the risks on the requirement.
fn finding(
    evaluation: &EvaluationInfo,
    requirement: &str,
    rows: &[&EvidenceRow],
    risks: &[(&RiskEntry, &str)],
) -> Value {
    let (state, reason) = finding_state(rows.iter().map(|r| r.status.as_str()));
    let mut props = vec![prop(PROP_REQUIREMENT, requirement), prop("framework", &rows[0].framework)];
    props.extend(rows.iter().map(|r| prop(PROP_HOST_STANDING, format!("{} {}", r.host, r.status))));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    let summary = counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
    let obs = rows.iter().flat_map(|r| {
        r.checks.iter().filter_map(|(c, ev)| ev.as_ref().map(|(_, seq)| observation_uuid(&r.host, c, *seq)))
    });
    let risk_refs = risks
        .iter()
        .filter(|(e, _)| e.requirement.as_deref() == Some(requirement))
        .map(|(e, _)| named_uuid("risk", &e.id.to_string()));
    let title = line(&format!("{requirement} {}", rows[0].requirement_title));
    let mut f = json!({
        "uuid": named_uuid("finding", requirement).to_string(),
        "title": title,
        "description": format!(
            "Requirement {requirement} on {} exported hosts, evaluated at {} under policy {} and mappings {}: {summary}.",
            rows.len(),
            evaluation.at,
            evaluation.policy_version,
            evaluation.mapping_version
        ),
        "props": props,
        "target": {
            "type": "objective-id",
            "target-id": control_token(requirement),
            "title": line(&rows[0].requirement_title),
            "status": { "state": state, "reason": reason, "remarks": status_remarks(reason, rows) },
        },
    });
    put(&mut f, "related-observations", related(obs, "observation-uuid"));
    put(&mut f, "related-risks", related(risk_refs, "risk-uuid"));
    f
}

/// A finding's status remarks: what keeps each host from a pass, for the reader.
fn status_remarks(reason: &str, rows: &[&EvidenceRow]) -> String {
    let why: Vec<String> = rows
        .iter()
        .filter(|r| r.status != "satisfied" && r.status != "not_applicable")
        .map(|r| {
            let checks = r
                .checks
                .iter()
                .map(|(c, ev)| match ev {
                    Some((s, seq)) => format!("{c} {s} (seq {seq})"),
                    None => format!("{c} never reported"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{}: {} [{checks}]", r.host, r.status)
        })
        .collect();
    match reason {
        "pass" => "Every exported host the requirement applies to is satisfied by current, signed evidence."
            .to_string(),
        "fail" => format!("Not satisfied on: {}.", why.join("; ")),
        _ if why.is_empty() => {
            "The requirement applies to none of the exported hosts; not reported as satisfied.".to_string()
        }
        _ => format!(
            "Not reported as satisfied: unknown, missing, stale or excepted evidence proves nothing. {}.",
            why.join("; ")
        ),
    }
}

/// The result's reviewed controls: the requirements with a finding.
fn reviewed_controls(by_requirement: &BTreeMap<&str, Vec<&EvidenceRow>>) -> Value {
    if by_requirement.is_empty() {
        // OSCAL needs a selection; none of the query's controls had a standing.
        json!({ "control-selections": [{
            "description": "No exported host had a standing on any requirement.",
            "include-all": {},
        }] })
    } else {
        let include: Vec<Value> =
            by_requirement.keys().map(|r| json!({ "control-id": control_token(r) })).collect();
        json!({ "control-selections": [{
            "description": "The requirements a Custos check supports, with a standing on an exported host.",
            "include-controls": include,
        }] })
    }
}

/// The result's local definitions: the Custos server as a component and
/// the hosts as inventory items.
fn local_definitions(inventory: Vec<Value>) -> Value {
    let mut local = json!({
        "components": [{
            "uuid": tool().to_string(),
            "type": "software",
            "title": "Custos server",
            "description": "Verifies and keeps the agents' signed evidence, evaluates it against the catalog and keeps the risk register.",
            "props": [prop("version", env!("CARGO_PKG_VERSION"))],
            "status": { "state": "operational" },
        }],
    });
    put(&mut local, "inventory-items", inventory);
    local
}

/// The one `results` entry: the window, the evaluation it rests on, the
/// local definitions, the reviewed controls and `parts`.
fn result(
    input: &Input<'_>,
    window: &str,
    by_requirement: &BTreeMap<&str, Vec<&EvidenceRow>>,
    parts: Parts,
) -> Value {
    let (q, evaluation) = (input.query, input.evaluation);
    let mut result = json!({
        "uuid": named_uuid("result", &format!("{}|{}|{window}", input.exported_at, input.exported_by)).to_string(),
        "title": line(&format!("Custos endpoint evidence, {window}")),
        "description": format!(
            "Technical controls measured on endpoints by Custos agents and signed per record, collected {window}; standings at {} (policy {}, mappings {}). Risks are the register's entries at export time.",
            evaluation.at, evaluation.policy_version, evaluation.mapping_version
        ),
        "start": q.from,
        "end": q.to,
        "props": [
            prop("evaluated-at", &evaluation.at),
            prop("policy-version", &evaluation.policy_version),
            prop("mapping-version", &evaluation.mapping_version),
        ],
        "local-definitions": local_definitions(parts.inventory),
        "reviewed-controls": reviewed_controls(by_requirement),
        "remarks": "A finding is satisfied only when every exported host the requirement applies to is satisfied; unknown, missing, stale or excepted evidence is reported as not-satisfied with reason other, never as a pass.",
    });
    put(&mut result, "observations", parts.observations);
    put(&mut result, "risks", parts.risks);
    put(&mut result, "findings", parts.findings);
    result
}

/// The back matter: the export query (the plan reference's target) and
/// `evidence.csv`, pinned by its digest.
fn back_matter(input: &Input<'_>, window: &str) -> Value {
    let q = input.query;
    let list = |l: &[String]| if l.is_empty() { "all".to_string() } else { l.join(", ") };
    let mut query_props = vec![prop("from", &q.from), prop("to", &q.to)];
    query_props.extend(q.controls.iter().map(|c| prop("control", c)));
    query_props.extend(q.hosts.iter().map(|h| prop("host", h)));
    if let Some(s) = &q.sample {
        query_props.push(prop("sample-size", s.size.to_string()));
        query_props.push(prop("sample-seed", &s.seed));
    }
    json!({ "resources": [
        {
            "uuid": query_resource().to_string(),
            "title": "Export query",
            "description": format!(
                "Records collected {window}; controls: {}; hosts: {}{}. Exported {} by {}.",
                list(&q.controls),
                list(&q.hosts),
                q.sample.as_ref().map_or(String::new(), |s| format!(
                    "; a sample of {} hosts drawn with seed {:?} ({})", s.size, s.seed, s.method
                )),
                input.exported_at,
                input.exported_by
            ),
            "props": query_props,
            "rlinks": [{ "href": MANIFEST, "media-type": "application/json" }],
        },
        {
            "uuid": named_uuid("resource", EVIDENCE_CSV).to_string(),
            "title": "Evidence table",
            "description": "One row per host and requirement with the standing and the signed records behind it.",
            "rlinks": [{
                "href": EVIDENCE_CSV,
                "media-type": "text/csv",
                "hashes": [{ "algorithm": "SHA-256", "value": input.csv_sha256 }],
            }],
        },
    ] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{MatrixKind, Origin, Status};
    use custos_verify::bundle::Sample;

    fn row(
        requirement: &str,
        host: &str,
        status: &str,
        checks: &[(&str, Option<(&str, u64)>)],
    ) -> EvidenceRow {
        EvidenceRow {
            framework: requirement.split('/').next().unwrap_or_default().into(),
            requirement: requirement.into(),
            requirement_title: "Networks security".into(),
            host: host.into(),
            host_name: format!("{host}.example"),
            status: status.into(),
            evidence_time: Some("2026-03-01T10:00:00Z".into()),
            record_seq: checks.iter().filter_map(|(_, e)| e.map(|(_, s)| s)).max(),
            record_digest: Some("ab".repeat(32)),
            checks: checks.iter().map(|(c, e)| (c.to_string(), e.map(|(s, q)| (s.to_string(), q)))).collect(),
            policy_version: "p1".into(),
            mapping_version: "m1".into(),
        }
    }

    fn entry(id: i64, requirement: &str, hosts: &[&str], status: Status) -> RiskEntry {
        let rating = Matrix::new(MatrixKind::Iso27005).at(3, 4);
        RiskEntry {
            id,
            origin: Origin::Evidence,
            requirement: Some(requirement.into()),
            scope: "fleet".into(),
            title: "Inbound traffic is not filtered".into(),
            description: String::new(),
            checks: ["firewall".to_string()].into(),
            related: Vec::new(),
            threats: vec!["G 0.23".into()],
            goals: vec!["integrity".into()],
            affected_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            host_checks: BTreeMap::new(),
            evidence: BTreeMap::new(),
            in_scope_hosts: 3,
            inherent: rating,
            current: rating,
            residual: None,
            owner: Some("  ciso ".into()),
            treatment: None,
            status,
            due_at: Some(1_800_000_000),
            acceptance: None,
            pending_since: None,
            deviating_since: None,
            clean_evaluations: 0,
            opened_at: Some(1_700_000_000),
            updated_at: 1_700_000_000,
            closed_at: None,
        }
    }

    struct Fixture {
        query: Query,
        eval: EvaluationInfo,
        rows: Vec<EvidenceRow>,
        records: BTreeMap<(String, u64), RecordRef>,
        risks: Vec<RiskEntry>,
        matrix: Matrix,
    }

    impl Fixture {
        fn new() -> Fixture {
            let fw = "iso27001:2022/A.8.20";
            let lock = "iso27001:2022/A.8.5";
            let rows = vec![
                row(fw, "a0", "satisfied", &[("firewall", Some(("pass", 2)))]),
                row(fw, "a1", "not_satisfied", &[("firewall", Some(("fail", 3)))]),
                row(lock, "a0", "unknown", &[("screen_lock", Some(("unknown", 2)))]),
                row(lock, "a1", "no_evidence", &[("screen_lock", None)]),
            ];
            let records = [("a0", 2), ("a1", 3)]
                .into_iter()
                .map(|(a, s)| {
                    let r = RecordRef {
                        digest: format!("{s:064x}"),
                        collected_at: "2026-03-01T10:00:00Z".into(),
                    };
                    ((a.to_string(), s), r)
                })
                .collect();
            Fixture {
                query: Query {
                    from: "2026-03-01T00:00:00Z".into(),
                    to: "2026-03-02T00:00:00Z".into(),
                    controls: Vec::new(),
                    hosts: Vec::new(),
                    sample: Some(Sample {
                        size: 2,
                        seed: "s".into(),
                        method: "m".into(),
                        population: vec!["a0".into(), "a1".into()],
                        chosen: vec!["a0".into(), "a1".into()],
                    }),
                },
                eval: EvaluationInfo {
                    at: "2026-03-02T00:00:00Z".into(),
                    policy_version: "p1".into(),
                    mapping_version: "m1".into(),
                },
                rows,
                records,
                risks: vec![
                    entry(2, fw, &["a1"], Status::Open),
                    entry(3, fw, &["elsewhere"], Status::Open),
                    entry(4, "iso27001:2022/A.5.1", &[], Status::Open),
                    entry(5, fw, &["a1"], Status::Pending),
                ],
                matrix: Matrix::new(MatrixKind::Iso27005),
            }
        }

        fn build(&self) -> (Built, Value) {
            let input = Input {
                exported_at: "2026-03-02T01:00:00Z",
                exported_by: "auditor",
                query: &self.query,
                evaluation: &self.eval,
                rows: &self.rows,
                records: &self.records,
                risks: &self.risks,
                matrix: &self.matrix,
                csv_sha256: &"cd".repeat(32),
            };
            let built = build(&input).unwrap();
            let v = serde_json::from_slice(&built.json).unwrap();
            (built, v)
        }
    }

    fn finding<'v>(doc: &'v Value, requirement: &str) -> &'v Value {
        doc["assessment-results"]["results"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["props"][0]["value"] == requirement)
            .unwrap()
    }

    #[test]
    fn the_same_content_gives_the_same_document() {
        let f = Fixture::new();
        let (a, doc) = f.build();
        let (b, _) = f.build();
        assert_eq!(a.json, b.json);
        assert_eq!((a.observations, a.findings, a.risks), (3, 2, 1));
        let ar = &doc["assessment-results"];
        assert_eq!(ar["metadata"]["oscal-version"], OSCAL_VERSION);
        let resources = ar["back-matter"]["resources"].as_array().unwrap();
        assert_eq!(ar["import-ap"]["href"], format!("#{}", resources[0]["uuid"].as_str().unwrap()));
        let r = &ar["results"][0];
        assert_eq!(r["start"], "2026-03-01T00:00:00Z");
        let obs = r["observations"].as_array().unwrap();
        let a1 = obs.iter().find(|o| o["relevant-evidence"][0]["href"] == "records/a1/3.dsse.json").unwrap();
        assert_eq!(a1["types"][0], "finding");
        assert_eq!(a1["subjects"][0]["subject-uuid"], host_uuid("a1").to_string());
        assert_eq!(a1["relevant-evidence"][0]["props"][0]["value"], format!("sha256:{:064x}", 3));
        // Only the open entry on an exported host; the pending one is not in the register.
        let risks = r["risks"].as_array().unwrap();
        assert_eq!(risks[0]["status"], "open");
        assert_eq!(risks[0]["characterizations"][1]["facets"][0]["value"], "possible");
        assert!(risks[0]["props"].as_array().unwrap().iter().any(|p| p["value"] == "ciso"));
        assert_eq!(finding(&doc, "iso27001:2022/A.8.20")["related-risks"][0]["risk-uuid"], risks[0]["uuid"]);
    }

    #[test]
    fn nothing_undecided_is_reported_as_satisfied() {
        let f = Fixture::new();
        let (_, doc) = f.build();
        let fw = finding(&doc, "iso27001:2022/A.8.20");
        assert_eq!(fw["target"]["status"]["state"], "not-satisfied");
        assert_eq!(fw["target"]["status"]["reason"], "fail");
        assert_eq!(fw["target"]["target-id"], "iso27001_2022_A.8.20");
        let lock = finding(&doc, "iso27001:2022/A.8.5");
        assert_eq!(lock["target"]["status"]["state"], "not-satisfied");
        assert_eq!(lock["target"]["status"]["reason"], "other");
        assert!(lock["target"]["status"]["remarks"].as_str().unwrap().contains("a1: no_evidence"));

        for standings in [
            &["satisfied", "stale"][..],
            &["satisfied", "excepted"],
            &["satisfied", "unknown"],
            &["no_evidence"],
            &["not_applicable"],
            &[],
        ] {
            assert_eq!(finding_state(standings.iter().copied()).0, "not-satisfied", "{standings:?}");
        }
        assert_eq!(finding_state(["satisfied", "not_applicable"]), ("satisfied", "pass"));
        assert_eq!(finding_state(["unknown", "not_satisfied"]), ("not-satisfied", "fail"));
    }

    #[test]
    fn a_row_naming_an_unread_record_is_an_error_and_tokens_are_valid() {
        let mut f = Fixture::new();
        f.records.remove(&("a1".to_string(), 3));
        let input = Input {
            exported_at: "2026-03-02T01:00:00Z",
            exported_by: "auditor",
            query: &f.query,
            evaluation: &f.eval,
            rows: &f.rows,
            records: &f.records,
            risks: &f.risks,
            matrix: &f.matrix,
            csv_sha256: "",
        };
        let err = build(&input).unwrap_err().to_string();
        assert!(err.contains("a1") && err.contains("seq 3"), "{err}");
        assert_eq!(control_token("cis:v8/4.1"), "cis_v8_4.1");
        assert_eq!(control_token("4.1"), "_4.1");
    }
}
