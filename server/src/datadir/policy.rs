//! The policy and mappings in force, loaded from the data dir and taken up
//! again when their files change. Invariant: a file that does not load is
//! logged and recorded as a security event, and the last good version
//! stays in force.

use time::OffsetDateTime;

use crate::catalog::Catalog;
use crate::catalog_imports::load_catalog;
use crate::config::DataDir;
use crate::policy::Policy;
use crate::reload::Reloadable;
use crate::store::Store;

/// Loads the built-in policy merged with the data dir's `policy.toml`, if any.
pub fn load_policy(data_dir: &std::path::Path) -> Result<Policy, String> {
    let builtin = Policy::builtin().map_err(|e| e.to_string())?;
    let path = DataDir(data_dir.to_path_buf()).policy();
    let text = crate::reload::read_optional(&path).map_err(|e| e.to_string())?;
    Policy::with_optional_override(&builtin, &path, text.as_deref()).map_err(|e| e.to_string())
}

/// Takes up a changed policy file. A bad one is logged and recorded as a
/// security event, and the last good policy stays in force. `Ok(true)`: a
/// new policy is in force; `Ok(false)`: nothing changed.
pub fn refresh_policy(
    policy: &Reloadable<Policy>,
    data_dir: &std::path::Path,
    store: &Store,
    now: OffsetDateTime,
) -> Result<bool, String> {
    match policy.refresh(|| load_policy(data_dir)) {
        Ok(true) => {
            tracing::info!(version = policy.current().version(), "policy reloaded");
            Ok(true)
        }
        Ok(false) => Ok(false),
        Err(e) => {
            tracing::error!(error = %e, "policy file rejected; the last good policy stays in force");
            let detail = format!("policy file rejected, kept version {}: {e}", policy.current().version());
            if let Err(e) =
                store.record_security_event(now.unix_timestamp(), None, "policy_rejected", &detail)
            {
                tracing::error!(error = %e, "could not record the rejected policy");
            }
            Err(e)
        }
    }
}

/// Takes up changed mapping files like [`refresh_policy`] does the policy:
/// a bad one is logged and recorded, the last good catalog stays.
pub fn refresh_catalog(
    catalog: &Reloadable<Catalog>,
    data_dir: &std::path::Path,
    store: &Store,
    now: OffsetDateTime,
) -> Result<bool, String> {
    match catalog.refresh(|| load_catalog(data_dir).map_err(|e| e.to_string())) {
        Ok(true) => {
            tracing::info!(version = catalog.current().mapping_version(), "mappings reloaded");
            Ok(true)
        }
        Ok(false) => Ok(false),
        Err(e) => {
            tracing::error!(error = %e, "mapping file rejected; the last good mappings stay in force");
            let detail = format!("mappings rejected, kept {}: {e}", catalog.current().mapping_version());
            if let Err(e) =
                store.record_security_event(now.unix_timestamp(), None, "mappings_rejected", &detail)
            {
                tracing::error!(error = %e, "could not record the rejected mappings");
            }
            Err(e)
        }
    }
}
