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

#[path = "support/apt_lab.rs"]
mod apt_lab;

/// The lab's states: (name, archive, installed version, held). The truth is
/// apt's own simulation in the lab, holds lifted.
#[test]
fn held_and_plain_updates_are_counted_as_apt_would_install_them() {
    if !apt_lab::ready("live os_patches lab test", &[]) {
        return;
    }
    let updates = apt_lab::Archive {
        label: "Debian",
        suite: "oldstable-updates",
        codename_suffix: "-updates",
        version: "99.0",
    };
    let states = [
        ("security-pending", &apt_lab::SECURITY, "90.0", false),
        ("security-held", &apt_lab::SECURITY, "90.0", true),
        ("updates-only", &updates, "90.0", false),
        ("current", &apt_lab::SECURITY, "99.0", false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, archive, installed, held) in states {
        apt_lab::build(dir.path(), archive, installed, held);
        let (ok, sim) =
            apt_lab::inside(dir.path(), "apt-get -s -o Debug::NoLocking=1 --ignore-hold dist-upgrade");
        assert!(ok, "{name}: {sim}");
        let inst: Vec<&str> = sim.lines().filter(|l| l.starts_with("Inst ")).collect();
        let security = inst.iter().filter(|l| l.contains("Debian-Security")).count();
        let case = format!("linux-os_patches-apt-{name}");
        let f = apt_lab::agent_says(dir.path(), "os_patches", &case, name != "current");
        assert_eq!(f["facts"]["pending_upgrades"], inst.len(), "{name}: {sim}\n{f:#}");
        assert_eq!(f["facts"]["pending_security_upgrades"], security, "{name}: {sim}\n{f:#}");
        let held_named = f["facts"]["held_security_packages"].as_array().map_or(0, Vec::len);
        assert_eq!(held_named, usize::from(held && security > 0), "{name}: {f:#}");
        if security > 0 {
            assert_eq!(f["status"], "fail", "{name}: {f:#}");
        }
    }
}
