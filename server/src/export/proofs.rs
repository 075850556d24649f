//! The checkpoint an export is proven against and each leaf's inclusion
//! proof. The checkpoint is the latest one when it covers every exported
//! leaf, else one signed now through [`Store::sign_checkpoint`] (which
//! refuses inconsistent checkpoints). The tree is rebuilt from the stored
//! leaf hashes and must lead to the checkpoint's root, and every leaf is
//! checked against its stored hash before its proof is handed out, so an
//! export never writes a proof its own store contradicts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use custos_verify::bundle::ProofFile;
use custos_verify::tlog::merkle::{prove_inclusion, root};
use custos_verify::tlog::{Checkpoint, MemoryTree, NoteSigner, TreeStore, VerifierKey, leaf_hash};

use super::{ExportError, ExportOptions, Sources};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::store::Store;
use crate::store::tlog::{Signed, StoredCheckpoint};

/// The log up to a verified checkpoint, which proves the leaves an export writes.
pub(super) struct Prover {
    /// The checkpoint as stored (its note goes into the bundle).
    pub(super) stored: StoredCheckpoint,
    /// Whether the export signed it.
    pub(super) signed_now: bool,
    pub(super) origin: String,
    pub(super) vkey: VerifierKey,
    size: u64,
    tree: MemoryTree,
}

impl Prover {
    /// Step 7: a checkpoint covering every leaf up to `needed`, verified
    /// with the data dir's log key, and the tree up to it, rebuilt from the
    /// stored leaf hashes and checked against its root.
    pub(super) fn new(opts: &ExportOptions, src: &Sources, needed: u64) -> Result<Prover, ExportError> {
        let signer = log_key(opts, &src.config)?;
        let origin = src.config.log_origin();
        let (stored, signed_now) =
            covering_checkpoint(&src.store, &signer, &origin, opts.now.unix_timestamp(), needed)?;
        let vkey: VerifierKey = signer.verifier_key();
        let checkpoint = Checkpoint::open(stored.note.as_bytes(), &origin, &vkey).map_err(|e| {
            ExportError::Checkpoint(format!(
                "the stored checkpoint at size {} does not verify: {e}",
                stored.size
            ))
        })?;
        let size = checkpoint.size();
        let mut tree = MemoryTree::new();
        for h in src.store.leaf_hashes(size)? {
            let index = TreeStore::size(&tree);
            tree.append(h).map_err(|source| ExportError::Proof { index, source })?;
        }
        let tree_root = root(&tree, size).map_err(|source| ExportError::Proof { index: size, source })?;
        if tree_root != *checkpoint.root() {
            return Err(ExportError::RootMismatch { size });
        }
        Ok(Prover { stored, signed_now, origin, vkey, size, tree })
    }

    /// The checkpoint's tree size: leaves at or past it are not provable here.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// The proof file of leaf `index`, once `data` is checked to be that
    /// leaf; `what` names it in the error.
    pub(super) fn proof(&self, index: u64, data: &[u8], what: &str) -> Result<Vec<u8>, ExportError> {
        let leaf = TreeStore::subtree(&self.tree, 0, index)
            .map_err(|source| ExportError::Proof { index, source })?;
        if leaf != leaf_hash(data) {
            return Err(ExportError::LeafMismatch { index, what: what.to_string() });
        }
        let proof = prove_inclusion(&self.tree, index, self.size)
            .map_err(|source| ExportError::Proof { index, source })?;
        let file = ProofFile {
            leaf_index: index,
            tree_size: self.size,
            hashes: proof.path.iter().map(|h| B64.encode(h)).collect(),
        };
        serde_json::to_vec(&file).map_err(|e| ExportError::Invalid(format!("proof file: {e}")))
    }
}

/// The log's verifier key, from the data dir's log key (never created here).
fn log_key(opts: &ExportOptions, config: &Config) -> Result<NoteSigner, ExportError> {
    let path = DataDir(opts.data_dir.clone()).log_key();
    if !path.exists() {
        return Err(ExportError::DataDir {
            path,
            message: "no log key: start the server once so it creates the log and its key".into(),
        });
    }
    crate::datadir::log_signer(&opts.data_dir, config)
        .map_err(|e| ExportError::DataDir { path, message: e.to_string() })
}

/// The latest checkpoint when it covers leaf `needed`, else one signed now
/// (`now`, Unix seconds); with whether it was signed for this export.
fn covering_checkpoint(
    store: &Store,
    signer: &NoteSigner,
    origin: &str,
    now: i64,
    needed: u64,
) -> Result<(StoredCheckpoint, bool), ExportError> {
    let covers = |size: u64| needed < size;
    match store.latest_checkpoint()? {
        Some(cp) if covers(cp.size) => Ok((cp, false)),
        _ => match store.sign_checkpoint(signer, origin, now)? {
            Signed::New(cp) => Ok((cp, true)),
            Signed::Unchanged => match store.latest_checkpoint()? {
                Some(cp) if covers(cp.size) => Ok((cp, false)),
                _ => Err(ExportError::Checkpoint(
                    "the log holds no checkpoint covering the exported leaves".into(),
                )),
            },
        },
    }
}
