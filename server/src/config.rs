//! The server's configuration file (`config.toml` in the data dir) and the
//! fixed layout of the data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC (agents, mutual TLS).
    pub grpc_listen: SocketAddr,
    /// HTTP API and dashboard.
    pub http_listen: SocketAddr,
    /// Names (DNS or IP) in the server certificate.
    pub server_names: Vec<String>,
    pub limits: Limits,
    pub agent_cert: AgentCert,
    pub policy: Policy,
    pub evaluation: Evaluation,
}

/// Limits that keep one client from starving the others.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted, bytes.
    pub max_message_bytes: usize,
    /// Open TLS connections at once; further connections wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake.
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentCert {
    /// Lifetime of agent client certificates; agents renew at two thirds.
    pub lifetime_hours: u64,
}

/// What agents are told to collect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Default interval between two collections of a check.
    pub interval_seconds: u32,
    pub collector_timeout_seconds: u32,
    /// Check ids; empty means all the agent knows.
    pub checks: Vec<String>,
    /// Per-check intervals, overriding `interval_seconds`.
    pub check_interval_seconds: std::collections::BTreeMap<String, u32>,
    /// Random delay added to each next collection, percent of its interval.
    pub jitter_percent: u32,
    /// How often agents fetch the policy again (the latency of "collect now").
    pub poll_seconds: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Evaluation {
    /// Evidence older than this counts as missing, never as passing.
    pub stale_after_hours: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            limits: Limits::default(),
            agent_cert: AgentCert::default(),
            policy: Policy::default(),
            evaluation: Evaluation::default(),
        }
    }
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
        }
    }
}

impl Default for AgentCert {
    fn default() -> Self {
        AgentCert { lifetime_hours: 24 }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            interval_seconds: 3600,
            collector_timeout_seconds: 120,
            checks: Vec::new(),
            check_interval_seconds: std::collections::BTreeMap::new(),
            jitter_percent: 10,
            poll_seconds: 60,
        }
    }
}

impl Default for Evaluation {
    fn default() -> Self {
        Evaluation { stale_after_hours: 48 }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: Config = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_message_bytes < 64 * 1024 {
            return Err("limits.max_message_bytes must be at least 65536".into());
        }
        if l.max_connections == 0 || l.max_streams_per_connection == 0 || l.max_batch_records == 0 {
            return Err("limits must be positive".into());
        }
        if self.agent_cert.lifetime_hours == 0 {
            return Err("agent_cert.lifetime_hours must be positive".into());
        }
        if let Some((check, _)) = self.policy.check_interval_seconds.iter().find(|(_, s)| **s < 10) {
            return Err(format!("policy.check_interval_seconds.{check} must be at least 10"));
        }
        if self.policy.jitter_percent > 50 {
            return Err("policy.jitter_percent must be at most 50".into());
        }
        if self.policy.poll_seconds < 5 {
            return Err("policy.poll_seconds must be at least 5".into());
        }
        if self.policy.interval_seconds < 10 {
            return Err("policy.interval_seconds must be at least 10".into());
        }
        Ok(())
    }
}

/// Files in the data dir.
#[derive(Debug, Clone)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }
    pub fn database(&self) -> PathBuf {
        self.0.join("custos.db")
    }
    /// Imported OSCAL catalogs and their index.
    pub fn catalogs(&self) -> PathBuf {
        self.0.join("catalogs")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.0.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.0.join("server.key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, Config::default().to_toml()).unwrap();
        assert_eq!(Config::load(&path).unwrap(), Config::default());

        std::fs::write(&path, "grpc_listen = \"nonsense\"").unwrap();
        assert!(matches!(Config::load(&path), Err(ConfigError::Parse { .. })));
        std::fs::write(&path, "[limits]\nmax_message_bytes = 10").unwrap();
        assert!(matches!(Config::load(&path), Err(ConfigError::Invalid { .. })));
        std::fs::write(&path, "unknown_key = 1").unwrap();
        assert!(matches!(Config::load(&path), Err(ConfigError::Parse { .. })));
    }
}
