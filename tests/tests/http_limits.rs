//! The HTTP port's limits against real sockets and a real server
//! (`server/src/api/serve.rs`): a client at its connection cap has its
//! further connections closed while another address is still served; a
//! request head that stops halfway, or drips in, is closed at the header
//! timeout counted from its first byte, and not before; an idle keep-alive
//! connection is closed at the idle timeout counted from its last answer;
//! with the global cap taken a further connection waits, unserved, until
//! one closes; a body that stops is answered at the body timeout; shutdown
//! does not wait for idle or half-sent connections.
//!
//! Clients bind their own loopback addresses (all of 127/8 is loopback on
//! Linux) to be told apart. The server's sockets on the port are counted
//! from `/proc` (this process's descriptors whose local port is the HTTP
//! port): what an attacker costs the server in file handles.
//! Timeouts are seconds and bounds generous, for loaded CI machines.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use custos_server::config::Config;
use custos_server::identity::security::Limits;
use custos_tests::TestServer;
use custos_tests::raw_tcp::{closed_within, connect_from};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

const HALF_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: custos\r\n";

/// A server with the HTTP limits `tune` sets, and the temp dir it lives in.
async fn server(tune: impl FnOnce(&mut Limits)) -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = Config { http_listen: "127.0.0.1:0".parse().expect("addr"), ..Config::default() };
    tune(&mut config.limits);
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    (server, tmp)
}

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// True when nothing arrives and the connection stays open for `d`.
async fn quiet_and_open(s: &mut TcpStream, d: Duration) -> bool {
    let mut buf = [0u8; 64];
    timeout(d, s.read(&mut buf)).await.is_err()
}

async fn send_get(s: &mut TcpStream, path: &str, token: Option<&str>) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: custos\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
}

/// Reads one answer (with a Content-Length); its status and body.
async fn read_answer(s: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).await.expect("read answer");
        assert!(n > 0, "closed before a whole answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while got.len() < head_end + length {
        let n = s.read(&mut buf).await.expect("read body");
        assert!(n > 0, "closed inside the body");
        got.extend_from_slice(&buf[..n]);
    }
    (status, String::from_utf8_lossy(&got[head_end..head_end + length]).into_owned())
}

/// This process's open sockets whose local port is `port`, listener aside:
/// the HTTP server's connections, as file handles.
fn server_sockets(port: u16) -> usize {
    let inodes: HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect();
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl, local address:port, remote, state, ..., inode (10th).
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let local_port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            let listening = f[3] == "0A";
            if local_port == Some(port) && !listening && f[9].parse().is_ok_and(|i| inodes.contains(&i)) {
                n += 1;
            }
        }
    }
    n
}

