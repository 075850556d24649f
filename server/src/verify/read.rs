//! Reads a bundle's tar.gz entry by entry, one file in memory at a time, so
//! a bundle of a million records is verified without holding it whole.
//! Only regular files (and directories, skipped) are accepted; links,
//! devices, absolute or `..` paths and oversized entries are refused with
//! the entry's name.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

/// Largest single file read from a bundle (the CSV of a large fleet is the
/// biggest; a record is at most a few hundred kB).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// Why a bundle could not be read at all (as opposed to a file in it
/// failing a check, which is a [`super::report::Failure`]).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable tar.gz bundle: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error("{path}: entry {entry:?} is {kind}, a bundle holds regular files only")]
    EntryType { path: PathBuf, entry: String, kind: String },
    #[error("{path}: entry name {entry:?} is not a relative UTF-8 path inside the bundle")]
    EntryName { path: PathBuf, entry: String },
    #[error("{path}: entry {entry} is {size} bytes, more than the {max} accepted")]
    TooLarge { path: PathBuf, entry: String, size: u64, max: u64 },
    #[error("{path}: {entry} changed between two reads of the bundle")]
    Changed { path: PathBuf, entry: String },
    #[error("{path} is not a Custos export bundle: it has no manifest.json")]
    NoManifest { path: PathBuf },
    #[error("{path}: manifest.json: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("pinned log key {path}: {reason}")]
    PinnedKey { path: PathBuf, reason: String },
}

fn archive_err(path: &Path, e: impl std::fmt::Display) -> BundleError {
    BundleError::Archive { path: path.to_path_buf(), reason: e.to_string() }
}

/// A safe entry name: relative, no `..`, no empty or `.` components
/// (a leading `./` is dropped).
fn entry_name(raw: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(raw).ok()?;
    let name = name.strip_prefix("./").unwrap_or(name);
    if name.is_empty() || name.starts_with('/') || name.contains('\\') {
        return None;
    }
    let trimmed = name.trim_end_matches('/');
    if trimmed.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return None;
    }
    Some(name.to_string())
}

/// Calls `each(name, bytes)` for every regular file of the bundle at
/// `path`, in archive order. `wanted(name)` decides whether the bytes are
/// read (otherwise `each` gets `None` and the entry is skipped, undecoded).
pub fn each_entry(
    path: &Path,
    mut wanted: impl FnMut(&str) -> bool,
    mut each: impl FnMut(&str, Option<Vec<u8>>) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    let file = File::open(path).map_err(|source| BundleError::Open { path: path.to_path_buf(), source })?;
    let mut archive = tar::Archive::new(MultiGzDecoder::new(BufReader::new(file)));
    let entries = archive.entries().map_err(|e| archive_err(path, e))?;
    let mut seen_any = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_err(path, e))?;
        seen_any = true;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            let kind = format!("{kind:?}").to_lowercase();
            return Err(BundleError::EntryType { path: path.to_path_buf(), entry: shown, kind });
        }
        let name = entry_name(&raw)
            .ok_or_else(|| BundleError::EntryName { path: path.to_path_buf(), entry: shown })?;
        let size = entry.header().size().map_err(|e| archive_err(path, e))?;
        if size > MAX_ENTRY_BYTES {
            return Err(BundleError::TooLarge {
                path: path.to_path_buf(),
                entry: name,
                size,
                max: MAX_ENTRY_BYTES,
            });
        }
        if !wanted(&name) {
            each(&name, None)?;
            continue;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry
            .by_ref()
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| archive_err(path, format!("reading {name}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(archive_err(path, format!("{name} is truncated ({} of {size} bytes)", bytes.len())));
        }
        each(&name, Some(bytes))?;
    }
    if !seen_any {
        return Err(archive_err(path, "the archive is empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::entry_name;

    #[test]
    fn entry_names_stay_inside_the_bundle() {
        assert_eq!(entry_name(b"./records/a/1.dsse.json").as_deref(), Some("records/a/1.dsse.json"));
        for bad in [&b"/etc/passwd"[..], b"../x", b"records/../../x", b"a//b", b"", b"\xff"] {
            assert_eq!(entry_name(bad), None, "{bad:?}");
        }
    }
}
