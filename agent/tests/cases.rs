//! Data-driven collector tests: every directory under `tests/cases/` is a
//! recorded host (`host.toml` plus output files, see `recording.rs`) with an
//! `expected.toml` saying what each check must report for it. The runner
//! replays the host through the OS backend named in `host.toml`, so Windows
//! and macOS backends are exercised here on Linux.
//!
//! Each case is a test of its own, `case::DIR`, so a failure names its case
//! and a filter picks cases by name:
//! `cargo test -p custos-agent --test cases -- linux-antivirus` runs the
//! Linux anti-malware cases, `-- --exact case::NAME` one case. The harness is
//! libtest-mimic (`harness = false` in `Cargo.toml`): libtest cannot make
//! tests from a directory listing, and libtest-mimic keeps its output and
//! arguments.
//!
//! To add a case: `custos-agent record DIR` on a real host (or write
//! `host.toml` by hand from recorded output), review the snapshot in
//! `expected.toml`, and drop the directory here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use custos_agent::collect::{CHECKS, Context, Os, check};
use custos_agent::host::FixtureHost;
use custos_agent::recording::{Expected, load};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let dirs = case_dirs();
    // An empty listing would pass vacuously: a moved or missing directory must fail.
    assert!(!dirs.is_empty(), "no case under tests/cases");
    let mut trials: Vec<Trial> = dirs
        .into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Trial::test(format!("case::{name}"), move || run_case(&dir))
        })
        .collect();
    trials.push(Trial::test(
        "every_backend_has_a_passing_and_a_non_passing_case",
        every_backend_has_a_passing_and_a_non_passing_case,
    ));
    trials.push(Trial::test("an_empty_host_passes_nothing", an_empty_host_passes_nothing));
    libtest_mimic::run(&args, trials).exit();
}

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

/// Replays one recorded host and compares every check its `expected.toml`
/// names, failing with all mismatches at once so one run shows the whole
/// change.
fn run_case(dir: &Path) -> Result<(), Failed> {
    let case = load(dir)?;
    let expected = Expected::load(&dir.join("expected.toml"))?;
    if expected.checks.is_empty() {
        return Err("expected.toml names no check".into());
    }
    let mut failures = Vec::new();
    for (id, want) in &expected.checks {
        let Some(c) = check(id) else {
            failures.push(format!("no check {id:?}"));
            continue;
        };
        let got = (c.gather(case.os))(&case.host, &case.context()).into_result(id);
        failures.extend(want.mismatches(&got).into_iter().map(|m| format!("{id}: {m}")));
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n").into()) }
}

/// A backend that exists must be shown both passing and not passing (fail,
/// unknown or not_applicable) on recorded input: a check only ever seen green
/// proves nothing.
fn every_backend_has_a_passing_and_a_non_passing_case() -> Result<(), Failed> {
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
    if missing.is_empty() { Ok(()) } else { Err(format!("cases missing:\n{}", missing.join("\n")).into()) }
}

/// A host without any tools must never pass a check.
fn an_empty_host_passes_nothing() -> Result<(), Failed> {
    let mut passing = Vec::new();
    for c in CHECKS {
        for os in [Os::Linux, Os::Windows, Os::Macos] {
            let f = (c.gather(os))(&FixtureHost::new(), &Context::at(1_795_435_200));
            if f.status == custos_proto::evidence::CheckStatus::Pass {
                passing.push(format!("{} on {os} passes on an empty host: {:?}", c.id, f.reason));
            }
        }
    }
    if passing.is_empty() { Ok(()) } else { Err(passing.join("\n").into()) }
}
