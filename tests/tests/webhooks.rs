//! Webhook deliveries over real HTTP on loopback: a receiver in the test
//! answers as scripted, and the delivery log must tell what happened.
//! Backoff is crossed by passing later times to `deliver_due`, not by
//! sleeping. Every delivery is signed: a webhook without a usable secret
//! stops the server from starting, and one whose secret went missing later
//! sends nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_server::store::Store;
use custos_server::store::webhooks::{AttemptOutcome, DeliveryRow, DeliveryStatus};
use custos_server::webhook::{
    self, Format, RiskEventKind, RiskNotice, WebhookClient, WebhookConfig, deliver_due, enqueue,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const T0: i64 = 1_800_000_000;
/// The secret `setup` writes to `webhook.key`, which [`hook`] names.
const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A scripted answer: status, extra headers, body.
#[derive(Clone)]
struct Answer(u16, Vec<(&'static str, &'static str)>, &'static str);

/// An HTTP/1.1 receiver on loopback that answers requests in the order of
/// `script` (the last answer repeats) and records them.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    async fn start(script: Vec<Answer>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let Some(request) = read_request(&mut conn).await else { continue };
                let answer = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(request);
                    script[(seen.len() - 1).min(script.len() - 1)].clone()
                };
                let Answer(status, headers, body) = answer;
                if status == 0 {
                    // Never answer: the sender's time limit must end the attempt.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    continue;
                }
                let mut head = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        Receiver { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8(data[..end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let line = lines.next()?.to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").map_or(Some(0), |(_, v)| v.parse().ok())?;
        while data.len() < end + 4 + len {
            let n = conn.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            data.extend_from_slice(&buf[..n]);
        }
        return Some(Request { line, headers, body: data[end + 4..end + 4 + len].to_vec() });
    }
}

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    client: WebhookClient,
}

fn setup() -> Setup {
    custos_tests::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "webhook.key", SECRET);
    let store = Arc::new(Store::open(&dir.path().join("custos.db")).unwrap());
    let client = WebhookClient::new(dir.path()).unwrap();
    Setup { dir, store, client }
}

fn hook(name: &str, url: String) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        secret_file: "webhook.key".into(),
        events: Vec::new(),
        format: Format::Json,
        max_attempts: 8,
        timeout_seconds: 5,
    }
}

fn notice(kind: RiskEventKind, risk_id: i64) -> RiskNotice {
    RiskNotice {
        kind,
        risk_id,
        title: "Disk encryption missing".into(),
        requirement: Some("iso27001:2022/A.8.1".into()),
        level: "high".into(),
        status: "open".into(),
        affected_hosts: 2,
        owner: None,
        due: Some(T0 + 30 * 86_400),
        at: T0 - 5,
        link: Some("https://custos.example/risks/7".into()),
    }
}

fn only(store: &Store) -> DeliveryRow {
    let mut rows = store.webhook_deliveries(10, None).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0)
}

fn write_secret(dir: &Path, name: &str, secret: &str) {
    std::fs::write(dir.join(name), format!("{secret}\n")).unwrap();
}

