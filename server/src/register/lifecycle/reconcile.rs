//! The evidence moves entries: [`reconcile`] brings the evidence entries in
//! line with one evaluation's observations, one [`step`] per entry.
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

use crate::register::{
    Change, EVIDENCE_ACTOR, Origin, Rating, RiskEntry, RiskEvent, RiskPolicy, Status, Transition,
};

/// What a requirement's entry says, from the catalog ([`crate::register::profile`]).
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
        out.extend(observed(by_key.get(&key).copied(), obs, policy, now));
    }
    for (key, e) in by_key {
        if !seen.contains(&key) {
            out.extend(unobserved(e, key, policy, now));
        }
    }
    out
}

/// The step of the entry for an observation, if there is one; else a new
/// entry when some host fails (pending while the grace period runs).
fn observed(e: Option<&RiskEntry>, obs: &Observation, policy: &RiskPolicy, now: i64) -> Option<Transition> {
    match e {
        Some(e) => step(e, obs, policy, now),
        None if obs.failing.is_empty() => None,
        None => step(&new_entry(obs, now), obs, policy, now).or_else(|| {
            // Still within the grace period: store the pending entry.
            Some(Transition { entry: new_entry(obs, now), events: Vec::new(), discard: false })
        }),
    }
}

/// The step of an entry nothing observed: clean, with no host in scope.
/// When its scope left `[risk] scopes`, its events say so.
fn unobserved(
    e: &RiskEntry,
    (requirement, scope): (&str, &str),
    policy: &RiskPolicy,
    now: i64,
) -> Option<Transition> {
    let empty = Observation {
        requirement: requirement.to_string(),
        scope: scope.to_string(),
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
    t
}

/// One entry's step; `None` when nothing changed. In order:
/// 1. pending or closed, and no host fails: a pending entry is dropped, a
///    closed one stays closed;
/// 2. pending or closed, and hosts fail: the entry takes them; once the
///    deviation has lasted the grace period it opens (a closed one
///    reopens, the same entry);
/// 3. live (open, in treatment, accepted): its hosts follow the evidence;
/// 4. an acceptance lapses at its expiry or when the hosts grow beyond
///    those accepted;
/// 5. no host left: one more clean evaluation, enough in a row close it;
///    hosts left: the current rating follows the exposure.
fn step(e: &RiskEntry, obs: &Observation, policy: &RiskPolicy, now: i64) -> Option<Transition> {
    let mut s = Step { was: e, obs, policy, now, next: e.clone(), events: Vec::new() };
    match e.status {
        Status::Pending | Status::Closed if obs.failing.is_empty() => {
            if e.status == Status::Pending {
                return Some(Transition { entry: s.next, events: s.events, discard: true });
            }
            s.next.pending_since = None;
        }
        Status::Pending | Status::Closed => {
            let since = s.follow_failing();
            if now - since >= policy.grace_seconds {
                s.open(since);
            }
        }
        Status::Open | Status::InTreatment | Status::Accepted => {
            s.track_hosts();
            s.lapse_acceptance();
            if s.next.affected_hosts.is_empty() {
                s.count_clean();
            } else {
                s.rerate();
            }
        }
    }
    s.finish()
}

/// One entry's step in progress: the entry as it was, what it is
/// becoming, and the events that say why.
struct Step<'a> {
    was: &'a RiskEntry,
    obs: &'a Observation,
    policy: &'a RiskPolicy,
    now: i64,
    next: RiskEntry,
    events: Vec<RiskEvent>,
}

