//! Live on-access test: does ClamAV really scan a file when it is written
//! and read, and does the agent say so exactly then? In a private mount
//! namespace (`/etc/clamav/clamd.conf`, `/var/lib/clamav` and `/run/clamav`
//! are the test's; the machine's ClamAV setup is never touched) the real
//! clamd runs with a one-signature database built by `sigtool`, with or
//! without `clamonacc` and on-access paths. An unprivileged user writes
//! and reads a file matching the signature in the watched directory; the
//! truth is whether clamd logs it as found. The agent must pass exactly
//! the states in which it does. `UPDATE_EXPECT=1` records the states as
//! cases `tests/cases/linux-antivirus-clamav-*`. Needs root, `unshare`,
//! `setpriv`, clamd, clamonacc and sigtool (CI installs them) and fanotify;
//! outside CI it says why and stops when they are missing.

#[path = "support/clamav_db.rs"]
mod clamav_db;
#[path = "support/private.rs"]
mod private;

use std::path::Path;
use std::process::Command;

/// One state: clamd.conf with or without on-access paths, clamonacc started or not.
struct State {
    name: &'static str,
    include_path: bool,
    clamonacc: bool,
}

/// The state's clamd.conf: a private socket and log, the test database,
/// and (when asked) on-access scanning of `watched`, root's own accesses
/// excluded so that clamd reading a file does not trigger itself.
fn clamd_conf(dir: &Path, s: &State) -> String {
    let d = dir.display();
    let mut conf = format!(
        "LocalSocket /run/clamav/clamd.ctl\nFixStaleSocket true\nLocalSocketMode 666\nUser root\n\
         DatabaseDirectory /var/lib/clamav\nLogFile {d}/clamd-{}.log\nForeground true\n",
        s.name
    );
    if s.include_path {
        conf +=
            &format!("OnAccessIncludePath {d}/watched\nOnAccessExcludeRootUID yes\nOnAccessPrevention no\n");
    }
    conf
}

/// Runs one state; returns whether clamd found the sample, and the agent's finding.
fn run(dir: &Path, s: &State) -> (bool, serde_json::Value) {
    let d = dir.display();
    std::fs::write(dir.join("clamd.conf"), clamd_conf(dir, s)).unwrap();
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let mut collect = format!("'{agent}' collect --json --check antivirus > '{d}/{}.json'", s.name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/cases/linux-antivirus-clamav-{}", s.name));
        let _ = std::fs::remove_dir_all(&case);
        collect += &format!(
            " && '{agent}' record '{}' --check antivirus --description 'ClamAV state {} of live_antivirus_on_access.rs' >&2",
            case.display(),
            s.name
        );
    }
    let onacc = match s.clamonacc {
        true => format!(
            "clamonacc -F --log='{d}/onacc-{}.log' >/dev/null 2>&1 & pids=\"$pids $!\"; sleep 2\n",
            s.name
        ),
        false => String::new(),
    };
    let script = format!(
        "set -e\nmount --bind '{d}/clamd.conf' /etc/clamav/clamd.conf\nmount --bind '{d}/db' /var/lib/clamav\n\
         mkdir -p /run/clamav\nmount --bind '{d}/run' /run/clamav\n\
         clamd -c /etc/clamav/clamd.conf >/dev/null 2>&1 & pids=$!\n\
         trap 'kill $pids 2>/dev/null; wait $pids 2>/dev/null || true' EXIT\n\
         for i in $(seq 100); do [ -S /run/clamav/clamd.ctl ] && break; sleep 0.1; done\n{onacc}\
         setpriv --reuid 65534 --regid 65534 --clear-groups sh -c \
           'echo custos-test > {d}/watched/sample-{0}.txt; cat {d}/watched/sample-{0}.txt >/dev/null'\n\
         sleep 2\n{collect}\n",
        s.name
    );
    let out = private::unshared(&script);
    assert!(out.status.success(), "{}: {}", s.name, String::from_utf8_lossy(&out.stderr));
    let log = std::fs::read_to_string(dir.join(format!("clamd-{}.log", s.name))).unwrap_or_default();
    let found = log
        .lines()
        .any(|l| l.contains(&format!("sample-{}.txt: Custos.Test.Sig", s.name)) && l.ends_with("FOUND"));
    let text = std::fs::read_to_string(dir.join(format!("{}.json", s.name))).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", s.name));
    (found, doc["checks"][0].clone())
}

#[test]
fn the_agent_passes_clamav_exactly_when_it_scans_on_access() {
    let tools = ["/usr/sbin/clamd", "/usr/sbin/clamonacc", "/usr/bin/sigtool", "/usr/bin/setpriv"];
    if !private::ready("live on-access test", &tools) {
        return;
    }
    // Zombies left by others are not daemons: only live run states count.
    if Command::new("pgrep")
        .args(["-r", "R,S,D,T", "-x", "clamd|clamonacc"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(std::env::var_os("CI").is_none(), "a ClamAV daemon already runs in CI");
        eprintln!("skipping the live on-access test: a clamd or clamonacc already runs here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for sub in ["db", "run", "watched"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    // The unprivileged writer must reach the watched directory.
    for (path, mode) in [(dir.path().to_path_buf(), "0755"), (dir.path().join("watched"), "1777")] {
        assert!(Command::new("chmod").arg(mode).arg(&path).status().unwrap().success());
    }
    clamav_db::build_database(&dir.path().join("db"));
    let states = [
        State { name: "on-access", include_path: true, clamonacc: true },
        State { name: "no-clamonacc", include_path: true, clamonacc: false },
        State { name: "no-include-path", include_path: false, clamonacc: true },
    ];
    for s in &states {
        let (found, f) = run(dir.path(), s);
        assert_eq!(found, s.name == "on-access", "{}: clamd's own log changed its mind", s.name);
        let passed = f["status"] == "pass";
        assert_eq!(passed, found, "{}: clamd found the sample: {found}; the agent: {f:#}", s.name);
    }
}
