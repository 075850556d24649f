//! How entries move: driven by the evidence ([`reconcile`]) and by people
//! ([`create_manual`], [`update`], [`accept`]). Pure: the caller passes the
//! time and stores the returned [`Transition`]s.
//!
//! Evidence rules, per (requirement, scope):
//! - a deviation seen for the first time makes a *pending* entry; it opens
//!   once the deviation has lasted the grace period (and is dropped if it
//!   vanishes before);
//! - a host joins when it fails; it leaves only when it passes again the
//!   checks it failed, or leaves the requirement's scope (a failing host
//!   that turns unknown or goes silent stays affected);
//! - the current likelihood follows the exposure: wide (share of hosts) and
//!   long deviations rate one step higher each, narrow ones one lower; a
//!   higher level escalates and can bring the due date forward;
//! - after `close_after_clean` evaluations in a row without an affected
//!   host the entry closes; a recurrence reopens the *same* entry after the
//!   grace period;
//! - an acceptance lapses at its expiry or when the affected set grows
//!   beyond the hosts accepted, and the entry is open for review again;
//! - a scope dropped from `[risk] scopes` is observed no more: its hosts
//!   have left it (they are observed in the scope they fall in now), so its
//!   entries close like any other entry whose hosts left, after
//!   `close_after_clean` evaluations, their events saying why. A scope
//!   configured again reopens the same entry.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::{
    Acceptance, Change, EVIDENCE_ACTOR, GOALS, Level, Origin, Rating, RiskEntry, RiskError, RiskEvent,
    RiskPolicy, Status, Transition, Treatment,
};

/// What a requirement's entry says, from the catalog ([`super::profile`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub title: String,
    pub description: String,
    pub threats: Vec<String>,
    pub goals: Vec<String>,
    pub related: Vec<String>,
    pub inherent: Rating,
}

/// The evidence on one requirement in one scope at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub requirement: String,
    pub scope: String,
    /// How many hosts the requirement applies to (not `not_applicable`,
    /// not excepted).
    pub in_scope: u32,
    /// Failing hosts with the checks they fail.
    pub failing: BTreeMap<String, BTreeSet<String>>,
    /// For hosts in scope (at least each one the entry names, but for failing
    /// hosts that still fail every check the entry has them failing), the
    /// checks of the requirement it passes with current evidence: a host
    /// leaves an entry once it passes the checks it failed, or once it is out
    /// of scope (in neither `failing` nor `passing`).
    pub passing: BTreeMap<String, BTreeSet<String>>,
    /// For failing hosts, a link to the record that shows the failure.
    pub evidence: BTreeMap<String, String>,
    pub profile: Profile,
}

fn event(change: Change, at: i64, detail: impl Into<String>) -> RiskEvent {
    RiskEvent { change, at, actor: EVIDENCE_ACTOR.into(), detail: detail.into() }
}

/// The current rating of an evidence entry given its exposure.
pub fn current_rating(e: &RiskEntry, policy: &RiskPolicy, now: i64) -> Rating {
    let affected = e.affected_hosts.len() as f64;
    let in_scope = f64::from(e.in_scope_hosts.max(1));
    let share = affected / in_scope;
    let mut step = i16::from(e.inherent.likelihood);
    if share >= policy.wide_share {
        step += 1;
    }
    if share < policy.narrow_share && e.in_scope_hosts >= policy.narrow_min_hosts {
        step -= 1;
    }
    if e.deviating_since.is_some_and(|since| now - since >= policy.long_seconds) {
        step += 1;
    }
    let step = step.clamp(1, i16::from(policy.matrix.steps())) as u8;
    policy.matrix.at(step, e.inherent.impact)
}

fn host_diff(before: &BTreeSet<String>, after: &BTreeSet<String>) -> String {
    let added: Vec<&str> = after.difference(before).map(String::as_str).collect();
    let removed: Vec<&str> = before.difference(after).map(String::as_str).collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("+{}", added.join(" +")));
    }
    if !removed.is_empty() {
        parts.push(format!("-{}", removed.join(" -")));
    }
    format!("{} affected ({})", after.len(), parts.join(" "))
}

