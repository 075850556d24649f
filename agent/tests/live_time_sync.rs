//! Live `time_sync` test: the real chronyd synchronised to a second chronyd
//! on loopback (both with `-x`, so the machine's clock is never touched, in
//! a private mount namespace whose `/run/chrony` is the test's), then the
//! server stopped: chronyd's tracking report keeps saying "Normal" while
//! `chronyc sources` shows the source unreachable. The agent must fail the
//! second state. The first is as sound as the kernel says: chronyd with
//! `-x` does not steer the clock, so it passes only where something else
//! does (the kernel's error bound, read here with `adjtimex(2)` directly, is
//! below its 16 s cap) and fails, naming `-x`, where nothing does.
//! `UPDATE_EXPECT=1` records both as cases `tests/cases/linux-time_sync-chrony-x-*`. Needs root, `unshare` and chrony
//! (CI installs it); outside CI it says why and stops when they are missing.

#[path = "support/private.rs"]
mod private;

use std::path::Path;
use std::process::Command;

/// The agent's command for one state: collect (as JSON) or, blessing, record.
fn agent(dir: &Path, name: &str) -> String {
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let out = dir.join(format!("{name}.json"));
    let mut cmd = format!("'{agent}' collect --json --check time_sync > '{}'", out.display());
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/cases/linux-time_sync-chrony-x-{name}"));
        let _ = std::fs::remove_dir_all(&case);
        let description =
            format!("chronyd -x synchronised to a chronyd on loopback, then: {name} (live_time_sync.rs)");
        cmd += &format!(
            " && '{agent}' record '{}' --check time_sync --description '{description}' >&2",
            case.display()
        );
    }
    cmd
}

fn finding(dir: &Path, name: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let doc: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
    doc["checks"][0].clone()
}

#[test]
fn chrony_is_judged_by_sources_that_still_answer() {
    if !private::ready("live time_sync test", &["/usr/sbin/chronyd", "/usr/bin/chronyc"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    assert!(Command::new("chmod").arg("0750").arg(&run).status().unwrap().success());
    // The server's own command socket must not be the client's: chronyd
    // removes its socket when it stops.
    std::fs::write(
        dir.path().join("server.conf"),
        format!("port 11123\nlocal stratum 8\nallow 127.0.0.1\ncmdport 0\nbindcmdaddress {d}/server.sock\npidfile {d}/server.pid\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("client.conf"),
        format!("server 127.0.0.1 port 11123 iburst minpoll -4 maxpoll -4\nport 0\ncmdport 0\npidfile {d}/client.pid\n"),
    )
    .unwrap();
    let script = format!(
        "set -e\nmkdir -p /run/chrony\nmount --bind '{d}/run' /run/chrony\n\
         chronyd -x -u root -f '{d}/server.conf'\nchronyd -x -u root -f '{d}/client.conf'\n\
         for i in $(seq 50); do chronyc -n sources | grep -q '^\\^\\*' && break; sleep 0.2; done\n\
         {}\nkill $(cat '{d}/server.pid')\n\
         for i in $(seq 50); do chronyc -n sources | grep -q '^\\^?' && break; sleep 0.2; done\n\
         {}\nkill $(cat '{d}/client.pid')\n",
        agent(dir.path(), "synced"),
        agent(dir.path(), "sources-lost"),
    );
    let out = private::unshared(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let synced = finding(dir.path(), "synced");
    if kernel_clock_steered() {
        assert_eq!(synced["status"], "pass", "{synced:#}");
    } else {
        assert_eq!(synced["status"], "fail", "{synced:#}");
        assert!(synced["reason"].as_str().unwrap().contains("started with -x"), "{synced:#}");
        assert_eq!(synced["facts"]["kernel_synchronised"], false, "{synced:#}");
    }
    let lost = finding(dir.path(), "sources-lost");
    assert_eq!(lost["status"], "fail", "{lost:#}");
    assert!(lost["reason"].as_str().unwrap().contains("no selected source answers"), "{lost:#}");
}

/// The kernel's own answer, asked directly: is the clock's error bound below
/// the 16 s at which the kernel declares it unsynchronised?
fn kernel_clock_steered() -> bool {
    // SAFETY: a zeroed `timex` has `modes = 0`, which only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live, writable `timex`.
    assert!(unsafe { libc::adjtimex(&mut tx) } >= 0, "{}", std::io::Error::last_os_error());
    tx.maxerror < 16_000_000
}
