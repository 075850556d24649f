//! A ClamAV signature database built by the real `sigtool`, for the live
//! antivirus tests: one signature, `Custos.Test.Sig`, that matches any file
//! containing "custos-test".

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Builds an unsigned one-signature database with the real sigtool.
pub fn build_database(dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("COPYING"), "Custos test database\n").unwrap();
    // Matches files containing "custos-test".
    std::fs::write(dir.join("daily.ndb"), "Custos.Test.Sig:0:*:637573746f732d74657374\n").unwrap();
    let mut child = Command::new("sigtool")
        .current_dir(dir)
        .args(["--unsigned", "--build=daily.cud", "--cvd-version=7"])
        .arg(format!("--datadir={}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sigtool runs");
    // sigtool asks for the builder's name.
    child.stdin.take().unwrap().write_all(b"custos\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        dir.join("daily.cud").exists(),
        "sigtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("daily.cud")).unwrap()
}