fn new_entry(obs: &Observation, now: i64) -> RiskEntry {
    RiskEntry {
        id: 0,
        origin: Origin::Evidence,
        requirement: Some(obs.requirement.clone()),
        scope: obs.scope.clone(),
        title: obs.profile.title.clone(),
        description: obs.profile.description.clone(),
        checks: BTreeSet::new(),
        related: obs.profile.related.clone(),
        threats: obs.profile.threats.clone(),
        goals: obs.profile.goals.clone(),
        affected_hosts: BTreeSet::new(),
        host_checks: BTreeMap::new(),
        evidence: BTreeMap::new(),
        in_scope_hosts: 0,
        inherent: obs.profile.inherent,
        current: obs.profile.inherent,
        residual: None,
        owner: None,
        treatment: None,
        status: Status::Pending,
        due_at: None,
        acceptance: None,
        pending_since: Some(now),
        deviating_since: None,
        clean_evaluations: 0,
        opened_at: None,
        updated_at: now,
        closed_at: None,
    }
}

/// Brings the evidence entries in line with the observations. `entries`
/// holds the latest evidence entry per (requirement, scope), closed ones
/// included (they reopen); an entry without an observation is treated as
/// observed clean with no host in scope (its requirement left the
/// register, or its scope left `policy.scopes`).
pub fn reconcile(
    entries: &[RiskEntry],
    observations: &[Observation],
    policy: &RiskPolicy,
    now: OffsetDateTime,
) -> Vec<Transition> {
    let now = now.unix_timestamp();
    let mut by_key: BTreeMap<(&str, &str), &RiskEntry> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.origin == Origin::Evidence) {
        if let Some(req) = &e.requirement {
            by_key.insert((req.as_str(), e.scope.as_str()), e);
        }
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for obs in observations {
        let key = (obs.requirement.as_str(), obs.scope.as_str());
        seen.insert(key);
        let t = match by_key.get(&key) {
            Some(e) => step(e, obs, policy, now),
            None if obs.failing.is_empty() => None,
            None => step(&new_entry(obs, now), obs, policy, now).or_else(|| {
                // Still within the grace period: store the pending entry.
                Some(Transition { entry: new_entry(obs, now), events: Vec::new(), discard: false })
            }),
        };
        out.extend(t);
    }
    for (key, e) in by_key {
        if !seen.contains(&key) {
            let empty = Observation {
                requirement: key.0.to_string(),
                scope: key.1.to_string(),
                in_scope: 0,
                failing: BTreeMap::new(),
                passing: BTreeMap::new(),
                evidence: BTreeMap::new(),
                profile: Profile {
                    title: e.title.clone(),
                    description: e.description.clone(),
                    threats: e.threats.clone(),
                    goals: e.goals.clone(),
                    related: e.related.clone(),
                    inherent: e.inherent,
                },
            };
            let mut t = step(e, &empty, policy, now);
            if let Some(t) = t.as_mut().filter(|_| !policy.has_scope(&e.scope)) {
                for ev in &mut t.events {
                    ev.detail.push_str(&format!(
                        "; scope {} is no longer in [risk] scopes, its hosts are tracked in the scope they fall in",
                        e.scope
                    ));
                }
            }
            out.extend(t);
        }
    }
    out
}

