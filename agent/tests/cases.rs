//! Data-driven collector tests: every directory under `tests/cases/` is a
//! recorded host (`host.toml` plus output files, see `recording.rs`) with an
//! `expected.toml` saying what each check must report for it. The runner
//! replays the host through the OS backend named in `host.toml`, so Windows
//! and macOS backends are exercised here on Linux.
//!
//! To add a case: `custos-agent record DIR` on a real host (or write
//! `host.toml` by hand from recorded output), review the snapshot in
//! `expected.toml`, and drop the directory here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use custos_agent::collect::{CHECKS, Context, Os, check};
use custos_agent::host::FixtureHost;
use custos_agent::recording::{Expected, load};

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_case_gives_the_expected_findings() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for dir in case_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let case = match load(&dir) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let expected = match Expected::load(&dir.join("expected.toml")) {
            Ok(e) if e.checks.is_empty() => {
                failures.push(format!("{name}: expected.toml names no check"));
                continue;
            }
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for (id, want) in &expected.checks {
            let Some(c) = check(id) else {
                failures.push(format!("{name}: no check {id:?}"));
                continue;
            };
            let got = (c.gather(case.os))(&case.host, &case.context()).into_result(id);
            ran += 1;
            for m in want.mismatches(&got) {
                failures.push(format!("{name} / {id}: {m}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(ran > 0, "no case ran");
}

/// A backend that exists must be shown both passing and not passing (fail,
/// unknown or not_applicable) on recorded input: a check only ever seen green
/// proves nothing.
#[test]
fn every_backend_has_a_passing_and_a_non_passing_case() {
    let mut seen: BTreeSet<(Os, String, bool)> = BTreeSet::new();
    for dir in case_dirs() {
        let (Ok(case), Ok(expected)) = (load(&dir), Expected::load(&dir.join("expected.toml"))) else {
            continue;
        };
        for (id, want) in expected.checks {
            seen.insert((case.os, id, want.status == "pass"));
        }
    }
    let mut missing = Vec::new();
    for c in CHECKS {
        for os in [Os::Linux, Os::Windows, Os::Macos] {
            let probe = (c.gather(os))(&FixtureHost::new(), &Context::at(0));
            if probe.reason.as_deref().is_some_and(|r| r.contains("is not collected on")) {
                continue; // no backend yet: reported unknown, listed in ARCHITECTURE.md
            }
            for passing in [true, false] {
                if !seen.contains(&(os, c.id.to_string(), passing)) {
                    let what = if passing { "passing" } else { "non-passing" };
                    missing.push(format!("{} on {os}: no {what} case", c.id));
                }
            }
        }
    }
    assert!(missing.is_empty(), "cases missing:\n{}", missing.join("\n"));
}

/// A host without any tools must never pass a check.
#[test]
fn an_empty_host_passes_nothing() {
    for c in CHECKS {
        for os in [Os::Linux, Os::Windows, Os::Macos] {
            let f = (c.gather(os))(&FixtureHost::new(), &Context::at(1_795_435_200));
            assert_ne!(
                f.status,
                custos_proto::evidence::CheckStatus::Pass,
                "{} on {os} passes on an empty host: {:?}",
                c.id,
                f.reason
            );
        }
    }
}
