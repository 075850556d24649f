//! The policy and mappings in force, loaded from the data dir and taken up
//! again when their files change. Invariant: a file that does not load is
//! logged and recorded as a security event, and the last good version
//! stays in force.

use time::OffsetDateTime;

use super::DataDir;
use crate::compliance::catalog::Catalog;
use crate::compliance::policy::{Policy, PolicyError};
use crate::datadir::catalog_imports::{ImportError, load_catalog};
use crate::datadir::reload::{ReadError, Reloadable};
use crate::store::Store;

/// Why the policy in the data dir cannot be loaded. Both carry the file
/// (and, for a refused policy, the line), so callers can point at it.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// Read, but refused (`PolicyError`: path, line, reason).
    #[error(transparent)]
    Refused(#[from] PolicyError),
    /// Not readable as a text file of the allowed size.
    #[error(transparent)]
    Unreadable(#[from] ReadError),
}

/// Loads the built-in policy merged with the data dir's `policy.toml`, if any.
pub fn load_policy(data_dir: &std::path::Path) -> Result<Policy, PolicyLoadError> {
    let builtin = Policy::builtin()?;
    let path = DataDir(data_dir.to_path_buf()).policy();
    let text = crate::datadir::reload::read_optional(&path)?;
    Ok(Policy::with_optional_override(&builtin, &path, text.as_deref())?)
}

/// Takes up a changed policy file. A bad one is logged and recorded as a
/// security event, and the last good policy stays in force. `Ok(true)`: a
/// new policy is in force; `Ok(false)`: nothing changed.
pub fn refresh_policy(
    policy: &Reloadable<Policy>,
    data_dir: &std::path::Path,
    store: &Store,
    now: OffsetDateTime,
) -> Result<bool, PolicyLoadError> {
    let what = TakeUp { name: "policy", event: "policy_rejected" };
    what.refresh(policy, || load_policy(data_dir), |p| p.version().to_string(), store, now)
}

/// Takes up changed mapping files like [`refresh_policy`] does the policy:
/// a bad one is logged and recorded, the last good catalog stays.
pub fn refresh_catalog(
    catalog: &Reloadable<Catalog>,
    data_dir: &std::path::Path,
    store: &Store,
    now: OffsetDateTime,
) -> Result<bool, ImportError> {
    let what = TakeUp { name: "mappings", event: "mappings_rejected" };
    what.refresh(catalog, || load_catalog(data_dir), |c| c.mapping_version().to_string(), store, now)
}

/// One reloadable file set, named in the log and in its security event.
struct TakeUp {
    name: &'static str,
    event: &'static str,
}

impl TakeUp {
    /// Reloads `value` with `load` when its files changed; a refusal is
    /// logged and recorded, and the version in force (`version`) stays.
    fn refresh<T, E: std::fmt::Display>(
        &self,
        value: &Reloadable<T>,
        load: impl FnOnce() -> Result<T, E>,
        version: impl Fn(&T) -> String,
        store: &Store,
        now: OffsetDateTime,
    ) -> Result<bool, E> {
        let name = self.name;
        match value.refresh(load) {
            Ok(true) => {
                tracing::info!(version = version(&value.current()), "{name} reloaded");
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                tracing::error!(error = %e, "{name} rejected; the last good one stays in force");
                let detail = format!("{name} rejected, kept version {}: {e}", version(&value.current()));
                if let Err(e) = store.record_security_event(now.unix_timestamp(), None, self.event, &detail) {
                    tracing::error!(error = %e, "could not record the rejected {name}");
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_policy_file_is_an_error_value_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_policy(dir.path()).is_ok(), "no policy.toml: the built-in policy");
        let file = DataDir(dir.path().to_path_buf()).policy();
        std::fs::write(
            &file,
            "version = \"site-1\"\n\n[[rule]]\ncheck = \"dns\"\nexpr = \"true\"\nmessage = \"m\"\n",
        )
        .unwrap();
        match load_policy(dir.path()) {
            Err(PolicyLoadError::Refused(e)) => {
                assert_eq!((e.path.as_path(), e.line), (file.as_path(), Some(4)), "{e}");
                assert!(e.message.contains("unknown check \"dns\""), "{e}");
            }
            other => panic!("expected a refusal naming file and line, got {other:?}"),
        }
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(matches!(load_policy(dir.path()), Err(PolicyLoadError::Unreadable(_))));
    }
}