/// One entry's step; `None` when nothing changed.
fn step(e: &RiskEntry, obs: &Observation, policy: &RiskPolicy, now: i64) -> Option<Transition> {
    let mut n = e.clone();
    let mut events = Vec::new();
    let failing: BTreeSet<String> = obs.failing.keys().cloned().collect();
    let failing_checks: BTreeSet<String> = obs.failing.values().flatten().cloned().collect();
    match e.status {
        Status::Pending | Status::Closed => {
            if failing.is_empty() {
                if e.status == Status::Pending {
                    return Some(Transition { entry: n, events, discard: true });
                }
                n.pending_since = None;
            } else {
                let since = *n.pending_since.get_or_insert(now);
                n.affected_hosts = failing;
                n.host_checks = obs.failing.clone();
                n.evidence = obs.evidence.clone();
                n.checks = failing_checks;
                n.in_scope_hosts = obs.in_scope;
                if now - since >= policy.grace_seconds {
                    let reopening = e.status == Status::Closed;
                    n.status = Status::Open;
                    n.pending_since = None;
                    n.deviating_since = Some(since);
                    n.clean_evaluations = 0;
                    n.closed_at = None;
                    n.acceptance = None;
                    n.treatment = None;
                    n.inherent = obs.profile.inherent;
                    n.current = current_rating(&n, policy, now);
                    n.due_at = Some(now + policy.sla(n.current.level));
                    if !reopening {
                        n.opened_at = Some(now);
                    }
                    let detail = format!(
                        "{} of {} hosts in scope fail {}; level {}, due in {} days",
                        n.affected_hosts.len(),
                        n.in_scope_hosts,
                        n.checks.iter().cloned().collect::<Vec<_>>().join(", "),
                        n.current.level,
                        policy.sla(n.current.level) / 86_400
                    );
                    events.push(event(
                        if reopening { Change::Reopened } else { Change::Opened },
                        now,
                        detail,
                    ));
                }
            }
        }
        Status::Open | Status::InTreatment | Status::Accepted => {
            // Each host keeps the checks it failed and has not passed since.
            let mut host_checks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for h in e
                .affected_hosts
                .iter()
                .filter(|h| obs.failing.contains_key(*h) || obs.passing.contains_key(*h))
            {
                let failed = e.host_checks.get(h).unwrap_or(&e.checks);
                let passes = obs.passing.get(h);
                let open: BTreeSet<String> =
                    failed.iter().filter(|c| !passes.is_some_and(|p| p.contains(*c))).cloned().collect();
                if !open.is_empty() {
                    host_checks.insert(h.clone(), open);
                }
            }
            for (h, checks) in &obs.failing {
                host_checks.entry(h.clone()).or_default().extend(checks.iter().cloned());
            }
            let affected: BTreeSet<String> = host_checks.keys().cloned().collect();
            n.host_checks = host_checks;
            n.evidence = affected
                .iter()
                .filter_map(|h| obs.evidence.get(h).or(e.evidence.get(h)).map(|l| (h.clone(), l.clone())))
                .collect();
            n.in_scope_hosts = obs.in_scope;
            if affected != e.affected_hosts {
                events.push(event(Change::HostsChanged, now, host_diff(&e.affected_hosts, &affected)));
                n.affected_hosts = affected;
            }
            if !failing_checks.is_empty() {
                n.checks = failing_checks;
            }
            if let (Status::Accepted, Some(a)) = (e.status, &e.acceptance) {
                if now >= a.expires_at {
                    n.status = Status::Open;
                    events.push(event(
                        Change::AcceptanceExpired,
                        now,
                        format!("acceptance by {} expired; back for review", a.approver),
                    ));
                } else if !n.affected_hosts.is_subset(&a.hosts) {
                    let new: Vec<&str> = n.affected_hosts.difference(&a.hosts).map(String::as_str).collect();
                    n.status = Status::Open;
                    events.push(event(
                        Change::AcceptanceVoided,
                        now,
                        format!(
                            "affected hosts grew beyond those accepted ({}); back for review",
                            new.join(", ")
                        ),
                    ));
                }
            }
            if n.affected_hosts.is_empty() {
                n.clean_evaluations = e.clean_evaluations + 1;
                if n.clean_evaluations >= policy.close_after_clean {
                    n.status = Status::Closed;
                    n.closed_at = Some(now);
                    n.deviating_since = None;
                    n.due_at = None;
                    events.push(event(
                        Change::Closed,
                        now,
                        format!("no affected host in {} evaluations in a row", n.clean_evaluations),
                    ));
                }
            } else {
                n.clean_evaluations = 0;
                let current = current_rating(&n, policy, now);
                if current.level > e.current.level {
                    let due = now + policy.sla(current.level);
                    n.due_at = Some(n.due_at.map_or(due, |d| d.min(due)));
                    events.push(event(
                        Change::Escalated,
                        now,
                        format!(
                            "level {} → {} ({} of {} hosts)",
                            e.current.level,
                            current.level,
                            n.affected_hosts.len(),
                            n.in_scope_hosts
                        ),
                    ));
                } else if current.level < e.current.level {
                    events.push(event(
                        Change::Lowered,
                        now,
                        format!("level {} → {}", e.current.level, current.level),
                    ));
                }
                n.current = current;
            }
        }
    }
    if n == *e {
        return None;
    }
    n.updated_at = now;
    Some(Transition { entry: n, events, discard: false })
}

