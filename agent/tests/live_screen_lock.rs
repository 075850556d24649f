//! Live `screen_lock` test: GNOME's system dconf settings written as
//! keyfiles and compiled with the real `dconf update`, over `/etc/dconf` in
//! a private mount namespace (with a GNOME session file, so the desktop is
//! found); the compiled database, which GNOME reads, is asked directly
//! (`dconf read -d`). A host whose keyfiles were fixed but never compiled
//! still locks never: the agent must not pass it, and must pass the same
//! keyfiles once compiled. `UPDATE_EXPECT=1` records both states as cases
//! `tests/cases/linux-screen_lock-dconf-*`. Needs root, `unshare` and
//! `dconf` (dconf-cli; CI installs it); outside CI it says why and stops.

#[path = "support/private.rs"]
mod private;

use std::path::Path;

/// Runs `script` with the test's `/etc/dconf` and session directory.
fn inside(dir: &Path, script: &str) -> String {
    let setup = format!(
        "mkdir -p /usr/share/xsessions && mount --bind '{0}/dconf' /etc/dconf && \
         mount --bind '{0}/xsessions' /usr/share/xsessions && {script}",
        dir.display()
    );
    let out = private::unshared(&setup);
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn settings(idle: u32) -> String {
    format!(
        "[org/gnome/desktop/session]\nidle-delay=uint32 {idle}\n\n[org/gnome/desktop/screensaver]\nlock-enabled=true\nlock-delay=uint32 0\n"
    )
}

fn agent_says(dir: &Path, name: &str) -> serde_json::Value {
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let out = inside(dir, &format!("'{agent}' collect --json --check screen_lock"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let case =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/cases/linux-screen_lock-dconf-{name}"));
        let _ = std::fs::remove_dir_all(&case);
        let description = format!("GNOME system dconf settings, state {name} of live_screen_lock.rs");
        inside(
            dir,
            &format!(
                "'{agent}' record '{}' --check screen_lock --description '{description}' >&2",
                case.display()
            ),
        );
    }
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
    doc["checks"][0].clone()
}

#[test]
fn gnome_is_judged_by_the_compiled_database() {
    if !private::ready("live screen_lock test", &["/usr/bin/dconf"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("dconf/profile")).unwrap();
    std::fs::create_dir_all(d.join("dconf/db/local.d/locks")).unwrap();
    std::fs::create_dir_all(d.join("xsessions")).unwrap();
    std::fs::write(d.join("xsessions/gnome.desktop"), "[Desktop Entry]\nName=GNOME\nExec=gnome-session\n")
        .unwrap();
    std::fs::write(d.join("dconf/profile/user"), "user-db:user\nsystem-db:local\n").unwrap();
    std::fs::write(
        d.join("dconf/db/local.d/locks/screensaver"),
        "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n/org/gnome/desktop/screensaver/lock-delay\n",
    )
    .unwrap();
    let keyfile = d.join("dconf/db/local.d/00-screensaver");
    let read = "dconf read -d /org/gnome/desktop/session/idle-delay";

    // Compiled with "never go idle"; then the keyfile is fixed, not compiled.
    std::fs::write(&keyfile, settings(0)).unwrap();
    inside(d, "dconf update");
    // File times tick with the kernel's coarse clock: let one tick pass.
    std::thread::sleep(std::time::Duration::from_millis(50));
    std::fs::write(&keyfile, settings(300)).unwrap();
    assert_eq!(inside(d, read).trim(), "uint32 0", "the compiled database still says never");
    let f = agent_says(d, "not-compiled");
    assert_ne!(f["status"], "pass", "{f:#}");
    assert!(f["reason"].as_str().unwrap().contains("dconf update"), "{f:#}");

    // Compiled: GNOME now reads 300 s, locked.
    inside(d, "dconf update");
    assert_eq!(inside(d, read).trim(), "uint32 300");
    let f = agent_says(d, "compiled");
    assert_eq!(f["status"], "pass", "{f:#}");
}
