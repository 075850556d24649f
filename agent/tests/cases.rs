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
//! To bless: `UPDATE_EXPECT=1 cargo test -p custos-agent --test cases` (a
//! filter may follow) rewrites the `expected.toml` of each case whose
//! findings differ to what was observed, and that case passes, saying so;
//! then review `git diff`. Only mismatching values change (status, a pinned
//! backend, reason fragments that no longer match become the whole reason,
//! listed facts take their value or go), comments and layout stay; the
//! rules are `ExpectedCheck::blessed`. Without it a difference fails.
//!
//! To add a case: `custos-agent record DIR` on a real host (or write
//! `host.toml` by hand from recorded output), review the snapshot in
//! `expected.toml`, and drop the directory here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use custos_agent::collect::{CHECKS, Context, Os, check};
use custos_agent::host::FixtureHost;
use custos_agent::recording::{Expected, ExpectedCheck, load};
use custos_proto::evidence::CheckResult;
use custos_proto::evidence::statement::Facts;
use libtest_mimic::{Arguments, Failed, Trial};
use toml_edit::{DocumentMut, InlineTable, Item, TableLike, Value};

fn main() {
    let args = Arguments::from_args();
    let bless = blessing();
    let dirs = case_dirs();
    // An empty listing would pass vacuously: a moved or missing directory must fail.
    assert!(!dirs.is_empty(), "no case under tests/cases");
    let mut trials: Vec<Trial> = dirs
        .into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Trial::test(format!("case::{name}"), move || run_case(&dir, bless))
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
/// change; when blessing, a case that differs is rewritten instead.
fn run_case(dir: &Path, bless: bool) -> Result<(), Failed> {
    let case = load(dir)?;
    let path = dir.join("expected.toml");
    let expected = Expected::load(&path)?;
    if expected.checks.is_empty() {
        return Err("expected.toml names no check".into());
    }
    let mut failures = Vec::new();
    let mut differing = Vec::new();
    let mut unknown_check = false;
    for (id, want) in &expected.checks {
        let Some(c) = check(id) else {
            unknown_check = true;
            failures.push(format!("no check {id:?}"));
            continue;
        };
        let got = (c.gather(case.os))(&case.host, &case.context()).into_result(id);
        let mismatches = want.mismatches(&got);
        if !mismatches.is_empty() {
            failures.extend(mismatches.into_iter().map(|m| format!("{id}: {m}")));
            differing.push(Differing { id, want, got });
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    // A check that does not exist has no finding to bless: that stays a failure.
    if !bless || unknown_check {
        return Err(failures.join("\n").into());
    }
    bless_file(&path, &differing)?;
    let ids: Vec<&str> = differing.iter().map(|d| d.id.as_str()).collect();
    eprintln!("UPDATE_EXPECT: rewrote {} ({})", path.display(), ids.join(", "));
    Ok(())
}

/// `UPDATE_EXPECT=1`: cases whose findings differ get their `expected.toml`
/// rewritten to what was observed, so a change in a collector is reviewed as
/// the diff of the files it changes.
fn blessing() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A check whose finding contradicts its expectation.
struct Differing<'a> {
    id: &'a String,
    want: &'a ExpectedCheck,
    got: CheckResult,
}

/// Rewrites `expected.toml` so each differing check holds, editing the
/// document in place (`toml_edit`): comments, order and layout stay, and the
/// diff shows only values that changed. Nothing is written unless the result
/// holds for every differing check.
fn bless_file(path: &Path, differing: &[Differing]) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{}: {e}", path.display()))?;
    for d in differing {
        patch_check(&mut doc, d.id, d.want, &d.want.blessed(&d.got))?;
    }
    let blessed = doc.to_string();
    let reread: Expected =
        toml::from_str(&blessed).map_err(|e| format!("blessed {}: {e}", path.display()))?;
    let mut left = Vec::new();
    for d in differing {
        let still = reread.checks.get(d.id).map(|c| c.mismatches(&d.got)).unwrap_or_default();
        left.extend(still.into_iter().map(|m| format!("{}: {m}", d.id)));
    }
    if !left.is_empty() {
        return Err(format!("cannot bless, still differs:\n{}", left.join("\n")).into());
    }
    // Written beside and renamed over: trials run in parallel, and the backend
    // coverage trial reads every expected.toml; it must never see half a file.
    let tmp = path.with_extension("toml.blessing");
    std::fs::write(&tmp, blessed).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// Applies `new` over `old` in the table `[checks.ID]`, touching only keys
/// whose value changed.
fn patch_check(
    doc: &mut DocumentMut,
    id: &str,
    old: &ExpectedCheck,
    new: &ExpectedCheck,
) -> Result<(), String> {
    let table = doc
        .get_mut("checks")
        .and_then(Item::as_table_like_mut)
        .and_then(|t| t.get_mut(id))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| format!("no table [checks.{id}]"))?;
    if new.status != old.status {
        set(table, "status", new.status.as_str().into());
    }
    if let Some(b) = &new.backend
        && new.backend != old.backend
    {
        set(table, "backend", b.as_str().into());
    }
    if new.reason_contains != old.reason_contains {
        patch_reasons(table, &new.reason_contains)?;
    }
    if new.facts != old.facts {
        patch_facts(table, &old.facts, &new.facts)?;
    }
    Ok(())
}

/// Rewrites `reason_contains` element by element, so a multi-line array keeps
/// its layout and unchanged fragments their place.
fn patch_reasons(table: &mut dyn TableLike, new: &[String]) -> Result<(), String> {
    if new.is_empty() {
        table.remove("reason_contains");
        return Ok(());
    }
    let array = table
        .get_mut("reason_contains")
        .and_then(Item::as_array_mut)
        .ok_or("reason_contains is not an array")?;
    for (i, r) in new.iter().enumerate() {
        if i >= array.len() {
            array.push(r.as_str());
        } else if array.get(i).and_then(Value::as_str) != Some(r.as_str()) {
            array.replace(i, r.as_str());
        }
    }
    while array.len() > new.len() {
        array.remove(array.len() - 1);
    }
    Ok(())
}

/// Sets each listed fact whose value changed and removes those gone; the
/// facts table itself goes when nothing is left in it.
fn patch_facts(table: &mut dyn TableLike, old: &Facts, new: &Facts) -> Result<(), String> {
    let facts = table.get_mut("facts").and_then(Item::as_table_like_mut).ok_or("facts is not a table")?;
    for (k, was) in old {
        match new.get(k) {
            None => {
                facts.remove(k);
            }
            Some(v) if v != was => set(facts, k, toml_value(v).ok_or(format!("fact {k} is null"))?),
            Some(_) => {}
        }
    }
    if facts.is_empty() {
        table.remove("facts");
    }
    Ok(())
}

/// Replaces a value keeping its decoration (the comment after it), or a fact
/// written as a table of its own with a table in the same place.
fn set(table: &mut dyn TableLike, key: &str, value: Value) {
    let Some(item) = table.get_mut(key) else {
        table.insert(key, Item::Value(value));
        return;
    };
    match (item, value) {
        (Item::Table(old), Value::InlineTable(t)) => {
            let mut t = t.into_table();
            *t.decor_mut() = old.decor().clone();
            if let Some(p) = old.position() {
                t.set_position(p);
            }
            *old = t;
        }
        (Item::Value(old), mut v) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        (item, v) => *item = Item::Value(v),
    }
}

/// A fact as TOML, which has no null: nulls are left out.
fn toml_value(v: &serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => (*b).into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64()?.into(),
        },
        J::String(s) => s.as_str().into(),
        J::Array(a) => Value::Array(a.iter().filter_map(toml_value).collect()),
        J::Object(o) => {
            let mut t = InlineTable::new();
            for (k, v) in o {
                if let Some(v) = toml_value(v) {
                    t.insert(k, v);
                }
            }
            Value::InlineTable(t)
        }
    })
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
