//! Webhooks: tells other systems (a ticketing system, a chat channel) when
//! the risk register changes.
//!
//! The flow is durable: [`enqueue`] renders one body per matching webhook and
//! writes one `webhook_deliveries` row each, in one transaction, when the
//! event happens; the worker ([`spawn`], one pass is [`deliver_due`]) sends
//! what is due and keeps the outcome of every attempt. Delivery is *at least
//! once*: a crash after the receiver answered but before the outcome was
//! stored sends the same delivery again, with the same `X-Custos-Delivery` id.
//!
//! # What a receiver gets
//!
//! `POST` with `Content-Type: application/json` and the headers
//! `X-Custos-Event` (`risk.opened`, `risk.escalated`, `risk.accepted`,
//! `risk.acceptance_expired`, `risk.closed`, `risk.reopened`),
//! `X-Custos-Delivery` (random hex, the same on every retry),
//! `X-Custos-Timestamp` (Unix seconds of this attempt) and
//! `X-Custos-Signature: sha256=<hex>`: every webhook has a secret, and no
//! delivery is ever sent unsigned. Any 2xx answer is
//! success; 408, 429 and 5xx (and no answer) are retried with exponential
//! backoff, honouring `Retry-After: <seconds>` on 429/503; other answers,
//! redirects included, fail the delivery at once.
//!
//! # Verifying a delivery
//!
//! The signature is HMAC-SHA256, keyed with the secret, over the timestamp
//! header's text, a `.`, and the raw body bytes:
//!
//! 1. Read `X-Custos-Timestamp` and refuse it when it is more than five
//!    minutes away from your clock: the timestamp is inside the MAC, so this
//!    stops an old delivery from being replayed.
//! 2. Compute `hex(HMAC-SHA256(secret, timestamp + "." + body))` over the body
//!    exactly as received (before any JSON parsing).
//! 3. Compare `"sha256=" + that` with `X-Custos-Signature` in constant time
//!    ([`verify`] does steps 2 and 3).
//! 4. Deduplicate on `X-Custos-Delivery`.
//!
//! The secret is the secret file's text without trailing whitespace (so a
//! file written by `openssl rand -hex 32 > webhook.key` works as is); it must
//! be at least 32 bytes. `secret_file` is required: [`validate`] refuses a
//! webhook without one, and the server refuses to start when a secret file
//! is missing, empty or short ([`check_secrets`]). The file is read again at
//! every send, so a rotation needs no restart; a secret that has gone
//! missing or short since is recorded as the attempt's error and nothing is
//! sent unsigned.

mod deliver;
mod format;
mod sign;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::webhooks::NewDelivery;
use crate::store::{Store, StoreError};

pub use deliver::{WebhookClient, deliver_due, retry_delay, spawn};
pub use format::render;
pub use sign::{MIN_SECRET_BYTES, load_secret, signature, verify};

/// What happened to a risk entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskEventKind {
    Opened,
    Escalated,
    Accepted,
    AcceptanceExpired,
    Closed,
    Reopened,
}

impl RiskEventKind {
    pub const ALL: [RiskEventKind; 6] = [
        RiskEventKind::Opened,
        RiskEventKind::Escalated,
        RiskEventKind::Accepted,
        RiskEventKind::AcceptanceExpired,
        RiskEventKind::Closed,
        RiskEventKind::Reopened,
    ];

    /// The name in configuration files (`events = ["opened"]`).
    pub fn as_str(self) -> &'static str {
        match self {
            RiskEventKind::Opened => "opened",
            RiskEventKind::Escalated => "escalated",
            RiskEventKind::Accepted => "accepted",
            RiskEventKind::AcceptanceExpired => "acceptance_expired",
            RiskEventKind::Closed => "closed",
            RiskEventKind::Reopened => "reopened",
        }
    }

    /// The event type on the wire (`X-Custos-Event`, `"type"`): `risk.opened`.
    pub fn event_type(self) -> String {
        format!("risk.{}", self.as_str())
    }
}

