//! The fuzz targets' inputs replayed on stable, without libFuzzer: every
//! file under `fuzz/regressions/<target>/` (a crash found once, kept so it
//! stays fixed) and `fuzz/seeds/<target>/` (real inputs) goes through the
//! same function and the same assertions as `cargo +nightly fuzz run
//! <target>` (`fuzz/src/lib.rs`, included here as a module).

#[path = "../../fuzz/src/lib.rs"]
mod fuzz;

use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted (none when the directory
/// does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind);
    // Every directory names a target: a misspelt one would be skipped silently.
    for entry in std::fs::read_dir(&root).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                fuzz::TARGETS.iter().any(|(t, _)| *t == name),
                "{}: no fuzz target {name}",
                path.display()
            );
        }
    }
    let mut n = 0;
    for (target, _) in fuzz::TARGETS {
        for file in inputs(kind, target) {
            let data = std::fs::read(&file).unwrap();
            eprintln!("{target}: {}", file.display());
            assert!(fuzz::run(target, &data));
            n += 1;
        }
    }
    n
}

#[test]
fn fixed_crashes_stay_fixed() {
    replay("regressions");
}

#[test]
fn every_target_has_seeds_and_takes_them() {
    for (target, _) in fuzz::TARGETS {
        assert!(!inputs("seeds", target).is_empty(), "fuzz/seeds/{target}/ is empty");
    }
    assert!(replay("seeds") >= fuzz::TARGETS.len());
}
