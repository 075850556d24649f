//! Live `local_admins` test: sudoers states placed over `/etc/sudoers` in a
//! private mount namespace (the machine's own file is never touched), sudo
//! itself asked what a user may run (`sudo -l -U`), and the agent, run in
//! the same namespace, must agree: a state that gives every user a root
//! shell fails, a sound one passes. `UPDATE_EXPECT=1` records each state as
//! a case `tests/cases/linux-local_admins-sudo-NAME` for `cases.rs`.
//! Needs root, `unshare` and sudo (CI installs it); outside CI it says why
//! and stops when they are missing.

#[path = "support/private.rs"]
mod private;

use std::path::Path;
use std::process::Command;

/// Runs `script` with `sudoers` as `/etc/sudoers` (and an empty
/// `/etc/sudoers.d`), in a private mount namespace; its standard output.
fn with_sudoers(dir: &Path, sudoers: &str, script: &str) -> String {
    let file = dir.join("sudoers");
    std::fs::write(&file, sudoers).unwrap();
    let chmod = Command::new("chmod").arg("0440").arg(&file).status().unwrap();
    assert!(chmod.success());
    let empty = dir.join("sudoers.d");
    std::fs::create_dir_all(&empty).unwrap();
    let setup = format!(
        "mount --bind '{}' /etc/sudoers && mount --bind '{}' /etc/sudoers.d && {script}",
        file.display(),
        empty.display()
    );
    let out = private::unshared(&setup);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What sudo says `nobody` may run.
fn sudo_says(dir: &Path, sudoers: &str) -> String {
    with_sudoers(dir, sudoers, "sudo -l -U nobody 2>&1")
}

/// The agent's local_admins finding in the same state.
fn agent_says(dir: &Path, sudoers: &str) -> serde_json::Value {
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let out = with_sudoers(dir, sudoers, &format!("'{agent}' collect --json --check local_admins"));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    doc["checks"][0].clone()
}

fn record(dir: &Path, name: &str, sudoers: &str, description: &str) {
    if std::env::var_os("UPDATE_EXPECT").is_none() {
        return;
    }
    let case =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/cases/linux-local_admins-sudo-{name}"));
    let _ = std::fs::remove_dir_all(&case);
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let cmd = format!(
        "'{agent}' record '{}' --check local_admins --description '{description}' >&2",
        case.display()
    );
    with_sudoers(dir, sudoers, &cmd);
    assert!(case.join("expected.toml").exists(), "recording {name} failed");
}

#[test]
fn sudo_rules_are_judged_as_sudo_applies_them() {
    if !private::ready("live local_admins test", &["/usr/bin/sudo", "/usr/bin/cvtsudoers"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n";

    // Every user may run bash as root: sudo confirms it for `nobody`.
    let hostile = format!("{base}ALL ALL=(root) NOPASSWD: /bin/bash\n");
    let truth = sudo_says(dir.path(), &hostile);
    assert!(truth.contains("(root) NOPASSWD: /bin/bash"), "{truth}");
    let f = agent_says(dir.path(), &hostile);
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(f["reason"].as_str().unwrap().contains("run /bin/bash without a password as root"), "{f:#}");
    record(dir.path(), "everyone-bash", &hostile, "ALL ALL=(root) NOPASSWD: /bin/bash in /etc/sudoers");

    // The same through aliases, which only sudo's own parser expands.
    let aliased = format!(
        "{base}User_Alias EVERYONE = ALL\nCmnd_Alias SHELLS = /usr/bin/python3\nEVERYONE ALL = SHELLS\n"
    );
    assert!(sudo_says(dir.path(), &aliased).contains("/usr/bin/python3"));
    let f = agent_says(dir.path(), &aliased);
    assert_eq!(f["status"], "fail", "{f:#}");

    // Sound: a service account may restart its own service as itself.
    let sound = format!("{base}nobody ALL=(www-data) NOPASSWD: /usr/bin/systemctl restart app\n");
    let truth = sudo_says(dir.path(), &sound);
    assert!(truth.contains("(www-data) NOPASSWD: /usr/bin/systemctl restart app"), "{truth}");
    let f = agent_says(dir.path(), &sound);
    assert_eq!(f["status"], "pass", "{f:#}");
    assert_eq!(f["facts"]["sudo_grants_everyone"], false);
    record(
        dir.path(),
        "service-account",
        &sound,
        "a sudoers rule for a service account, run as www-data only",
    );
}
