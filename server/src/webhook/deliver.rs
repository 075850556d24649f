//! Sending due webhook deliveries, one attempt each, and deciding what comes
//! next: delivered, tried again after a backoff, or failed.
//!
//! Webhooks are sent to concurrently, but each webhook's deliveries in order
//! and one at a time; after an attempt that is to be retried the rest of that
//! webhook's queue waits for the next pass, so a receiver that is down costs
//! one time-out per pass, not one per queued event.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{WebhookConfig, WebhookError, check_url, load_secret, signature};
use crate::store::webhooks::{Attempt, AttemptOutcome, DueDelivery};
use crate::store::{Store, StoreError};

/// How often the worker looks for due deliveries (the latency of a new event).
const POLL: Duration = Duration::from_secs(2);
/// Deliveries taken per pass.
const BATCH: usize = 100;
/// Backoff: 30 s after the first failed attempt, doubling, at most an hour.
const BASE_DELAY_SECS: i64 = 30;
const MAX_DELAY_SECS: i64 = 3600;
/// Characters of a refusing receiver's answer kept in the log.
const SNIPPET_CHARS: usize = 200;
const SNIPPET_BYTES: usize = 1024;

/// The HTTP client deliveries go out with, and the data dir secret files
/// are relative to.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    data_dir: PathBuf,
}

impl WebhookClient {
    /// Trusts the operating system's root certificates.
    pub fn new(data_dir: &Path) -> Result<WebhookClient, WebhookError> {
        Self::with_roots(data_dir, Vec::new())
    }