#[tokio::test]
async fn delivered_with_a_signature_the_receiver_verifies() {
    let s = setup();
    let rx = Receiver::start(vec![Answer(200, vec![], "ok")]).await;
    let secret = "a".repeat(16) + &"b".repeat(16) + "-rotation-1";
    write_secret(s.dir.path(), "ops.key", &secret);
    let configs = [WebhookConfig { secret_file: "ops.key".into(), ..hook("ops", rx.url("/custos")) }];

    assert_eq!(enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap(), 1);
    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0).await.unwrap(), 1);

    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.line, "POST /custos HTTP/1.1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-custos-event"), Some("risk.opened"));
    assert_eq!(r.header("x-custos-timestamp"), Some(T0.to_string().as_str()));
    let signature = r.header("x-custos-signature").expect("signed");
    assert!(webhook::verify(secret.as_bytes(), &T0.to_string(), &r.body, signature));
    assert!(!webhook::verify(secret.as_bytes(), &(T0 + 1).to_string(), &r.body, signature));
    let body = r.json();
    assert_eq!(body["type"], "risk.opened");
    assert_eq!(body["risk"]["id"], 7);
    assert_eq!(body["risk"]["affected_hosts"], 2);

    let row = only(&s.store);
    assert_eq!(r.header("x-custos-delivery"), Some(row.id.as_str()));
    assert_eq!(body["id"], row.id.as_str());
    assert_eq!((row.status, row.attempts, row.delivered_at), (DeliveryStatus::Delivered, 1, Some(T0)));
    assert_eq!((row.log.len(), row.log[0].status_code), (1, Some(200)));
    // Nothing is due any more.
    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0 + 86_400).await.unwrap(), 0);
    assert_eq!(rx.requests().len(), 1);

    // The secret file is read at every send: a rotated key signs the next one.
    let rotated = "c".repeat(40);
    write_secret(s.dir.path(), "ops.key", &rotated);
    enqueue(&s.store, &configs, &notice(RiskEventKind::Escalated, 7), T0 + 60).unwrap();
    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0 + 60).await.unwrap(), 1);
    let r = rx.requests().remove(1);
    let ts = r.header("x-custos-timestamp").unwrap();
    let sig = r.header("x-custos-signature").unwrap();
    assert!(webhook::verify(rotated.as_bytes(), ts, &r.body, sig));
    assert!(!webhook::verify(secret.as_bytes(), ts, &r.body, sig));
    assert_eq!(r.header("x-custos-event"), Some("risk.escalated"));
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let s = setup();
    let rx = Receiver::start(vec![
        Answer(500, vec![], "database is down, try later"),
        Answer(502, vec![], ""),
        Answer(204, vec![], ""),
    ])
    .await;
    let configs = [hook("ops", rx.url("/h"))];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap();

    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0).await.unwrap(), 1);
    let row = only(&s.store);
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Pending, 1));
    let next = row.next_attempt_at.unwrap();
    assert!((T0 + 30..=T0 + 33).contains(&next), "first backoff {}", next - T0);
    let error = row.last_error.unwrap();
    assert!(error.contains("500") && error.contains("database is down, try later"), "{error}");

    // Not yet due: nothing is sent.
    assert_eq!(deliver_due(&s.store, &configs, &s.client, next - 1).await.unwrap(), 0);
    assert_eq!(rx.requests().len(), 1);

    assert_eq!(deliver_due(&s.store, &configs, &s.client, next).await.unwrap(), 1);
    let row = only(&s.store);
    let next2 = row.next_attempt_at.unwrap();
    assert!((next + 60..=next + 66).contains(&next2), "second backoff {}", next2 - next);
    assert_eq!(row.last_status_code, Some(502));

    assert_eq!(deliver_due(&s.store, &configs, &s.client, next2).await.unwrap(), 1);
    let row = only(&s.store);
    assert_eq!((row.status, row.attempts, row.delivered_at), (DeliveryStatus::Delivered, 3, Some(next2)));
    assert_eq!(row.next_attempt_at, None);
    let log: Vec<(u32, i64, AttemptOutcome, Option<u16>)> =
        row.log.iter().map(|a| (a.attempt, a.at, a.outcome, a.status_code)).collect();
    assert_eq!(
        log,
        [
            (1, T0, AttemptOutcome::Retry, Some(500)),
            (2, next, AttemptOutcome::Retry, Some(502)),
            (3, next2, AttemptOutcome::Delivered, Some(204)),
        ]
    );
    assert!(row.log[0].error.as_deref().unwrap().contains("try later"));
    assert_eq!(row.log[2].error, None);

    // Every attempt carried the same delivery id and body, with its own time.
    let got = rx.requests();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.header("x-custos-delivery") == Some(row.id.as_str()) && r.body == got[0].body)
    );
    let times: Vec<&str> = got.iter().map(|r| r.header("x-custos-timestamp").unwrap()).collect();
    assert_eq!(times, [T0.to_string(), next.to_string(), next2.to_string()]);
    // Each attempt is signed over its own timestamp; an old signature does not
    // carry over to a later attempt.
    let sigs: Vec<&str> = got.iter().map(|r| r.header("x-custos-signature").expect("signed")).collect();
    for (r, (ts, sig)) in got.iter().zip(times.iter().zip(&sigs)) {
        assert!(webhook::verify(SECRET.as_bytes(), ts, &r.body, sig), "attempt at {ts}");
    }
    assert!(!webhook::verify(SECRET.as_bytes(), times[1], &got[1].body, sigs[0]));
}

