//! Live lockout test: `auth` stacks held against libpam and pam_faillock
//! themselves. In a private copy of `/etc` (bind-mounted in a private mount
//! namespace; the machine's own files are never touched) a test user with
//! a known password is refused three times by `pamtester ... authenticate`
//! with a wrong one, then tried with the right one: the account is locked
//! exactly when that last attempt fails. The agent may report a lockout
//! threshold only for stacks libpam really locks.
//!
//! Fixed states (the distribution's stack, and hostile ones: the password
//! module's failure jumping over `authfail`, a `sufficient` password module
//! before the lockout, failures counted but a locked account let in) go
//! through the whole agent, and `UPDATE_EXPECT=1` records them as cases
//! `tests/cases/linux-password_policy-lockout-*`; random stacks
//! (`CUSTOS_PAM_SEED`: default fixed, `random` explores) go through the
//! agent's evaluator. Needs root, `unshare`, `pamtester` and `openssl`;
//! outside CI it says why and stops when they are missing.

#[path = "support/private.rs"]
mod private;

use std::path::{Path, PathBuf};
use std::process::Command;

const USER: &str = "custos-lock";
const RIGHT: &str = "Right#Pass-42";
/// A sound `password` stack, so that the lockout alone decides the check.
const COMMON_PASSWORD: &str = "password requisite pam_pwquality.so retry=1 minlen=14 dictcheck=0\n\
    password [success=1 default=ignore] pam_unix.so obscure use_authtok try_first_pass yescrypt\n\
    password requisite pam_deny.so\npassword required pam_permit.so\n";

/// A private copy of `/etc` with the test user and `faillock.conf` (deny 3,
/// its tally directory beside it).
struct Etc {
    _dir: tempfile::TempDir,
    etc: PathBuf,
    tally: PathBuf,
}

impl Etc {
    fn new() -> Etc {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let tally = dir.path().join("tally");
        std::fs::create_dir(&tally).unwrap();
        assert!(Command::new("cp").arg("-a").arg("/etc").arg(&etc).status().unwrap().success());
        let conf = format!("deny = 3\ndir = {}\n", tally.display());
        std::fs::write(etc.join("security/faillock.conf"), conf).unwrap();
        std::fs::write(etc.join("pam.d/common-password"), COMMON_PASSWORD).unwrap();
        let hash = Command::new("openssl").args(["passwd", "-6", RIGHT]).output().unwrap();
        let hash = String::from_utf8(hash.stdout).unwrap();
        let user = format!(
            "(id {USER} >/dev/null 2>&1 || useradd -M {USER}) && usermod -p '{}' {USER}",
            hash.trim()
        );
        let e = Etc { _dir: dir, etc, tally };
        assert!(e.run(&user).0, "creating the test user failed");
        e
    }

    /// Runs `script` with this `/etc`.
    fn run(&self, script: &str) -> (bool, String) {
        let out = private::unshared(&format!("mount --bind '{}' /etc && {script}", self.etc.display()));
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// libpam's verdicts for service `service`, from a clean tally: the right
    /// password, three wrong ones, the right one again and a wrong one
    /// (`true`: let in).
    fn attempts(&self, service: &str) -> Vec<bool> {
        let script = format!(
            "rm -f '{tally}'/*\n\
             t() {{ printf '%s\\n' \"$1\" | pamtester {service} {USER} authenticate >/dev/null 2>&1 && echo ok || echo no; }}\n\
             t '{RIGHT}'; t wrong1; t wrong2; t wrong3; t '{RIGHT}'; t wrong4",
            tally = self.tally.display()
        );
        let (ok, out) = self.run(&script);
        assert!(ok, "pamtester script failed");
        out.lines().map(|l| l == "ok").collect()
    }
}

/// libpam locks the account: after three wrong passwords the right one is
/// refused, and so is a fourth wrong one.
fn locked(attempts: &[bool]) -> bool {
    attempts.get(4..) == Some(&[false, false][..])
}

fn ready() -> bool {
    private::ready("live lockout test", &["/usr/bin/pamtester", "/usr/bin/openssl"])
}

/// The whole agent's finding with `common-auth` = `stack` (recorded as a
/// case when blessing).
fn agent_says(etc: &Etc, name: &str, stack: &str) -> serde_json::Value {
    std::fs::write(etc.etc.join("pam.d/common-auth"), stack).unwrap();
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let (ok, out) = etc.run(&format!("'{agent}' collect --json --check password_policy"));
    assert!(ok, "{name}: the agent failed");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/cases/linux-password_policy-lockout-{name}"));
        let _ = std::fs::remove_dir_all(&case);
        let description = format!("auth stack {name} of live_pam_lockout.rs, judged by pamtester");
        let cmd = format!(
            "'{agent}' record '{}' --check password_policy --description '{description}' >&2",
            case.display()
        );
        assert!(etc.run(&cmd).0, "recording {name} failed");
    }
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
    doc["checks"][0].clone()
}

