//! Data loaded from files that may be replaced while the server runs (the
//! policy), kept at its last good version.
//!
//! [`Reloadable`] holds the value in force and a fingerprint of its files
//! (SHA-256 of each file's contents, or that it is missing or unreadable).
//! [`Reloadable::refresh`] loads again only when a fingerprint changed; when
//! the new files do not load, the old value keeps being served and the error
//! is returned (for the caller to log) and kept for [`Reloadable::last_error`].
//!
//! A file that disappears is a change like any other: the loader decides what
//! a missing file means ([`read_optional`] reports it as `None`; for the policy
//! it means "no override").

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sha2::{Digest, Sha256};

/// Largest file [`read_optional`] reads; policy files are a few KiB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A file of a [`Reloadable`] as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Missing,
    Contents([u8; 32]),
    /// Could not be read (permissions, a directory, ...): with why, so a
    /// different failure is a change too.
    Unreadable(String),
}

fn fingerprint(files: &[PathBuf]) -> Vec<Seen> {
    files
        .iter()
        .map(|f| match std::fs::read(f) {
            Ok(bytes) => Seen::Contents(Sha256::digest(&bytes).into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Seen::Missing,
            Err(e) => Seen::Unreadable(e.to_string()),
        })
        .collect()
}

struct State<T> {
    current: Arc<T>,
    seen: Vec<Seen>,
    last_error: Option<String>,
}

/// A value loaded from `files`, replaced when they change and load, kept
/// when they change and do not.
pub struct Reloadable<T> {
    files: Vec<PathBuf>,
    state: RwLock<State<T>>,
    /// One refresh at a time, without blocking readers of the current value.
    refreshing: Mutex<()>,
}

impl<T> Reloadable<T> {
    /// `initial` was just loaded from `files`; their fingerprint is taken now.
    pub fn new(initial: T, files: Vec<PathBuf>) -> Self {
        let seen = fingerprint(&files);
        Reloadable {
            files,
            state: RwLock::new(State { current: Arc::new(initial), seen, last_error: None }),
            refreshing: Mutex::new(()),
        }
    }

    /// The value in force.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.state.read().unwrap_or_else(PoisonError::into_inner).current)
    }

    /// The files watched.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Loads again when a file changed since the last attempt. `Ok(true)`: a
    /// new value is in force; `Ok(false)`: nothing changed (a failed attempt
    /// on the same files is not repeated); `Err`: the changed files did not
    /// load, the old value stays in force.
    pub fn refresh<E: std::fmt::Display>(&self, load: impl FnOnce() -> Result<T, E>) -> Result<bool, E> {
        let _one = self.refreshing.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken before loading: a change made while loading shows at the next refresh.
        let seen = fingerprint(&self.files);
        if seen == self.state.read().unwrap_or_else(PoisonError::into_inner).seen {
            return Ok(false);
        }
        let loaded = load();
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.seen = seen;
        match loaded {
            Ok(value) => {
                state.current = Arc::new(value);
                state.last_error = None;
                Ok(true)
            }
            Err(e) => {
                state.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Why the files as they are now did not load, if they did not.
    pub fn last_error(&self) -> Option<String> {
        self.state.read().unwrap_or_else(PoisonError::into_inner).last_error.clone()
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {size} bytes, more than the limit of {MAX_FILE_BYTES}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: not UTF-8 text")]
    NotText { path: PathBuf },
}

/// A text file that may legitimately be absent: `Ok(None)` when it does not
/// exist, its contents otherwise.
pub fn read_optional(path: &Path) -> Result<Option<String>, ReadError> {
    let io = |source| ReadError::Io { path: path.to_path_buf(), source };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), size: meta.len() });
    }
    match std::fs::read(path) {
        Ok(bytes) => {
            String::from_utf8(bytes).map(Some).map_err(|_| ReadError::NotText { path: path.to_path_buf() })
        }
        // Deleted between the two calls.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::policy::{Policy, PolicyError};

    /// The policy loader as the server wires it: the built-in policy with the
    /// override file merged in, or alone when the file does not exist.
    fn load_policy(path: &Path) -> Result<Policy, PolicyError> {
        let builtin = Policy::builtin()?;
        let text = read_optional(path).map_err(|e| PolicyError {
            path: path.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        Policy::with_optional_override(&builtin, path, text.as_deref())
    }

    #[test]
    fn a_bad_file_keeps_the_last_good_version_until_it_is_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "version = \"org-1\"\n[params]\nmax_idle_seconds = 600\n").unwrap();
        let r = Reloadable::new(load_policy(&path).unwrap(), vec![path.clone()]);
        assert_eq!(r.current().version(), "org-1");
        assert!(!r.refresh(|| load_policy(&path)).unwrap(), "nothing changed");

        // Malformed: the old version stays, the error names path and line.
        std::fs::write(&path, "version = \"org-2\"\n[params]\nmax_idle_seconds = \"soon\"\n").unwrap();
        let e = r.refresh(|| load_policy(&path)).unwrap_err();
        assert_eq!(e.line, Some(3));
        let want = format!("{}:3: ", path.display());
        assert!(e.to_string().starts_with(&want), "{e}");
        assert_eq!(r.current().version(), "org-1");
        assert_eq!(r.current().params()["max_idle_seconds"], 600);
        assert!(r.last_error().unwrap().starts_with(&want));
        // The same broken file is not loaded again.
        assert!(!r.refresh(|| -> Result<Policy, PolicyError> { panic!("loaded again") }).unwrap());

        // Fixed: the new version is in force, the error is gone.
        std::fs::write(&path, "version = \"org-2\"\n[params]\nmax_idle_seconds = 300\n").unwrap();
        assert!(r.refresh(|| load_policy(&path)).unwrap());
        assert_eq!(r.current().version(), "org-2");
        assert_eq!(r.current().params()["max_idle_seconds"], 300);
        assert_eq!(r.last_error(), None);

        // Deleted: no override any more, the built-in policy alone.
        std::fs::remove_file(&path).unwrap();
        assert!(r.refresh(|| load_policy(&path)).unwrap());
        assert_eq!(r.current().version(), Policy::builtin().unwrap().version());
        assert_eq!(r.current().params()["max_idle_seconds"], 900);
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: it exists but is not readable as text.
        let path = dir.path().join("policy.toml");
        std::fs::create_dir(&path).unwrap();
        let e = read_optional(&path).unwrap_err();
        assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
        assert!(read_optional(&dir.path().join("absent.toml")).unwrap().is_none());
        std::fs::write(dir.path().join("bin.toml"), [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(read_optional(&dir.path().join("bin.toml")), Err(ReadError::NotText { .. })));
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read_optional(&big), Err(ReadError::TooLarge { .. })));
    }

    #[test]
    fn readers_see_the_old_value_while_a_refresh_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.txt");
        std::fs::write(&path, "1").unwrap();
        let r = Arc::new(Reloadable::new(1_u32, vec![path.clone()]));
        std::fs::write(&path, "x").unwrap();
        let parse = || std::fs::read_to_string(&path).unwrap().parse::<u32>().map_err(|e| e.to_string());
        assert!(r.refresh(parse).is_err());
        let reader = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || *r.current())
        };
        assert_eq!(reader.join().unwrap(), 1);
        std::fs::write(&path, "2").unwrap();
        assert_eq!(r.refresh(parse), Ok(true));
        assert_eq!(*r.current(), 2);
    }
}
