//! What every collector is given besides the host: which OS it runs on, the
//! collection time, and the privacy settings for personal data.

use crate::privacy::{Personal, Privacy};

/// The operating systems the agent has backends for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
    Macos,
}

impl Os {
    /// The OS this agent was built for; the only `cfg`-gated choice of backend.
    pub fn current() -> Option<Os> {
        if cfg!(target_os = "linux") {
            Some(Os::Linux)
        } else if cfg!(target_os = "windows") {
            Some(Os::Windows)
        } else if cfg!(target_os = "macos") {
            Some(Os::Macos)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
            Os::Macos => "macos",
        }
    }

    pub fn parse(s: &str) -> Option<Os> {
        match s {
            "linux" => Some(Os::Linux),
            "windows" => Some(Os::Windows),
            "macos" => Some(Os::Macos),
            _ => None,
        }
    }
}

impl std::fmt::Display for Os {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inputs of a collection that are not the host itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Collection time, Unix seconds. Ages (signatures, package lists) are
    /// measured against it, never against a clock read inside a parser.
    pub now: i64,
    pub privacy: Privacy,
}

impl Context {
    /// A context at `now` that collects personal data as is.
    pub fn at(now: i64) -> Self {
        Context { now, privacy: Privacy::default() }
    }

    /// A context at the current time.
    pub fn now(privacy: Privacy) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Context { now, privacy }
    }

    /// A personal value as it may enter a record: as is, pseudonymised, or
    /// `None` when the deployment does not collect this kind at all.
    pub fn personal(&self, kind: Personal, value: &str) -> Option<String> {
        self.privacy.apply(kind, value)
    }

    /// Like [`Context::personal`] for a list, keeping the order; omitted
    /// values are left out.
    pub fn personal_list<'a>(
        &self,
        kind: Personal,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        values.into_iter().filter_map(|v| self.personal(kind, v)).collect()
    }
}