/// A risk-register event, as the lifecycle reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskNotice {
    pub kind: RiskEventKind,
    pub risk_id: i64,
    pub title: String,
    /// The requirement the risk is about, e.g. `iso27001:2022/A.8.7`.
    pub requirement: Option<String>,
    /// e.g. `high`.
    pub level: String,
    /// `open`, `in_treatment`, `accepted` or `closed`.
    pub status: String,
    pub affected_hosts: usize,
    pub owner: Option<String>,
    /// Unix seconds.
    pub due: Option<i64>,
    /// Unix seconds, when it happened.
    pub at: i64,
    /// URL of the entry in the dashboard or API, if known.
    pub link: Option<String>,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Custos' own JSON document.
    #[default]
    Json,
    /// A Slack incoming-webhook message (also understood by Mattermost and
    /// other Slack-compatible receivers).
    Slack,
}

/// One configured endpoint (`[[webhook]]` in the server's `config.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique, `[a-z0-9-]`; deliveries are stored under this name.
    pub name: String,
    /// `http` or `https`.
    pub url: String,
    /// HMAC key file (at least 32 bytes), relative to the data dir.
    /// Required: an absent key deserialises as an empty path, which
    /// [`validate`] refuses naming the webhook (serde's own "missing field"
    /// would not say which one).
    #[serde(default)]
    pub secret_file: PathBuf,
    /// The events to send; empty means all.
    #[serde(default)]
    pub events: Vec<RiskEventKind>,
    #[serde(default)]
    pub format: Format,
    /// Attempts before a delivery is given up as failed.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Time limit of one attempt (connect, send, answer).
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

fn default_max_attempts() -> u32 {
    8
}

fn default_timeout_seconds() -> u64 {
    10
}

/// Upper bounds that keep a typo from parking a delivery for days.
const MAX_ATTEMPTS_LIMIT: u32 = 50;
const MAX_TIMEOUT_SECONDS: u64 = 300;
const MAX_NAME_LEN: usize = 64;

impl WebhookConfig {
    /// Whether this webhook wants events of `kind`.
    pub fn wants(&self, kind: RiskEventKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {name:?}: {message}")]
    Config { name: String, message: String },
    #[error("risk {risk_id}: {field} {value} is not a representable time")]
    Time { risk_id: i64, field: &'static str, value: i64 },
    #[error("secret file {path}: {source}")]
    SecretRead { path: PathBuf, source: std::io::Error },
    #[error("secret file {path} is empty; write at least {MIN_SECRET_BYTES} bytes (`openssl rand -hex 32`)")]
    SecretEmpty { path: PathBuf },
    #[error("secret file {path}: {len} bytes, at least {MIN_SECRET_BYTES} are needed")]
    SecretShort { path: PathBuf, len: usize },
    #[error("secret file {path}: larger than {max} bytes, not a key")]
    SecretLong { path: PathBuf, max: usize },
    #[error("webhook HTTP client: {0}")]
    Client(String),
    #[error("webhook body: {0}")]
    Body(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("webhook worker: {0}")]
    Task(String),
}

/// Checks a set of webhook configurations: names unique and `[a-z0-9-]`,
/// URLs `http(s)://host...`, a `secret_file` named, limits in range. The
/// server refuses to start on an error here rather than fail every delivery
/// later.
pub fn validate(configs: &[WebhookConfig]) -> Result<(), WebhookError> {
    let mut names = BTreeSet::new();
    for c in configs {
        let bad = |message: String| WebhookError::Config { name: c.name.clone(), message };
        if c.name.is_empty()
            || c.name.len() > MAX_NAME_LEN
            || !c.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad(format!("name must be 1 to {MAX_NAME_LEN} characters of a-z, 0-9 and -")));
        }
        if !names.insert(c.name.as_str()) {
            return Err(bad("name is used by more than one webhook".into()));
        }
        check_url(&c.url).map_err(bad)?;
        if c.max_attempts == 0 || c.max_attempts > MAX_ATTEMPTS_LIMIT {
            return Err(bad(format!("max_attempts must be 1 to {MAX_ATTEMPTS_LIMIT}")));
        }
        if c.timeout_seconds == 0 || c.timeout_seconds > MAX_TIMEOUT_SECONDS {
            return Err(bad(format!("timeout_seconds must be 1 to {MAX_TIMEOUT_SECONDS}")));
        }
        if c.secret_file.as_os_str().is_empty() {
            return Err(bad(format!(
                "secret_file is required: every delivery is signed with HMAC-SHA256 \
                 (create one in the data dir with `openssl rand -hex 32 > {}.key`)",
                c.name
            )));
        }
    }
    Ok(())
}

