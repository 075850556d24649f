//! The server's configuration file (`config.toml` in the data dir): one
//! section per domain, each section's type owned by the domain that reads it
//! (`[limits]` by `security`, `[[webhooks]]` by `webhook`, ...), so no domain
//! imports this file for its own settings. `[http]` is read by the
//! composition root only, which hands the HTTP port its TLS ready-made, so
//! its type lives here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::security::Limits;

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
    /// HTTP API and dashboard; over TLS unless `[http]` says otherwise.
    pub http_listen: SocketAddr,
    /// Names (DNS or IP) in the server certificate.
    pub server_names: Vec<String>,
    pub limits: Limits,
    pub http: HttpPort,
    pub agent_cert: AgentCert,
    pub policy: CollectionSchedule,
    pub evaluation: Evaluation,
    pub risk: Risk,
    pub log: Log,
    /// Endpoints told about risk-register events (`[[webhook]]`).
    #[serde(rename = "webhook", skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<crate::webhook::WebhookConfig>,
}

/// How the HTTP port (API and dashboard) is served (`[http]`). It carries
/// bearer tokens, which must not cross a network in clear text: TLS
/// wherever the port is reachable from another host, plain HTTP only on
/// loopback unless the operator says otherwise.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPort {
    /// `auto`: TLS, except on a loopback address with no certificate
    /// named; `on`: TLS; `off`: plain HTTP.
    pub tls: TlsMode,
    /// The certificate chain served (PEM, the server's own certificate
    /// first) and its private key (PEM); relative paths are in the data
    /// dir. Unset: the data dir's `server.pem` and `server.key`, which our
    /// CA signed for `server_names` (clients trust `ca.pem`); a name
    /// browsers trust needs a certificate from a CA they know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Plain HTTP on an address other than loopback (behind a proxy that
    /// terminates TLS); without it the server refuses to start so.
    pub allow_plain_off_loopback: bool,
}

/// `[http] tls`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Auto,
    On,
    Off,
}

/// How the HTTP port is served, as `[http]` and the listen address decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpTransport {
    Tls,
    /// Plain HTTP on a loopback address.
    Plain,
    /// Plain HTTP beyond loopback, allowed by `allow_plain_off_loopback`.
    PlainOffLoopback,
}

/// An `[http]` section the server may not start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpPortError {
    #[error(
        "http_listen {addr} is not a loopback address, and [http] tls = \"off\" would send API tokens \
         across the network in clear text; serve TLS there ([http] tls = \"auto\" or \"on\"), listen on \
         a loopback address, or, behind a proxy that terminates TLS, set [http] allow_plain_off_loopback = true"
    )]
    PlainOffLoopback { addr: SocketAddr },
    #[error("[http] names {named} without {missing}: a certificate is served with its key")]
    HalfPair { named: &'static str, missing: &'static str },
    #[error(
        "[http] names a certificate, but tls = \"off\" serves none; set tls = \"on\" or \"auto\", or remove \
         cert_file and key_file"
    )]
    CertWithTlsOff,
}

impl HttpPort {
    /// How the port is served on `listen`; an error when these settings
    /// would serve tokens in clear text beyond loopback, or contradict
    /// themselves.
    pub fn transport(&self, listen: SocketAddr) -> Result<HttpTransport, HttpPortError> {
        let named = match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(HttpPortError::HalfPair { named: "cert_file", missing: "key_file" });
            }
            (None, Some(_)) => {
                return Err(HttpPortError::HalfPair { named: "key_file", missing: "cert_file" });
            }
            (cert, _) => cert.is_some(),
        };
        // `::ffff:127.0.0.1` is loopback too.
        let loopback = listen.ip().to_canonical().is_loopback();
        match self.tls {
            TlsMode::On => Ok(HttpTransport::Tls),
            // A certificate named is a certificate meant to be served.
            TlsMode::Auto if named || !loopback => Ok(HttpTransport::Tls),
            TlsMode::Auto => Ok(HttpTransport::Plain),
            TlsMode::Off if named => Err(HttpPortError::CertWithTlsOff),
            TlsMode::Off if loopback => Ok(HttpTransport::Plain),
            TlsMode::Off if self.allow_plain_off_loopback => Ok(HttpTransport::PlainOffLoopback),
            TlsMode::Off => Err(HttpPortError::PlainOffLoopback { addr: listen }),
        }
    }

    /// The certificate and key files named, resolved in `data_dir`; `None`
    /// when none are named (the data dir's server certificate is served).
    pub fn cert_files(&self, data_dir: &Path) -> Option<(PathBuf, PathBuf)> {
        Some((data_dir.join(self.cert_file.as_ref()?), data_dir.join(self.key_file.as_ref()?)))
    }
}