    /// Trusts `roots` besides the operating system's (a private CA). TLS
    /// uses the process's default rustls crypto provider, which the binaries
    /// install at start; without one this is an error, not a second provider.
    pub fn with_roots(
        data_dir: &Path,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<WebhookClient, WebhookError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(WebhookError::Client(
                "no TLS crypto provider is installed in this process (install aws-lc-rs at start)".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("custos/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the signed body to a URL nobody configured.
            .redirect(reqwest::redirect::Policy::none());
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
        let http = builder.build().map_err(|e| WebhookError::Client(describe(e)))?;
        Ok(WebhookClient { http, data_dir: data_dir.to_path_buf() })
    }
}

/// The wait before the attempt after attempt number `attempt` failed:
/// `Retry-After` when the receiver sent one (1 s to 1 h), else 30 s doubling
/// per attempt up to 1 h, plus up to a tenth more (`jitter_permille`
/// thousandths of that tenth) so a receiver coming back is not hit by every
/// queued delivery at once.
pub fn retry_delay(attempt: u32, retry_after: Option<u64>, jitter_permille: u32) -> i64 {
    if let Some(secs) = retry_after {
        return i64::try_from(secs).unwrap_or(MAX_DELAY_SECS).clamp(1, MAX_DELAY_SECS);
    }
    let doublings = attempt.saturating_sub(1).min(16);
    let base = (BASE_DELAY_SECS << doublings).min(MAX_DELAY_SECS);
    base + base * i64::from(jitter_permille.min(999)) / 10_000
}

fn jitter() -> u32 {
    u32::from(u16::from_le_bytes(crate::identity::secrets::random::<2>())) % 1000
}

/// What an HTTP status means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Delivered,
    Retry,
    Permanent,
}

fn classify(status: u16) -> Class {
    match status {
        200..=299 => Class::Delivered,
        // Timeout, rate limit, server trouble: the receiver may recover.
        408 | 429 | 500..=599 => Class::Retry,
        // Other client errors and redirects: the request itself is wrong.
        _ => Class::Permanent,
    }
}

/// The result of one send.
struct Sent {
    class: Class,
    status_code: Option<u16>,
    error: Option<String>,
    retry_after: Option<u64>,
}

impl Sent {
    fn error(class: Class, message: String) -> Sent {
        Sent { class, status_code: None, error: Some(message), retry_after: None }
    }
}

/// A reqwest error as text without its URL (Slack-style URLs carry their
/// secret in the path), with its causes.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Printable text of at most `SNIPPET_CHARS` characters.
fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SNIPPET_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

async fn send(client: &WebhookClient, hook: &WebhookConfig, d: &DueDelivery, now: i64) -> Sent {
    let url = match check_url(&hook.url) {
        Ok(url) => url,
        Err(message) => return Sent::error(Class::Permanent, message),
    };
    // Read at every send (rotation needs no restart). The operator can fix
    // the file: this attempt is lost, the next may work; nothing goes unsigned.
    let secret = match load_secret(&client.data_dir.join(&hook.secret_file)).await {
        Ok(secret) => secret,
        Err(e) => return Sent::error(Class::Retry, format!("not sent: {e}")),
    };
    let request = client
        .http
        .post(url)
        .timeout(Duration::from_secs(hook.timeout_seconds))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Custos-Event", &d.event)
        .header("X-Custos-Delivery", &d.id)
        .header("X-Custos-Timestamp", now.to_string())
        .header("X-Custos-Signature", signature(&secret, now, d.body.as_bytes()));
    let mut response = match request.body(d.body.clone()).send().await {
        Ok(r) => r,
        Err(e) if e.is_builder() => return Sent::error(Class::Permanent, describe(e)),
        Err(e) if e.is_timeout() => {
            return Sent::error(Class::Retry, format!("timed out after {} s", hook.timeout_seconds));
        }
        // Connection refused, TLS, time-out, reset: the receiver may recover.
        Err(e) => return Sent::error(Class::Retry, describe(e)),
    };
    let status = response.status();
    let class = classify(status.as_u16());
    if class == Class::Delivered {
        return Sent { class, status_code: Some(status.as_u16()), error: None, retry_after: None };
    }
    let retry_after = if matches!(status.as_u16(), 429 | 503) {
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    } else {
        None
    };
    let mut error = format!("HTTP {status}");
    if status.is_redirection() {
        error.push_str(": redirects are not followed; configure the final URL");
    }
    // A little of the answer helps the operator; the time limit still applies.
    let mut body = Vec::new();
    while body.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = snippet(&body);
    if !text.is_empty() {
        error.push_str(": ");
        error.push_str(&text);
    }
    Sent { class, status_code: Some(status.as_u16()), error: Some(error), retry_after }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, WebhookError> {
    let store = Arc::clone(store);
    let result = tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| WebhookError::Task(e.to_string()))?;
    Ok(result?)
}

/// One webhook's due deliveries, in order; returns how many were recorded.
async fn deliver_to(
    store: Arc<Store>,
    hook: WebhookConfig,
    client: WebhookClient,
    due: Vec<DueDelivery>,
    now: i64,
) -> Result<usize, WebhookError> {
    let mut recorded = 0;
    for d in due {
        let number = d.attempts + 1;
        let started = Instant::now();
        let sent = send(&client, &hook, &d, now).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let outcome = match sent.class {
            Class::Delivered => AttemptOutcome::Delivered,
            Class::Retry if number < hook.max_attempts => AttemptOutcome::Retry,
            Class::Retry | Class::Permanent => AttemptOutcome::Failed,
        };
        let next =
            (outcome == AttemptOutcome::Retry).then(|| now + retry_delay(number, sent.retry_after, jitter()));
        let attempt = Attempt {
            attempt: number,
            at: now,
            outcome,
            status_code: sent.status_code,
            error: sent.error,
            duration_ms,
        };
        match outcome {
            AttemptOutcome::Delivered => {
                tracing::debug!(webhook = %hook.name, delivery = %d.id, attempt = number, "webhook delivered")
            }
            AttemptOutcome::Retry => tracing::warn!(
                webhook = %hook.name, delivery = %d.id, attempt = number,
                error = attempt.error.as_deref().unwrap_or(""), "webhook delivery will be retried"
            ),
            AttemptOutcome::Failed => tracing::error!(
                webhook = %hook.name, delivery = %d.id, attempt = number,
                error = attempt.error.as_deref().unwrap_or(""), "webhook delivery failed"
            ),
        }
        let id = d.id.clone();
        if blocking(&store, move |s| s.record_webhook_attempt(&id, &attempt, next)).await? {
            recorded += 1;
        }
        if sent.class == Class::Retry {
            break;
        }
    }
    Ok(recorded)
}

/// One pass: sends every delivery due at `now` (up to a batch) and records
/// each attempt. Deliveries of webhooks no longer in `configs` are failed
/// with that reason. Returns how many deliveries changed state.
pub async fn deliver_due(
    store: &Arc<Store>,
    configs: &[WebhookConfig],
    client: &WebhookClient,
    now: i64,
) -> Result<usize, WebhookError> {
    let due = blocking(store, move |s| s.due_webhook_deliveries(now, BATCH)).await?;
    let mut handled = 0;
    let mut groups: Vec<(WebhookConfig, Vec<DueDelivery>)> = Vec::new();
    for d in due {
        let Some(hook) = configs.iter().find(|c| c.name == d.webhook) else {
            let reason = format!("webhook {:?} is no longer configured", d.webhook);
            tracing::warn!(delivery = %d.id, "{reason}");
            if blocking(store, move |s| s.fail_webhook_delivery(&d.id, &reason)).await? {
                handled += 1;
            }
            continue;
        };
        match groups.iter_mut().find(|(h, _)| h.name == hook.name) {
            Some((_, list)) => list.push(d),
            None => groups.push((hook.clone(), vec![d])),
        }
    }
    let mut tasks = JoinSet::new();
    for (hook, list) in groups {
        tasks.spawn(deliver_to(Arc::clone(store), hook, client.clone(), list, now));
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(n)) => handled += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(WebhookError::Task(e.to_string()));
            }
        }
    }
    first_error.map_or(Ok(handled), Err)
}

