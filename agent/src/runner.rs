//! The agent's main loop: collect each check when it falls due, sign the
//! record into the spool, and let the courier deliver it, poll the policy
//! and renew the certificate alongside.
//!
//! Invariant: collection never waits for the server. It runs by the last
//! policy the agent has; when the server is unreachable or hangs, records
//! accumulate in the spool and are delivered in order once it answers.

use std::sync::Arc;
use std::time::Duration;

use custos_proto::evidence::CheckResult;
use ed25519_dalek::SigningKey;
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::collect::{Context, Os, run_checks};
use crate::courier::{Courier, CourierError, saved_policy};
use crate::deadlines::Deadlines;
use crate::host::Host;
use crate::host_info::{describe_host, hostname};
use crate::policy::ActivePolicy;
use crate::privacy::{Personal, Privacy};
use crate::schedule::{Schedule, jitter_share};
use crate::signing::sign_record;
use crate::spool::{Appended, Spool, SpoolError};
use crate::state::{AgentIdentity, StateDir, StateError};
use crate::transport::{DeliveryReport, Link};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Courier(#[from] CourierError),
    #[error("this agent has no collectors for {0}")]
    UnsupportedOs(&'static str),
}

/// Settings of a running agent.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most records kept while the server is unreachable.
    pub spool_max_records: u64,
    /// Used until the server's policy is known.
    pub default_interval: Duration,
    pub default_collector_timeout: Duration,
    /// What happens to personal data before signing.
    pub privacy: Privacy,
    /// Host-group tags reported with every record (`tags` in agent.toml).
    pub tags: Vec<String>,
    /// Time limits on exchanges with the server (`[network]` in agent.toml).
    pub deadlines: Deadlines,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            spool_max_records: 10_000,
            default_interval: Duration::from_secs(3600),
            default_collector_timeout: Duration::from_secs(120),
            privacy: Privacy::default(),
            tags: Vec::new(),
            deadlines: Deadlines::default(),
        }
    }
}

/// What signs records: the agent's key and its view of the host.
struct Collector {
    agent_id: String,
    key: SigningKey,
    host: Arc<dyn Host>,
    os: Os,
    privacy: Privacy,
    tags: Vec<String>,
}

impl Collector {
    /// Runs `only` these checks (all when empty) under the policy's timeout.
    async fn run(&self, policy: &ActivePolicy, only: Vec<String>) -> Vec<CheckResult> {
        let host = Arc::clone(&self.host);
        let timeout = policy.collector_timeout;
        let ctx = Context::now(self.privacy.clone()).with_host_name(hostname(self.host.as_ref()).as_deref());
        let (ctx, os) = (Arc::new(ctx), self.os);
        tokio::task::spawn_blocking(move || run_checks(host, ctx, os, &only, timeout))
            .await
            .unwrap_or_default()
    }

    /// Signs `results` as the next record of the chain into `spool` (or
    /// counts a missed collection when the spool is full).
    fn sign_into(&self, spool: &mut Spool, results: Vec<CheckResult>) -> Result<Appended, RunError> {
        let now = OffsetDateTime::now_utc();
        let at = custos_proto::time::rfc3339(now).unwrap_or_default();
        let name = hostname(self.host.as_ref()).and_then(|h| self.privacy.apply(Personal::HostName, &h));
        let info = describe_host(self.host.as_ref(), name, &self.tags);
        let (key, agent_id) = (&self.key, self.agent_id.as_str());
        let appended = spool.append_with(now.unix_timestamp(), &at, |tip| {
            sign_record(key, agent_id, tip, &at, info, results)
        })?;
        if let Appended::Missed { missed_so_far } = appended {
            tracing::warn!(missed_so_far, "spool full: collection skipped and recorded as a gap");
        }
        Ok(appended)
    }
}

pub struct Agent {
    pub state: StateDir,
    /// The collector's connection to the spool (the courier has its own).
    pub spool: Spool,
    /// The policy collection runs by.
    pub policy: ActivePolicy,
    collector: Collector,
    courier: Courier,
    schedule: Schedule,
}

/// One pass of [`Agent::run_once`].
#[derive(Debug, Clone)]
pub struct PassReport {
    pub results: Vec<CheckResult>,
    pub appended: Appended,
    pub delivery: Result<DeliveryReport, String>,
    pub spooled_after: u64,
}

impl Agent {
    /// Opens the enrolled agent in `state`, collecting by the saved policy
    /// (or the settings' defaults before the server sent one).
    pub fn open(state: StateDir, settings: &Settings, host: Arc<dyn Host>) -> Result<Agent, RunError> {
        state.check_permissions()?;
        let courier = Courier::open(state.clone(), settings.spool_max_records, settings.deadlines)?;
        let collector = Collector {
            agent_id: courier.identity.agent_id.clone(),
            key: state.load_evidence_key()?,
            host,
            os: Os::current().ok_or(RunError::UnsupportedOs(std::env::consts::OS))?,
            privacy: settings.privacy.clone(),
            tags: settings.tags.clone(),
        };
        let policy = saved_policy(&state).unwrap_or_else(|| {
            ActivePolicy::initial(settings.default_interval, settings.default_collector_timeout)
        });
        Ok(Agent {
            spool: Spool::open(&state.spool(), settings.spool_max_records)?,
            state,
            policy,
            collector,
            courier,
            schedule: Schedule::default(),
        })
    }

