//! Live `ssh_server` test: the real OpenSSH `sshd -T` resolves test
//! configurations (defaults, includes, overrides) and the check judges what
//! sshd itself says is in effect. Needs `sshd` and `ssh-keygen` (CI installs
//! openssh-server) and root for sshd's privilege-separation directory;
//! outside CI it says why and stops when they are missing.

use std::path::Path;
use std::process::Command;

use custos_agent::collect::ssh_server::evaluate_sshd_t;
use custos_agent::collect::ssh_server::linux::{Service, evaluate, match_blocks};
use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;

const SSHD: &str = "/usr/sbin/sshd";

fn prerequisites() -> Result<(), String> {
    if !Path::new(SSHD).exists() {
        return Err("openssh-server is not installed".into());
    }
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        return Err("ssh-keygen is not installed".into());
    }
    // sshd -T refuses to run without its privilege-separation directory.
    if !Path::new("/run/sshd").exists() && std::fs::create_dir_all("/run/sshd").is_err() {
        return Err("/run/sshd is missing and cannot be created (not root)".into());
    }
    Ok(())
}

/// What the real sshd prints for `config` (with a fresh host key).
fn sshd_t(dir: &Path, name: &str, config: &str) -> Result<String, String> {
    let key = dir.join("host_ed25519");
    if !key.exists() {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .map_err(|e| e.to_string())?;
        assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    let path = dir.join(name);
    std::fs::write(&path, format!("HostKey {}\n{config}", key.display())).unwrap();
    let host = SystemHost::default();
    let out = host.run(SSHD, &["-T", "-f", path.to_str().unwrap()]).map_err(|e| e.to_string())?;
    if out.success() { Ok(out.stdout) } else { Err(out.stderr.trim().to_string()) }
}

#[test]
fn real_sshd_configurations_are_judged_by_their_effective_values() {
    if let Err(why) = prerequisites() {
        assert!(std::env::var_os("CI").is_none(), "live sshd test cannot run in CI: {why}");
        eprintln!("skipping the live sshd test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // OpenSSH's own defaults: root by key only, but passwords accepted and
    // SHA-1 MACs offered.
    let defaults = evaluate_sshd_t(&sshd_t(dir.path(), "defaults", "").unwrap(), "openssh");
    assert_eq!(defaults.status, CheckStatus::Fail, "{:?}", defaults.reason);
    assert_eq!(defaults.facts["permit_root_login"], "without-password");
    assert!(
        defaults.reason.as_deref().unwrap().contains("password logins are accepted"),
        "{:?}",
        defaults.reason
    );

    let hardened = "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
        MaxAuthTries 3\n\
        Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr\n\
        MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com\n\
        KexAlgorithms curve25519-sha256,sntrup761x25519-sha512@openssh.com\n";
    let pass = evaluate_sshd_t(&sshd_t(dir.path(), "hardened", hardened).unwrap(), "openssh");
    assert_eq!(pass.status, CheckStatus::Pass, "{:?}", pass.reason);
    assert_eq!(pass.facts["max_auth_tries"], 3);

    // The first value wins in sshd_config: an include placed first overrides
    // a hardened line below it, and sshd -T shows what really applies.
    let included = dir.path().join("override.conf");
    std::fs::write(&included, "PermitRootLogin yes\nCiphers aes128-cbc,aes256-ctr\n").unwrap();
    let tricky = format!("Include {}\n{hardened}", included.display());
    let fail = evaluate_sshd_t(&sshd_t(dir.path(), "tricky", &tricky).unwrap(), "openssh");
    assert_eq!(fail.status, CheckStatus::Fail);
    let why = fail.reason.unwrap();
    assert!(why.contains("root may log in with a password") && why.contains("aes128-cbc"), "{why}");

    // A configuration sshd rejects is unknown with sshd's own message.
    let err = sshd_t(dir.path(), "broken", "PermitRootLogin perhaps\n").unwrap_err();
    let f = evaluate(Service::Running, Err(err.clone()), Ok(Vec::new()));
    assert_eq!(f.status, CheckStatus::Unknown);
    assert!(f.reason.unwrap().contains("perhaps"), "{err}");
}

/// The check's verdict on `config` as the real sshd resolves it, `Match`
/// blocks included (each asked about with `sshd -T -C`).
fn judged(dir: &Path, name: &str, config: &str) -> custos_agent::collect::Finding {
    let text = sshd_t(dir, name, config).unwrap_or_else(|e| panic!("{name}: {e}"));
    let path = dir.join(name);
    let path = path.to_str().unwrap();
    let blocks = match_blocks(&SystemHost::default(), path, &["-f", path]);
    evaluate(Service::Running, Ok(text), blocks)
}

#[test]
fn match_blocks_are_judged_for_the_connections_they_apply_to() {
    if let Err(why) = prerequisites() {
        assert!(std::env::var_os("CI").is_none(), "live sshd test cannot run in CI: {why}");
        eprintln!("skipping the live sshd test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hardened = "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
        Ciphers aes256-gcm@openssh.com\nMACs hmac-sha2-256-etm@openssh.com\nKexAlgorithms curve25519-sha256\n";
    // Password and root logins for one network: plain `sshd -T` shows a
    // hardened server; sshd itself, asked for a connection from that
    // network, says otherwise.
    let hostile =
        format!("{hardened}Match Address 10.0.0.0/8\n  PasswordAuthentication yes\n  PermitRootLogin yes\n");
    let f = judged(dir.path(), "match-address", &hostile);
    assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
    let why = f.reason.clone().unwrap();
    assert!(
        why.contains("`Match Address 10.0.0.0/8` (addr=10.0.0.1)") && why.contains("password logins"),
        "{why}"
    );
    assert_eq!(f.facts["permit_root_login"], "no", "the global settings stay as sshd prints them");
    // Everyone but one network: the same. (A list of negations only never
    // matches in sshd, whatever it reads like: asked, sshd says so.)
    let outside = format!("{hardened}Match Address *,!10.0.0.0/8\n  PasswordAuthentication yes\n");
    assert_eq!(judged(dir.path(), "match-but", &outside).status, CheckStatus::Fail);
    let never = format!("{hardened}Match Address !10.0.0.0/8\n  PasswordAuthentication yes\n");
    assert_eq!(judged(dir.path(), "match-never", &never).status, CheckStatus::Pass);
    // In an included file, and for root only.
    let extra = dir.path().join("extra.conf");
    std::fs::write(&extra, "Match User root\n  PermitRootLogin yes\n").unwrap();
    let included = format!("{hardened}Include {}\n", extra.display());
    let f = judged(dir.path(), "match-included", &included);
    assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
    assert!(f.reason.unwrap().contains("root may log in with a password"));
    // A block that only tightens passes; one for a group nobody is in
    // applies to no one and is listed as such.
    let sound = format!(
        "{hardened}Match Address 192.0.2.0/24\n  MaxAuthTries 2\nMatch Group custos-no-such-group\n  PasswordAuthentication yes\n"
    );
    let f = judged(dir.path(), "match-sound", &sound);
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
    let blocks = f.facts["match_blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1]["status"], "not_applicable", "{blocks:?}");
    // A criterion the agent does not follow is unknown, never a pass.
    let odd = format!("{hardened}Match Address 10.0.0.1,!10.0.0.0/8\n  PasswordAuthentication yes\n");
    assert_eq!(judged(dir.path(), "match-odd", &odd).status, CheckStatus::Unknown);
}

/// Stops the daemon the test started.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_running_daemons_own_options_are_judged() {
    if let Err(why) = prerequisites() {
        assert!(std::env::var_os("CI").is_none(), "live sshd test cannot run in CI: {why}");
        eprintln!("skipping the live sshd test: {why}");
        return;
    }
    if Command::new("pgrep").args(["-x", "sshd"]).output().is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: an sshd already runs on this machine, whose options the agent would read");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hardened = "Port 22022\nListenAddress 127.0.0.1\nPermitRootLogin no\nPasswordAuthentication no\n\
        KbdInteractiveAuthentication no\nCiphers aes256-gcm@openssh.com\nMACs hmac-sha2-256-etm@openssh.com\n\
        KexAlgorithms curve25519-sha256\n";
    sshd_t(dir.path(), "daemon.conf", hardened).unwrap();
    let conf = dir.path().join("daemon.conf");
    // Started with its configuration file and an option that undoes it.
    let child = Command::new(SSHD)
        .args(["-D", "-f", conf.to_str().unwrap(), "-o", "PasswordAuthentication=yes"])
        .spawn()
        .unwrap();
    let _daemon = Daemon(child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = Command::new(env!("CARGO_BIN_EXE_custos-agent"))
        .args(["collect", "--json", "--check", "ssh_server"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &doc["checks"][0];
    // The daemon's file (its port, its algorithms) and its `-o` together.
    assert_eq!(f["facts"]["ports"], serde_json::json!(["22022"]), "{f:#}");
    assert_eq!(f["facts"]["weak_macs"], serde_json::json!([]), "{f:#}");
    assert_eq!(f["status"], "fail", "{f:#}");
    assert!(f["reason"].as_str().unwrap().contains("PasswordAuthentication yes"), "{f:#}");
}
