//! The HTTP port's accept loop: the API and dashboard served over HTTP/1
//! by hyper under the axum router, over TLS or (on loopback, see
//! `config::HttpPort`) plain, with the limits of `config.limits.http_*`.
//!
//! Over TLS ([`tls`]) the handshake comes first, within
//! `limits.handshake_timeout_secs`, while the connection already holds its
//! slots; every answer then carries `Strict-Transport-Security`
//! (`headers::add_strict_transport`), and the phases below count from the
//! end of the handshake.
//!
//! One client once held 18,993 of the server's 20,000 file handles with
//! idle and half-sent connections, so here:
//!
//! - at most `http_max_connections` connections are open; when all are
//!   taken the loop stops accepting and new connections wait in the
//!   kernel's backlog until one closes (as the gRPC port does, `tls.rs`);
//! - at most `http_max_connections_per_client` come from one client
//!   address (an IPv6 client: its /64, which it owns whole); a further one
//!   is closed at once. This is what keeps a well-behaved client served
//!   while another holds its share: waiting in the backlog would make it
//!   queue behind the attacker's connections;
//! - a TLS handshake not finished within the handshake timeout closes its
//!   connection;
//! - each connection is closed when it outstays its phase (see [`conn`]):
//!   a request head not complete `http_header_timeout_secs` after its first
//!   byte, no request `http_idle_timeout_secs` after the last answer, a
//!   body not received `http_body_timeout_secs` after its head, an answer
//!   the client does not read;
//! - request bodies are cut at `http_max_body_bytes` for every route.
//!
//! On shutdown the listener closes at once; connections in their handshake
//! or waiting for a request close, answers in flight may finish.
//!
//! Invariants: a connection holds its global slot and its client's slot
//! until its socket is closed; a refusal is logged at most once a minute;
//! an answer carries `Strict-Transport-Security` exactly when it is served
//! over TLS.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::identity::security::Limits;
use crate::shutdown::stopped;

mod answer;
mod conn;
mod tls;

pub use tls::{HttpTlsError, tls_config};

/// How often each kind of refusal is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The HTTP server: the router and the limits it is served under.
pub struct HttpServer {
    router: Router,
    max_connections: usize,
    clients: Arc<Clients>,
    conn: conn::Settings,
    /// Set when the port serves TLS.
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
}

impl HttpServer {
    pub fn new(router: Router, limits: &Limits) -> HttpServer {
        let secs = Duration::from_secs;
        HttpServer {
            // The extractors' own limit, raised or lowered with the one the
            // transport applies to every body (`answer`).
            router: router.layer(DefaultBodyLimit::max(limits.http_max_body_bytes)),
            max_connections: limits.http_max_connections,
            clients: Arc::new(Clients::new(limits.http_max_connections_per_client)),
            conn: conn::Settings {
                timeouts: conn::Timeouts {
                    header: secs(limits.http_header_timeout_secs),
                    idle: secs(limits.http_idle_timeout_secs),
                    body: secs(limits.http_body_timeout_secs),
                },
                max_body_bytes: limits.http_max_body_bytes,
            },
            tls: None,
            handshake_timeout: secs(limits.handshake_timeout_secs),
        }
    }

    /// Serves TLS with `config` (see [`tls_config`]), and HSTS on every answer.
    pub fn with_tls(self, config: Arc<rustls::ServerConfig>) -> HttpServer {
        HttpServer {
            router: self.router.layer(axum::middleware::map_response(super::headers::add_strict_transport)),
            tls: Some(TlsAcceptor::from(config)),
            ..self
        }
    }