impl Step<'_> {
    /// A pending or closed entry takes the failing hosts, their checks and
    /// evidence; returns since when the deviation lasts.
    fn follow_failing(&mut self) -> i64 {
        let obs = self.obs;
        let n = &mut self.next;
        let since = *n.pending_since.get_or_insert(self.now);
        n.affected_hosts = obs.failing.keys().cloned().collect();
        n.host_checks = obs.failing.clone();
        n.evidence = obs.evidence.clone();
        n.checks = failing_checks(obs);
        n.in_scope_hosts = obs.in_scope;
        since
    }

    /// The grace period has passed: the entry opens (or reopens), rated
    /// afresh and due by the SLA of its level.
    fn open(&mut self, since: i64) {
        let (policy, now) = (self.policy, self.now);
        let reopening = self.was.status == Status::Closed;
        let n = &mut self.next;
        n.status = Status::Open;
        n.pending_since = None;
        n.deviating_since = Some(since);
        n.clean_evaluations = 0;
        n.closed_at = None;
        n.acceptance = None;
        n.treatment = None;
        n.inherent = self.obs.profile.inherent;
        n.current = current_rating(n, policy, now);
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
        self.events.push(event(if reopening { Change::Reopened } else { Change::Opened }, now, detail));
    }

    /// A live entry's hosts follow the evidence: each keeps the checks it
    /// failed and has not passed since, the hosts failing now join.
    fn track_hosts(&mut self) {
        let (e, obs) = (self.was, self.obs);
        let host_checks = open_checks(e, obs);
        let affected: BTreeSet<String> = host_checks.keys().cloned().collect();
        let n = &mut self.next;
        n.host_checks = host_checks;
        n.evidence = affected
            .iter()
            .filter_map(|h| obs.evidence.get(h).or(e.evidence.get(h)).map(|l| (h.clone(), l.clone())))
            .collect();
        n.in_scope_hosts = obs.in_scope;
        if affected != e.affected_hosts {
            self.events.push(event(Change::HostsChanged, self.now, host_diff(&e.affected_hosts, &affected)));
            n.affected_hosts = affected;
        }
        let failing_checks = failing_checks(obs);
        if !failing_checks.is_empty() {
            n.checks = failing_checks;
        }
    }

    /// An accepted entry is open for review again when its acceptance
    /// expires, or when its hosts grow beyond those accepted.
    fn lapse_acceptance(&mut self) {
        let (Status::Accepted, Some(a)) = (self.was.status, &self.was.acceptance) else { return };
        let n = &mut self.next;
        if self.now >= a.expires_at {
            n.status = Status::Open;
            self.events.push(event(
                Change::AcceptanceExpired,
                self.now,
                format!("acceptance by {} expired; back for review", a.approver),
            ));
        } else if !n.affected_hosts.is_subset(&a.hosts) {
            let new: Vec<&str> = n.affected_hosts.difference(&a.hosts).map(String::as_str).collect();
            n.status = Status::Open;
            self.events.push(event(
                Change::AcceptanceVoided,
                self.now,
                format!("affected hosts grew beyond those accepted ({}); back for review", new.join(", ")),
            ));
        }
    }

    /// No affected host: one more clean evaluation in a row; enough of
    /// them close the entry.
    fn count_clean(&mut self) {
        let n = &mut self.next;
        n.clean_evaluations = self.was.clean_evaluations + 1;
        if n.clean_evaluations >= self.policy.close_after_clean {
            n.status = Status::Closed;
            n.closed_at = Some(self.now);
            n.deviating_since = None;
            n.due_at = None;
            self.events.push(event(
                Change::Closed,
                self.now,
                format!("no affected host in {} evaluations in a row", n.clean_evaluations),
            ));
        }
    }

    /// Hosts still affected: the clean count restarts and the current
    /// rating follows the exposure; a higher level escalates and may bring
    /// the due date forward.
    fn rerate(&mut self) {
        let (was, now) = (self.was.current.level, self.now);
        let n = &mut self.next;
        n.clean_evaluations = 0;
        let current = current_rating(n, self.policy, now);
        if current.level > was {
            let due = now + self.policy.sla(current.level);
            n.due_at = Some(n.due_at.map_or(due, |d| d.min(due)));
            let detail = format!(
                "level {was} → {} ({} of {} hosts)",
                current.level,
                n.affected_hosts.len(),
                n.in_scope_hosts
            );
            self.events.push(event(Change::Escalated, now, detail));
        } else if current.level < was {
            self.events.push(event(Change::Lowered, now, format!("level {was} → {}", current.level)));
        }
        n.current = current;
    }

    /// The transition, or `None` when the entry did not change.
    fn finish(mut self) -> Option<Transition> {
        if self.next == *self.was {
            return None;
        }
        self.next.updated_at = self.now;
        Some(Transition { entry: self.next, events: self.events, discard: false })
    }
}

/// Every check some host fails in the observation.
fn failing_checks(obs: &Observation) -> BTreeSet<String> {
    obs.failing.values().flatten().cloned().collect()
}

/// Each host of a live entry with the checks it failed and has not passed
/// since (a host in neither `failing` nor `passing` left the scope), plus
/// the checks each host fails now.
fn open_checks(e: &RiskEntry, obs: &Observation) -> BTreeMap<String, BTreeSet<String>> {
    let mut host_checks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for h in e.affected_hosts.iter().filter(|h| obs.failing.contains_key(*h) || obs.passing.contains_key(*h))
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
    host_checks
}
