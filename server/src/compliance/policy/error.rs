//! Where and why a policy file is refused: its path, the line when the
//! problem has one, and the reason.

use super::*;

/// A policy file that cannot be loaded: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

pub(super) fn err(path: &Path, line: Option<usize>, message: impl Into<String>) -> PolicyError {
    PolicyError { path: path.to_path_buf(), line, message: message.into() }
}
