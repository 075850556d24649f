//! The risk keeper: after evidence is committed (and once a minute, since
//! evidence goes stale with time) it evaluates the fleet and reconciles the
//! risk register. Runs off the ingest hot path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use custos_proto::evidence::CheckStatus;
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::catalog::Catalog;
use crate::risk::{RiskChange, RiskEntry, reconcile};
use crate::store::risks::RiskRow;
use crate::store::{Store, StoreError};

/// One reconciliation pass; returns the changes applied.
pub fn reconcile_once(
    store: &Store,
    catalog: &Catalog,
    now: OffsetDateTime,
) -> Result<Vec<RiskChange>, StoreError> {
    let mut statuses: BTreeMap<String, BTreeMap<String, CheckStatus>> = BTreeMap::new();
    for c in store.check_states()? {
        statuses.entry(c.check_id).or_default().insert(c.agent_id, c.status);
    }
    let fleet: BTreeSet<String> =
        store.hosts()?.into_iter().filter(|h| !h.revoked).map(|h| h.agent_id).collect();
    let open: Vec<RiskEntry> =
        store.risks(Some(true))?.into_iter().map(to_entry).collect::<Result<_, _>>()?;
    let changes = reconcile(catalog, &open, &statuses, &fleet, now);
    store.apply_risk_changes(&changes)?;
    Ok(changes)
}

fn to_entry(r: RiskRow) -> Result<RiskEntry, StoreError> {
    let t = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| StoreError::Corrupt(format!("risk {}: {e}", r.id)))
    };
    Ok(RiskEntry {
        id: r.id,
        opened_at: t(r.opened_at)?,
        updated_at: t(r.updated_at)?,
        closed_at: r.closed_at.map(t).transpose()?,
        control_id: r.control_id,
        check_id: r.check_id,
        title: r.title,
        threats: r.threats,
        likelihood: r.likelihood.parse().map_err(|_| StoreError::Corrupt("risk likelihood".into()))?,
        impact: r.impact.parse().map_err(|_| StoreError::Corrupt("risk impact".into()))?,
        affected_hosts: r.affected_hosts.into_iter().collect(),
    })
}

/// Runs the keeper until `shutdown` turns true.
pub fn spawn(
    store: Arc<Store>,
    catalog: Arc<Catalog>,
    changed: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let store = Arc::clone(&store);
            let catalog = Arc::clone(&catalog);
            let pass = tokio::task::spawn_blocking(move || {
                reconcile_once(&store, &catalog, OffsetDateTime::now_utc())
            })
            .await;
            match pass {
                Ok(Ok(writes)) if !writes.is_empty() => {
                    tracing::info!(changes = writes.len(), "risk register updated")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "risk reconciliation failed"),
                Err(e) => tracing::error!(error = %e, "risk reconciliation panicked"),
            }
            tokio::select! {
                _ = changed.notified() => {
                    // Let a burst of commits settle into one pass.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = crate::app::stopped(&mut shutdown) => return,
            }
        }
    })
}
