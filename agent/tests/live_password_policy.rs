//! Live `password_policy` test: PAM stacks and pwquality settings placed
//! over `/etc/pam.d` and `/etc/security` in a private mount namespace (the
//! machine's own files are never touched), libpwquality itself asked which
//! passwords it accepts (`pwscore`), and the agent, run in the same
//! namespace, must agree: when the main `pwquality.conf` (read last, so it
//! wins) lowers the `minlen` a drop-in raises, the check fails; when the
//! main file holds the long minimum, it passes. The stacks reach
//! pam_pwquality through `@include`, which the agent must follow.
//! `UPDATE_EXPECT=1` records both states as cases
//! `tests/cases/linux-password_policy-pwquality-*`.
//!
//! The stack's control flow is held against libpam itself: `pamtester`
//! changes a test user's password through each stack (in a private copy of
//! `/etc`), and whether a 10-character password gets through must match
//! the minimum the agent reports, for fixed stacks and 400 random ones
//! (`CUSTOS_PAM_SEED`: default fixed; `random` explores). Needs root, `unshare`, `pwscore`
//! (libpwquality-tools) and `pamtester` (CI installs them); outside CI it
//! says why and stops when they are missing.

#[path = "support/private.rs"]
mod private;

use std::path::Path;
use std::process::Command;

/// Root, the tools, and libpam-pwquality's module (under the multiarch
/// library directory).
fn ready(name: &str) -> bool {
    let module = std::fs::read_dir("/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("security/pam_pwquality.so").exists());
    let tools: &[&str] = if module {
        &["/usr/bin/pwscore", "/usr/bin/pamtester"]
    } else {
        &["/lib/*/security/pam_pwquality.so"]
    };
    private::ready(name, tools)
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
    let out = private::unshared(&setup);
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
    if std::env::var_os("UPDATE_EXPECT").is_some() {
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
    if !ready("live password_policy test") {
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

/// Runs `script` with a private copy of `/etc` (so `useradd` and password
/// changes stay in it) whose `pam.d/common-password` is `stack`.
fn in_private_etc(stack: &str, script: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    assert!(Command::new("cp").arg("-a").arg("/etc").arg(&etc).status().unwrap().success());
    std::fs::write(etc.join("pam.d/common-password"), stack).unwrap();
    let setup = format!(
        "mount --bind '{}' /etc && (id custos-pt >/dev/null 2>&1 || useradd -M custos-pt) && {script}",
        etc.display()
    );
    let out = private::unshared(&setup);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_stacks_control_flow_is_judged_as_libpam_runs_it() {
    if !ready("live password_policy test") {
        return;
    }
    let pwquality = "pam_pwquality.so retry=1 minlen=14 dictcheck=0 enforce_for_root";
    let unix = "pam_unix.so obscure yescrypt";
    let stacks = [
        format!(
            "password requisite {pwquality}\npassword [success=1 default=ignore] {unix}\npassword requisite pam_deny.so\npassword required pam_permit.so\n"
        ),
        format!(
            "password sufficient {unix}\npassword requisite {pwquality}\npassword requisite pam_deny.so\n"
        ),
        format!(
            "password [success=1 default=ignore] pam_permit.so\npassword requisite {pwquality}\npassword required {unix}\n"
        ),
        format!("password [success=done default=ignore] {unix}\npassword requisite {pwquality}\n"),
    ];
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    for stack in stacks {
        let (changed, _) = in_private_etc(
            &stack,
            "printf 'Xq7#mPz2vL\\nXq7#mPz2vL\\n' | pamtester common-password custos-pt chauthtok >/dev/null 2>&1",
        );
        let (ok, out) = in_private_etc(&stack, &format!("'{agent}' collect --json --check password_policy"));
        assert!(ok, "the agent failed");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let min = doc["checks"][0]["facts"]["min_length"].as_i64().unwrap_or(0);
        // libpam let a 10-character password through exactly when the agent's minimum allows it.
        assert_eq!(changed, min <= 10, "pamtester changed: {changed}, agent minimum {min}, stack:\n{stack}");
    }
}

/// One random `password` stack: rules of (control, module).
fn stack_text(rules: &[(usize, usize)]) -> String {
    const CONTROLS: [&str; 7] = [
        "required",
        "requisite",
        "sufficient",
        "optional",
        "[success=1 default=ignore]",
        "[success=done default=ignore]",
        "[success=ok default=bad]",
    ];
    const MODULES: [&str; 4] = [
        "pam_pwquality.so retry=1 minlen=14 dictcheck=0 enforce_for_root",
        "pam_unix.so obscure yescrypt",
        "pam_permit.so",
        "pam_deny.so",
    ];
    rules.iter().map(|(c, m)| format!("password {} {}\n", CONTROLS[*c], MODULES[*m])).collect()
}

/// The differential test: random stacks, each run by libpam (pamtester
/// changing a test user's password to a 10-character one) and judged by
/// the agent's evaluator. Whenever libpam lets the password through, the
/// minimum the agent reports must allow it: never a pass on a stack that
/// accepts what the minimum forbids. (The agent may be stricter: it does
/// not know whether a module succeeds, and takes that it may.)
#[test]
fn random_password_stacks_never_let_through_what_the_agent_forbids() {
    use custos_agent::collect::password_policy::linux::{min_length, parse_pam};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
    if !ready("live password_policy test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    assert!(Command::new("cp").arg("-a").arg("/etc").arg(&etc).status().unwrap().success());
    let stack_file = etc.join("pam.d/custos-random");
    let run = |script: &str| {
        let setup = format!("mount --bind '{}' /etc && {script}", etc.display());
        private::unshared(&setup).status.success()
    };
    assert!(run("id custos-pt >/dev/null 2>&1 || useradd -M custos-pt"));
    // A fixed seed keeps CI reproducible; CUSTOS_PAM_SEED=random explores.
    let rng_seed = match std::env::var("CUSTOS_PAM_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(n) => RngSeed::Fixed(n.parse().expect("CUSTOS_PAM_SEED: a number or `random`")),
        Err(_) => RngSeed::Fixed(12),
    };
    let mut runner =
        TestRunner::new(Config { cases: 400, rng_seed, failure_persistence: None, ..Config::default() });
    let counts = std::cell::Cell::new((0, 0));
    let result = runner.run(&prop::collection::vec((0..7usize, 0..4usize), 1..5), |rules| {
        let text = stack_text(&rules);
        std::fs::write(&stack_file, &text).unwrap();
        let through = run("printf 'Xq7#mPz2vL\\nXq7#mPz2vL\\n' | pamtester custos-random custos-pt chauthtok >/dev/null 2>&1");
        let (min, module, ..) = min_length(&parse_pam(&text), &[]);
        let (a, r) = counts.get();
        counts.set(if through { (a + 1, r) } else { (a, r + 1) });
        if through && min > 10 {
            return Err(TestCaseError::fail(format!(
                "libpam accepted 10 characters, the agent says at least {min} ({module}):\n{text}"
            )));
        }
        Ok(())
    });
    let (accepted, refused) = counts.get();
    eprintln!("password stacks: {accepted} accepted a 10-character password, {refused} refused it");
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(accepted > 0 && refused > 0, "the stacks should go both ways: {accepted} / {refused}");
}
