//! The agent's configuration file (`agent.toml`): settings a deployment
//! decides for all its hosts, as opposed to the per-host state directory.
//!
//! ```toml
//! tags = ["laptop", "berlin"]   # host groups the server's scopes read
//!
//! [privacy]
//! user_names = "pseudonymise"   # collect | pseudonymise | omit
//! host_names = "collect"
//! addresses = "omit"
//! key_file = "/etc/custos-agent/pseudonym.key"
//!
//! [network]                     # limits on each exchange with the server
//! connect_secs = 10             # TCP connect and TLS handshake
//! call_secs = 30                # one request and its answer
//! stream_progress_secs = 60     # silence on the evidence stream
//! delivery_secs = 600           # one whole delivery attempt
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::privacy::{Privacy, PrivacyConfig, PrivacyError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Host-group tags sent with every record.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub network: crate::deadlines::Deadlines,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
}

impl AgentConfig {
    /// Reads a configuration file; a missing file at the default location is
    /// an empty configuration, a missing file named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<AgentConfig, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(AgentConfig::default());
            }
            Err(e) => return Err(ConfigError::Read { path: path.to_path_buf(), message: e.to_string() }),
        };
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses the TOML text; the error names the line and the field.
    pub fn parse(text: &str) -> Result<AgentConfig, String> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        use custos_proto::evidence::statement::{MAX_TAGS, is_tag};
        if config.tags.len() > MAX_TAGS {
            return Err(format!("tags: at most {MAX_TAGS}"));
        }
        if let Some(t) = config.tags.iter().find(|t| !is_tag(t)) {
            return Err(format!("tags: {t:?} is not 1 to 64 lowercase letters, digits, '-', '_' or '.'"));
        }
        Ok(config)
    }

    /// The privacy settings, with the key read.
    pub fn privacy(&self) -> Result<Privacy, ConfigError> {
        Ok(Privacy::load(&self.privacy)?)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn tags_are_read_and_bad_ones_refused() {
        let c = AgentConfig::parse("tags = [\"laptop\", \"berlin-2\"]").unwrap();
        assert_eq!(c.tags, ["laptop", "berlin-2"]);
        assert!(AgentConfig::parse("tags = [\"Laptop\"]").unwrap_err().contains("Laptop"));
        assert!(AgentConfig::parse("tags = [\"\"]").is_err());
    }

    use super::*;
    use crate::privacy::Handling;

    #[test]
    fn parses_privacy_and_names_bad_fields() {
        let c = AgentConfig::parse("[privacy]\nuser_names = \"omit\"\n").unwrap();
        assert_eq!(c.privacy.user_names, Handling::Omit);
        let e = AgentConfig::parse("[privacy]\nuser_names = \"hide\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("hide"), "{e}");
        let e = AgentConfig::parse("[privacy]\nusernames = \"omit\"\n").unwrap_err();
        assert!(e.contains("usernames"), "{e}");
    }

    #[test]
    fn a_missing_default_file_is_empty_but_a_named_one_is_an_error() {
        let missing = Path::new("/nonexistent/custos/agent.toml");
        assert!(AgentConfig::load(missing, false).is_ok());
        let e = AgentConfig::load(missing, true).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/custos/agent.toml"), "{e}");
    }
}
