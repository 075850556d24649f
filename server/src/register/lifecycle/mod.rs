//! How entries move: driven by the evidence ([`reconcile`], in
//! `reconcile.rs`) and by people ([`create_manual`], [`update`], [`accept`],
//! in `edits.rs`). Pure: the caller passes the time and stores the returned
//! [`Transition`](super::Transition)s. Here: what is overdue, and the worst
//! live level.

use time::OffsetDateTime;

use super::{Level, RiskEntry, Status};

mod edits;
mod reconcile;

pub use edits::{ManualRisk, Patch, accept, create_manual, update};
pub use reconcile::{Observation, Profile, current_rating, reconcile};

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
