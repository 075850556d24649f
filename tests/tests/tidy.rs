//! Habits the tree enforces, in the manner of rust-analyzer's tidy tests:
//! - every Rust source file opens with a `//!` comment saying what it holds;
//! - no source file is over 600 lines before its tests (`#[cfg(test)]`);
//! - every recorded agent case is named `<os>-<check>-<state>` (it holds
//!   expectations for that check only) or `<os>-host-<name>` (a whole host,
//!   expectations for several checks);
//! - the workspace lints (`[workspace.lints]`) apply to every member;
//! - no server module imports the composition root, the server's domain
//!   folders import one another without a cycle, and the pure domains
//!   (`compliance`, `register`) do no I/O and read no clock.
//!
//! A failure lists every offending path, so one run shows all there is to fix.

use std::path::{Path, PathBuf};

const MAX_SOURCE_LINES: usize = 600;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Every `.rs` file under `dir`, build output and generated files aside.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if !matches!(name.to_str(), Some("target" | "corpus" | "artifacts" | ".git")) {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source files of every crate: the workspace members and the fuzz crate.
fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["proto", "agent", "server", "verify", "tests", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    files.sort();
    assert!(files.len() > 100, "the walk found only {} files", files.len());
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

#[test]
fn every_source_file_opens_with_a_module_comment() {
    let missing: Vec<String> = sources()
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
        })
        .map(|p| relative(p))
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` comment:\n{}", missing.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines_before_its_tests() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "src"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines = text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count();
            (lines > MAX_SOURCE_LINES).then(|| format!("{} ({lines} lines)", relative(p)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "source files over {MAX_SOURCE_LINES} lines (split them by concept):\n{}",
        long.join("\n")
    );
}

#[test]
fn recorded_cases_follow_one_naming_pattern() {
    let dir = root().join("agent/tests/cases");
    let checks: Vec<&str> = custos_agent::collect::CHECKS.iter().map(|c| c.id).collect();
    let mut bad = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("agent/tests/cases").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let expected =
            custos_agent::recording::Expected::load(&entry.path().join("expected.toml")).unwrap_or_default();
        let named: Vec<&str> = expected.checks.keys().map(String::as_str).collect();
        seen += 1;
        let parts: Vec<&str> = name.splitn(3, '-').collect();
        let well_formed = parts.len() == 3
            && matches!(parts[0], "linux" | "macos" | "windows")
            && !parts[2].is_empty()
            && parts[2].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        let fits = match parts.get(1) {
            _ if !well_formed => false,
            Some(&"host") => named.len() >= 2,
            Some(check) => checks.contains(check) && named == [*check],
            None => false,
        };
        if !fits {
            bad.push(format!("{name} (expects {})", named.join(", ")));
        }
    }
    assert!(seen > 200, "only {seen} cases found");
    assert!(
        bad.is_empty(),
        "cases not named <os>-<check>-<state> (expectations for that check only) or \
         <os>-host-<name> (several checks):\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_member_takes_the_workspace_lints() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("[workspace.lints.rust]") && manifest.contains("[workspace.lints.clippy]"));
    let missing: Vec<&str> = ["proto", "agent", "server", "verify", "tests"]
        .into_iter()
        .filter(|m| {
            let text = std::fs::read_to_string(root().join(m).join("Cargo.toml")).unwrap_or_default();
            !text.contains("[lints]\nworkspace = true")
        })
        .collect();
    assert!(missing.is_empty(), "members without `[lints] workspace = true`: {missing:?}");
}

/// Arrows go down: no server module imports the composition root
/// (`app.rs`); what several of them need from the data dir is in
/// `datadir/`, the shutdown signal in `shutdown.rs`.
#[test]
fn nothing_imports_the_composition_root() {
    let mut files = Vec::new();
    rust_files(&root().join("server/src"), &mut files);
    let importers: Vec<String> = files
        .iter()
        .filter(|p| !p.ends_with("app.rs") && !p.ends_with("main.rs"))
        .filter(|p| std::fs::read_to_string(p).unwrap_or_default().contains("crate::app"))
        .map(|p| relative(p))
        .collect();
    assert!(files.len() > 50, "the walk found only {} files", files.len());
    assert!(importers.is_empty(), "modules importing crate::app: {importers:?}");
}

/// The top-level module each server source file belongs to (`api`,
/// `compliance`, `config`, ...), and the top-level modules it names as
/// `crate::<module>`.
fn server_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = root().join("server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap_or(file);
        let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().to_string());
        let Some(module) = first.map(|m| m.trim_end_matches(".rs").to_string()) else { continue };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let names = graph.entry(module.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                names.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `from`, as the modules on it, if there is one.
fn cycle_from(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    from: &str,
) -> Option<Vec<String>> {
    let mut path = vec![from.to_string()];
    let mut seen = std::collections::BTreeSet::new();
    fn walk(
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut std::collections::BTreeSet<String>,
    ) -> bool {
        let Some(last) = path.last().cloned() else { return false };
        for next in graph.get(&last).into_iter().flatten() {
            if *next == path[0] {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(graph, &mut path, &mut seen).then_some(path)
}

/// Arrows go down between the server's domain folders too: no chain of
/// imports leads from a folder back to itself, so each can be read (and
/// one day split into a crate) knowing only what is below it.
#[test]
fn server_folders_import_one_another_without_cycles() {
    let graph = server_imports();
    for domain in
        ["api", "compliance", "datadir", "export", "identity", "intake", "keeper", "register", "store"]
    {
        assert!(graph.contains_key(domain), "server/src/{domain} is missing: {:?}", graph.keys());
    }
    let cycles: Vec<String> =
        graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import cycles between server folders:\n{}", cycles.join("\n"));
}

/// The rules of compliance and of the register are pure: they import no
/// domain but each other (the register reads the catalog), and their
/// non-test code reads no file, clock, database or network.
#[test]
fn pure_domains_do_no_io() {
    let graph = server_imports();
    let allowed = [("compliance", &[][..]), ("register", &["compliance"][..])];
    for (domain, may) in allowed {
        let extra: Vec<&String> = graph[domain].iter().filter(|m| !may.contains(&m.as_str())).collect();
        assert!(extra.is_empty(), "{domain} imports {extra:?}");
    }
    let io = ["std::fs", "std::net", "rusqlite", "tokio", "reqwest", "now_utc", "SystemTime", "Instant::now"];
    let mut found = Vec::new();
    for domain in ["compliance", "register"] {
        let mut files = Vec::new();
        rust_files(&root().join("server/src").join(domain), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            found
                .extend(io.iter().filter(|w| code.contains(*w)).map(|w| format!("{}: {w}", relative(&file))));
        }
    }
    assert!(found.is_empty(), "I/O in a pure domain: {found:?}");
}
