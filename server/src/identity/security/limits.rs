//! What one peer may take of the server: message and body sizes,
//! connections, streams, time to finish a handshake or a request, and
//! enrollment attempts. `config.toml`'s `[limits]`; the gRPC port, the HTTP
//! port and the enrollment limiter read them from here.

use serde::{Deserialize, Serialize};

/// Limits that keep one client from starving the others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted, bytes.
    pub max_message_bytes: usize,
    /// Open TLS connections at once; further connections wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake (the gRPC port, and
    /// the HTTP port when it serves TLS).
    pub handshake_timeout_secs: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// HTTP/2 keep-alive ping interval and the time to wait for its answer.
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
    /// Time limit for unary calls (enrollment, renewal, policy).
    pub unary_timeout_secs: u64,
    /// Records committed together at most.
    pub max_batch_records: usize,
    // The HTTP port (API and dashboard), served by `api::serve`.
    /// Open HTTP connections at once; further connections wait to be accepted.
    pub http_max_connections: usize,
    /// Open HTTP connections from one client address (IPv6: one /64);
    /// further ones are closed at once, so one client cannot take the
    /// whole `http_max_connections`.
    pub http_max_connections_per_client: usize,
    /// Time a client has to send a whole request head, from its first byte.
    pub http_header_timeout_secs: u64,
    /// Time a connection stays open with no request in flight (counted
    /// from its opening or its last answer), and time an answer may wait
    /// for the client to read it.
    pub http_idle_timeout_secs: u64,
    /// Time a client has to send a request body, from the end of its head.
    pub http_body_timeout_secs: u64,
    /// Largest request body accepted, bytes.
    pub http_max_body_bytes: usize,
    // Enrollment attempts per source address (IPv6: one /64), a token
    // bucket: every attempt takes a token, a successful one gives it back,
    // so only refusals count; an empty bucket answers RESOURCE_EXHAUSTED.
    /// Attempts a source may make at once...
    pub enroll_burst: u32,
    /// ...and per minute after that.
    pub enroll_attempts_per_minute: u32,
    /// Sources remembered at most; the least recently seen is forgotten first.
    pub enroll_tracked_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 1024 * 1024,
            max_connections: 4096,
            handshake_timeout_secs: 10,
            max_streams_per_connection: 16,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 20,
            unary_timeout_secs: 30,
            max_batch_records: 1000,
            http_max_connections: 512,
            http_max_connections_per_client: 64,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 30,
            http_body_timeout_secs: 30,
            http_max_body_bytes: 2 * 1024 * 1024,
            enroll_burst: 10,
            enroll_attempts_per_minute: 10,
            enroll_tracked_sources: 10_000,
        }
    }
}

impl Limits {
    /// The HTTP port's limits: each must let a real client through.
    pub(crate) fn validate_http(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.http_max_connections) {
            return Err("limits.http_max_connections must be between 1 and 1000000".into());
        }
        if !(1..=self.http_max_connections).contains(&self.http_max_connections_per_client) {
            return Err(
                "limits.http_max_connections_per_client must be between 1 and limits.http_max_connections"
                    .into(),
            );
        }
        if self.http_header_timeout_secs == 0
            || self.http_idle_timeout_secs == 0
            || self.http_body_timeout_secs == 0
        {
            return Err("limits.http_*_timeout_secs must be positive".into());
        }
        if self.http_max_body_bytes < 64 * 1024 {
            return Err("limits.http_max_body_bytes must be at least 65536".into());
        }
        Ok(())
    }
}
