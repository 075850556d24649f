//! Raw TCP clients for the tests of the HTTP port's connection limits, which
//! must hold a connection open, half-send a request or stall a handshake as
//! a hostile client would, below any HTTP or TLS library.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

/// A connection to `to` from address `from` (any of 127.0.0.0/8, so one
/// machine stands for several clients).
pub async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind a loopback address");
    socket.connect(to).await.expect("connect")
}

/// Reads (and drops) whatever comes until the server closes the
/// connection; the time that took, or `None` when still open after `limit`.
pub async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|()| start.elapsed())
}
