//! The risk register's entries as the `risks` of the assessment results:
//! those on the exported requirements and hosts, as the register stands at
//! export time, each with its ratings on the risk matrix's scale and the
//! observations of its hosts and checks. Pending entries are not yet risks
//! and are left out.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use uuid::Uuid;

use custos_verify::oscal_ids::{NS, PROP_REQUIREMENT, named_uuid, observation_uuid};

use super::{EvidenceRow, Observations, line, prop, put, related, tool, unix_rfc3339};
use crate::register::{Matrix, Rating, RiskEntry, Status};

/// The register's entries on the exported requirements, with their OSCAL
/// status, by id: an entry naming hosts counts when one of them is
/// exported; one naming none (manual, or closed) speaks of the requirement
/// as a whole. Pending entries are left out.
pub(super) fn on_export<'r>(
    entries: &'r [RiskEntry],
    requirements: &BTreeMap<&str, Vec<&EvidenceRow>>,
    hosts: &BTreeMap<&str, &str>,
) -> Vec<(&'r RiskEntry, &'static str)> {
    let mut risks: Vec<(&RiskEntry, &str)> = entries
        .iter()
        .filter_map(|e| risk_status(e.status).map(|s| (e, s)))
        .filter(|(e, _)| {
            let on_requirement =
                e.requirement.iter().chain(&e.related).any(|r| requirements.contains_key(r.as_str()));
            let on_hosts = e.affected_hosts.is_empty()
                || e.affected_hosts.iter().any(|h| hosts.contains_key(h.as_str()));
            on_requirement && on_hosts
        })
        .collect();
    risks.sort_by_key(|(e, _)| e.id);
    risks
}

/// The result's `risks`: each entry with the observations of its hosts and
/// checks.
pub(super) fn values(
    risks: &[(&RiskEntry, &str)],
    observed: &Observations<'_>,
    matrix: &Matrix,
) -> Vec<Value> {
    risks
        .iter()
        .map(|(e, status)| {
            let obs = observed
                .values()
                .filter(|o| e.affected_hosts.contains(o.agent) && e.checks.contains(o.check))
                .map(|o| observation_uuid(o.agent, o.check, o.seq));
            risk(e, status, tool(), matrix, obs.collect())
        })
        .collect()
}

/// One rating of an entry (`which`: inherent, current or residual) as a
/// characterization on the matrix's scale, made by the Custos server.
fn rating_characterization(tool: Uuid, matrix: &Matrix, which: &str, r: &Rating) -> Value {
    // The facets' system names the scale, so a reader knows what "possible" means.
    let kind = serde_json::to_value(matrix.kind).ok().and_then(|v| v.as_str().map(String::from));
    let system = format!("{NS}/risk-matrix/{}", kind.unwrap_or_else(|| "unknown".into()));
    json!({
        "props": [prop("rating", which)],
        "origin": { "actors": [{ "type": "tool", "actor-uuid": tool.to_string() }] },
        "facets": [
            { "name": "likelihood", "system": system, "value": matrix.likelihood_label(r.likelihood),
              "props": [prop("step", r.likelihood.to_string())] },
            { "name": "impact", "system": system, "value": matrix.impact_label(r.impact),
              "props": [prop("step", r.impact.to_string())] },
            { "name": "level", "system": system, "value": r.level.to_string() },
        ],
    })
}

/// The OSCAL status of a register status; a pending entry is not yet a risk.
fn risk_status(s: Status) -> Option<&'static str> {
    match s {
        Status::Pending => None,
        Status::Open => Some("open"),
        Status::InTreatment => Some("remediating"),
        Status::Accepted => Some("deviation-approved"),
        Status::Closed => Some("closed"),
    }
}

/// One register entry as an OSCAL risk: its statement from the deviation,
/// the register's fields as props, its ratings and the observations behind it.
fn risk(e: &RiskEntry, status: &str, tool: Uuid, matrix: &Matrix, observations: Vec<Uuid>) -> Value {
    let list = |s: &mut dyn Iterator<Item = &String>| s.map(String::as_str).collect::<Vec<_>>().join(", ");
    let mut statement = match &e.requirement {
        Some(req) => format!(
            "{}: requirement {req} deviates on {} of {} in-scope hosts",
            e.title,
            e.affected_hosts.len(),
            e.in_scope_hosts
        ),
        None => format!("{} (recorded by hand)", e.title),
    };
    if !e.affected_hosts.is_empty() {
        statement.push_str(&format!(" ({})", list(&mut e.affected_hosts.iter())));
    }
    if !e.checks.is_empty() {
        statement.push_str(&format!("; failing checks: {}", list(&mut e.checks.iter())));
    }
    statement.push('.');
    if !e.threats.is_empty() {
        statement.push_str(&format!(" Threats: {}.", list(&mut e.threats.iter())));
    }
    if !e.goals.is_empty() {
        statement.push_str(&format!(" Protection goals at stake: {}.", list(&mut e.goals.iter())));
    }
    let mut props = vec![
        prop("register-id", e.id.to_string()),
        prop("origin", e.origin.as_str()),
        prop("scope", &e.scope),
        prop("level", e.current.level.to_string()),
    ];
    props.extend(e.requirement.iter().map(|r| prop(PROP_REQUIREMENT, r)));
    props.extend(e.related.iter().map(|r| prop("related-requirement", r)));
    props.extend(e.affected_hosts.iter().map(|h| prop("affected-host", h)));
    props.extend(e.owner.iter().map(|o| prop("owner", o)));
    props.extend(e.treatment.iter().map(|t| prop("treatment", t.as_str())));
    if let Some(a) = &e.acceptance {
        props.push(prop("accepted-by", &a.approver));
        props.push(prop("acceptance-justification", &a.justification));
        props.push(prop("acceptance-expires", unix_rfc3339(a.expires_at)));
    }
    let mut characterizations = vec![
        rating_characterization(tool, matrix, "inherent", &e.inherent),
        rating_characterization(tool, matrix, "current", &e.current),
    ];
    characterizations.extend(e.residual.iter().map(|r| rating_characterization(tool, matrix, "residual", r)));
    let description = if e.description.trim().is_empty() { e.title.clone() } else { e.description.clone() };
    let mut v = json!({
        "uuid": named_uuid("risk", &e.id.to_string()).to_string(),
        "title": line(&e.title),
        "description": description,
        "statement": statement,
        "props": props,
        "status": status,
        "characterizations": characterizations,
    });
    if let (Some(due), Some(map)) = (e.due_at, v.as_object_mut())
        && !matches!(e.status, Status::Closed)
    {
        map.insert("deadline".into(), Value::String(unix_rfc3339(due)));
    }
    put(&mut v, "related-observations", related(observations, "observation-uuid"));
    v
}
