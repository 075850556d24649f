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
#[derive(Debug, Default)]
pub struct Context {
    /// Collection time, Unix seconds. Ages (signatures, package lists) are
    /// measured against it, never against a clock read inside a parser.
    pub now: i64,
    pub privacy: Privacy,
    /// Personal values seen so far with what replaces them, so the raw
    /// observation kept in the record is scrubbed the same way as the facts.
    replaced: std::sync::Mutex<Vec<(String, String)>>,
}

impl Context {
    /// A context at `now` that collects personal data as is.
    pub fn at(now: i64) -> Self {
        Context { now, privacy: Privacy::default(), replaced: Default::default() }
    }

    /// A context at `now` with these privacy settings.
    pub fn new(now: i64, privacy: Privacy) -> Self {
        Context { now, privacy, replaced: Default::default() }
    }

    /// A context at the current time.
    pub fn now(privacy: Privacy) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Context { now, privacy, replaced: Default::default() }
    }

    /// A personal value as it may enter a record: as is, pseudonymised, or
    /// `None` when the deployment does not collect this kind at all.
    pub fn personal(&self, kind: Personal, value: &str) -> Option<String> {
        let out = self.privacy.apply(kind, value);
        if out.as_deref() != Some(value) && value.len() >= 2 {
            let with = out.clone().unwrap_or_else(|| "<omitted>".to_string());
            if let Ok(mut r) = self.replaced.lock()
                && !r.iter().any(|(v, _)| v == value)
            {
                r.push((value.to_string(), with));
                // Longest first: "alice.smith" before "alice".
                r.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
            }
        }
        out
    }

    /// Registers a personal value known up front (the host's own name), so
    /// raw observations are scrubbed of it even where no collector asked.
    pub fn register(&self, kind: Personal, value: &str) {
        let _ = self.personal(kind, value);
    }

    /// The context with this host's own name registered (see [`Context::register`]).
    pub fn with_host_name(self, name: Option<&str>) -> Self {
        if let Some(n) = name {
            self.register(Personal::HostName, n);
        }
        self
    }

    /// `raw` with every personal value seen so far replaced as in the facts.
    /// Whole words only, so a user "adm" does not rewrite "admin".
    pub fn scrub(&self, raw: &str) -> String {
        let Ok(replaced) = self.replaced.lock() else {
            return raw.to_string();
        };
        let mut out = raw.to_string();
        for (value, with) in replaced.iter() {
            out = replace_words(&out, value, with);
        }
        out
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

/// Replaces `value` where it is not part of a longer word (letters, digits
/// and `_` continue a word; `-` and `.` do not, so a host name inside its
/// FQDN is replaced too: too much is safer than too little).
fn replace_words(text: &str, value: &str, with: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(value) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + value.len()..].chars().next();
        out.push_str(&rest[..i]);
        if word(before) || word(after) {
            out.push_str(value);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + value.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::Handling;

    #[test]
    fn raw_observations_are_scrubbed_like_the_facts() {
        let privacy = Privacy::with_key(Handling::Pseudonymise, Handling::Omit, Handling::Collect, &[1; 32]);
        let ctx = Context::now(privacy);
        ctx.register(Personal::HostName, "web-17");
        let alice = ctx.personal(Personal::UserName, "alice").unwrap();
        assert!(alice.starts_with("p:"));
        let raw = "sudo:x:27:alice,bob\nalicebot alice-admin web-17.example.org web-17 admin";
        let out = ctx.scrub(raw);
        let want =
            format!("sudo:x:27:{alice},bob\nalicebot {alice}-admin <omitted>.example.org <omitted> admin");
        assert_eq!(out, want);
        // Collected values are left as they are.
        let plain = Context::at(0);
        assert_eq!(plain.personal(Personal::UserName, "alice").as_deref(), Some("alice"));
        assert_eq!(plain.scrub("alice"), "alice");
    }
}