#[tokio::test]
async fn retry_after_is_honoured_on_429_and_503() {
    let s = setup();
    let rx = Receiver::start(vec![
        Answer(429, vec![("retry-after", "120")], "slow down"),
        Answer(503, vec![("retry-after", "5")], ""),
        Answer(408, vec![("retry-after", "9")], ""),
        Answer(200, vec![], ""),
    ])
    .await;
    let configs = [hook("ops", rx.url("/h"))];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap();

    deliver_due(&s.store, &configs, &s.client, T0).await.unwrap();
    assert_eq!(only(&s.store).next_attempt_at, Some(T0 + 120));
    deliver_due(&s.store, &configs, &s.client, T0 + 120).await.unwrap();
    assert_eq!(only(&s.store).next_attempt_at, Some(T0 + 125));
    // Retry-After only counts on 429 and 503; a 408 takes the backoff (attempt 3: 120 s + jitter).
    deliver_due(&s.store, &configs, &s.client, T0 + 125).await.unwrap();
    let next = only(&s.store).next_attempt_at.unwrap();
    assert!((T0 + 245..=T0 + 257).contains(&next), "{}", next - T0 - 125);
    deliver_due(&s.store, &configs, &s.client, next).await.unwrap();
    assert_eq!(only(&s.store).status, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn not_found_fails_at_once() {
    let s = setup();
    let rx = Receiver::start(vec![Answer(404, vec![], "no such hook"), Answer(200, vec![], "")]).await;
    let configs = [hook("ops", rx.url("/gone"))];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Closed, 7), T0).unwrap();

    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0).await.unwrap(), 1);
    let row = only(&s.store);
    assert_eq!((row.status, row.attempts, row.last_status_code), (DeliveryStatus::Failed, 1, Some(404)));
    assert_eq!(row.next_attempt_at, None);
    assert!(row.last_error.as_deref().unwrap().contains("no such hook"));
    assert_eq!(row.log[0].outcome, AttemptOutcome::Failed);
    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0 + 86_400).await.unwrap(), 0);
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(s.store.webhook_deliveries(10, Some(DeliveryStatus::Failed)).unwrap().len(), 1);
    assert!(s.store.webhook_deliveries(10, Some(DeliveryStatus::Pending)).unwrap().is_empty());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let s = setup();
    let target = Receiver::start(vec![Answer(200, vec![], "")]).await;
    let location: &'static str = Box::leak(target.url("/elsewhere").into_boxed_str());
    let rx = Receiver::start(vec![Answer(307, vec![("location", location)], "")]).await;
    let configs = [hook("ops", rx.url("/old"))];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap();
    deliver_due(&s.store, &configs, &s.client, T0).await.unwrap();
    let row = only(&s.store);
    assert_eq!((row.status, row.last_status_code), (DeliveryStatus::Failed, Some(307)));
    assert!(row.last_error.unwrap().contains("redirects are not followed"));
    assert!(target.requests().is_empty(), "the signed body went elsewhere");
}