/// Waits until the server holds `want` sockets on `port`; panics after 10 s.
async fn await_sockets(port: u16, want: usize) {
    let start = Instant::now();
    while server_sockets(port) != want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server holds {} sockets, expected {want}",
            server_sockets(port)
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_its_cap_cannot_keep_others_out() {
    let (server, _tmp) = server(|l| {
        l.http_max_connections = 64;
        l.http_max_connections_per_client = 8;
        l.http_header_timeout_secs = 120;
        l.http_idle_timeout_secs = 120;
    })
    .await;
    let (to, port) = (server.http_addr, server.http_addr.port());
    let attacker = loopback(1);

    // The attacker's share, held with half-sent heads.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from(attacker, to).await;
        s.write_all(HALF_HEAD).await.expect("send");
        held.push(s);
    }
    await_sockets(port, 8).await;

    // Forty more: each closed at once, none served.
    let mut extra = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let mut s = connect_from(attacker, to).await;
        extra.spawn(async move {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: custos\r\n\r\n").await;
            let mut answer = Vec::new();
            let read = timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
            (read.is_ok(), answer)
        });
    }
    while let Some(done) = extra.join_next().await {
        let (closed, answer) = done.expect("task");
        assert!(closed, "an over-cap connection was left open");
        assert!(
            answer.is_empty(),
            "an over-cap connection was served: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(server_sockets(port), 8, "the attacker costs the server its cap in file handles, no more");
    for s in &mut held {
        assert!(
            quiet_and_open(s, Duration::from_millis(100)).await,
            "the held connections stay until their timeouts"
        );
    }
    // A real request from the attacker's address is refused too...
    let from_attacker =
        reqwest::Client::builder().local_address(IpAddr::V4(attacker)).build().expect("client");
    assert!(from_attacker.get(format!("http://{to}/healthz")).send().await.is_err());

    // ...while another address is served, open and authenticated routes alike.
    let good = reqwest::Client::builder().local_address(IpAddr::V4(loopback(2))).build().expect("client");
    let health = good.get(format!("http://{to}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let hosts = good
        .get(format!("http://{to}/api/v1/hosts"))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .expect("hosts");
    assert_eq!(hosts.status().as_u16(), 200);
    assert!(hosts.json::<serde_json::Value>().await.expect("JSON").is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_head_is_closed_at_the_header_timeout_from_its_first_byte() {
    let header = Duration::from_secs(1);
    let (server, _tmp) = server(|l| {
        l.http_header_timeout_secs = 1;
        l.http_idle_timeout_secs = 120;
    })
    .await;
    let to = server.http_addr;
    let start = Instant::now();
    let mut silent = connect_from(loopback(22), to).await;

    let mut half = connect_from(loopback(21), to).await;
    half.write_all(HALF_HEAD).await.expect("send");
    let sent = Instant::now();

    // A head dripped in a byte at a time: bytes do not extend the time.
    let (mut drip_read, mut drip_write) = connect_from(loopback(23), to).await.into_split();
    let dripped = Instant::now();
    tokio::spawn(async move {
        let _ = drip_write.write_all(HALF_HEAD).await;
        while drip_write.write_all(b"X-Slow: a\r\n").await.is_ok() {
            sleep(Duration::from_millis(200)).await;
        }
    });

    closed_within(&mut half, Duration::from_secs(20)).await.expect("half-sent head closed");
    let closed = sent.elapsed();
    assert!(closed >= header - Duration::from_millis(50), "closed before the header timeout: {closed:?}");
    assert!(closed < header + Duration::from_secs(8), "closed late: {closed:?}");

    let mut buf = [0u8; 256];
    let drip = timeout(Duration::from_secs(20), async {
        loop {
            match drip_read.read(&mut buf).await {
                Ok(0) | Err(_) => return dripped.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("dripped head closed");
    assert!(drip >= header - Duration::from_millis(50) && drip < header + Duration::from_secs(8), "{drip:?}");

    // A connection that sent nothing has begun no head: it waits for the
    // idle timeout, well past the header timeout.
    let wait = (header * 5 / 2).saturating_sub(start.elapsed());
    assert!(quiet_and_open(&mut silent, wait).await, "a silent connection was closed at the header timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_at_the_idle_timeout_from_its_last_answer() {
    let idle = Duration::from_secs(2);
    let (server, _tmp) = server(|l| {
        l.http_idle_timeout_secs = 2;
        l.http_header_timeout_secs = 60;
    })
    .await;
    let to = server.http_addr;
    let mut silent = connect_from(loopback(32), to).await;
    let opened = Instant::now();

    let mut kept = connect_from(loopback(31), to).await;
    send_get(&mut kept, "/healthz", None).await;
    assert_eq!(read_answer(&mut kept).await.0, 200);
    // Within the idle time the connection is kept alive and serves again;
    // the idle time then counts from this answer.
    sleep(idle / 2).await;
    send_get(&mut kept, "/api/v1/hosts", Some(&server.admin_token)).await;
    assert_eq!(read_answer(&mut kept).await.0, 200);
    let answered = Instant::now();
    closed_within(&mut kept, Duration::from_secs(20)).await.expect("idle connection closed");
    let after = answered.elapsed();
    assert!(after >= idle - Duration::from_millis(50), "closed before the idle timeout: {after:?}");
    assert!(after < idle + Duration::from_secs(8), "closed late: {after:?}");

    closed_within(&mut silent, Duration::from_secs(20)).await.expect("silent connection closed");
    let after = opened.elapsed();
    assert!(after >= idle - Duration::from_millis(50) && after < idle + Duration::from_secs(8), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_global_cap_a_new_connection_waits_until_one_closes() {
    let (server, _tmp) = server(|l| {
        l.http_max_connections = 4;
        l.http_max_connections_per_client = 4;
        l.http_header_timeout_secs = 120;
        l.http_idle_timeout_secs = 120;
    })
    .await;
    let (to, port) = (server.http_addr, server.http_addr.port());
    let mut held = Vec::new();
    for last in 41..45 {
        held.push(connect_from(loopback(last), to).await);
    }
    await_sockets(port, 4).await;

    let mut waiting = connect_from(loopback(45), to).await;
    send_get(&mut waiting, "/healthz", None).await;
    assert!(quiet_and_open(&mut waiting, Duration::from_millis(1500)).await, "served beyond the cap");
    assert_eq!(server_sockets(port), 4, "not accepted while the cap is taken");

    drop(held.pop());
    let (status, body) = timeout(Duration::from_secs(10), read_answer(&mut waiting))
        .await
        .expect("served once a slot is free");
    assert_eq!((status, body.contains("ok")), (200, true), "{body}");
    for s in &mut held {
        assert!(quiet_and_open(s, Duration::from_millis(50)).await, "the others are untouched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_is_answered_at_the_body_timeout() {
    let body = Duration::from_secs(1);
    let (server, _tmp) = server(|l| l.http_body_timeout_secs = 1).await;
    let mut s = connect_from(loopback(51), server.http_addr).await;
    let head = format!(
        "POST /api/v1/risks HTTP/1.1\r\nHost: custos\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"title\": ",
        server.admin_token
    );
    s.write_all(head.as_bytes()).await.expect("send");
    let sent = Instant::now();
    let (status, text) = timeout(Duration::from_secs(20), read_answer(&mut s)).await.expect("answered");
    let after = sent.elapsed();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not received within"), "{text}");
    assert!(after >= body - Duration::from_millis(50) && after < body + Duration::from_secs(8), "{after:?}");
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await.is_some(),
        "the rest of the body is not awaited"
    );
    let (_, risks) = server.api("/api/v1/risks?status=all").await;
    assert_eq!(risks.as_array().map(Vec::len), Some(0), "nothing was created: {risks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused() {
    let (server, _tmp) = server(|l| l.http_max_body_bytes = 64 * 1024).await;
    let mut s = connect_from(loopback(61), server.http_addr).await;
    let size = 64 * 1024 + 1;
    let head = format!(
        "POST /api/v1/risks HTTP/1.1\r\nHost: custos\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n",
        server.admin_token
    );
    s.write_all(head.as_bytes()).await.expect("send head");
    s.write_all(&vec![b' '; size]).await.expect("send body");
    let (status, text) = timeout(Duration::from_secs(20), read_answer(&mut s)).await.expect("answered");
    assert!(status == 413 || (status == 400 && text.contains("length limit")), "{status} {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_or_half_sent_connections() {
    let (mut server, _tmp) = server(|l| {
        l.http_header_timeout_secs = 120;
        l.http_idle_timeout_secs = 120;
    })
    .await;
    let to = server.http_addr;
    let mut idle = connect_from(loopback(71), to).await;
    let mut half = connect_from(loopback(72), to).await;
    half.write_all(HALF_HEAD).await.expect("send");
    await_sockets(to.port(), 2).await;

    let watch = tokio::spawn(async move {
        let a = closed_within(&mut idle, Duration::from_secs(20)).await;
        let b = closed_within(&mut half, Duration::from_secs(20)).await;
        (a, b)
    });
    let stopping = Instant::now();
    server.stop().await;
    let (a, b) = watch.await.expect("task");
    assert!(a.is_some() && b.is_some(), "held connections closed at shutdown");
    assert!(stopping.elapsed() < Duration::from_secs(5), "shutdown took {:?}", stopping.elapsed());
    tokio::net::TcpListener::bind(to).await.expect("the port is free again");
}
