//! Runs every data-driven case file (`*.toml`) in a folder under `tests/`
//! and reports all failures at once, each with its file name.

use std::path::{Path, PathBuf};

/// Runs `run` on each `*.toml` file in `tests/<folder>` (at least `min`
/// of them) and panics listing every failure.
pub fn run_all(folder: &str, min: usize, run: impl Fn(&Path) -> Result<(), String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= min, "{}: {} cases, expected at least {min}", dir.display(), files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            run(f).err().map(|e| format!("{}: {e}", f.file_name().unwrap_or_default().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
