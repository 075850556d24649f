//! The HTTP API over TLS, against a real server and real TLS clients
//! (reqwest on rustls, trusting only the CA they are given): with
//! `[http] tls = "on"` the API answers clients that trust the data dir's
//! `ca.pem` (`/healthz`, an authenticated `/api/v1/hosts`) and every
//! answer carries `Strict-Transport-Security`; a client trusting another
//! CA, or none, fails the handshake, and plain HTTP gets no answer; a
//! certificate the operator names is served instead of the data dir's. A
//! client that opens a connection and never finishes its handshake holds
//! its slot until the handshake timeout, then is closed. Plain HTTP (on
//! loopback, `auto`) carries no HSTS; plain HTTP on `0.0.0.0` is refused
//! at start with the reason, and with `allow_plain_off_loopback` starts
//! and logs a warning naming the address.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use custos_server::app;
use custos_server::config::{Config, TlsMode};
use custos_tests::raw_tcp::{closed_within, connect_from};
use custos_tests::{TestServer, client_builder_trusting, client_trusting};
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;
use tracing_subscriber::util::SubscriberInitExt as _;

const HSTS: &str = "strict-transport-security";

/// A server with its API on TLS at 127.0.0.1 and the config `tune` sets;
/// the temp dir it lives in.
async fn tls_server(tune: impl FnOnce(&mut Config)) -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = Config { http_listen: "127.0.0.1:0".parse().expect("addr"), ..Config::default() };
    config.http.tls = TlsMode::On;
    tune(&mut config);
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    (server, tmp)
}

/// A CA of nobody's, and a certificate it issued for this host's loopback
/// names; PEM: (CA certificate, certificate, key).
fn foreign_ca_and_leaf() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Another CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// The whole chain of `e`'s sources, for asserting on why a request failed.
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[tokio::test]
async fn the_api_is_served_over_tls_to_clients_that_trust_the_ca() {
    let (server, _tmp) = tls_server(|_| {}).await;
    assert!(server.http_tls && server.handle().http_url().starts_with("https://"));
    let health = server.client().get(server.url("/healthz")).send().await.expect("HTTPS request");
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "ok"}));

    let (status, hosts) = server.api("/api/v1/hosts").await;
    assert_eq!(status, 200, "{hosts}");
    assert!(hosts.is_array(), "{hosts}");
    assert_eq!(server.api_with("/api/v1/hosts", None).await.0, 401, "the token is still required");

    let admin = server.admin_token.clone();
    for (path, token) in [
        ("/", None),
        ("/healthz", None),
        ("/api/v1/hosts", Some(admin.as_str())),
        ("/api/v1/hosts", None),
        ("/nope", None),
    ] {
        let mut req = server.client().get(server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("HTTPS request");
        let hsts = resp.headers().get(HSTS).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(hsts, "max-age=31536000", "{path} ({})", resp.status());
    }
}

#[tokio::test]
async fn a_client_without_the_ca_fails_the_handshake_and_plain_http_gets_no_answer() {
    let (server, _tmp) = tls_server(|_| {}).await;
    let (other_ca, _, _) = foreign_ca_and_leaf();
    for (who, client) in [("another CA", client_trusting(&[&other_ca])), ("no CA", client_trusting(&[]))] {
        let e = client.get(server.url("/healthz")).send().await.expect_err("the handshake fails");
        assert!(e.is_connect(), "{who}: {}", chain(&e));
        assert!(chain(&e).contains("UnknownIssuer"), "{who}: {}", chain(&e));
    }
    let plain = reqwest::Client::new().get(format!("http://{}/healthz", server.http_addr)).send().await;
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port: {plain:?}");
}

