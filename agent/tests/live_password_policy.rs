//! Live `password_policy` test: PAM stacks and pwquality settings placed
//! over `/etc/pam.d` and `/etc/security` in a private mount namespace (the
//! machine's own files are never touched), libpwquality itself asked which
//! passwords it accepts (`pwscore`), and the agent, run in the same
//! namespace, must agree: when the main `pwquality.conf` (read last, so it
//! wins) lowers the `minlen` a drop-in raises, the check fails; when the
//! main file holds the long minimum, it passes. The stacks reach
//! pam_pwquality through `@include`, which the agent must follow.
//! `CUSTOS_BLESS=1` records both states as cases
//! `tests/cases/linux-password_policy-pwquality-*`. Needs root, `unshare`
//! and `pwscore` (libpwquality-tools; CI installs it); outside CI it says
//! why and stops when they are missing.

use std::path::Path;
use std::process::Command;

fn prerequisites() -> Result<(), String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    if !root {
        return Err("not running as root".into());
    }
    for tool in ["/usr/bin/pwscore", "/usr/bin/unshare"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

const COMMON_PASSWORD: &str = "# pam_pwquality comes from the included file\n@include custos-pwquality\n\
    password [success=1 default=ignore] pam_unix.so obscure use_authtok try_first_pass yescrypt\n\
    password requisite pam_deny.so\npassword required pam_permit.so\n";
const PWQUALITY_STACK: &str = "password requisite pam_pwquality.so retry=3\n";
const COMMON_AUTH: &str = "auth required pam_faillock.so preauth\n\
    auth [success=1 default=ignore] pam_unix.so nullok\nauth [default=die] pam_faillock.so authfail\n\
    auth sufficient pam_faillock.so authsucc\nauth requisite pam_deny.so\nauth required pam_permit.so\n";

/// Writes one state: private `/etc/pam.d` and `/etc/security` trees.
fn state(dir: &Path, main: &str, dropin: &str) {
    let pam = dir.join("pam.d");
    let sec = dir.join("security");
    std::fs::create_dir_all(&pam).unwrap();
    std::fs::create_dir_all(sec.join("pwquality.conf.d")).unwrap();
    std::fs::write(pam.join("common-password"), COMMON_PASSWORD).unwrap();
    std::fs::write(pam.join("custos-pwquality"), PWQUALITY_STACK).unwrap();
    std::fs::write(pam.join("common-auth"), COMMON_AUTH).unwrap();
    // No dictionary is installed in CI; the length rule is what is compared.
    std::fs::write(sec.join("pwquality.conf"), format!("dictcheck = 0\n{main}")).unwrap();
    std::fs::write(sec.join("pwquality.conf.d/50-local.conf"), dropin).unwrap();
    std::fs::write(sec.join("faillock.conf"), "deny = 5\n").unwrap();
}

/// Runs `script` with the state of `dir` over `/etc/pam.d` and `/etc/security`.
fn inside(dir: &Path, script: &str) -> (bool, String) {
    let setup = format!(
        "mount --bind '{0}/pam.d' /etc/pam.d && mount --bind '{0}/security' /etc/security && {script}",
        dir.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", &setup])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether libpwquality accepts `password`.
fn accepted(dir: &Path, password: &str) -> bool {
    inside(dir, &format!("echo '{password}' | pwscore >/dev/null 2>&1")).0
}

fn agent_says(dir: &Path, name: &str) -> serde_json::Value {
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let (ok, out) = inside(dir, &format!("'{agent}' collect --json --check password_policy"));
    assert!(ok, "{name}: the agent failed");
    if std::env::var_os("CUSTOS_BLESS").is_some() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/cases/linux-password_policy-pwquality-{name}"));
        let _ = std::fs::remove_dir_all(&case);
        let description = format!(
            "pwquality state {name} of live_password_policy.rs, stacks reaching pam_pwquality by @include"
        );
        let cmd = format!(
            "'{agent}' record '{}' --check password_policy --description '{description}' >&2",
            case.display()
        );
        assert!(inside(dir, &cmd).0, "recording {name} failed");
    }
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
    doc["checks"][0].clone()
}

#[test]
fn pwquality_is_judged_in_the_order_libpwquality_reads_it() {
    if let Err(why) = prerequisites() {
        assert!(std::env::var_os("CI").is_none(), "live password_policy test cannot run in CI: {why}");
        eprintln!("skipping the live password_policy test: {why}");
        return;
    }
    let ten = "Xq7#mPz2vL";
    let fourteen = "Xq7#mPz2vL9!kW";

    // A drop-in raises minlen to 14; the main file, read last, sets 8.
    let overridden = tempfile::tempdir().unwrap();
    state(overridden.path(), "minlen = 8\n", "minlen = 14\n");
    assert!(accepted(overridden.path(), ten), "libpwquality should accept 10 characters here");
    let f = agent_says(overridden.path(), "main-file-wins");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert_eq!(f["facts"]["min_length"], 8, "{f:#}");

    // The main file holds the long minimum: 10 characters are refused.
    let sound = tempfile::tempdir().unwrap();
    state(sound.path(), "minlen = 14\n", "minlen = 8\n");
    assert!(!accepted(sound.path(), ten) && accepted(sound.path(), fourteen));
    let f = agent_says(sound.path(), "main-file-long");
    assert_eq!(f["status"], "pass", "{f:#}");
    assert_eq!(f["facts"]["min_length"], 14, "{f:#}");
}
