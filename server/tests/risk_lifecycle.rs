//! Data-driven tests of the risk lifecycle: each file under
//! `tests/risk_lifecycle/` is a scenario of evaluations and people's actions
//! on one requirement at injected times, with what the entry must look like
//! after each step. A new case is a new file.

#[path = "support/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use custos_server::risk::lifecycle::{
    ManualRisk, Observation, Patch, Profile, accept, create_manual, reconcile, update,
};
use custos_server::risk::{Matrix, MatrixKind, RiskEntry, RiskPolicy, Status, Transition};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

const START: OffsetDateTime = time::macros::datetime!(2026-11-23 08:00 UTC);
const REQUIREMENT: &str = "iso27001:2022/A.8.20";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[serde(default)]
    policy: PolicyOverrides,
    profile: Steps,
    step: Vec<Step>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyOverrides {
    grace: Option<String>,
    close_after_clean: Option<u32>,
    matrix: Option<MatrixKind>,
    max_acceptance: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Steps {
    likelihood: u8,
    impact: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at: String,
    in_scope: Option<Vec<String>>,
    #[serde(default)]
    failing: BTreeMap<String, Vec<String>>,
    /// Hosts passing every check (default: the hosts in scope not failing).
    cleared: Option<Vec<String>>,
    /// Hosts passing only some checks (added to `cleared`).
    #[serde(default)]
    passing: BTreeMap<String, Vec<String>>,
    action: Option<Action>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Action {
    Accept {
        approver: String,
        justification: String,
        expires: String,
    },
    Update {
        actor: String,
        owner: Option<String>,
        treatment: Option<String>,
        status: Option<String>,
        residual: Option<[u8; 2]>,
        rating: Option<[u8; 2]>,
    },
    Create {
        actor: String,
        title: String,
        likelihood: u8,
        impact: u8,
        goals: Option<Vec<String>>,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `none`: no entry (never opened or discarded).
    status: Option<String>,
    /// The events of this step, in order (`[]`: nothing happened).
    events: Option<Vec<String>>,
    affected: Option<Vec<String>>,
    level: Option<String>,
    likelihood: Option<u8>,
    residual: Option<String>,
    /// Due date as an offset from the scenario start.
    due: Option<String>,
    clean: Option<u32>,
    owner: Option<String>,
    /// The action must fail with a message containing this.
    error: Option<String>,
}

fn offset(text: &str) -> Duration {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("offset {text:?}"));
    match unit {
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        _ => panic!("offset {text:?}: use s, m, h or d"),
    }
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let sc: Scenario = toml::from_str(&text).map_err(|e| e.to_string())?;
    let mut policy = RiskPolicy::default();
    if let Some(g) = &sc.policy.grace {
        policy.grace_seconds = offset(g).whole_seconds();
    }
    if let Some(n) = sc.policy.close_after_clean {
        policy.close_after_clean = n;
    }
    if let Some(m) = sc.policy.matrix {
        policy.matrix = Matrix::new(m);
    }
    if let Some(m) = &sc.policy.max_acceptance {
        policy.max_acceptance_seconds = offset(m).whole_seconds();
    }
    let profile = Profile {
        title: "A.8.20 Networks security: inbound traffic is not filtered".into(),
        description: String::new(),
        threats: vec!["G 0.23".into()],
        goals: vec!["integrity".into()],
        related: Vec::new(),
        inherent: policy.matrix.at(sc.profile.likelihood, sc.profile.impact),
    };
    // A host that passes everything passes every check the scenario names.
    let all_checks: BTreeSet<String> = sc
        .step
        .iter()
        .flat_map(|s| s.failing.values().chain(s.passing.values()))
        .flatten()
        .cloned()
        .collect();
    let mut entry: Option<RiskEntry> = None;
    let mut in_scope: BTreeSet<String> = BTreeSet::new();
    for (i, step) in sc.step.iter().enumerate() {
        let at = START + offset(&step.at);
        let ctx = |m: String| format!("step {} (at {}): {m}", i + 1, step.at);
        let result: Result<Option<Transition>, String> = match &step.action {
            None => {
                if let Some(s) = &step.in_scope {
                    in_scope = set(s);
                }
                let failing: BTreeMap<String, BTreeSet<String>> =
                    step.failing.iter().map(|(h, c)| (h.clone(), set(c))).collect();
                let cleared: BTreeSet<String> = match &step.cleared {
                    Some(c) => set(c),
                    None => in_scope
                        .iter()
                        .filter(|h| !failing.contains_key(*h) && !step.passing.contains_key(*h))
                        .cloned()
                        .collect(),
                };
                let mut passing: BTreeMap<String, BTreeSet<String>> =
                    cleared.iter().map(|h| (h.clone(), all_checks.clone())).collect();
                passing.extend(step.passing.iter().map(|(h, c)| (h.clone(), set(c))));
                // In scope, neither failing nor passing anything (unknown, stale).
                for h in in_scope.iter().filter(|h| !failing.contains_key(*h)) {
                    passing.entry(h.clone()).or_default();
                }
                let obs = Observation {
                    requirement: REQUIREMENT.into(),
                    scope: "fleet".into(),
                    in_scope: in_scope.len() as u32,
                    evidence: failing.keys().map(|h| (h.clone(), format!("/api/v1/records/{h}/1"))).collect(),
                    failing,
                    passing,
                    profile: profile.clone(),
                };
                let entries: Vec<RiskEntry> = entry.iter().cloned().collect();
                let mut t = reconcile(&entries, &[obs], &policy, at);
                if t.len() > 1 {
                    return Err(ctx(format!("{} transitions for one requirement", t.len())));
                }
                Ok(t.pop())
            }
            Some(Action::Accept { approver, justification, expires }) => {
                let e = entry.as_ref().ok_or_else(|| ctx("accept without an entry".into()))?;
                accept(e, approver, justification, at + offset(expires), &policy, at)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            Some(Action::Update { actor, owner, treatment, status, residual, rating }) => {
                let e = entry.as_ref().ok_or_else(|| ctx("update without an entry".into()))?;
                let patch = Patch {
                    owner: owner.clone(),
                    treatment: treatment.as_deref().map(|t| t.parse().unwrap()),
                    status: status.as_deref().map(|s| s.parse().unwrap()),
                    residual: residual.map(|[l, i]| (l, i)),
                    rating: rating.map(|[l, i]| (l, i)),
                };
                update(e, patch, &policy, actor, at).map(Some).map_err(|e| e.to_string())
            }
            Some(Action::Create { actor, title, likelihood, impact, goals }) => create_manual(
                ManualRisk {
                    title: title.clone(),
                    likelihood: *likelihood,
                    impact: *impact,
                    goals: goals.clone().unwrap_or_default(),
                    ..Default::default()
                },
                &policy,
                actor,
                at,
            )
            .map(Some)
            .map_err(|e| e.to_string()),
        };
        let x = &step.expect;
        let transition = match (result, &x.error) {
            (Err(msg), Some(want)) if msg.contains(want.as_str()) => continue,
            (Err(msg), _) => return Err(ctx(format!("unexpected error: {msg}"))),
            (Ok(_), Some(want)) => return Err(ctx(format!("expected an error containing {want:?}"))),
            (Ok(t), None) => t,
        };
        let events: Vec<String> = transition
            .as_ref()
            .map(|t| t.events.iter().map(|e| e.change.to_string()).collect())
            .unwrap_or_default();
        if let Some(t) = transition {
            let id = entry.as_ref().map_or(1, |e| e.id);
            entry = if t.discard { None } else { Some(RiskEntry { id, ..t.entry }) };
        }
        if let Some(want) = &x.events
            && *want != events
        {
            return Err(ctx(format!("events {events:?}, expected {want:?}")));
        }
        let status = entry.as_ref().map_or("none".to_string(), |e| e.status.to_string());
        if let Some(want) = &x.status
            && *want != status
        {
            return Err(ctx(format!("status {status}, expected {want}")));
        }
        let Some(e) = &entry else {
            if x.affected.is_some() || x.level.is_some() || x.due.is_some() {
                return Err(ctx("no entry to compare with".into()));
            }
            continue;
        };
        if let Some(want) = &x.affected
            && set(want) != e.affected_hosts
        {
            return Err(ctx(format!("affected {:?}, expected {want:?}", e.affected_hosts)));
        }
        if let Some(want) = &x.level
            && *want != e.current.level.to_string()
        {
            return Err(ctx(format!("level {}, expected {want}", e.current.level)));
        }
        if let Some(want) = x.likelihood
            && want != e.current.likelihood
        {
            return Err(ctx(format!("likelihood {}, expected {want}", e.current.likelihood)));
        }
        if let Some(want) = &x.residual {
            let got = e.residual.map(|r| r.level.to_string()).unwrap_or_else(|| "none".into());
            if *want != got {
                return Err(ctx(format!("residual {got}, expected {want}")));
            }
        }
        if let Some(want) = &x.due {
            let expected = (START + offset(want)).unix_timestamp();
            if e.due_at != Some(expected) {
                return Err(ctx(format!("due {:?}, expected {expected} ({want} after start)", e.due_at)));
            }
        }
        if let Some(want) = x.clean
            && want != e.clean_evaluations
        {
            return Err(ctx(format!("clean evaluations {}, expected {want}", e.clean_evaluations)));
        }
        if let Some(want) = &x.owner
            && Some(want) != e.owner.as_ref()
        {
            return Err(ctx(format!("owner {:?}, expected {want}", e.owner)));
        }
        if let Some(h) = e.affected_hosts.iter().find(|h| !e.evidence.contains_key(*h)) {
            return Err(ctx(format!("affected host {h} has no evidence link")));
        }
        if e.status == Status::Pending && e.opened_at.is_some() {
            return Err(ctx("a pending entry was never opened".into()));
        }
    }
    Ok(())
}

#[test]
fn every_lifecycle_scenario_holds() {
    cases::run_all("risk_lifecycle", 8, run);
}
