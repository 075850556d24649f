//! `GET mappings[?check=ID][&framework=ID]`: the check → requirement
//! mappings in force, as the CISO reviews them: the mapping set's version,
//! every row with its relationship, rationale and origin (the mapping set,
//! the 2013 crosswalk or an imported collection), each mapped requirement's
//! coverage (full when some check is equal to or a superset of it, partial
//! when every check measures only part of it), and the modules of the
//! frameworks organised in modules with their requirements. Coverage is
//! read from every mapping of the requirement, whatever the filter; it does
//! not change how a requirement is evaluated.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiQuery, Params};
use super::{HttpState, error};
use crate::compliance::catalog::Catalog;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MappingsQuery {
    check: Option<String>,
    framework: Option<String>,
}

impl Params for MappingsQuery {
    const ALLOWED: &'static str = "check, framework";
}

pub(super) async fn list(State(s): State<HttpState>, ApiQuery(q): ApiQuery<MappingsQuery>) -> Response {
    match answer(&s.catalog.current(), q.check.as_deref(), q.framework.as_deref()) {
        Ok(v) => Json(v).into_response(),
        Err(why) => error(StatusCode::BAD_REQUEST, &why),
    }
}

/// The answer for the filters; an unknown check or framework is an error
/// rather than an empty list, which would read as "nothing mapped".
pub(super) fn answer(cat: &Catalog, check: Option<&str>, framework: Option<&str>) -> Result<Value, String> {
    if let Some(c) = check
        && cat.check(c).is_none()
    {
        let known: Vec<&str> = cat.checks().map(|c| c.id.as_str()).collect();
        return Err(format!("unknown check {c:?}; known: {}", known.join(", ")));
    }
    if let Some(f) = framework
        && !cat.frameworks().iter().any(|k| k == f)
    {
        return Err(format!("unknown framework {f:?}; loaded: {}", cat.frameworks().join(", ")));
    }
    let in_framework = |id: &str| framework.is_none_or(|f| id.split_once('/').is_some_and(|(fw, _)| fw == f));
    let rows: Vec<_> = cat
        .mappings()
        .iter()
        .filter(|m| check.is_none_or(|c| m.check == c) && in_framework(&m.requirement))
        .collect();
    // Each mapped requirement once, in the order the rows first name it.
    let mut requirements: Vec<Value> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for m in &rows {
        if !seen.insert(m.requirement.as_str()) {
            continue;
        }
        let control = cat.control(&m.requirement);
        requirements.push(json!({
            "requirement": m.requirement,
            "title": control.map(|c| c.title.as_str()),
            "module": control.and_then(|c| c.module.as_deref()),
            "checks": cat.checks_for_control(&m.requirement),
            "coverage": cat.coverage(&m.requirement),
        }));
    }
    let mappings: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "check": m.check,
                "requirement": m.requirement,
                "relationship": m.relationship,
                "rationale": m.rationale,
                "origin": m.origin,
            })
        })
        .collect();
    // With a check named, only the modules holding a requirement it supports.
    let modules: Vec<Value> = cat
        .modules()
        .iter()
        .filter(|m| in_framework(&m.id))
        .filter_map(|m| {
            let reqs = cat.requirements_of(&m.id);
            if check.is_some() && !reqs.iter().any(|r| seen.contains(r.id.as_str())) {
                return None;
            }
            let reqs: Vec<Value> = reqs
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "title": r.title,
                        "level": r.level,
                        "checks": cat.checks_for_control(&r.id),
                        "coverage": cat.coverage(&r.id),
                    })
                })
                .collect();
            Some(json!({"id": m.id, "title": m.title, "requirements": reqs}))
        })
        .collect();
    Ok(json!({
        "version": cat.mapping_version(),
        "mappings": mappings,
        "requirements": requirements,
        "modules": modules,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Catalog {
        Catalog::builtin().unwrap()
    }

    #[test]
    fn filters_narrow_rows_and_modules() {
        let cat = builtin();
        let all = answer(&cat, None, None).unwrap();
        assert_eq!(all["mappings"].as_array().unwrap().len(), cat.mappings().len());
        assert_eq!(all["modules"].as_array().unwrap().len(), cat.modules().len());
        let fw = answer(&cat, Some("firewall"), Some("bsi-grundschutz:2023")).unwrap();
        let rows = fw["mappings"].as_array().unwrap();
        let reqs: Vec<&str> = rows.iter().map(|r| r["requirement"].as_str().unwrap()).collect();
        assert_eq!(
            reqs,
            [
                "bsi-grundschutz:2023/SYS.2.1.A31",
                "bsi-grundschutz:2023/SYS.1.1.A19",
                "bsi-grundschutz:2023/SYS.3.1.A3",
                "bsi-grundschutz:2023/SYS.2.4.A10"
            ]
        );
        // Only the modules holding those requirements: not NET.3.2, which has none.
        let modules: Vec<&str> =
            fw["modules"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(
            modules,
            [
                "bsi-grundschutz:2023/SYS.1.1",
                "bsi-grundschutz:2023/SYS.2.1",
                "bsi-grundschutz:2023/SYS.2.4",
                "bsi-grundschutz:2023/SYS.3.1"
            ]
        );
        let bsi = answer(&cat, None, Some("bsi-grundschutz:2023")).unwrap();
        let net =
            bsi["modules"].as_array().unwrap().iter().find(|m| m["id"] == "bsi-grundschutz:2023/NET.3.2");
        assert_eq!(net.unwrap()["requirements"], json!([]));
        assert!(answer(&cat, None, Some("iso27001:2022")).unwrap()["modules"].as_array().unwrap().is_empty());
        assert!(answer(&cat, Some("dns"), None).unwrap_err().contains("unknown check \"dns\""));
        assert!(answer(&cat, None, Some("iso27001:2099")).unwrap_err().contains("unknown framework"));
    }
}
