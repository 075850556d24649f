//! What the live tests of host configuration share: the root and tool
//! check that skips outside CI (and fails under `CI`), and a bash script
//! run in a private mount namespace, so bind mounts over `/etc` never
//! reach this machine.

use std::path::Path;
use std::process::{Command, Output};

/// `Err(why)` unless running as root with every tool of `tools` (paths).
fn missing(tools: &[&str]) -> Result<(), String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    if !root {
        return Err("not running as root".into());
    }
    match tools.iter().chain(&["/usr/bin/unshare"]).find(|t| !Path::new(t).exists()) {
        Some(t) => Err(format!("{t} is not installed")),
        None => Ok(()),
    }
}

/// Whether test `name` can run here: it needs root, `unshare` and `tools`.
/// Outside CI a missing one is said and the test stops; under `CI` it fails.
pub fn ready(name: &str, tools: &[&str]) -> bool {
    match missing(tools) {
        Ok(()) => true,
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "{name} cannot run in CI: {why}");
            eprintln!("skipping {name}: {why}");
            false
        }
    }
}

/// Runs `script` with bash in a private mount namespace.
pub fn unshared(script: &str) -> Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("unshare: {e}"))
}