    /// Who this agent is and which server it reports to.
    pub fn identity(&self) -> &AgentIdentity {
        &self.courier.identity
    }

    /// An mTLS link with the current client certificate.
    pub async fn link(&self) -> Result<Link, RunError> {
        Ok(self.courier.link().await?)
    }

    /// The link's channel, for callers that speak to the server directly.
    pub async fn channel(&self) -> Result<tonic::transport::Channel, RunError> {
        Ok(self.link().await?.channel)
    }

    /// Collects every check of the policy now and signs the result into the spool.
    pub async fn collect(&mut self) -> Result<(Vec<CheckResult>, Appended), RunError> {
        let only = self.policy.checks.clone();
        self.collect_only(only).await
    }

    /// Collects `only` these checks (all when empty) and signs one record.
    pub async fn collect_only(
        &mut self,
        only: Vec<String>,
    ) -> Result<(Vec<CheckResult>, Appended), RunError> {
        let results = self.collector.run(&self.policy, only).await;
        let appended = self.collector.sign_into(&mut self.spool, results.clone())?;
        Ok((results, appended))
    }

    /// Signs `results` as the next record of the chain into the spool.
    pub fn sign_into_spool(&mut self, results: Vec<CheckResult>) -> Result<Appended, RunError> {
        self.collector.sign_into(&mut self.spool, results)
    }

    /// Renews the client certificate once two thirds of its lifetime passed.
    pub async fn renew_if_due(&mut self, now: i64) -> Result<bool, RunError> {
        let link = self.courier.link().await?;
        Ok(self.courier.renew_if_due(&link, now).await?)
    }

    /// Fetches the policy; returns whether the server asked for a fresh
    /// collection since the last fetch.
    pub async fn refresh_policy(&mut self) -> Result<bool, RunError> {
        let link = self.courier.link().await?;
        let p = self.courier.fetch_policy(&link, &self.policy).await?;
        let collect_now = p.collect_now_generation > self.policy.collect_now_generation;
        self.policy = p;
        Ok(collect_now)
    }

    /// Delivers the spool; returns what was acknowledged.
    pub async fn deliver(&mut self) -> Result<DeliveryReport, RunError> {
        Ok(self.courier.connect_and_deliver().await?)
    }

    /// Collect by the last policy, then (over one connection) fetch the
    /// policy and deliver. A server that is away or hangs costs bounded
    /// time and is reported, not fatal: the record stays spooled.
    pub async fn run_once(&mut self) -> Result<PassReport, RunError> {
        let (results, appended) = self.collect().await?;
        let delivery = match self.courier.link().await {
            Ok(link) => {
                match self.courier.fetch_policy(&link, &self.policy).await {
                    Ok(p) => self.policy = p,
                    Err(e) => tracing::warn!(error = %e, "policy fetch failed; keeping the last policy"),
                }
                self.courier.deliver(&link).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        Ok(PassReport { results, appended, delivery, spooled_after: self.spool.len()? })
    }

    /// Runs until `stop` resolves: collects each check when it falls due
    /// (or at once when the server asks) while the courier, alongside,
    /// polls the policy and delivers with backoff. Neither waits on the other.
    pub async fn run_forever(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), RunError> {
        let (policy_tx, mut policy_rx) = watch::channel(self.policy.clone());
        let appended = Notify::new();
        let ended = {
            let courier = self.courier.run(&policy_tx, &appended);
            let collect =
                collect_loop(&self.collector, &mut self.spool, &mut self.schedule, &mut policy_rx, &appended);
            tokio::select! {
                _ = stop => Ok(()),
                r = courier => r.map_err(RunError::from),
                r = collect => r,
            }
        };
        self.policy = policy_rx.borrow().clone();
        ended
    }
}

/// Collects what falls due by the latest policy, forever; tells the courier
/// after each record.
async fn collect_loop(
    collector: &Collector,
    spool: &mut Spool,
    schedule: &mut Schedule,
    policy: &mut watch::Receiver<ActivePolicy>,
    appended: &Notify,
) -> Result<(), RunError> {
    let mut seen_generation = policy.borrow().collect_now_generation;
    // At start every check is due anyway: a request the first poll brings
    // (made before this agent started) is served by that, not by a second
    // collection. The courier always publishes its first poll.
    let mut first_update = true;
    loop {
        let p = policy.borrow_and_update().clone();
        let active = p.active_checks();
        let due = schedule.due(&active, std::time::Instant::now());
        if !due.is_empty() {
            let results = collector.run(&p, due.clone()).await;
            let checks = results.len();
            collector.sign_into(spool, results)?;
            appended.notify_one();
            let done = std::time::Instant::now();
            for c in &due {
                schedule.collected(c, done, p.interval_of(c), jitter_share(p.jitter_percent));
            }
            tracing::debug!(checks, "collected and spooled");
        }
        let wake = schedule.next_due(&active).map(tokio::time::Instant::from_std);
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            changed = policy.changed() => {
                if changed.is_err() {
                    // The courier is gone; run_forever is ending.
                    return Ok(());
                }
                let g = policy.borrow().collect_now_generation;
                if g > seen_generation {
                    if !first_update {
                        tracing::info!("fresh collection requested by the server");
                        schedule.all_due();
                    }
                    seen_generation = g;
                }
                first_update = false;
            }
        }
    }
}
