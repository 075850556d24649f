//! The transparency log's signing key in the data dir (`log.key`, mode
//! 0600). Invariant: a key of its own, never the CA's, and named after the
//! log's origin for as long as the log lives.

use std::path::Path;

use super::DataDir;
use super::{DataDirError, write_private};
use crate::config::Config;
use crate::identity::secrets;

/// The log's signing key, created (mode 0600) when the data dir has none:
/// a key of its own, never the CA's. Its name is the log origin.
pub fn log_signer(dir: &Path, config: &Config) -> Result<custos_verify::tlog::NoteSigner, DataDirError> {
    let path = DataDir(dir.to_path_buf()).log_key();
    let origin = config.log_origin();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let signer = custos_verify::tlog::NoteSigner::from_private_key_string(text.trim())
                .map_err(|e| DataDirError::Invalid(format!("{}: {e}", path.display())))?;
            if signer.name() != origin {
                return Err(DataDirError::Invalid(format!(
                    "{}: the key is named {:?} but the log origin is {origin:?}; a log keeps its origin",
                    path.display(),
                    signer.name()
                )));
            }
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = secrets::random::<32>();
            let signer =
                custos_verify::tlog::NoteSigner::new(&origin, ed25519_dalek::SigningKey::from_bytes(&seed))
                    .map_err(|e| DataDirError::Invalid(format!("log origin {origin:?}: {e}")))?;
            write_private(&path, format!("{}\n", signer.private_key_string()).as_bytes())?;
            Ok(signer)
        }
        Err(source) => Err(DataDirError::Io { path, source }),
    }
}
