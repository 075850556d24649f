//! The agent's main loop: fetch policy, collect, sign into the spool,
//! deliver, renew the client certificate before it expires, repeat.
//!
//! Invariant: collection never waits for the server. When the server is
//! unreachable, records accumulate in the spool and are delivered in order
//! once it answers again.

use std::sync::Arc;
use std::time::Duration;

use custos_proto::evidence::CheckResult;
use ed25519_dalek::SigningKey;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::transport::Channel;

use crate::collect::{Context, Os, run_checks};
use crate::host::Host;
use crate::privacy::{Personal, Privacy};
use crate::record::{describe_host, hostname, sign_record};
use crate::schedule::{Schedule, jitter_share};
use crate::spool::{Appended, Spool, SpoolError};
use crate::state::{AgentIdentity, StateDir, StateError, write_private};
use crate::transport::{self, DeliveryReport, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("certificate renewal: {0}")]
    Renewal(String),
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            spool_max_records: 10_000,
            default_interval: Duration::from_secs(3600),
            default_collector_timeout: Duration::from_secs(120),
            privacy: Privacy::default(),
            tags: Vec::new(),
        }
    }
}

/// What the server currently asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivePolicy {
    /// Interval of checks without their own.
    pub interval: Duration,
    pub collector_timeout: Duration,
    /// Checks to run; empty means every check the agent knows.
    pub checks: Vec<String>,
    pub check_intervals: std::collections::BTreeMap<String, Duration>,
    pub jitter_percent: u32,
    /// How often to ask for the policy again.
    pub poll: Duration,
    /// The server's collect-now counter as last seen.
    pub collect_now_generation: u64,
}

impl ActivePolicy {
    /// The checks this policy runs.
    pub fn active_checks(&self) -> Vec<String> {
        if self.checks.is_empty() {
            crate::collect::CHECKS.iter().map(|c| c.id.to_string()).collect()
        } else {
            self.checks.clone()
        }
    }

    pub fn interval_of(&self, check: &str) -> Duration {
        self.check_intervals.get(check).copied().unwrap_or(self.interval)
    }
}

pub struct Agent {
    pub state: StateDir,
    pub identity: AgentIdentity,
    key: SigningKey,
    pub spool: Spool,
    host: Arc<dyn Host>,
    os: Os,
    privacy: Privacy,
    tags: Vec<String>,
    pub policy: ActivePolicy,
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
    pub fn open(state: StateDir, settings: &Settings, host: Arc<dyn Host>) -> Result<Agent, RunError> {
        state.check_permissions()?;
        let identity = state.load_identity()?;
        let key = state.load_evidence_key()?;
        let spool = Spool::open(&state.spool(), settings.spool_max_records)?;
        let os = Os::current().ok_or(RunError::UnsupportedOs(std::env::consts::OS))?;
        Ok(Agent {
            state,
            identity,
            key,
            spool,
            host,
            os,
            privacy: settings.privacy.clone(),
            tags: settings.tags.clone(),
            policy: ActivePolicy {
                interval: settings.default_interval,
                collector_timeout: settings.default_collector_timeout,
                checks: Vec::new(),
                check_intervals: Default::default(),
                jitter_percent: 0,
                poll: Duration::from_secs(60),
                collect_now_generation: 0,
            },
            schedule: Schedule::default(),
        })
    }

    /// An mTLS channel with the current client certificate.
    pub async fn channel(&self) -> Result<Channel, RunError> {
        let ca = self.state.read(&self.state.ca_cert())?;
        let cert = self.state.read(&self.state.client_cert())?;
        let key = self.state.read(&self.state.tls_key())?;
        Ok(transport::connect(&self.identity.server, &self.identity.server_name, &ca, Some((&cert, &key)))
            .await?)
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
        let host = Arc::clone(&self.host);
        let timeout = self.policy.collector_timeout;
        let ctx = Context::now(self.privacy.clone()).with_host_name(hostname(self.host.as_ref()).as_deref());
        let (ctx, os) = (Arc::new(ctx), self.os);
        let results = tokio::task::spawn_blocking(move || run_checks(host, ctx, os, &only, timeout))
            .await
            .unwrap_or_default();
        let appended = self.sign_into_spool(results.clone())?;
        Ok((results, appended))
    }

    /// Signs `results` as the next record of the chain into the spool (or
    /// counts a missed collection when the spool is full).
    pub fn sign_into_spool(&mut self, results: Vec<CheckResult>) -> Result<Appended, RunError> {
        let now = OffsetDateTime::now_utc();
        let at = now.format(&Rfc3339).unwrap_or_default();
        let name = hostname(self.host.as_ref()).and_then(|h| self.privacy.apply(Personal::HostName, &h));
        let info = describe_host(self.host.as_ref(), name, &self.tags);
        let (key, agent_id) = (&self.key, self.identity.agent_id.as_str());
        let appended = self.spool.append_with(now.unix_timestamp(), &at, |tip| {
            sign_record(key, agent_id, tip, &at, info, results)
        })?;
        if let Appended::Missed { missed_so_far } = appended {
            tracing::warn!(missed_so_far, "spool full: collection skipped and recorded as a gap");
        }
        Ok(appended)
    }