#[test]
fn lockout_stacks_are_judged_as_libpam_runs_them() {
    if !ready() {
        return;
    }
    let etc = Etc::new();
    let states = [
        (
            "sound",
            "auth required pam_faillock.so preauth nodelay\nauth [success=1 default=ignore] pam_unix.so nodelay\n\
             auth [default=die] pam_faillock.so authfail nodelay\nauth sufficient pam_faillock.so authsucc nodelay\n\
             auth requisite pam_deny.so\nauth required pam_permit.so\n",
        ),
        (
            "authfail-jumped",
            "auth required pam_faillock.so preauth nodelay\nauth [success=2 default=1] pam_unix.so nodelay\n\
             auth [default=die] pam_faillock.so authfail nodelay\nauth requisite pam_deny.so\n\
             auth required pam_permit.so\n",
        ),
        (
            "unix-sufficient-first",
            "auth sufficient pam_unix.so nodelay\nauth required pam_faillock.so preauth nodelay\n\
             auth [default=die] pam_faillock.so authfail nodelay\nauth required pam_deny.so\n",
        ),
        (
            "counted-not-refused",
            "auth [success=1 default=ignore] pam_unix.so nodelay\n\
             auth [default=die] pam_faillock.so authfail nodelay\nauth required pam_permit.so\n",
        ),
    ];
    for (name, stack) in states {
        std::fs::write(etc.etc.join("pam.d/custos-lockout"), stack).unwrap();
        let attempts = etc.attempts("custos-lockout");
        assert_eq!(attempts.first(), Some(&true), "{name}: the right password is refused from the start");
        let f = agent_says(&etc, name, stack);
        let libpam = locked(&attempts);
        assert_eq!(libpam, name == "sound", "{name}: libpam's attempts {attempts:?}");
        judged(&f, libpam, name);
    }
    // One service's own file can skip the shared stack's lockout: sshd
    // lets the right password end the stack before pam_faillock's preauth.
    let sound = states[0].1;
    let sshd = etc.etc.join("pam.d/sshd");
    let shipped = std::fs::read_to_string(&sshd).unwrap_or_default();
    std::fs::write(
        &sshd,
        format!("auth [success=done default=ignore] pam_unix.so nodelay\n{sound}{shipped}"),
    )
    .unwrap();
    let attempts = etc.attempts("sshd");
    assert!(!locked(&attempts), "sshd skipping the lockout: libpam's attempts {attempts:?}");
    let f = agent_says(&etc, "sshd-skips-lockout", sound);
    judged(&f, false, "sshd-skips-lockout");
    assert!(f["reason"].as_str().unwrap().contains("/etc/pam.d/sshd"), "{f:#}");
}

