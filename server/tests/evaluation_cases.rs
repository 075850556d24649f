//! Data-driven tests of control evaluation: each file under
//! `tests/evaluation/` describes a fleet (hosts, tags, each check's status
//! and age), the evaluation policy (staleness, exceptions, scopes) and what
//! each named control must show. A new case is a new file.

#[path = "support/cases.rs"]
mod cases;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use custos_proto::evidence::CheckStatus;
use custos_server::compliance::catalog::Catalog;
use custos_server::compliance::evaluate::{
    AppliesTo, CheckEvidence, EvaluationSettings, HostEvidence, evaluate, requirement_standings,
};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = time::macros::datetime!(2026-11-23 12:00 UTC);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    exception: Vec<Exception>,
    #[serde(default)]
    scope: Vec<ScopeRule>,
    #[serde(default)]
    host: Vec<Host>,
    expect: Vec<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    interval: String,
    factor: f64,
    floor: String,
    #[serde(default)]
    intervals: BTreeMap<String, String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { interval: "1h".into(), factor: 3.0, floor: "0s".into(), intervals: BTreeMap::new() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exception {
    agent: String,
    control: String,
    /// Offset from now; negative (`-1h`) for one that has expired.
    until: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeRule {
    prefix: String,
    tags_any: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Host {
    id: String,
    #[serde(default)]
    tags: Vec<String>,
    /// check → [status, age].
    #[serde(default)]
    checks: BTreeMap<String, [String; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    control: String,
    state: Option<String>,
    passing: Option<Vec<String>>,
    failing: Option<Vec<String>>,
    unknown: Option<Vec<String>>,
    without_evidence: Option<Vec<String>>,
    stale: Option<Vec<String>>,
    excepted: Option<Vec<String>>,
    not_applicable: Option<Vec<String>>,
    effectiveness: Option<f64>,
    /// host → standing in the change log's words.
    #[serde(default)]
    standings: BTreeMap<String, String>,
}

fn duration(text: &str) -> Duration {
    let (neg, t) = text.strip_prefix('-').map_or((false, text), |t| (true, t));
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("duration {text:?}"));
    let d = match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        _ => panic!("duration {text:?}: use s, m, h or d"),
    };
    if neg { -d } else { d }
}

fn run(path: &Path, catalog: &Catalog) -> Result<(), String> {
    let case: Case = toml::from_str(&std::fs::read_to_string(path).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut policy = EvaluationSettings::stale_after(duration(&case.policy.interval));
    policy.stale_factor = case.policy.factor;
    policy.stale_floor = duration(&case.policy.floor);
    policy.intervals = case.policy.intervals.iter().map(|(c, d)| (c.clone(), duration(d))).collect();
    for e in &case.exception {
        policy.exceptions.insert((e.agent.clone(), e.control.clone()), NOW + duration(&e.until));
    }
    if !case.scope.is_empty() {
        let rules: Vec<(String, Vec<String>)> =
            case.scope.iter().map(|s| (s.prefix.clone(), s.tags_any.clone())).collect();
        policy.scope = Some(AppliesTo(Arc::new(move |control: &str, tags: &[String]| {
            rules
                .iter()
                .filter(|(p, _)| control.starts_with(p.as_str()))
                .all(|(_, any)| tags.iter().any(|t| any.contains(t)))
        })));
    }
    let hosts: Vec<HostEvidence> = case
        .host
        .iter()
        .map(|h| HostEvidence {
            agent_id: h.id.clone(),
            display_name: h.id.clone(),
            tags: h.tags.clone(),
            checks: h
                .checks
                .iter()
                .map(|(c, [status, age])| CheckEvidence {
                    check_id: c.clone(),
                    status: CheckStatus::parse(status).unwrap_or_else(|| panic!("status {status:?}")),
                    collected_at: NOW - duration(age),
                    reason: None,
                    record_seq: 1,
                })
                .collect(),
        })
        .collect();
    let e = evaluate(catalog, &hosts, NOW, &policy);
    let standings = requirement_standings(&e, &hosts);
    for x in &case.expect {
        let Some(c) = e.controls.iter().find(|c| c.control_id == x.control) else {
            return Err(format!("{}: not in the evaluation", x.control));
        };
        let check = |name: &str, want: &Option<Vec<String>>, got: &Vec<String>| -> Result<(), String> {
            match want {
                Some(w) if w != got => Err(format!("{} {name}: {got:?}, expected {w:?}", x.control)),
                _ => Ok(()),
            }
        };
        if let Some(s) = &x.state {
            let got = serde_json::to_value(c.state).unwrap();
            if got != s.as_str() {
                return Err(format!("{} state: {got}, expected {s}", x.control));
            }
        }
        check("passing", &x.passing, &c.passing)?;
        check("failing", &x.failing, &c.failing)?;
        check("unknown", &x.unknown, &c.unknown)?;
        check("without_evidence", &x.without_evidence, &c.without_evidence)?;
        check("stale", &x.stale, &c.stale)?;
        check("excepted", &x.excepted, &c.excepted)?;
        check("not_applicable", &x.not_applicable, &c.not_applicable)?;
        if let Some(want) = x.effectiveness {
            let got = c.effectiveness();
            if got.is_none_or(|g| (g - want).abs() > 1e-9) {
                return Err(format!("{} effectiveness: {got:?}, expected {want}", x.control));
            }
        }
        for (host, want) in &x.standings {
            let got = standings.get(&(host.clone(), x.control.clone())).map(|s| s.state);
            if got != Some(want.as_str()) {
                return Err(format!("{} standing of {host}: {got:?}, expected {want}", x.control));
            }
        }
    }
    Ok(())
}

#[test]
fn every_evaluation_case_holds() {
    let catalog = Catalog::builtin().unwrap();
    cases::run_all("evaluation", 5, |f| run(f, &catalog));
}