/// Runs the delivery worker until `shutdown` turns true. A delivery cut off
/// by shutdown stays pending and is sent again after the restart.
pub fn spawn(
    store: Arc<Store>,
    configs: Vec<WebhookConfig>,
    data_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = match WebhookClient::new(&data_dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook deliveries are disabled");
                return;
            }
        };
        loop {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            tokio::select! {
                pass = deliver_due(&store, &configs, &client, now) => match pass {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deliveries = n, "webhook pass"),
                    Err(e) => tracing::error!(error = %e, "webhook delivery pass failed"),
                },
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = crate::shutdown::stopped(&mut shutdown) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::tests::{hook, notice};
    use crate::webhook::{RiskEventKind, enqueue, verify};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn backoff_schedule() {
        let plain: Vec<i64> = (1..=10).map(|n| retry_delay(n, None, 0)).collect();
        assert_eq!(plain, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(retry_delay(u32::MAX, None, 0), 3600);
        assert_eq!(retry_delay(0, None, 0), 30);
        // Jitter adds up to a tenth, never less than nothing.
        assert_eq!(retry_delay(1, None, 999), 32);
        assert_eq!(retry_delay(8, None, 999), 3600 + 359);
        assert_eq!(retry_delay(8, None, 5000), 3600 + 359, "jitter is capped");
        // Retry-After wins, within 1 s .. 1 h.
        assert_eq!(retry_delay(1, Some(7), 999), 7);
        assert_eq!(retry_delay(5, Some(0), 0), 1);
        assert_eq!(retry_delay(1, Some(86_400), 0), 3600);
        assert_eq!(retry_delay(1, Some(u64::MAX), 0), 3600);
        assert!((0..200).map(|_| jitter()).all(|j| j < 1000));
    }

    #[test]
    fn status_classes() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify(s), Class::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(s), Class::Retry, "{s}");
        }
        for s in [100, 301, 302, 307, 400, 401, 403, 404, 405, 410, 413, 422, 600] {
            assert_eq!(classify(s), Class::Permanent, "{s}");
        }
    }

    #[test]
    fn snippets_are_short_and_printable() {
        assert_eq!(snippet(b"  nope\r\n\x1b[31mred\x00 "), "nope   [31mred");
        assert_eq!(snippet("x".repeat(5000).as_bytes()).len(), SNIPPET_CHARS);
        assert_eq!(snippet(&[0xff, b'a']), "\u{fffd}a");
    }

    fn install_crypto() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }

    /// A one-connection HTTPS receiver with a certificate from its own CA;
    /// returns the CA (for the client), the address and the request it got.
    async fn tls_receiver() -> (reqwest::Certificate, std::net::SocketAddr, JoinHandle<String>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(crate::identity::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Clients that refuse the certificate end the handshake; wait for one that trusts it.
            let mut tls = loop {
                let (tcp, _) = listener.accept().await.unwrap();
                if let Ok(tls) = acceptor.accept(tcp).await {
                    break tls;
                }
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body by its length.
            loop {
                let n = tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed early");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            tls.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await.unwrap();
            tls.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (reqwest::Certificate::from_der(ca_cert.der()).unwrap(), addr, task)
    }

    #[tokio::test]
    async fn https_delivery_uses_the_process_provider_and_signs() {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("custos.db")).unwrap());
        std::fs::write(dir.path().join("hook.key"), "k".repeat(40)).unwrap();
        let (ca, addr, received) = tls_receiver().await;
        let config = WebhookConfig {
            url: format!("https://localhost:{}/hook", addr.port()),
            secret_file: "hook.key".into(),
            ..hook("tls")
        };
        let configs = [config];
        assert_eq!(enqueue(&store, &configs, &notice(RiskEventKind::Opened), 1000).unwrap(), 1);

        // Without the receiver's CA the handshake fails: retried, not delivered.
        let untrusting = WebhookClient::new(dir.path()).unwrap();
        assert_eq!(deliver_due(&store, &configs, &untrusting, 1000).await.unwrap(), 1);
        let row = store.webhook_deliveries(1, None).unwrap().remove(0);
        assert_eq!((row.attempts, row.next_attempt_at.map(|t| t >= 1030)), (1, Some(true)));
        let error = row.last_error.unwrap();
        assert!(error.contains("certificate"), "{error}");
        assert!(!error.contains("/hook"), "{error}");

        let client = WebhookClient::with_roots(dir.path(), vec![ca]).unwrap();
        assert_eq!(deliver_due(&store, &configs, &client, 1100).await.unwrap(), 1);
        let row = store.webhook_deliveries(1, None).unwrap().remove(0);
        assert_eq!((row.status.as_str(), row.attempts, row.last_status_code), ("delivered", 2, Some(204)));

        let request = received.await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
                })
                .unwrap_or_else(|| panic!("{name} missing in {head}"))
        };
        assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
        assert_eq!(header("x-custos-timestamp"), "1100");
        assert_eq!(header("x-custos-event"), "risk.opened");
        assert_eq!(header("x-custos-delivery"), row.id);
        assert!(verify("k".repeat(40).as_bytes(), "1100", body.as_bytes(), header("x-custos-signature")));
    }
}