#[tokio::test]
async fn receiver_down_is_retried_then_failed_after_max_attempts() {
    let s = setup();
    // A port that was just free: connections are refused.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let url = format!("http://{addr}/services/T000/B000/SECRETPATH");
    let configs = [WebhookConfig { max_attempts: 3, ..hook("down", url) }];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap();

    let mut now = T0;
    for attempt in 1..=3u32 {
        assert_eq!(deliver_due(&s.store, &configs, &s.client, now).await.unwrap(), 1, "attempt {attempt}");
        let row = only(&s.store);
        assert_eq!(row.attempts, attempt);
        if attempt < 3 {
            assert_eq!(row.status, DeliveryStatus::Pending);
            let next = row.next_attempt_at.unwrap();
            assert!(next >= now + 30, "{}", next - now);
            assert_eq!(deliver_due(&s.store, &configs, &s.client, next - 1).await.unwrap(), 0);
            now = next;
        } else {
            assert_eq!((row.status, row.next_attempt_at), (DeliveryStatus::Failed, None));
        }
    }
    let row = only(&s.store);
    let outcomes: Vec<AttemptOutcome> = row.log.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Retry, AttemptOutcome::Retry, AttemptOutcome::Failed]);
    for a in &row.log {
        let error = a.error.as_deref().unwrap();
        assert_eq!(a.status_code, None);
        assert!(error.to_lowercase().contains("connect"), "{error}");
        // The URL's secret path never reaches the log.
        assert!(!error.contains("SECRETPATH") && !error.contains("/services/"), "{error}");
    }
    assert_eq!(deliver_due(&s.store, &configs, &s.client, now + 86_400).await.unwrap(), 0);
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let s = setup();
    let rx = Receiver::start(vec![Answer(0, vec![], "")]).await;
    let configs = [WebhookConfig { timeout_seconds: 1, ..hook("slow", rx.url("/h")) }];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0).await.unwrap(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    let row = only(&s.store);
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Pending, 1));
    assert!(row.last_error.as_deref().unwrap().contains("timed out after 1 s"), "{:?}", row.last_error);
    assert!(row.log[0].duration_ms >= 900, "{}", row.log[0].duration_ms);
}

#[tokio::test]
async fn slack_webhooks_get_a_slack_message() {
    let s = setup();
    let rx = Receiver::start(vec![Answer(200, vec![], "ok")]).await;
    let configs = [WebhookConfig { format: Format::Slack, ..hook("chat", rx.url("/services/T1/B1/x")) }];
    enqueue(&s.store, &configs, &notice(RiskEventKind::AcceptanceExpired, 7), T0).unwrap();
    deliver_due(&s.store, &configs, &s.client, T0).await.unwrap();

    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["text"], "Risk acceptance expired: Disk encryption missing (high, 2 hosts)");
    let section = body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(section.contains("<https://custos.example/risks/7|Disk encryption missing>"), "{section}");
    assert!(section.contains("*Affected hosts:* 2") && section.contains("*Due:* 2027-02-14"), "{section}");
    assert!(body.get("type").is_none() && body.get("risk").is_none());
    assert_eq!(got[0].header("x-custos-event"), Some("risk.acceptance_expired"));
    assert_eq!(only(&s.store).status, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn the_event_filter_is_respected() {
    let s = setup();
    let all = Receiver::start(vec![Answer(200, vec![], "")]).await;
    let closing = Receiver::start(vec![Answer(200, vec![], "")]).await;
    let configs = [
        hook("all", all.url("/")),
        WebhookConfig {
            events: vec![RiskEventKind::Closed, RiskEventKind::AcceptanceExpired],
            ..hook("closing", closing.url("/"))
        },
    ];
    assert_eq!(enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 1), T0).unwrap(), 1);
    assert_eq!(enqueue(&s.store, &configs, &notice(RiskEventKind::Escalated, 1), T0).unwrap(), 1);
    assert_eq!(enqueue(&s.store, &configs, &notice(RiskEventKind::Closed, 1), T0 + 1).unwrap(), 2);
    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0 + 1).await.unwrap(), 4);

    let events = |rx: &Receiver| -> Vec<String> {
        rx.requests().iter().map(|r| r.header("x-custos-event").unwrap().to_string()).collect()
    };
    // In the order they happened.
    assert_eq!(events(&all), ["risk.opened", "risk.escalated", "risk.closed"]);
    assert_eq!(events(&closing), ["risk.closed"]);
}

