//! Live `antivirus` test against ClamAV as the distribution installs it:
//! the real `sigtool` builds a signature database whose header the check
//! dates, and the agent finds the installed ClamAV on this host and never
//! passes it without a current database and a running daemon. Needs the
//! clamav and clamav-daemon packages (CI installs them); outside CI it says
//! why and stops when they are missing.

#[path = "support/clamav_db.rs"]
mod clamav_db;

use std::path::Path;
use std::process::Command;

use clamav_db::build_database;

use custos_agent::collect::antivirus::linux::{clamav, evaluate, parse_cvd_header};
use custos_proto::evidence::CheckStatus;

const HOUR: i64 = 3600;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn clamav_databases_built_by_sigtool_are_dated_and_the_install_is_found() {
    if !Path::new("/usr/sbin/clamd").exists() || Command::new("sigtool").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "live ClamAV test cannot run in CI: ClamAV is missing");
        eprintln!("skipping the live ClamAV test: clamav / clamav-daemon are not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = build_database(dir.path());
    let (version, built) = parse_cvd_header(&db).unwrap();
    assert_eq!(version, "7");
    assert!((built - now()).abs() < 300, "build time {built} is not now");

    let fresh = evaluate(&[clamav(Some(true), Ok(db.clone()), Some(true), built + HOUR)], String::new());
    assert_eq!(fresh.status, CheckStatus::Pass, "{:?}", fresh.reason);
    let stale =
        evaluate(&[clamav(Some(true), Ok(db.clone()), Some(true), built + 100 * HOUR)], String::new());
    assert_eq!(stale.status, CheckStatus::Fail);
    assert!(stale.reason.unwrap().contains("signatures are 100 h old"));
    let stopped = evaluate(&[clamav(Some(false), Ok(db), Some(true), built)], String::new());
    assert_eq!(stopped.status, CheckStatus::Fail);

    // The agent on this host: ClamAV is found; it passes only with a
    // current database and a running clamd, which this host may lack.
    let out = Command::new(env!("CARGO_BIN_EXE_custos-agent"))
        .args(["collect", "--json", "--check", "antivirus"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = &doc["checks"][0];
    let products = check["facts"]["products"].as_array().unwrap();
    let clam = products.iter().find(|p| p["name"] == "ClamAV").unwrap_or_else(|| panic!("{check:#}"));
    let has_db =
        ["daily.cvd", "daily.cld", "daily.cud"].iter().any(|f| Path::new("/var/lib/clamav").join(f).exists());
    if !has_db {
        assert_ne!(check["status"], "pass", "{check:#}");
        assert!(clam["problem"].as_str().unwrap().contains("no signature database"), "{check:#}");
        // Installed with no database: nothing protects the host, a fail.
        if clam["active"] == false {
            assert_eq!(check["status"], "fail", "{check:#}");
        }
    } else if clam["active"] != true {
        assert_ne!(check["status"], "pass", "{check:#}");
    }
    // Debian's packaged clamd.conf configures no on-access scanning: never a pass.
    let conf = std::fs::read_to_string("/etc/clamav/clamd.conf").unwrap_or_default();
    if !conf.lines().any(|l| l.starts_with("OnAccessIncludePath") || l.starts_with("OnAccessMountPath")) {
        assert_ne!(check["status"], "pass", "{check:#}");
        assert!(clam["problem"].as_str().unwrap().contains("no on-access scanning"), "{check:#}");
    }
}

/// A process that only calls itself clamd is not ClamAV running: the agent
/// asks for the executable behind the name.
#[test]
fn a_process_named_clamd_is_not_clamd() {
    if !Path::new("/usr/bin/pgrep").exists() || !Path::new("/usr/sbin/clamd").exists() {
        assert!(std::env::var_os("CI").is_none(), "pgrep and clamd are needed in CI");
        eprintln!("skipping: pgrep or clamd missing");
        return;
    }
    if Command::new("pgrep").args(["-x", "clamd"]).output().is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: a clamd already runs here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("clamd");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let mut child = Command::new(&fake).arg("30").spawn().unwrap();
    let seen = Command::new("pgrep").args(["-x", "clamd"]).output().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custos-agent"))
        .args(["collect", "--json", "--check", "antivirus"])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.status.success(), "the fake clamd should be visible to pgrep");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = &doc["checks"][0];
    let products = check["facts"]["products"].as_array().unwrap();
    let clam = products.iter().find(|p| p["name"] == "ClamAV").unwrap_or_else(|| panic!("{check:#}"));
    // systemd, where it answers, decides first; here nothing runs the real clamd.
    assert_ne!(clam["active"], true, "{check:#}");
}