/// Reads every webhook's secret file (relative to `data_dir`) once at
/// start: a webhook that could not sign is refused then, naming the webhook
/// and the file, rather than failing each of its deliveries later.
pub async fn check_secrets(configs: &[WebhookConfig], data_dir: &Path) -> Result<(), WebhookError> {
    for c in configs {
        load_secret(&data_dir.join(&c.secret_file))
            .await
            .map_err(|e| WebhookError::Config { name: c.name.clone(), message: e.to_string() })?;
    }
    Ok(())
}

/// The URL as the sender will use it, or why it cannot be used. The message
/// never repeats the URL: Slack-style URLs carry their secret in the path.
pub(crate) fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url is not valid: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("url scheme {:?} is not http or https", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    Ok(parsed)
}

/// The deliveries `notice` causes: one per configured webhook that wants
/// its kind, each with its body rendered and a fresh delivery id. Pure but
/// for the random ids; code that changes the risk register can insert these
/// inside its own transaction (`store::webhooks::insert_deliveries`), so the
/// change and its notifications commit together.
pub fn deliveries_for(
    configs: &[WebhookConfig],
    notice: &RiskNotice,
    now: i64,
) -> Result<Vec<NewDelivery>, WebhookError> {
    configs
        .iter()
        .filter(|c| c.wants(notice.kind))
        .map(|c| {
            let id = hex::encode(crate::identity::secrets::random::<16>());
            Ok(NewDelivery {
                body: render(c.format, &id, notice)?,
                id,
                webhook: c.name.clone(),
                event: notice.kind.event_type(),
                risk_id: notice.risk_id,
                created_at: now,
            })
        })
        .collect()
}

/// The notices a register transition makes: one per event a receiver
/// cares about (people's edits and host-list changes make none).
pub fn notices(t: &crate::register::Transition) -> Vec<RiskNotice> {
    use crate::register::Change;
    let e = &t.entry;
    t.events
        .iter()
        .filter_map(|ev| {
            let kind = match ev.change {
                Change::Opened | Change::Created => RiskEventKind::Opened,
                Change::Reopened => RiskEventKind::Reopened,
                Change::Escalated | Change::AcceptanceVoided => RiskEventKind::Escalated,
                Change::Accepted => RiskEventKind::Accepted,
                Change::AcceptanceExpired => RiskEventKind::AcceptanceExpired,
                Change::Closed => RiskEventKind::Closed,
                Change::HostsChanged | Change::Lowered | Change::Updated => return None,
            };
            Some(RiskNotice {
                kind,
                risk_id: e.id,
                title: e.title.clone(),
                requirement: e.requirement.clone(),
                level: e.current.level.to_string(),
                status: e.status.to_string(),
                affected_hosts: e.affected_hosts.len(),
                owner: e.owner.clone(),
                due: e.due_at,
                at: ev.at,
                link: Some(format!("/api/v1/risks/{}", e.id)),
            })
        })
        .collect()
}

/// The deliveries for every notice of `transitions` (ids assigned), to be
/// queued in the transaction that stores them. A notice that cannot be
/// rendered is logged and skipped: it must not hold up the register.
pub fn deliveries_for_transitions(
    configs: &[WebhookConfig],
    transitions: &[crate::register::Transition],
    now: i64,
) -> Vec<NewDelivery> {
    let mut out = Vec::new();
    for n in transitions.iter().flat_map(notices) {
        match deliveries_for(configs, &n, now) {
            Ok(rows) => out.extend(rows),
            Err(e) => tracing::error!(error = %e, risk = n.risk_id, "webhook notice not queued"),
        }
    }
    out
}