#[tokio::test]
async fn a_certificate_the_operator_names_is_served() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = foreign_ca_and_leaf();
    let (cert_file, key_file) = (tmp.path().join("api.pem"), tmp.path().join("api.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    // `auto` on loopback: TLS because a certificate is named.
    let mut config = Config { http_listen: "127.0.0.1:0".parse().expect("addr"), ..Config::default() };
    config.http.cert_file = Some(cert_file);
    config.http.key_file = Some(key_file);
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    assert!(server.http_tls);
    let ok = client_trusting(&[&ca]).get(server.url("/healthz")).send().await.expect("trusted");
    assert_eq!(ok.status(), 200);
    let e = server.client().get(server.url("/healthz")).send().await.expect_err("not the data dir's");
    assert!(chain(&e).contains("UnknownIssuer"), "{}", chain(&e));
}

#[tokio::test]
async fn a_handshake_never_finished_holds_its_slot_until_the_handshake_timeout() {
    let (server, _tmp) = tls_server(|c| {
        c.limits.handshake_timeout_secs = 2;
        c.limits.http_max_connections_per_client = 1;
    })
    .await;
    let client = Ipv4Addr::new(127, 0, 0, 5);
    let opened = Instant::now();
    let mut stalled = connect_from(client, server.http_addr).await;
    // A TLS record header announcing a ClientHello that never comes.
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8]).await.expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut second = connect_from(client, server.http_addr).await;
    assert!(
        closed_within(&mut second, Duration::from_secs(1)).await.is_some(),
        "the stalled handshake holds the client's one slot: a second connection is closed at once"
    );
    let other = client_builder_trusting(&[&server.ca_pem()])
        .local_address(std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, 6)))
        .build()
        .expect("client");
    let served = other.get(server.url("/healthz")).send().await.expect("another address is served");
    assert_eq!(served.status(), 200);

    closed_within(&mut stalled, Duration::from_secs(8)).await.expect("closed at the handshake timeout");
    let held = opened.elapsed();
    assert!(held >= Duration::from_millis(1900), "closed after {held:?}, before the timeout");

    let same = client_builder_trusting(&[&server.ca_pem()])
        .local_address(std::net::IpAddr::from(client))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let resp = same.get(server.url("/healthz")).send().await.expect("the slot came back");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn plain_http_on_loopback_carries_no_hsts() {
    let server = TestServer::start().await;
    assert!(!server.http_tls, "auto on loopback is plain HTTP");
    assert!(server.handle().http_url().starts_with("http://"));
    for path in ["/", "/healthz", "/api/v1/hosts"] {
        let resp =
            server.client().get(server.url(path)).bearer_auth(&server.admin_token).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().get(HSTS).is_none(), "{path}: {:?}", resp.headers().get(HSTS));
    }
}

/// An initialised data dir whose server would serve plain HTTP on all
/// addresses, `allow`ed or not; the temp dir and the config.
fn plain_everywhere(allow: bool) -> (tempfile::TempDir, std::path::PathBuf, Config) {
    custos_tests::install_crypto();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("server");
    let mut config = Config {
        grpc_listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "0.0.0.0:0".parse().expect("addr"),
        ..Config::default()
    };
    config.http.tls = TlsMode::Off;
    config.http.allow_plain_off_loopback = allow;
    app::init(&dir, &[], Some(config.clone())).expect("init");
    (tmp, dir, config)
}

#[tokio::test]
async fn plain_http_beyond_loopback_is_refused_at_start_with_the_reason() {
    let (_tmp, dir, config) = plain_everywhere(false);
    let e = app::start(&dir, config).await.err().expect("refused").to_string();
    for why in ["0.0.0.0:0", "not a loopback address", "clear text", "allow_plain_off_loopback = true"] {
        assert!(e.contains(why), "{why:?} not in: {e}");
    }
}

/// What a `tracing` subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn plain_http_beyond_loopback_starts_when_allowed_and_says_so() {
    let (_tmp, dir, config) = plain_everywhere(true);
    let log = Captured::default();
    let writer = log.clone();
    // The test's runtime runs on this thread, so this sees what `start` logs.
    let _guard = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .finish()
        .set_default();
    let server = app::start(&dir, config).await.expect("allowed");
    assert!(!server.http_tls);
    let logged = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(logged.contains("WARN") && logged.contains("clear text on 0.0.0.0:0"), "{logged}");

    let port = server.http_addr.port();
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.expect("plain HTTP");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get(HSTS).is_none());
    server.shutdown().await;
}