#[tokio::test]
async fn a_delivery_survives_a_store_reopen() {
    custos_tests::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    write_secret(dir.path(), "webhook.key", SECRET);
    let db = dir.path().join("custos.db");
    let rx = Receiver::start(vec![Answer(200, vec![], "")]).await;
    let configs = [hook("ops", rx.url("/h"))];
    {
        let store = Store::open(&db).unwrap();
        enqueue(&store, &configs, &notice(RiskEventKind::Opened, 9), T0).unwrap();
        // Dropped without sending, as in a crash right after the event.
    }
    let store = Arc::new(Store::open(&db).unwrap());
    let client = WebhookClient::new(dir.path()).unwrap();
    assert_eq!(deliver_due(&store, &configs, &client, T0 + 5).await.unwrap(), 1);
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(rx.requests()[0].json()["risk"]["id"], 9);
    assert_eq!(only(&store).status, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn a_missing_or_short_secret_is_never_sent_unsigned() {
    let s = setup();
    let rx = Receiver::start(vec![Answer(200, vec![], "")]).await;
    let configs = [WebhookConfig { secret_file: "hook.key".into(), ..hook("ops", rx.url("/h")) }];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap();

    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0).await.unwrap(), 1);
    let row = only(&s.store);
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Pending, 1));
    let error = row.last_error.unwrap();
    assert!(error.contains("hook.key") && error.contains("not sent"), "{error}");

    write_secret(s.dir.path(), "hook.key", "too-short");
    let next = only(&s.store).next_attempt_at.unwrap();
    deliver_due(&s.store, &configs, &s.client, next).await.unwrap();
    let row = only(&s.store);
    assert!(row.last_error.as_deref().unwrap().contains("at least 32"), "{:?}", row.last_error);
    std::fs::write(s.dir.path().join("hook.key"), "").unwrap();
    deliver_due(&s.store, &configs, &s.client, row.next_attempt_at.unwrap()).await.unwrap();
    let row = only(&s.store);
    assert_eq!(row.attempts, 3);
    assert!(row.last_error.as_deref().unwrap().contains("hook.key is empty"), "{:?}", row.last_error);
    assert!(rx.requests().is_empty(), "nothing may go out unsigned");

    // The operator fixes the file; the next attempt goes out signed.
    let secret = "s".repeat(32);
    write_secret(s.dir.path(), "hook.key", &secret);
    deliver_due(&s.store, &configs, &s.client, row.next_attempt_at.unwrap()).await.unwrap();
    let row = only(&s.store);
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Delivered, 4));
    let r = &rx.requests()[0];
    let ts = r.header("x-custos-timestamp").unwrap();
    assert!(webhook::verify(secret.as_bytes(), ts, &r.body, r.header("x-custos-signature").unwrap()));
}

#[tokio::test]
async fn deliveries_of_a_removed_webhook_fail_with_the_reason() {
    let s = setup();
    let configs = [hook("old", "http://127.0.0.1:9/".into())];
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), T0).unwrap();
    assert_eq!(deliver_due(&s.store, &[], &s.client, T0).await.unwrap(), 1);
    let row = only(&s.store);
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Failed, 0));
    assert_eq!(row.last_error.as_deref(), Some("webhook \"old\" is no longer configured"));
}

#[tokio::test]
async fn a_down_receiver_holds_back_only_its_own_queue() {
    let s = setup();
    let up = Receiver::start(vec![Answer(200, vec![], "")]).await;
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let configs = [hook("down", format!("http://{addr}/")), hook("up", up.url("/"))];
    for id in 1..=3 {
        enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, id), T0).unwrap();
    }
    // One pass: all three reach the live receiver; the dead one costs a
    // single attempt, the other two wait for the next pass.
    assert_eq!(deliver_due(&s.store, &configs, &s.client, T0).await.unwrap(), 4);
    assert_eq!(up.requests().len(), 3);
    let down = s.store.webhook_deliveries(10, Some(DeliveryStatus::Pending)).unwrap();
    assert_eq!(down.len(), 3);
    let attempts: u32 = down.iter().map(|d| d.attempts).sum();
    assert_eq!(attempts, 1);
    assert_eq!(s.store.webhook_deliveries(10, Some(DeliveryStatus::Delivered)).unwrap().len(), 3);
}

#[tokio::test]
async fn the_worker_sends_and_stops_on_shutdown() {
    let s = setup();
    let rx = Receiver::start(vec![Answer(200, vec![], "")]).await;
    let configs = vec![hook("ops", rx.url("/h"))];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    enqueue(&s.store, &configs, &notice(RiskEventKind::Opened, 7), now).unwrap();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = webhook::spawn(Arc::clone(&s.store), configs, s.dir.path().to_path_buf(), stopped);
    for _ in 0..100 {
        if only(&s.store).status == DeliveryStatus::Delivered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(only(&s.store).status, DeliveryStatus::Delivered);
    assert_eq!(rx.requests().len(), 1);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), worker).await.expect("worker stops").unwrap();
}

