//! One HTTP connection: hyper's HTTP/1 state machine over the socket (or
//! its TLS session), and a watchdog that closes the connection when it
//! outstays its phase.
//!
//! The connection's [`Clock`] knows the phase and since when: waiting for
//! a request (from the opening or the last answer; `idle` timeout), reading
//! a request head (from its first byte; `header` timeout), answering (no
//! limit of its own: a body has its deadline in [`super::answer`], and an
//! export may take long to build). Independently, an answer the client
//! leaves unread for the `idle` time closes the connection.
//!
//! hyper's own `header_read_timeout` is not used: it starts counting as
//! soon as the connection waits for a request, so it cannot tell an idle
//! keep-alive connection from a client stopped halfway through its head,
//! and would close both after the same time.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::answer::Answer;
use crate::shutdown::stopped;

/// hyper's read and write buffer, at most: a request head of the API is a
/// few hundred bytes; hyper's default (~400 KiB) would let every open
/// connection pin that much memory.
const MAX_BUF_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
}

/// What every connection of the port is served with.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub timeouts: Timeouts,
    pub max_body_bytes: usize,
}

/// Serves one connection until it ends, outstays its phase, or the server
/// stops (then it closes at once unless an answer is under way, which may
/// finish).
pub(super) async fn drive<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Arc::new(Clock::new(Instant::now()));
    let io = TokioIo::new(Tracked { inner: stream, clock: Arc::clone(&clock) });
    let service = Answer::new(router, Arc::clone(&clock), settings.timeouts.body, settings.max_body_bytes);
    let mut conn = pin!(
        http1::Builder::new()
            .keep_alive(true)
            .header_read_timeout(None::<Duration>)
            .max_buf_size(MAX_BUF_BYTES)
            .serve_connection(io, service)
    );
    let mut stopping = false;
    loop {
        let due = clock.deadline(&settings.timeouts);
        let sleep = async move {
            match due {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            () = sleep => {
                // The phase may have moved on while asleep; only a deadline
                // still passed closes the connection.
                if let Some((at, why)) = clock.deadline(&settings.timeouts)
                    && at <= Instant::now()
                {
                    tracing::debug!(%peer, "HTTP connection closed: {why}");
                    return;
                }
            }
            () = clock.changed.notified() => {}
            () = stopped(&mut shutdown), if !stopping => {
                stopping = true;
                if !clock.answering() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    Idle,
    Head,
    Unread,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expiry::Idle => "no request within the idle timeout",
            Expiry::Head => "request head not complete within the header timeout",
            Expiry::Unread => "the client did not read the answer within the idle timeout",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request.
    Idle,
    /// A request head has begun.
    Head,
    /// This many requests are being answered.
    Answering(usize),
}

#[derive(Debug, Clone, Copy)]
struct State {
    phase: Phase,
    /// When the phase began.
    since: Instant,
    /// Since when a write has waited for the client to read.
    write_blocked: Option<Instant>,
}

/// When the connection in `state` is to be closed, and why; `None` while
/// it answers and the client reads.
fn deadline(state: &State, t: &Timeouts) -> Option<(Instant, Expiry)> {
    let phase = match state.phase {
        Phase::Idle => Some((state.since + t.idle, Expiry::Idle)),
        Phase::Head => Some((state.since + t.header, Expiry::Head)),
        Phase::Answering(_) => None,
    };
    let unread = state.write_blocked.map(|at| (at + t.idle, Expiry::Unread));
    match (phase, unread) {
        (Some(p), Some(u)) => Some(if u.0 < p.0 { u } else { p }),
        (p, u) => p.or(u),
    }
}

/// A connection's phase, kept by its socket and its service; every change
/// that can bring the deadline closer wakes the watchdog.
pub(super) struct Clock {
    state: Mutex<State>,
    changed: Notify,
}

impl Clock {
    fn new(now: Instant) -> Clock {
        Clock {
            state: Mutex::new(State { phase: Phase::Idle, since: now, write_blocked: None }),
            changed: Notify::new(),
        }
    }

    /// Applies `f`; wakes the watchdog when it says the deadline moved.
    fn update(&self, f: impl FnOnce(&mut State) -> bool) {
        let moved = f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        if moved {
            self.changed.notify_one();
        }
    }

    fn snapshot(&self) -> State {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expiry)> {
        deadline(&self.snapshot(), t)
    }

    fn answering(&self) -> bool {
        matches!(self.snapshot().phase, Phase::Answering(_))
    }

    /// Bytes arrived: on a waiting connection, a request head begins.
    fn read(&self, now: Instant) {
        self.update(|s| {
            let begins = s.phase == Phase::Idle;
            if begins {
                *s = State { phase: Phase::Head, since: now, ..*s };
            }
            begins
        });
    }

    /// A whole request head arrived; the connection answers it until the
    /// returned guard is dropped (with the answer's body, or unanswered).
    pub(super) fn request(self: &Arc<Self>, now: Instant) -> Answering {
        self.update(|s| {
            let n = match s.phase {
                Phase::Answering(n) => n + 1,
                Phase::Idle | Phase::Head => 1,
            };
            *s = State { phase: Phase::Answering(n), since: now, ..*s };
            true
        });
        Answering(Arc::clone(self))
    }

    fn answered(&self, now: Instant) {
        self.update(|s| {
            *s = match s.phase {
                Phase::Answering(n) if n > 1 => State { phase: Phase::Answering(n - 1), ..*s },
                _ => State { phase: Phase::Idle, since: now, ..*s },
            };
            true
        });
    }

    fn write_blocked(&self, now: Instant) {
        self.update(|s| {
            let starts = s.write_blocked.is_none();
            if starts {
                s.write_blocked = Some(now);
            }
            starts
        });
    }

    fn wrote(&self) {
        self.update(|s| {
            s.write_blocked = None;
            false
        });
    }
}

/// One request being answered; dropping it ends the answer.
pub(super) struct Answering(Arc<Clock>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answered(Instant::now());
    }
}

/// The socket (or its TLS session, where bytes are the decrypted ones),
/// telling the clock when bytes arrive and when a write waits for the client.
struct Tracked<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S> Tracked<S> {
    fn after_write<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &r {
            Poll::Pending => self.clock.write_blocked(Instant::now()),
            Poll::Ready(_) => self.clock.wrote(),
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.read(Instant::now());
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(r)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(30),
        body: Duration::from_secs(30),
    };

    fn at(clock: &Clock) -> Option<(Instant, Expiry)> {
        clock.deadline(&T)
    }

    #[test]
    fn each_phase_has_its_deadline_from_its_start() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let clock = Arc::new(Clock::new(t0));
        assert_eq!(at(&clock), Some((s(30), Expiry::Idle)), "a new connection waits for a request");
        clock.read(s(5));
        assert_eq!(at(&clock), Some((s(15), Expiry::Head)), "the head counts from its first byte");
        clock.read(s(9));
        assert_eq!(at(&clock), Some((s(15), Expiry::Head)), "more bytes do not extend it");
        let answering = clock.request(s(12));
        assert_eq!(at(&clock), None, "an answer under way has no deadline of its own");
        clock.read(s(20));
        assert_eq!(at(&clock), None, "body bytes start no head");
        // The guard ends the answer at the real time; here at a chosen one.
        std::mem::forget(answering);
        clock.answered(s(25));
        assert_eq!(at(&clock), Some((s(55), Expiry::Idle)), "idle counts from the answer's end");
    }

    #[test]
    fn an_unread_answer_closes_after_the_idle_time() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let clock = Arc::new(Clock::new(t0));
        let answering = clock.request(s(1));
        clock.write_blocked(s(2));
        clock.write_blocked(s(20));
        assert_eq!(at(&clock), Some((s(32), Expiry::Unread)), "from the first blocked write");
        clock.wrote();
        assert_eq!(at(&clock), None, "the client read: no deadline");
        drop(answering);
    }

    #[test]
    fn overlapping_answers_end_together() {
        let t0 = Instant::now();
        let clock = Arc::new(Clock::new(t0));
        let (a, b) = (clock.request(t0), clock.request(t0));
        drop(a);
        assert!(clock.answering(), "one still under way");
        drop(b);
        assert!(!clock.answering());
        assert_eq!(at(&clock).map(|(_, why)| why), Some(Expiry::Idle));
    }
}