/// The certificates the CA issues to agents (`[agent_cert]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentCert {
    /// Lifetime of agent client certificates; agents renew at two thirds.
    pub lifetime_hours: u64,
}

/// What agents are told to collect, and how often: the `[policy]` table of
/// `config.toml` (the name the file keeps), not the policy's CEL rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectionSchedule {
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
    /// Evidence of a check is stale (never passing) once older than its
    /// collection interval (`policy.check_interval_seconds`, else
    /// `policy.interval_seconds`) times this factor...
    pub stale_factor: f64,
    /// ...and never before this many hours (sleeping laptops).
    pub stale_after_hours: u64,
}

/// The transparency log (`[log]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// The log's origin line in checkpoints (C2SP: a schema-less URL, no
    /// spaces or `+`), also the log key's name. Empty: `<first server name>/custos-log`.
    pub origin: String,
    /// How often a new checkpoint is signed when the log grew.
    pub checkpoint_seconds: u64,
}

impl Default for Log {
    fn default() -> Self {
        Log { origin: String::new(), checkpoint_seconds: 60 }
    }
}

impl Config {
    /// The log origin in force.
    pub fn log_origin(&self) -> String {
        if !self.log.origin.is_empty() {
            return self.log.origin.clone();
        }
        let host = self.server_names.first().map_or("localhost", String::as_str);
        format!("{host}/custos-log")
    }
}

/// How the risk register rates and moves entries (`[risk]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Risk {
    /// `iso27005-5x5` or `bsi-200-3-4x4`.
    pub matrix: crate::register::MatrixKind,
    /// Frameworks whose deviating requirements become entries (the ISMS's
    /// own); the entries name related requirements of the others.
    pub frameworks: Vec<String>,
    /// How long a deviation must last before its entry opens (or reopens).
    pub grace_minutes: u32,
    /// Clean evaluations in a row before an evidence entry closes.
    pub close_after_clean: u32,
    pub max_acceptance_days: u32,
    /// Days from opening to the due date, per level.
    pub sla_days: SlaDays,
    /// Share of in-scope hosts affected from which the likelihood rises a step.
    pub wide_share_percent: u32,
    /// Share below which it falls a step (with at least `narrow_min_hosts` in scope).
    pub narrow_share_percent: u32,
    pub narrow_min_hosts: u32,
    /// Days open after which the likelihood rises a step.
    pub long_days: u32,
    /// Host tags that each make a scope of the register: one entry per
    /// deviating requirement and scope, a host in the first of these it
    /// carries, hosts with none in `fleet`. Empty: one scope, the fleet.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlaDays {
    pub low: u32,
    pub medium: u32,
    pub high: u32,
    pub very_high: u32,
}

impl Default for Risk {
    fn default() -> Self {
        Risk {
            matrix: crate::register::MatrixKind::Iso27005,
            frameworks: vec!["iso27001:2022".into()],
            grace_minutes: 30,
            close_after_clean: 3,
            max_acceptance_days: 365,
            sla_days: SlaDays::default(),
            wide_share_percent: 50,
            narrow_share_percent: 10,
            narrow_min_hosts: 10,
            long_days: 30,
            scopes: Vec::new(),
        }
    }
}

impl Default for SlaDays {
    fn default() -> Self {
        SlaDays { low: 180, medium: 90, high: 30, very_high: 7 }
    }
}

