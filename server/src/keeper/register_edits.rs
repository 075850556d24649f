//! The `custos-server risk` commands: list, export, record, update and
//! accept register entries in a data dir, with or without the server
//! running (SQLite serialises the writes; each change is one transaction).

use std::path::Path;

use time::OffsetDateTime;

use crate::config::Config;
use crate::datadir::DataDir;
use crate::datadir::catalog_imports::load_catalog;
use crate::register::lifecycle::{ManualRisk, Patch, accept, create_manual, update};
use crate::register::{RiskEntry, RiskError, RiskPolicy, Transition, export};
use crate::store::Store;
use crate::store::risks::{HistoryRow, RiskFilter};

/// A data dir's register with the configuration that rates it.
pub struct Register {
    pub store: Store,
    pub config: Config,
    dir: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Import(#[from] crate::datadir::catalog_imports::ImportError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Refused(#[from] RiskError),
    #[error("no risk with id {0}")]
    NotFound(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
}

impl Register {
    pub fn open(dir: &Path) -> Result<Register, RegisterError> {
        let data = DataDir(dir.to_path_buf());
        let config = Config::load(&data.config())?;
        let store = Store::open(&data.database())?;
        Ok(Register { store, config, dir: dir.to_path_buf() })
    }

    pub fn policy(&self) -> RiskPolicy {
        self.config.risk.policy()
    }

    pub fn list(&self, filter: &RiskFilter) -> Result<Vec<RiskEntry>, RegisterError> {
        Ok(self.store.risks(filter)?)
    }

    pub fn history(&self, id: i64) -> Result<(RiskEntry, Vec<HistoryRow>), RegisterError> {
        let entry = self.store.risk(id)?.ok_or(RegisterError::NotFound(id))?;
        Ok((entry, self.store.risk_history(id)?))
    }

    pub fn csv(&self, filter: &RiskFilter) -> Result<Vec<u8>, RegisterError> {
        Ok(export::to_csv(&self.list(filter)?, &self.policy().matrix)?)
    }

    /// Parses a likelihood or impact given as a step or a label of the matrix.
    pub fn step(&self, text: &str, impact: bool) -> Result<u8, RegisterError> {
        self.policy().matrix.parse_step(text, impact).map_err(RegisterError::Invalid)
    }

    pub fn add(
        &self,
        input: ManualRisk,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<RiskEntry, RegisterError> {
        if let Some(req) = &input.requirement {
            let catalog = load_catalog(&self.dir)?;
            if catalog.control(req).is_none() {
                return Err(RegisterError::Invalid(format!("requirement {req:?} is not in the catalog")));
            }
        }
        let t = create_manual(input, &self.policy(), actor, now)?;
        Ok(self.store.insert_risk(t, |ts| self.notify(ts, now))?.entry)
    }

    pub fn update(
        &self,
        id: i64,
        patch: Patch,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<RiskEntry, RegisterError> {
        let policy = self.policy();
        self.change(id, now, |e| update(e, patch, &policy, actor, now))
    }

    /// Webhook deliveries for changes made here; the running server sends them.
    fn notify(&self, ts: &[Transition], now: OffsetDateTime) -> Vec<crate::store::webhooks::NewDelivery> {
        crate::webhook::deliveries_for_transitions(&self.config.webhooks, ts, now.unix_timestamp())
    }

    pub fn accept(
        &self,
        id: i64,
        approver: &str,
        justification: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<RiskEntry, RegisterError> {
        let policy = self.policy();
        self.change(id, now, |e| accept(e, approver, justification, expires_at, &policy, now))
    }

    fn change(
        &self,
        id: i64,
        now: OffsetDateTime,
        f: impl FnOnce(&RiskEntry) -> Result<Transition, RiskError>,
    ) -> Result<RiskEntry, RegisterError> {
        match self.store.change_risk(id, f, |ts| self.notify(ts, now))? {
            None => Err(RegisterError::NotFound(id)),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(t)) => Ok(t.entry),
        }
    }
}

/// A fixed-width table of entries for a terminal.
pub fn table(entries: &[RiskEntry]) -> String {
    let mut out = format!(
        "{:>5}  {:<9}  {:<12}  {:<12}  {:>8}  {:<10}  {}\n",
        "id", "level", "status", "owner", "hosts", "due", "title"
    );
    for e in entries {
        let due = e
            .due_at
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
            .map(|t| t.date().to_string())
            .unwrap_or_else(|| "-".into());
        let hosts = if e.origin == crate::register::Origin::Manual {
            "-".to_string()
        } else {
            format!("{}/{}", e.affected_hosts.len(), e.in_scope_hosts)
        };
        out.push_str(&format!(
            "{:>5}  {:<9}  {:<12}  {:<12}  {:>8}  {:<10}  {}\n",
            e.id,
            e.current.level.to_string(),
            e.status.to_string(),
            e.owner.as_deref().unwrap_or("-"),
            hosts,
            due,
            e.title
        ));
    }
    out
}
