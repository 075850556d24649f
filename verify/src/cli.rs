//! The command line of a verification, one definition for both names it
//! runs under: `custos-verify FILE` and `custos-server verify FILE`.

use std::path::PathBuf;

use crate::{BundleError, load_pinned_key, verify_bundle};

/// Verify an export bundle offline. Exit status: 0 verified against the
/// pinned log key, 3 consistent but no --log-key given, 1 a check failed
/// (2 stays clap's: bad arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The bundle (`.tar.gz`) to verify.
    pub file: PathBuf,
    /// The log's verifier key you hold (as GET /api/v1/log/key serves it
    /// and your organisation publishes it): a file holding it, or the key
    /// itself. Without it the bundle can at best be consistent (exit 3).
    #[arg(long)]
    pub log_key: Option<String>,
}

impl VerifyArgs {
    /// Verifies the bundle, prints the report to stdout and returns the
    /// exit status its outcome calls for.
    pub fn run(&self) -> Result<i32, BundleError> {
        let pinned = self.log_key.as_deref().map(load_pinned_key).transpose()?;
        let report = verify_bundle(&self.file, pinned.as_ref())?;
        print!("{report}");
        Ok(report.outcome().exit_code())
    }
}