impl Risk {
    pub fn policy(&self) -> crate::register::RiskPolicy {
        const DAY: i64 = 86_400;
        let d = |days: u32| i64::from(days) * DAY;
        let sla = &self.sla_days;
        crate::register::RiskPolicy {
            matrix: crate::register::Matrix::new(self.matrix),
            grace_seconds: i64::from(self.grace_minutes) * 60,
            close_after_clean: self.close_after_clean,
            sla_seconds: [d(sla.low), d(sla.medium), d(sla.high), d(sla.very_high)],
            max_acceptance_seconds: d(self.max_acceptance_days),
            wide_share: f64::from(self.wide_share_percent) / 100.0,
            narrow_share: f64::from(self.narrow_share_percent) / 100.0,
            narrow_min_hosts: self.narrow_min_hosts,
            long_seconds: d(self.long_days),
            scopes: self.scopes.clone(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.frameworks.is_empty() {
            return Err("risk.frameworks must name at least one framework".into());
        }
        if self.close_after_clean == 0 {
            return Err("risk.close_after_clean must be at least 1".into());
        }
        let s = &self.sla_days;
        if [s.low, s.medium, s.high, s.very_high].contains(&0) {
            return Err("risk.sla_days must be positive for every level".into());
        }
        if !(s.very_high <= s.high && s.high <= s.medium && s.medium <= s.low) {
            return Err(
                "risk.sla_days must not grow with the level (very_high <= high <= medium <= low)".into()
            );
        }
        if self.max_acceptance_days == 0 {
            return Err("risk.max_acceptance_days must be positive".into());
        }
        if self.wide_share_percent > 100 || self.narrow_share_percent >= self.wide_share_percent {
            return Err("risk: need narrow_share_percent < wide_share_percent <= 100".into());
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            if !custos_proto::evidence::statement::is_tag(scope) {
                return Err(format!(
                    "risk.scopes: {scope:?} is not a host tag (1 to 64 lowercase letters, digits, '-', '_' or '.')"
                ));
            }
            // `fleet` is where hosts with none of the tags go: a tag of that
            // name would mix them with the tagged ones.
            if scope == crate::register::FLEET_SCOPE {
                return Err(
                    "risk.scopes: \"fleet\" is the scope of hosts with none of the tags; name a tag".into()
                );
            }
            if self.scopes[..i].contains(scope) {
                return Err(format!("risk.scopes: {scope:?} is named twice"));
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            limits: Limits::default(),
            http: HttpPort::default(),
            agent_cert: AgentCert::default(),
            policy: CollectionSchedule::default(),
            evaluation: Evaluation::default(),
            risk: Risk::default(),
            log: Log::default(),
            webhooks: Vec::new(),
        }
    }
}

impl Default for AgentCert {
    fn default() -> Self {
        AgentCert { lifetime_hours: 24 }
    }
}

impl Default for CollectionSchedule {
    fn default() -> Self {
        CollectionSchedule {
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
        Evaluation { stale_factor: 3.0, stale_after_hours: 24 }
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
        l.validate_http()?;
        self.http.transport(self.http_listen).map_err(|e| e.to_string())?;
        if l.enroll_burst == 0 || l.enroll_attempts_per_minute == 0 || l.enroll_tracked_sources == 0 {
            return Err("limits.enroll_* must be positive".into());
        }
        if self.agent_cert.lifetime_hours == 0 {
            return Err("agent_cert.lifetime_hours must be positive".into());
        }
        if let Some((check, _)) = self.policy.check_interval_seconds.iter().find(|(_, s)| **s < 10) {
            return Err(format!("policy.check_interval_seconds.{check} must be at least 10"));
        }
        self.risk.validate()?;
        if self.log.checkpoint_seconds == 0 {
            return Err("log.checkpoint_seconds must be positive".into());
        }
        custos_verify::tlog::note::check_key_name(&self.log_origin())
            .map_err(|e| format!("log.origin {:?}: {e}", self.log_origin()))?;
        crate::webhook::validate(&self.webhooks).map_err(|e| e.to_string())?;
        if !(self.evaluation.stale_factor >= 1.0 && self.evaluation.stale_factor <= 100.0) {
            return Err("evaluation.stale_factor must be between 1 and 100".into());
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
        std::fs::write(&path, "[risk]\nframeworks = []").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("risk.frameworks"));
        std::fs::write(&path, "[risk.sla_days]\nlow = 1\nvery_high = 30").unwrap();
        assert!(Config::load(&path).unwrap_err().to_string().contains("must not grow"));
        std::fs::write(&path, "[risk]\nmatrix = \"bsi-200-3-4x4\"").unwrap();
        assert_eq!(Config::load(&path).unwrap().risk.policy().matrix.steps(), 4);
        std::fs::write(&path, "[risk]\nscopes = [\"server\", \"laptop\"]").unwrap();
        assert_eq!(Config::load(&path).unwrap().risk.policy().scopes, ["server", "laptop"]);
        for (bad, why) in [
            ("[\"Server\"]", "not a host tag"),
            ("[\"fleet\"]", "hosts with none of the tags"),
            ("[\"server\", \"server\"]", "named twice"),
        ] {
            std::fs::write(&path, format!("[risk]\nscopes = {bad}")).unwrap();
            let e = Config::load(&path).unwrap_err().to_string();
            assert!(e.contains("risk.scopes") && e.contains(why), "{bad}: {e}");
        }
        std::fs::write(&path, "[log]\ncheckpoint_seconds = 300").unwrap();
        assert_eq!(Config::load(&path).unwrap().log.checkpoint_seconds, 300);
        std::fs::write(&path, "[log]\ncheckpoint_seconds = 0").unwrap();
        assert!(
            Config::load(&path).unwrap_err().to_string().contains("log.checkpoint_seconds must be positive")
        );
        std::fs::write(&path, "unknown_key = 1").unwrap();
        assert!(matches!(Config::load(&path), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn the_http_port_serves_tls_beyond_loopback_and_refuses_clear_text_there() {
        let port = |text: &str| toml::from_str::<HttpPort>(text).unwrap();
        let at = |addr: &str| addr.parse::<SocketAddr>().unwrap();
        let named = "cert_file = \"api.pem\"\nkey_file = \"api.key\"\n";
        for (settings, listen, expected) in [
            ("", "127.0.0.1:8080", Ok(HttpTransport::Plain)),
            ("", "[::1]:8080", Ok(HttpTransport::Plain)),
            ("", "[::ffff:127.0.0.1]:8080", Ok(HttpTransport::Plain)),
            ("", "0.0.0.0:8080", Ok(HttpTransport::Tls)),
            ("", "192.0.2.7:8080", Ok(HttpTransport::Tls)),
            (named, "127.0.0.1:8080", Ok(HttpTransport::Tls)),
            ("tls = \"on\"", "127.0.0.1:8080", Ok(HttpTransport::Tls)),
            ("tls = \"off\"", "127.0.0.1:8080", Ok(HttpTransport::Plain)),
            (
                "tls = \"off\"",
                "0.0.0.0:8080",
                Err(HttpPortError::PlainOffLoopback { addr: at("0.0.0.0:8080") }),
            ),
            (
                "tls = \"off\"\nallow_plain_off_loopback = true",
                "0.0.0.0:8080",
                Ok(HttpTransport::PlainOffLoopback),
            ),
            ("allow_plain_off_loopback = true", "0.0.0.0:8080", Ok(HttpTransport::Tls)),
            (&format!("tls = \"off\"\n{named}"), "127.0.0.1:8080", Err(HttpPortError::CertWithTlsOff)),
            (
                "cert_file = \"api.pem\"",
                "0.0.0.0:8080",
                Err(HttpPortError::HalfPair { named: "cert_file", missing: "key_file" }),
            ),
            (
                "key_file = \"api.key\"",
                "0.0.0.0:8080",
                Err(HttpPortError::HalfPair { named: "key_file", missing: "cert_file" }),
            ),
        ] {
            assert_eq!(port(settings).transport(at(listen)), expected, "{settings:?} on {listen}");
        }
        let files = port(named).cert_files(Path::new("/data")).unwrap();
        assert_eq!(files, (PathBuf::from("/data/api.pem"), PathBuf::from("/data/api.key")));
        let absolute = port("cert_file = \"/etc/tls/api.pem\"\nkey_file = \"/etc/tls/api.key\"");
        assert_eq!(absolute.cert_files(Path::new("/data")).unwrap().0, PathBuf::from("/etc/tls/api.pem"));
        assert_eq!(port("").cert_files(Path::new("/data")), None);
    }

    #[test]
    fn plain_http_beyond_loopback_fails_the_load_naming_the_file_and_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "http_listen = \"0.0.0.0:8080\"\n[http]\ntls = \"off\"").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        assert!(e.contains("0.0.0.0:8080") && e.contains("allow_plain_off_loopback = true"), "{e}");
        std::fs::write(
            &path,
            "http_listen = \"0.0.0.0:8080\"\n[http]\ntls = \"off\"\nallow_plain_off_loopback = true",
        )
        .unwrap();
        assert!(Config::load(&path).unwrap().http.allow_plain_off_loopback);
        std::fs::write(&path, "[http]\ntls = \"sometimes\"").unwrap();
        assert!(matches!(Config::load(&path), Err(ConfigError::Parse { .. })));
        std::fs::write(&path, "[http]\ncert = \"api.pem\"").unwrap();
        assert!(matches!(Config::load(&path), Err(ConfigError::Parse { .. })), "unknown keys are refused");
        assert!(
            Config::default().to_toml().contains("[http]\ntls = \"auto\""),
            "{}",
            Config::default().to_toml()
        );
    }
}