    /// Accepts and serves connections until `shutdown` turns true, then
    /// waits for the open connections to finish.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut full = RateLimited::default();
        let mut failing = RateLimited::default();
        loop {
            let permit = match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if let Some(waited) = full.note(Instant::now()) {
                        tracing::warn!(
                            cap = self.max_connections,
                            times_since_last = waited,
                            "HTTP connection cap reached; new connections wait to be accepted"
                        );
                    }
                    tokio::select! {
                        p = Arc::clone(&slots).acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                        _ = stopped(&mut shutdown) => break,
                    }
                }
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped(&mut shutdown) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file handles, typically: wait for some to close.
                    if let Some(n) = failing.note(Instant::now()) {
                        tracing::warn!(error = %e, times_since_last = n, "HTTP accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over its cap, the connection is dropped here, closing it and
            // giving its global slot back at once.
            let Some(client) = self.clients.admit(peer.ip(), Instant::now()) else { continue };
            let _ = tcp.set_nodelay(true);
            let accepted = Accepted {
                tcp,
                peer,
                router: self.router.clone(),
                settings: self.conn.clone(),
                tls: self.tls.clone().map(|acceptor| (acceptor, self.handshake_timeout)),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(async move {
                accepted.serve().await;
                drop((client, permit));
            });
        }
        // Closed now, so that the port is free for a restart at once.
        drop(listener);
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
    }
}

/// One accepted connection and what it is served with.
struct Accepted {
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    settings: conn::Settings,
    /// The acceptor and the handshake's deadline, when the port serves TLS.
    tls: Option<(TlsAcceptor, Duration)>,
    shutdown: watch::Receiver<bool>,
}

impl Accepted {
    /// Serves the connection until it closes: over TLS once its handshake
    /// has finished in time, else as it is.
    async fn serve(self) {
        let Accepted { tcp, peer, router, settings, tls, mut shutdown } = self;
        match tls {
            None => conn::drive(tcp, peer, router, settings, shutdown).await,
            Some((acceptor, deadline)) => {
                if let Some(tls) = tls::handshake(&acceptor, tcp, peer, deadline, &mut shutdown).await {
                    conn::drive(tls, peer, router, settings, shutdown).await;
                }
            }
        }
    }
}

/// A client's address as counted: an IPv4 address (also when it comes
/// mapped into IPv6), an IPv6 address's /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Open connections per client.
struct Clients {
    per_client: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    refusals: Mutex<RateLimited>,
}

impl Clients {
    fn new(per_client: usize) -> Clients {
        Clients { per_client, open: Mutex::new(HashMap::new()), refusals: Mutex::new(RateLimited::default()) }
    }

    /// A slot for one more connection from `ip`, or none when the client
    /// holds its cap already (logged, rate-limited).
    fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<ClientSlot> {
        let key = client_key(ip);
        {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let n = open.entry(key).or_insert(0);
            if *n < self.per_client {
                *n += 1;
                return Some(ClientSlot { clients: Arc::clone(self), key });
            }
        }
        let logged = self.refusals.lock().unwrap_or_else(PoisonError::into_inner).note(now);
        if let Some(refused) = logged {
            tracing::warn!(
                client = %key,
                cap = self.per_client,
                refused_since_last = refused,
                "HTTP client at its connection cap; its further connections are closed"
            );
        }
        None
    }

    fn release(&self, key: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&client_key(ip)).copied().unwrap_or(0)
    }
}

/// One connection counted against its client until dropped.
struct ClientSlot {
    clients: Arc<Clients>,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.clients.release(self.key);
    }
}

/// Lets one log line through per [`LOG_EVERY`], counting the events in
/// between, so a flood of refusals cannot flood the log too.
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<Instant>,
    since_last: u64,
}

impl RateLimited {
    /// Counts an event; `Some(events since the last line, this one
    /// included)` when a line is due now.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.since_last = self.since_last.saturating_add(1);
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since_last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_address_and_ipv6_prefix() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), v4, "IPv4 mapped into IPv6");
        let a = client_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, client_key("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(a, client_key("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn a_client_gets_its_cap_and_slots_come_back_when_closed() {
        let clients = Arc::new(Clients::new(2));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        let first = clients.admit(a, now).expect("first");
        let second = clients.admit(a, now).expect("second");
        assert!(clients.admit(a, now).is_none(), "over the cap");
        assert!(clients.admit(b, now).is_some(), "another client is not affected");
        drop(first);
        assert_eq!(clients.open(a), 1);
        let third = clients.admit(a, now).expect("a slot came back");
        drop((second, third));
        assert_eq!(clients.open(a), 0);
        assert!(clients.open.lock().unwrap().is_empty(), "no entry is kept for a client gone");
    }

    #[test]
    fn refusals_are_logged_once_a_minute_with_their_count() {
        let mut log = RateLimited::default();
        let t = Instant::now();
        assert_eq!(log.note(t), Some(1));
        for i in 1..100 {
            assert_eq!(log.note(t + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(log.note(t + LOG_EVERY), Some(100), "the 99 kept back and this one");
        assert_eq!(log.note(t + LOG_EVERY + Duration::from_secs(1)), None);
    }

    #[test]
    fn the_http_limits_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let load = |limits: &str| {
            std::fs::write(&path, format!("[limits]\n{limits}")).unwrap();
            crate::config::Config::load(&path).map(|c| c.limits)
        };
        let l = load("http_max_connections = 8\nhttp_max_connections_per_client = 8").unwrap();
        assert_eq!((l.http_max_connections, l.http_idle_timeout_secs), (8, 30));
        for (bad, why) in [
            ("http_max_connections = 0", "http_max_connections must be"),
            ("http_max_connections = 8\nhttp_max_connections_per_client = 9", "per_client must be"),
            ("http_header_timeout_secs = 0", "timeout_secs must be positive"),
            ("http_idle_timeout_secs = 0", "timeout_secs must be positive"),
            ("http_body_timeout_secs = 0", "timeout_secs must be positive"),
            ("http_max_body_bytes = 100", "http_max_body_bytes"),
        ] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