/// A risk no agent can see, recorded by a person.
#[derive(Debug, Clone, Default)]
pub struct ManualRisk {
    pub title: String,
    pub description: String,
    pub likelihood: u8,
    pub impact: u8,
    pub owner: Option<String>,
    pub threats: Vec<String>,
    pub goals: Vec<String>,
    pub treatment: Option<Treatment>,
    pub requirement: Option<String>,
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), RiskError> {
    if value.trim().is_empty() {
        return Err(RiskError::Invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > max || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(RiskError::Invalid(format!("{field} must be at most {max} characters of text")));
    }
    Ok(())
}

fn check_goals(goals: &[String]) -> Result<(), RiskError> {
    match goals.iter().find(|g| !GOALS.contains(&g.as_str())) {
        Some(g) => Err(RiskError::Invalid(format!("goal {g:?}: use {}", GOALS.join(", ")))),
        None => Ok(()),
    }
}

fn check_step(policy: &RiskPolicy, field: &str, step: u8) -> Result<(), RiskError> {
    if (1..=policy.matrix.steps()).contains(&step) {
        Ok(())
    } else {
        Err(RiskError::Invalid(format!("{field} {step} is outside 1..={}", policy.matrix.steps())))
    }
}

pub fn create_manual(
    input: ManualRisk,
    policy: &RiskPolicy,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Transition, RiskError> {
    let now = now.unix_timestamp();
    check_text("title", &input.title, 200)?;
    if !input.description.is_empty() {
        check_text("description", &input.description, 4000)?;
    }
    check_text("actor", actor, 200)?;
    check_step(policy, "likelihood", input.likelihood)?;
    check_step(policy, "impact", input.impact)?;
    check_goals(&input.goals)?;
    if let Some(o) = &input.owner {
        check_text("owner", o, 200)?;
    }
    let rating = policy.matrix.at(input.likelihood, input.impact);
    let entry = RiskEntry {
        id: 0,
        origin: Origin::Manual,
        requirement: input.requirement,
        scope: "organisation".into(),
        title: input.title,
        description: input.description,
        checks: BTreeSet::new(),
        related: Vec::new(),
        threats: input.threats,
        goals: input.goals,
        affected_hosts: BTreeSet::new(),
        host_checks: BTreeMap::new(),
        evidence: BTreeMap::new(),
        in_scope_hosts: 0,
        inherent: rating,
        current: rating,
        residual: None,
        owner: input.owner,
        treatment: input.treatment,
        status: Status::Open,
        due_at: Some(now + policy.sla(rating.level)),
        acceptance: None,
        pending_since: None,
        deviating_since: Some(now),
        clean_evaluations: 0,
        opened_at: Some(now),
        updated_at: now,
        closed_at: None,
    };
    let detail = format!("recorded by hand; level {}", rating.level);
    Ok(Transition {
        entry,
        events: vec![RiskEvent { change: Change::Created, at: now, actor: actor.into(), detail }],
        discard: false,
    })
}

/// Changes a person may make to an entry. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub owner: Option<String>,
    pub treatment: Option<Treatment>,
    /// `open`, `in_treatment`, or `closed` (manual entries only).
    pub status: Option<Status>,
    /// Residual likelihood and impact steps.
    pub residual: Option<(u8, u8)>,
    /// Current likelihood and impact of a manual entry.
    pub rating: Option<(u8, u8)>,
}

pub fn update(
    e: &RiskEntry,
    patch: Patch,
    policy: &RiskPolicy,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Transition, RiskError> {
    let now = now.unix_timestamp();
    check_text("actor", actor, 200)?;
    let state = |message: &str| RiskError::State { id: e.id, status: e.status, message: message.into() };
    if e.status == Status::Pending {
        return Err(state("still in its grace period; nothing to update yet"));
    }
    let mut n = e.clone();
    let mut changed = Vec::new();
    if let Some(owner) = patch.owner {
        check_text("owner", &owner, 200)?;
        changed.push(format!("owner {owner}"));
        n.owner = Some(owner);
    }
    if let Some(t) = patch.treatment {
        if t == Treatment::Accept {
            return Err(RiskError::Invalid(
                "treatment accept needs an approver, a justification and an expiry: use accept".into(),
            ));
        }
        changed.push(format!("treatment {t}"));
        n.treatment = Some(t);
    }
    if let Some((l, i)) = patch.residual {
        check_step(policy, "residual likelihood", l)?;
        check_step(policy, "residual impact", i)?;
        let r = policy.matrix.at(l, i);
        changed.push(format!("residual {}", r.level));
        n.residual = Some(r);
    }
    if let Some((l, i)) = patch.rating {
        if e.origin != Origin::Manual {
            return Err(state("the evidence rates this entry; set a residual rating instead"));
        }
        check_step(policy, "likelihood", l)?;
        check_step(policy, "impact", i)?;
        let r = policy.matrix.at(l, i);
        changed.push(format!("rating {}", r.level));
        n.inherent = r;
        n.current = r;
    }
    if let Some(s) = patch.status {
        match (s, e.status) {
            (Status::Closed, _) if e.origin == Origin::Evidence => {
                return Err(state("an evidence entry closes when its hosts pass again; accept it instead"));
            }
            (Status::Accepted, _) => return Err(RiskError::Invalid("use accept to accept a risk".into())),
            (Status::Pending, _) => {
                return Err(RiskError::Invalid("pending is set by the evidence only".into()));
            }
            (Status::Closed, Status::Closed) => {}
            (Status::Closed, _) => {
                n.status = Status::Closed;
                n.closed_at = Some(now);
                n.due_at = None;
                changed.push("closed".into());
            }
            (_, Status::Closed) if e.origin == Origin::Evidence => {
                return Err(state("an evidence entry reopens when a host fails again"));
            }
            (Status::Open | Status::InTreatment, _) => {
                if e.status == Status::Closed {
                    n.closed_at = None;
                    n.due_at = Some(now + policy.sla(n.current.level));
                }
                if e.status == Status::Accepted {
                    n.acceptance = None;
                }
                n.status = s;
                changed.push(format!("status {s}"));
            }
        }
    }
    if changed.is_empty() {
        return Err(RiskError::Invalid("nothing to change".into()));
    }
    n.updated_at = now;
    Ok(Transition {
        entry: n,
        events: vec![RiskEvent {
            change: Change::Updated,
            at: now,
            actor: actor.into(),
            detail: changed.join("; "),
        }],
        discard: false,
    })
}

/// Accepts (or re-accepts, to extend) a risk: needs who approved it, why,
/// and until when.
pub fn accept(
    e: &RiskEntry,
    approver: &str,
    justification: &str,
    expires_at: OffsetDateTime,
    policy: &RiskPolicy,
    now: OffsetDateTime,
) -> Result<Transition, RiskError> {
    let (now, expires_at) = (now.unix_timestamp(), expires_at.unix_timestamp());
    check_text("approver", approver, 200)?;
    check_text("justification", justification, 4000)?;
    if matches!(e.status, Status::Pending | Status::Closed) {
        return Err(RiskError::State {
            id: e.id,
            status: e.status,
            message: "only a live risk can be accepted".into(),
        });
    }
    if expires_at <= now {
        return Err(RiskError::Invalid("the acceptance must expire in the future".into()));
    }
    if expires_at - now > policy.max_acceptance_seconds {
        return Err(RiskError::Invalid(format!(
            "an acceptance may last at most {} days",
            policy.max_acceptance_seconds / 86_400
        )));
    }
    let mut n = e.clone();
    n.status = Status::Accepted;
    n.treatment = Some(Treatment::Accept);
    n.residual = Some(n.residual.unwrap_or(n.current));
    n.acceptance = Some(Acceptance {
        approver: approver.into(),
        justification: justification.into(),
        accepted_at: now,
        expires_at,
        hosts: e.affected_hosts.clone(),
    });
    n.updated_at = now;
    let days = (expires_at - now) / 86_400;
    Ok(Transition {
        entry: n,
        events: vec![RiskEvent {
            change: Change::Accepted,
            at: now,
            actor: approver.into(),
            detail: format!("accepted for {days} days ({} hosts): {justification}", e.affected_hosts.len()),
        }],
        discard: false,
    })
}

/// Entries whose level is at least `level` and whose due date has passed.
pub fn overdue(entries: &[RiskEntry], now: OffsetDateTime) -> Vec<&RiskEntry> {
    let now = now.unix_timestamp();
    entries
        .iter()
        .filter(|e| {
            matches!(e.status, Status::Open | Status::InTreatment) && e.due_at.is_some_and(|d| d < now)
        })
        .collect()
}

/// The highest level among live entries, for a summary.
pub fn worst_level(entries: &[RiskEntry]) -> Option<Level> {
    entries
        .iter()
        .filter(|e| matches!(e.status, Status::Open | Status::InTreatment | Status::Accepted))
        .map(|e| e.current.level)
        .max()
}