    /// Renews the client certificate once two thirds of its lifetime passed.
    pub async fn renew_if_due(&mut self, now: i64) -> Result<bool, RunError> {
        let id = &self.identity;
        let lifetime = (id.cert_not_after - id.cert_not_before).max(1);
        if now < id.cert_not_before + lifetime * 2 / 3 {
            return Ok(false);
        }
        let channel = self.channel().await?;
        let (tls_key, csr) =
            crate::enroll::new_tls_key_and_csr().map_err(|e| RunError::Renewal(e.to_string()))?;
        let (cert, not_after) = transport::renew(channel, csr).await?;
        write_private(&self.state.tls_key(), tls_key.serialize_pem().as_bytes())?;
        write_private(&self.state.client_cert(), cert.as_bytes())?;
        self.identity.cert_not_before = now;
        self.identity.cert_not_after = not_after;
        self.state.save_identity(&self.identity)?;
        tracing::info!(not_after, "client certificate renewed");
        Ok(true)
    }

    /// Fetches the policy (keeping the current one if the server is away).
    /// Returns whether the server asked for a fresh collection since the
    /// last fetch.
    pub async fn refresh_policy(&mut self, channel: Channel) -> Result<bool, RunError> {
        let p = transport::fetch_policy(channel).await?;
        let secs = |s: u32, min: u32| Duration::from_secs(u64::from(s.max(min)));
        let collect_now = p.collect_now_generation > self.policy.collect_now_generation;
        self.policy = ActivePolicy {
            interval: secs(p.interval_seconds, 10),
            collector_timeout: secs(p.collector_timeout_seconds, 1),
            checks: p.checks,
            check_intervals: p.check_interval_seconds.into_iter().map(|(c, s)| (c, secs(s, 10))).collect(),
            jitter_percent: p.jitter_percent.min(50),
            // Older servers send no poll interval: poll once a minute.
            poll: if p.poll_seconds == 0 { Duration::from_secs(60) } else { secs(p.poll_seconds, 5) },
            collect_now_generation: p.collect_now_generation,
        };
        Ok(collect_now)
    }

    /// Delivers the spool; returns what was acknowledged.
    pub async fn deliver(&mut self) -> Result<DeliveryReport, RunError> {
        self.renew_if_due(OffsetDateTime::now_utc().unix_timestamp()).await?;
        let channel = self.channel().await?;
        Ok(transport::deliver(channel, &mut self.spool).await?)
    }

    /// Policy, collect, deliver: one pass. Delivery failure is reported, not
    /// fatal: the record stays spooled.
    pub async fn run_once(&mut self) -> Result<PassReport, RunError> {
        if let Ok(channel) = self.channel().await
            && let Err(e) = self.refresh_policy(channel).await
        {
            tracing::warn!(error = %e, "policy fetch failed; keeping the current policy");
        }
        let (results, appended) = self.collect().await?;
        let delivery = self.deliver().await.map_err(|e| e.to_string());
        Ok(PassReport { results, appended, delivery, spooled_after: self.spool.len()? })
    }

    /// Runs until `stop` resolves: polls the policy, collects each check
    /// when it falls due (or at once when the server asks), and retries
    /// delivery with backoff while records wait.
    pub async fn run_forever(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), RunError> {
        tokio::pin!(stop);
        let mut next_poll = tokio::time::Instant::now();
        let mut backoff = Duration::from_secs(5);
        let mut first_poll = true;
        loop {
            let now = tokio::time::Instant::now();
            if now >= next_poll {
                match self.channel().await {
                    Ok(channel) => match self.refresh_policy(channel).await {
                        // At start every check is due anyway; a request
                        // made before this agent started is served by that.
                        Ok(true) if !first_poll => {
                            tracing::info!("fresh collection requested by the server");
                            self.schedule.all_due();
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "policy fetch failed; keeping the current policy")
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "no channel for the policy fetch"),
                }
                first_poll = false;
                next_poll = tokio::time::Instant::now() + self.policy.poll;
            }
            let active = self.policy.active_checks();
            let due = self.schedule.due(&active, now.into_std());
            if !due.is_empty() {
                let (results, _) = self.collect_only(due.clone()).await?;
                let done = std::time::Instant::now();
                for c in &due {
                    let jitter = jitter_share(self.policy.jitter_percent);
                    self.schedule.collected(c, done, self.policy.interval_of(c), jitter);
                }
                match self.deliver().await {
                    Ok(r) => {
                        tracing::info!(checks = results.len(), accepted = r.accepted, "evidence delivered");
                        backoff = Duration::from_secs(5);
                    }
                    Err(e) => tracing::warn!(error = %e, "delivery failed; will retry"),
                }
            } else if !self.spool.is_empty()? {
                match self.deliver().await {
                    Ok(_) => backoff = Duration::from_secs(5),
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery retry failed");
                        backoff = (backoff * 2).min(Duration::from_secs(300));
                    }
                }
            }
            let mut wake = next_poll;
            if let Some(t) = self.schedule.next_due(&self.policy.active_checks()) {
                wake = wake.min(tokio::time::Instant::from_std(t));
            }
            if !self.spool.is_empty()? {
                wake = wake.min(tokio::time::Instant::now() + backoff);
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}
