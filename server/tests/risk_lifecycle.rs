//! Data-driven tests of the risk lifecycle: each file under
//! `tests/risk_lifecycle/` is a scenario of evaluations and people's actions
//! on one requirement at injected times, with what the entry must look like
//! after each step. A new case is a new file.
//!
//! Scopes: hosts carry `[tags]`, the register's `scopes` (in `[policy]`, or
//! changed by a step) put each host in the first scope it carries (else the
//! fleet), and each evaluation observes every scope apart, as the keeper
//! does. `expect` is about the fleet's entry, `expect_scope.<scope>` about
//! another's; an action applies to the entry of scope `on` (default fleet).

#[path = "support/cases.rs"]
mod cases;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use custos_server::register::lifecycle::{
    ManualRisk, Observation, Patch, Profile, accept, create_manual, reconcile, update,
};
use custos_server::register::{
    FLEET_SCOPE, Matrix, MatrixKind, RiskEntry, RiskPolicy, Status, Transition, scope_of,
};
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
    /// Host tags (untagged hosts have none).
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
    step: Vec<Step>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyOverrides {
    grace: Option<String>,
    close_after_clean: Option<u32>,
    matrix: Option<MatrixKind>,
    max_acceptance: Option<String>,
    scopes: Option<Vec<String>>,
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
    /// Hosts retagged from this step on.
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
    /// The register's scopes from this step on.
    scopes: Option<Vec<String>>,
    /// The scope of the entry an action applies to (default the fleet).
    on: Option<String>,
    /// About the fleet's entry.
    #[serde(default)]
    expect: Expect,
    /// About other scopes' entries.
    #[serde(default)]
    expect_scope: BTreeMap<String, Expect>,
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
    /// Hosts in the entry's scope the requirement applies to.
    in_scope: Option<u32>,
    /// Text every event of this step has in its detail.
    detail: Option<String>,
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

#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
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
    let mut entries: BTreeMap<String, RiskEntry> = BTreeMap::new();
    let mut next_id = 1;
    let mut in_scope: BTreeSet<String> = BTreeSet::new();
    let mut tags = sc.tags.clone();
    if let Some(s) = &sc.policy.scopes {
        policy.scopes = s.clone();
    }
    for (i, step) in sc.step.iter().enumerate() {
        let at = START + offset(&step.at);
        let ctx = |m: String| format!("step {} (at {}): {m}", i + 1, step.at);
        tags.extend(step.tags.clone());
        if let Some(s) = &step.scopes {
            policy.scopes = s.clone();
        }
        let on = step.on.clone().unwrap_or_else(|| FLEET_SCOPE.to_string());
        let result: Result<Vec<Transition>, String> = match &step.action {
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
                // One observation per register scope, each with its own hosts.
                let no_tags = Vec::new();
                let scope_of_host = |h: &str| scope_of(tags.get(h).unwrap_or(&no_tags), &policy.scopes);
                let observations: Vec<Observation> = policy
                    .scopes
                    .iter()
                    .map(String::as_str)
                    .chain([FLEET_SCOPE])
                    .map(|scope| {
                        let mine = |h: &String| scope_of_host(h) == scope;
                        let failing: BTreeMap<String, BTreeSet<String>> = failing
                            .iter()
                            .filter(|(h, _)| mine(h))
                            .map(|(h, c)| (h.clone(), c.clone()))
                            .collect();
                        Observation {
                            requirement: REQUIREMENT.into(),
                            scope: scope.into(),
                            in_scope: in_scope.iter().filter(|h| mine(h)).count() as u32,
                            evidence: failing
                                .keys()
                                .map(|h| (h.clone(), format!("/api/v1/records/{h}/1")))
                                .collect(),
                            failing,
                            passing: passing
                                .iter()
                                .filter(|(h, _)| mine(h))
                                .map(|(h, c)| (h.clone(), c.clone()))
                                .collect(),
                            profile: profile.clone(),
                        }
                    })
                    .collect();
                let current: Vec<RiskEntry> = entries.values().cloned().collect();
                let t = reconcile(&current, &observations, &policy, at);
                let scopes: BTreeSet<&str> = t.iter().map(|t| t.entry.scope.as_str()).collect();
                if scopes.len() != t.len() {
                    return Err(ctx(format!("{} transitions for {} scopes", t.len(), scopes.len())));
                }
                Ok(t)
            }
            Some(Action::Accept { approver, justification, expires }) => {
                let e = entries.get(&on).ok_or_else(|| ctx(format!("accept without an entry in {on}")))?;
                accept(e, approver, justification, at + offset(expires), &policy, at)
                    .map(|t| vec![t])
                    .map_err(|e| e.to_string())
            }
            Some(Action::Update { actor, owner, treatment, status, residual, rating }) => {
                let e = entries.get(&on).ok_or_else(|| ctx(format!("update without an entry in {on}")))?;
                let patch = Patch {
                    owner: owner.clone(),
                    treatment: treatment.as_deref().map(|t| t.parse().unwrap()),
                    status: status.as_deref().map(|s| s.parse().unwrap()),
                    residual: residual.map(|[l, i]| (l, i)),
                    rating: rating.map(|[l, i]| (l, i)),
                };
                update(e, patch, &policy, actor, at).map(|t| vec![t]).map_err(|e| e.to_string())
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
            // A manual entry stands in for the scenario's entry.
            .map(|t| vec![Transition { entry: RiskEntry { scope: on.clone(), ..t.entry }, ..t }])
            .map_err(|e| e.to_string()),
        };
        let transitions = match (result, &step.expect.error) {
            (Err(msg), Some(want)) if msg.contains(want.as_str()) => continue,
            (Err(msg), _) => return Err(ctx(format!("unexpected error: {msg}"))),
            (Ok(_), Some(want)) => return Err(ctx(format!("expected an error containing {want:?}"))),
            (Ok(t), None) => t,
        };
        let mut events: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for t in transitions {
            let scope = t.entry.scope.clone();
            events.insert(
                scope.clone(),
                t.events.iter().map(|e| (e.change.to_string(), e.detail.clone())).collect(),
            );
            if t.discard {
                entries.remove(&scope);
            } else {
                let id = entries.get(&scope).map_or_else(
                    || {
                        next_id += 1;
                        next_id - 1
                    },
                    |e| e.id,
                );
                entries.insert(scope, RiskEntry { id, ..t.entry });
            }
        }
        let expectations = std::iter::once((FLEET_SCOPE.to_string(), &step.expect))
            .chain(step.expect_scope.iter().map(|(s, x)| (s.clone(), x)));
        for (scope, x) in expectations {
            let ctx = |m: String| ctx(format!("scope {scope}: {m}"));
            let no_events = Vec::new();
            check(x, entries.get(&scope), events.get(&scope).unwrap_or(&no_events)).map_err(ctx)?;
        }
        // Every entry, expected or not, keeps the register's invariants.
        for e in entries.values() {
            if let Some(h) = e.affected_hosts.iter().find(|h| !e.evidence.contains_key(*h)) {
                return Err(ctx(format!("{}: affected host {h} has no evidence link", e.scope)));
            }
            if e.status == Status::Pending && e.opened_at.is_some() {
                return Err(ctx(format!("{}: a pending entry was never opened", e.scope)));
            }
            let outside: Vec<&String> = e
                .affected_hosts
                .iter()
                .filter(|h| scope_of(tags.get(*h).map_or(&[][..], Vec::as_slice), &policy.scopes) != e.scope)
                .collect();
            if !outside.is_empty() && step.action.is_none() {
                return Err(ctx(format!("{}: hosts {outside:?} of another scope are affected", e.scope)));
            }
        }
    }
    Ok(())
}

