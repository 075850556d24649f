//! A TCP stream that holds back what is written during the TLS handshake
//! until it is flushed, so a refused handshake's alert leaves only after
//! its security event is committed.
//!
//! Why this works: tokio-rustls flushes after every handshake flight it
//! writes, but writes the alert of a failed handshake as a "last gasp"
//! without flushing, then returns the error with the stream. The accept
//! loop records the event, then flushes (the alert leaves) and closes.
//! After a successful handshake the stream passes writes straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct HeldTcp {
    tcp: TcpStream,
    /// Bytes written and not yet flushed.
    held: Vec<u8>,
    /// Whether writes are held until flushed (during the handshake).
    holding: bool,
}

impl HeldTcp {
    pub fn new(tcp: TcpStream) -> Self {
        HeldTcp { tcp, held: Vec::new(), holding: true }
    }

    /// Writes pass straight through from now on (what is held still goes first).
    pub fn pass_through(&mut self) {
        self.holding = false;
    }

    /// Writes out what is held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl tonic::transport::server::Connected for HeldTcp {
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

impl AsyncRead for HeldTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for HeldTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