/// Queues `notice` for every webhook that wants it, in one transaction.
/// Returns how many deliveries were queued.
pub fn enqueue(
    store: &Store,
    configs: &[WebhookConfig],
    notice: &RiskNotice,
    now: i64,
) -> Result<usize, WebhookError> {
    let rows = deliveries_for(configs, notice, now)?;
    store.enqueue_webhook_deliveries(&rows)?;
    Ok(rows.len())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn notice(kind: RiskEventKind) -> RiskNotice {
        RiskNotice {
            kind,
            risk_id: 42,
            title: "Malware protection missing".into(),
            requirement: Some("iso27001:2022/A.8.7".into()),
            level: "high".into(),
            status: "open".into(),
            affected_hosts: 3,
            owner: Some("it-ops".into()),
            due: Some(1_767_225_600), // 2026-01-01T00:00:00Z
            at: 1_764_547_200,        // 2025-12-01T00:00:00Z
            link: Some("https://custos.example/risks/42".into()),
        }
    }

    pub(crate) fn hook(name: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: "https://hooks.example/in".into(),
            secret_file: format!("{name}.key").into(),
            events: Vec::new(),
            format: Format::Json,
            max_attempts: 8,
            timeout_seconds: 10,
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        #[derive(Deserialize)]
        struct File {
            webhook: Vec<WebhookConfig>,
        }
        let f: File = toml::from_str(
            "[[webhook]]\nname = \"ops\"\nurl = \"https://x.example/h\"\nsecret_file = \"ops.key\"\n\n\
             [[webhook]]\nname = \"chat\"\nurl = \"http://chat.example/hooks/T1\"\nformat = \"slack\"\n\
             events = [\"opened\", \"acceptance_expired\"]\nsecret_file = \"webhook.key\"\n\
             max_attempts = 3\ntimeout_seconds = 5\n",
        )
        .unwrap();
        assert_eq!(f.webhook[0], WebhookConfig { url: "https://x.example/h".into(), ..hook("ops") });
        let chat = &f.webhook[1];
        assert_eq!(chat.format, Format::Slack);
        assert_eq!(chat.events, [RiskEventKind::Opened, RiskEventKind::AcceptanceExpired]);
        assert_eq!(chat.secret_file, Path::new("webhook.key"));
        assert_eq!((chat.max_attempts, chat.timeout_seconds), (3, 5));
        validate(&f.webhook).unwrap();
        // Without a secret_file the webhook is refused by name, not sent unsigned.
        let f: File = toml::from_str("[[webhook]]\nname = \"soc\"\nurl = \"https://x.example/h\"\n").unwrap();
        let err = validate(&f.webhook).unwrap_err().to_string();
        assert!(err.starts_with("webhook \"soc\": secret_file is required"), "{err}");

        for bad in [
            "[[webhook]]\nname = \"a\"\nurl = \"https://x\"\nretries = 3\n",
            "[[webhook]]\nname = \"a\"\nurl = \"https://x\"\nevents = [\"deleted\"]\n",
            "[[webhook]]\nname = \"a\"\nurl = \"https://x\"\nformat = \"xml\"\n",
            "[[webhook]]\nname = \"a\"\n",
        ] {
            assert!(toml::from_str::<File>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_refuses_bad_names_urls_and_limits() {
        let cases: Vec<(WebhookConfig, &str)> = vec![
            (hook("Ops"), "name must be"),
            (hook(""), "name must be"),
            (hook("a b"), "name must be"),
            (hook(&"a".repeat(65)), "name must be"),
            (WebhookConfig { url: "ftp://x.example/".into(), ..hook("a") }, "scheme"),
            (WebhookConfig { url: "hooks.example/in".into(), ..hook("a") }, "not valid"),
            (WebhookConfig { url: "http://:8080/in".into(), ..hook("a") }, "empty host"),
            (WebhookConfig { max_attempts: 0, ..hook("a") }, "max_attempts"),
            (WebhookConfig { max_attempts: 51, ..hook("a") }, "max_attempts"),
            (WebhookConfig { timeout_seconds: 0, ..hook("a") }, "timeout_seconds"),
            (WebhookConfig { secret_file: PathBuf::new(), ..hook("a") }, "secret_file is required"),
        ];
        for (config, want) in cases {
            let err = validate(std::slice::from_ref(&config)).unwrap_err().to_string();
            assert!(err.contains(want), "{config:?}: {err}");
        }
        let err = validate(&[hook("a"), hook("b"), hook("a")]).unwrap_err().to_string();
        assert!(err.contains("more than one"), "{err}");
        // The URL never appears in an error: it may carry a secret path.
        let secret = WebhookConfig { url: "gopher://hooks.example/T0/SECRETPATH".into(), ..hook("a") };
        assert!(!validate(&[secret]).unwrap_err().to_string().contains("SECRETPATH"));
    }

    #[tokio::test]
    async fn secrets_are_checked_at_start_naming_webhook_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let configs = [hook("soc")];
        let refused = |err: WebhookError, want: &str| {
            let text = err.to_string();
            let file = dir.path().join("soc.key").display().to_string();
            assert!(text.starts_with("webhook \"soc\": secret file ") && text.contains(&file), "{text}");
            assert!(text.contains(want), "{text}");
        };
        refused(check_secrets(&configs, dir.path()).await.unwrap_err(), "No such file");
        std::fs::write(dir.path().join("soc.key"), "\n").unwrap();
        refused(check_secrets(&configs, dir.path()).await.unwrap_err(), "is empty");
        std::fs::write(dir.path().join("soc.key"), "x".repeat(MIN_SECRET_BYTES - 1)).unwrap();
        refused(check_secrets(&configs, dir.path()).await.unwrap_err(), "31 bytes, at least 32");
        std::fs::write(dir.path().join("soc.key"), "x".repeat(MIN_SECRET_BYTES)).unwrap();
        check_secrets(&configs, dir.path()).await.unwrap();
        // Every webhook is checked, not only the first.
        let two = [hook("soc"), hook("chat")];
        let err = check_secrets(&two, dir.path()).await.unwrap_err().to_string();
        assert!(err.starts_with("webhook \"chat\"") && err.contains("chat.key"), "{err}");
    }

    #[test]
    fn deliveries_follow_the_event_filter() {
        let only_closed = WebhookConfig { events: vec![RiskEventKind::Closed], ..hook("closed-only") };
        let slack = WebhookConfig { format: Format::Slack, ..hook("chat") };
        let configs = [hook("all"), only_closed, slack];

        let opened = deliveries_for(&configs, &notice(RiskEventKind::Opened), 100).unwrap();
        let names: Vec<&str> = opened.iter().map(|d| d.webhook.as_str()).collect();
        assert_eq!(names, ["all", "chat"]);
        assert!(opened.iter().all(|d| d.event == "risk.opened" && d.risk_id == 42 && d.created_at == 100));
        assert_ne!(opened[0].id, opened[1].id);
        assert_eq!(opened[0].id.len(), 32);
        // Each body is in its webhook's format and names its own delivery.
        let json: serde_json::Value = serde_json::from_str(&opened[0].body).unwrap();
        assert_eq!(json["id"], opened[0].id.as_str());
        let slack: serde_json::Value = serde_json::from_str(&opened[1].body).unwrap();
        assert!(slack["blocks"].is_array());

        let closed = deliveries_for(&configs, &notice(RiskEventKind::Closed), 100).unwrap();
        assert_eq!(closed.len(), 3);
        assert!(deliveries_for(&[], &notice(RiskEventKind::Closed), 100).unwrap().is_empty());
    }

    #[test]
    fn event_names_are_stable() {
        let names: Vec<String> = RiskEventKind::ALL.iter().map(|k| k.event_type()).collect();
        assert_eq!(
            names,
            [
                "risk.opened",
                "risk.escalated",
                "risk.accepted",
                "risk.acceptance_expired",
                "risk.closed",
                "risk.reopened"
            ]
        );
        for k in RiskEventKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