/// The whole path: failing evidence opens a risk, the keeper queues the
/// notice in the same transaction, the server's worker signs and sends it,
/// and the delivery log shows it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risk_opened_by_evidence_reaches_the_receiver_signed() {
    use custos_proto::evidence::CheckStatus;
    let receiver = Receiver::start(vec![Answer(204, vec![], "")]).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    let mut config = custos_server::config::Config::default();
    config.risk.grace_minutes = 0;
    let mut h = hook("soc", format!("http://{}/hook", receiver.addr));
    h.secret_file = "soc.key".into();
    h.events = vec![RiskEventKind::Opened];
    config.webhooks = vec![h];
    // The secret is in place before the server starts: it checks it then.
    let secret = "0123456789abcdef0123456789abcdef-e2e";
    std::fs::create_dir_all(&dir).unwrap();
    write_secret(&dir, "soc.key", secret);
    let server = custos_tests::TestServer::start_in(&dir, config).await;

    let host: Arc<dyn custos_agent::host::Host> = Arc::new(custos_agent::host::SystemHost::default());
    let mut a = custos_tests::TestAgent::enroll(&server, "a", host).await;
    let results = custos_tests::core_results(CheckStatus::Pass, &[("disk_encryption", CheckStatus::Fail)]);
    a.agent.sign_into_spool(results).unwrap();
    a.agent.deliver().await.unwrap();

    let mut got = None;
    for _ in 0..100 {
        if let Some(r) = receiver.requests.lock().unwrap().first().cloned() {
            got = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let req = got.expect("the receiver got the notice");
    assert_eq!(req.header("x-custos-event"), Some("risk.opened"));
    let ts = req.header("x-custos-timestamp").unwrap();
    assert!(webhook::verify(secret.as_bytes(), ts, &req.body, req.header("x-custos-signature").unwrap()));
    let body = req.json();
    assert_eq!(body["type"], "risk.opened");
    assert!(body["risk"]["requirement"].as_str().unwrap().starts_with("iso27001:2022/"), "{body:#}");
    // Only opened events were asked for, one per opened requirement.
    let (_, risks) = server.api("/api/v1/risks").await;
    let opened = risks.as_array().unwrap().len();
    let log = server
        .wait_for("/api/v1/webhooks/deliveries?status=delivered", |v| {
            v.as_array().is_some_and(|d| d.len() == opened)
        })
        .await;
    assert_eq!(log[0]["webhook"], "soc");
}

/// A webhook whose secret is missing, empty or short stops the server from
/// starting, with an error naming the webhook and the file; with a good
/// secret the same data dir starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_does_not_start_with_a_webhook_that_cannot_sign() {
    custos_tests::install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    let config = custos_server::config::Config {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        webhooks: vec![WebhookConfig {
            secret_file: "soc.key".into(),
            ..hook("soc", "https://x.example/h".into())
        }],
        ..Default::default()
    };
    custos_server::app::init(&dir, &[], Some(config.clone())).unwrap();
    let key = dir.join("soc.key");
    for (content, want) in [
        (None, "No such file"),
        (Some(" \n"), "is empty"),
        (Some("0123456789abcdef0123456789abcde"), "31 bytes, at least 32"),
    ] {
        if let Some(c) = content {
            std::fs::write(&key, c).unwrap();
        }
        let Err(err) = custos_server::app::start(&dir, config.clone()).await else {
            panic!("started with a secret file {content:?}");
        };
        let err = err.to_string();
        assert!(err.contains("webhook \"soc\"") && err.contains(&key.display().to_string()), "{err}");
        assert!(err.contains(want), "{content:?}: {err}");
    }
    write_secret(&dir, "soc.key", SECRET);
    let handle = custos_server::app::start(&dir, config.clone()).await.expect("starts with a good secret");
    handle.shutdown().await;

    // A configuration file naming no secret is refused at load, by webhook name.
    let path = custos_server::datadir::DataDir(dir.clone()).config();
    let text = std::fs::read_to_string(&path).unwrap().replace("secret_file = \"soc.key\"\n", "");
    assert!(!text.contains("secret_file"), "{text}");
    std::fs::write(&path, text).unwrap();
    let err = custos_server::config::Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("webhook \"soc\": secret_file is required"), "{err}");
}
