//! People move entries: a risk no agent can see recorded by hand
//! ([`create_manual`]), an entry's owner, treatment, ratings and status
//! changed ([`update`]), a risk accepted until an expiry ([`accept`]).
//!
//! Invariants: an evidence entry is rated, closed and reopened by the
//! evidence only, never by hand; acceptance needs an approver, a
//! justification and an expiry within the policy's limit; every change
//! comes with an event naming who made it.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::compliance::catalog::GOALS;
use crate::register::{
    Acceptance, Change, Origin, RiskEntry, RiskError, RiskEvent, RiskPolicy, Status, Transition, Treatment,
};

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

/// Applies a person's patch: the actor named, a pending entry refused
/// (nothing to update yet), then owner, treatment (never `accept`: that is
/// [`accept`]), residual rating, rating (manual entries only) and status,
/// each checked; something must change.
pub fn update(
    e: &RiskEntry,
    patch: Patch,
    policy: &RiskPolicy,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Transition, RiskError> {
    let now = now.unix_timestamp();
    check_text("actor", actor, 200)?;
    if e.status == Status::Pending {
        return Err(state_error(e, "still in its grace period; nothing to update yet"));
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
            return Err(state_error(e, "the evidence rates this entry; set a residual rating instead"));
        }
        check_step(policy, "likelihood", l)?;
        check_step(policy, "impact", i)?;
        let r = policy.matrix.at(l, i);
        changed.push(format!("rating {}", r.level));
        n.inherent = r;
        n.current = r;
    }
    if let Some(s) = patch.status {
        changed.extend(set_status(e, &mut n, s, policy, now)?);
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

/// A status set by hand on `n` (the entry `e` being patched): open or in
/// treatment (reopening a closed manual entry, ending an acceptance), or
/// closed (manual entries only); accepted and pending are not set this
/// way. Returns the change made, if any.
fn set_status(
    e: &RiskEntry,
    n: &mut RiskEntry,
    s: Status,
    policy: &RiskPolicy,
    now: i64,
) -> Result<Option<String>, RiskError> {
    match (s, e.status) {
        (Status::Closed, _) if e.origin == Origin::Evidence => {
            Err(state_error(e, "an evidence entry closes when its hosts pass again; accept it instead"))
        }
        (Status::Accepted, _) => Err(RiskError::Invalid("use accept to accept a risk".into())),
        (Status::Pending, _) => Err(RiskError::Invalid("pending is set by the evidence only".into())),
        (Status::Closed, Status::Closed) => Ok(None),
        (Status::Closed, _) => {
            n.status = Status::Closed;
            n.closed_at = Some(now);
            n.due_at = None;
            Ok(Some("closed".into()))
        }
        (_, Status::Closed) if e.origin == Origin::Evidence => {
            Err(state_error(e, "an evidence entry reopens when a host fails again"))
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
            Ok(Some(format!("status {s}")))
        }
    }
}

/// The entry's status does not allow the change; `message` says why.
fn state_error(e: &RiskEntry, message: &str) -> RiskError {
    RiskError::State { id: e.id, status: e.status, message: message.into() }
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