/// The agent's finding agrees with libpam's verdict on the lockout.
fn judged(f: &serde_json::Value, locked: bool, name: &str) {
    if locked {
        assert_eq!(f["status"], "pass", "{name}: {f:#}");
        assert_eq!(f["facts"]["lockout_threshold"], 3, "{name}: {f:#}");
    } else {
        assert_eq!(f["status"], "fail", "{name}: {f:#}");
        assert_eq!(f["facts"]["lockout_threshold"], serde_json::Value::Null, "{name}: {f:#}");
    }
}

/// One random `auth` stack: rules of (control, module).
fn stack_text(rules: &[(usize, usize)]) -> String {
    const CONTROLS: [&str; 10] = [
        "required",
        "requisite",
        "sufficient",
        "optional",
        "[success=1 default=ignore]",
        "[success=2 default=ignore]",
        "[default=die]",
        "[success=done default=ignore]",
        "[success=ok default=bad]",
        "[success=ok default=1]",
    ];
    const MODULES: [&str; 6] = [
        "pam_unix.so nodelay",
        "pam_faillock.so preauth nodelay",
        "pam_faillock.so authfail nodelay",
        "pam_faillock.so authsucc nodelay",
        "pam_permit.so",
        "pam_deny.so",
    ];
    rules.iter().map(|(c, m)| format!("auth {} {}\n", CONTROLS[*c], MODULES[*m])).collect()
}

/// The differential test: whenever the agent's evaluator reports a lockout
/// threshold, libpam must lock the account after that many failures. (The
/// agent may be stricter; the counts of each kind are printed.)
#[test]
fn random_auth_stacks_never_claim_a_lockout_libpam_does_not_enforce() {
    use custos_agent::collect::password_policy::linux::{lockout, parse_pam};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
    if !ready() {
        return;
    }
    let etc = Etc::new();
    let stack_file = etc.etc.join("pam.d/custos-random");
    let rng_seed = match std::env::var("CUSTOS_PAM_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(n) => RngSeed::Fixed(n.parse().expect("CUSTOS_PAM_SEED: a number or `random`")),
        Err(_) => RngSeed::Fixed(12),
    };
    let mut runner =
        TestRunner::new(Config { cases: 300, rng_seed, failure_persistence: None, ..Config::default() });
    // (agent and libpam lock, only libpam locks, neither, never lets the
    // right password in, lets a wrong one in)
    let counts = std::cell::Cell::new([0usize; 5]);
    // Weighted towards the lines lockout stacks are made of, so that both
    // kinds of stack come up often.
    let module =
        prop_oneof![3 => Just(0usize), 2 => Just(1), 3 => Just(2), 1 => Just(3), 2 => Just(4), 1 => Just(5)];
    let result = runner.run(&prop::collection::vec((0..10usize, module), 2..7), |rules| {
        let text = stack_text(&rules);
        std::fs::write(&stack_file, &text).unwrap();
        let attempts = etc.attempts("custos-random");
        let claimed = lockout(&parse_pam(&text), &["deny = 3\n".to_string()]);
        let mut c = counts.get();
        let wrong_let_in =
            attempts.get(1..4).is_some_and(|w| w.contains(&true)) || attempts.get(5) == Some(&true);
        let kind = match (attempts.first() == Some(&true), claimed.is_some(), locked(&attempts)) {
            (false, ..) => 3,
            _ if wrong_let_in => 4,
            (true, true, true) => 0,
            (true, false, true) => 1,
            (true, _, false) => 2,
        };
        c[kind] += 1;
        counts.set(c);
        if claimed.is_some() && (!locked(&attempts) || wrong_let_in) {
            return Err(TestCaseError::fail(format!(
                "the agent reports a lockout ({claimed:?}) that libpam does not enforce {attempts:?}:\n{text}"
            )));
        }
        Ok(())
    });
    let [both, only_libpam, neither, never, open] = counts.get();
    eprintln!(
        "auth stacks: {both} locked (agent agrees), {only_libpam} locked (agent stricter), \
         {neither} not locked, {never} never let the right password in, {open} let a wrong one in"
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(both > 0 && neither > 0, "the stacks should go both ways: {:?}", counts.get());
}
