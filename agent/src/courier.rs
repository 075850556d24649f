//! The agent's network side: connects, renews the client certificate,
//! fetches the policy and delivers the spool, each exchange bounded by its
//! deadlines and retried with jittered backoff.
//!
//! Invariants: the courier has its own connection to the spool, so a
//! server that does not answer holds up delivery only, never collection;
//! a policy the server sends is saved before it is applied, so the next
//! start collects by it even when the server is away.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::deadlines::{Backoff, Deadlines};
use crate::policy::ActivePolicy;
use crate::spool::{Spool, SpoolError};
use crate::state::{AgentIdentity, StateDir, StateError, new_tls_key_and_csr, write_private};
use crate::transport::{self, DeliveryReport, Link, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum CourierError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("certificate renewal: {0}")]
    Renewal(String),
}

/// Shortest and longest pause between failed delivery attempts.
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

pub struct Courier {
    pub state: StateDir,
    pub identity: AgentIdentity,
    spool: Spool,
    deadlines: Deadlines,
}

impl Courier {
    /// A courier for the enrolled agent in `state`, with its own spool connection.
    pub fn open(
        state: StateDir,
        spool_max_records: u64,
        deadlines: Deadlines,
    ) -> Result<Courier, CourierError> {
        let identity = state.load_identity()?;
        let spool = Spool::open(&state.spool(), spool_max_records)?;
        Ok(Courier { state, identity, spool, deadlines })
    }

    /// An mTLS link with the current client certificate.
    pub async fn link(&self) -> Result<Link, CourierError> {
        let ca = self.state.read(&self.state.ca_cert())?;
        let cert = self.state.read(&self.state.client_cert())?;
        let key = self.state.read(&self.state.tls_key())?;
        let id = &self.identity;
        Ok(transport::connect(&id.server, &id.server_name, &ca, Some((&cert, &key)), &self.deadlines).await?)
    }

    /// Renews the client certificate once two thirds of its lifetime passed.
    pub async fn renew_if_due(&mut self, link: &Link, now: i64) -> Result<bool, CourierError> {
        let id = &self.identity;
        let lifetime = (id.cert_not_after - id.cert_not_before).max(1);
        if now < id.cert_not_before + lifetime * 2 / 3 {
            return Ok(false);
        }
        let (tls_key, csr) = new_tls_key_and_csr().map_err(|e| CourierError::Renewal(e.to_string()))?;
        let (cert, not_after) = transport::renew(link, csr).await?;
        write_private(&self.state.tls_key(), tls_key.serialize_pem().as_bytes())?;
        write_private(&self.state.client_cert(), cert.as_bytes())?;
        self.identity.cert_not_before = now;
        self.identity.cert_not_after = not_after;
        self.state.save_identity(&self.identity)?;
        tracing::info!(not_after, "client certificate renewed");
        Ok(true)
    }

    /// Fetches the policy and saves it when it differs from `current`.
    pub async fn fetch_policy(
        &self,
        link: &Link,
        current: &ActivePolicy,
    ) -> Result<ActivePolicy, CourierError> {
        fetch_and_save_policy(&self.state, link, current).await
    }

    /// Renews if due, then delivers the spool over `link`.
    pub async fn deliver(&mut self, link: &Link) -> Result<DeliveryReport, CourierError> {
        self.renew_if_due(link, OffsetDateTime::now_utc().unix_timestamp()).await?;
        Ok(transport::deliver(link, &mut self.spool).await?)
    }

    /// Connects, then delivers: one delivery attempt.
    pub async fn connect_and_deliver(&mut self) -> Result<DeliveryReport, CourierError> {
        let link = self.link().await?;
        self.deliver(&link).await
    }

    /// Runs until dropped: polls the policy every `poll` and publishes it on
    /// `policy`; delivers whenever the collector signals `appended` or
    /// records wait, pausing with jittered backoff while attempts fail.
    pub async fn run(
        &mut self,
        policy: &watch::Sender<ActivePolicy>,
        appended: &Notify,
    ) -> Result<(), CourierError> {
        let mut next_poll = Instant::now();
        let mut next_delivery = Instant::now();
        let mut retry = Backoff::new(RETRY_MIN, RETRY_MAX);
        let mut failing = false;
        let mut first_poll = true;
        loop {
            if Instant::now() >= next_poll {
                self.poll_policy(policy, first_poll).await;
                first_poll = false;
                next_poll = Instant::now() + policy.borrow().poll;
            }
            if Instant::now() >= next_delivery && !self.spool.is_empty()? {
                failing = match self.connect_and_deliver().await {
                    Ok(r) => {
                        tracing::info!(accepted = r.accepted, duplicate = r.duplicate, "evidence delivered");
                        retry.reset();
                        false
                    }
                    Err(e) => {
                        let pause = retry.next_delay();
                        tracing::warn!(error = %e, retry_in_secs = pause.as_secs(), "delivery failed; records stay spooled");
                        next_delivery = Instant::now() + pause;
                        true
                    }
                };
            }
            let mut wake = next_poll;
            if !self.spool.is_empty()? {
                wake = wake.min(next_delivery);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                // New records go out at once, unless attempts are failing:
                // then they wait for the backoff like the rest.
                _ = appended.notified() => if !failing { next_delivery = Instant::now() },
            }
        }
    }

    /// One policy poll; on failure the current policy stays. The first poll
    /// of a run is always published, changed or not: the collector serves a
    /// "collect now" it carries with the full collection every start makes.
    async fn poll_policy(&self, policy: &watch::Sender<ActivePolicy>, first: bool) {
        let current = policy.borrow().clone();
        let fetched = match self.link().await {
            Ok(link) => self.fetch_policy(&link, &current).await,
            Err(e) => Err(e),
        };
        match fetched {
            Ok(p) => {
                policy.send_if_modified(|old| {
                    let changed = *old != p;
                    *old = p;
                    changed || first
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy fetch failed; collecting by the last policy");
                if first {
                    policy.send_modify(|_| {});
                }
            }
        }
    }
}

/// Fetches the policy over `link` and saves it in `state` when it differs
/// from `current`.
pub async fn fetch_and_save_policy(
    state: &StateDir,
    link: &Link,
    current: &ActivePolicy,
) -> Result<ActivePolicy, CourierError> {
    let received = transport::fetch_policy(link).await?;
    if received.policy != *current || !state.policy().exists() {
        write_private(&state.policy(), &received.saved_form)?;
    }
    Ok(received.policy)
}

/// The policy saved by an earlier run, if there is a readable one.
pub fn saved_policy(state: &StateDir) -> Option<ActivePolicy> {
    let path = state.policy();
    let bytes = std::fs::read(&path).ok()?;
    match transport::decode_saved_policy(&bytes) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "saved policy unreadable; using the defaults until the server answers");
            None
        }
    }
}