/// Compares one scope's entry (and the events of this step) with what the step expects.
fn check(x: &Expect, entry: Option<&RiskEntry>, events: &[(String, String)]) -> Result<(), String> {
    let changes: Vec<&str> = events.iter().map(|(c, _)| c.as_str()).collect();
    if let Some(want) = &x.events
        && *want != changes
    {
        return Err(format!("events {changes:?}, expected {want:?}"));
    }
    if let Some(want) = &x.detail
        && (events.is_empty() || !events.iter().all(|(_, d)| d.contains(want.as_str())))
    {
        return Err(format!("event details {events:?}, expected each to contain {want:?}"));
    }
    let status = entry.map_or("none".to_string(), |e| e.status.to_string());
    if let Some(want) = &x.status
        && *want != status
    {
        return Err(format!("status {status}, expected {want}"));
    }
    let Some(e) = entry else {
        if x.affected.is_some() || x.level.is_some() || x.due.is_some() || x.in_scope.is_some() {
            return Err("no entry to compare with".into());
        }
        return Ok(());
    };
    if let Some(want) = &x.affected
        && set(want) != e.affected_hosts
    {
        return Err(format!("affected {:?}, expected {want:?}", e.affected_hosts));
    }
    if let Some(want) = x.in_scope
        && want != e.in_scope_hosts
    {
        return Err(format!("in scope {}, expected {want}", e.in_scope_hosts));
    }
    if let Some(want) = &x.level
        && *want != e.current.level.to_string()
    {
        return Err(format!("level {}, expected {want}", e.current.level));
    }
    if let Some(want) = x.likelihood
        && want != e.current.likelihood
    {
        return Err(format!("likelihood {}, expected {want}", e.current.likelihood));
    }
    if let Some(want) = &x.residual {
        let got = e.residual.map(|r| r.level.to_string()).unwrap_or_else(|| "none".into());
        if *want != got {
            return Err(format!("residual {got}, expected {want}"));
        }
    }
    if let Some(want) = &x.due {
        let expected = (START + offset(want)).unix_timestamp();
        if e.due_at != Some(expected) {
            return Err(format!("due {:?}, expected {expected} ({want} after start)", e.due_at));
        }
    }
    if let Some(want) = x.clean
        && want != e.clean_evaluations
    {
        return Err(format!("clean evaluations {}, expected {want}", e.clean_evaluations));
    }
    if let Some(want) = &x.owner
        && Some(want) != e.owner.as_ref()
    {
        return Err(format!("owner {:?}, expected {want}", e.owner));
    }
    Ok(())
}

#[test]
fn every_lifecycle_scenario_holds() {
    cases::run_all("risk_lifecycle", 9, run);
}
