//! Live `os_patches` test against this host's real apt state: every
//! security update apt's own simulation (holds lifted) would install, the
//! agent counts and names, and it never passes with one pending. Needs apt
//! (Debian/Ubuntu); elsewhere it says why and stops.

use std::process::Command;

#[test]
fn the_agent_reports_what_apt_itself_would_install() {
    // apt's own simulation, holds lifted: what an upgrade would install.
    let args = ["-s", "-o", "Debug::NoLocking=1", "--ignore-hold", "dist-upgrade"];
    let Ok(sim) = Command::new("apt-get").args(args).output() else {
        eprintln!("skipping the live apt test: apt-get is not installed");
        return;
    };
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    let text = String::from_utf8_lossy(&sim.stdout);
    let inst: Vec<&str> = text.lines().filter(|l| l.starts_with("Inst ")).collect();
    let security: Vec<&str> = inst
        .iter()
        .filter(|l| l.contains("-security") || l.contains("Debian-Security"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();

    let out = Command::new(env!("CARGO_BIN_EXE_custos-agent"))
        .args(["collect", "--json", "--check", "os_patches"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = &doc["checks"][0];
    assert_eq!(check["backend"], "apt", "{check:#}");
    assert_eq!(check["facts"]["package_manager"], "apt");
    // The agent lists every package with a newer candidate (kept-back ones
    // too), so it never counts fewer than the simulation installs.
    let pending = check["facts"]["pending_upgrades"].as_u64().unwrap() as usize;
    let counted = check["facts"]["pending_security_upgrades"].as_u64().unwrap() as usize;
    assert!(pending >= inst.len(), "agent {pending} pending, apt installs {}: {check:#}", inst.len());
    assert!(counted >= security.len(), "agent {counted} security, apt {}: {check:#}", security.len());
    let named: Vec<&str> =
        check["facts"]["security_packages"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    // The names are capped at 20; where they are complete, each must be there.
    if counted <= 20 {
        for p in &security {
            assert!(
                named.contains(p),
                "apt installs security update {p}, the agent does not name it: {check:#}"
            );
        }
    }
    if !security.is_empty() {
        assert_eq!(check["status"], "fail", "{check:#}");
        assert!(check["reason"].as_str().unwrap().contains(&format!("{counted} security updates pending")));
    }
    assert!(!check["observation"]["sha256"].as_str().unwrap().is_empty());
}
