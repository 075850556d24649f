//! Live `os_patches` test against this host's real apt state: the agent's
//! counts are those of apt's own simulation, and it never passes with
//! security updates pending. Needs apt (Debian/Ubuntu); elsewhere it says why
//! and stops.

use std::process::Command;

#[test]
fn the_agent_reports_what_apt_itself_would_install() {
    let Ok(sim) = Command::new("apt-get").args(["-s", "-o", "Debug::NoLocking=1", "dist-upgrade"]).output()
    else {
        eprintln!("skipping the live apt test: apt-get is not installed");
        return;
    };
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    let text = String::from_utf8_lossy(&sim.stdout);
    let pending = text.lines().filter(|l| l.starts_with("Inst ")).count();
    let security = text.lines().filter(|l| l.starts_with("Inst ") && l.contains("-security")).count();

    let out = Command::new(env!("CARGO_BIN_EXE_custos-agent"))
        .args(["collect", "--json", "--check", "os_patches"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = &doc["checks"][0];
    assert_eq!(check["backend"], "apt", "{check:#}");
    assert_eq!(check["facts"]["package_manager"], "apt");
    assert_eq!(check["facts"]["pending_upgrades"], pending, "{check:#}");
    assert_eq!(check["facts"]["pending_security_upgrades"], security, "{check:#}");
    if security > 0 {
        assert_eq!(check["status"], "fail", "{check:#}");
        assert!(check["reason"].as_str().unwrap().contains(&format!("{security} security updates pending")));
    }
    assert!(!check["observation"]["sha256"].as_str().unwrap().is_empty());
}
