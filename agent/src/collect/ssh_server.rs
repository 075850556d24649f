//! The `ssh_server` check: is the SSH server, where one runs, configured to
//! resist credential attacks?
//!
//! Every OS reads the same thing: the *effective* OpenSSH server
//! configuration printed by `sshd -T` (defaults, includes and `Match`-free
//! settings resolved by sshd itself), evaluated here by
//! [`evaluate_sshd_t`]. The OS backends only decide whether an SSH server is
//! there at all (no server: `not_applicable`) and where its binary lives.
//!
//! Fails when root may log in with a password (`permitrootlogin yes`), empty
//! passwords are accepted, password or keyboard-interactive logins are
//! accepted ([`ALLOW_PASSWORD_LOGINS`]), or weak algorithms are offered
//! (CBC and RC4 ciphers; MD5, RIPEMD-160, SHA-1 and 64-bit-tag MACs; SHA-1
//! key exchange), which follows the common benchmarks and BSI TR-02102-4.

pub mod blocks;
pub mod linux;
pub mod macos;
pub mod matches;
pub mod windows;

use std::collections::BTreeMap;

use serde_json::json;

use crate::collect::Finding;
use custos_proto::evidence::CheckStatus;

/// Whether password and keyboard-interactive logins are acceptable. Keys
/// only is the hardening default; an organisation's policy may relax it.
pub const ALLOW_PASSWORD_LOGINS: bool = false;

/// Largest accepted `MaxAuthTries`.
pub const MAX_AUTH_TRIES: u32 = 6;

const WEAK_CIPHER_MARKS: &[&str] = &["-cbc", "3des", "arcfour", "blowfish", "cast128", "rijndael"];
const WEAK_MAC_MARKS: &[&str] = &["md5", "ripemd160", "sha1", "umac-64"];
const WEAK_KEX_MARKS: &[&str] = &["sha1"];

/// `sshd -T` output as keyword → values (keywords lowercase, as printed;
/// repeated keywords such as `port` and `listenaddress` keep every value).
pub fn parse_sshd_t(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        out.entry(key.to_ascii_lowercase()).or_default().push(value.trim().to_string());
    }
    out
}

fn weak(list: Option<&Vec<String>>, marks: &[&str]) -> Vec<String> {
    list.and_then(|v| v.first())
        .map(|l| {
            l.split(',')
                .filter(|alg| {
                    let a = alg.to_ascii_lowercase();
                    marks.iter().any(|m| a.contains(m))
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Evaluates the output of `sshd -T`. `backend` names the server (e.g.
/// `openssh`); output that is not an effective configuration is `unknown`.
pub fn evaluate_sshd_t(text: &str, backend: &str) -> Finding {
    let cfg = parse_sshd_t(text);
    let one = |k: &str| cfg.get(k).and_then(|v| v.first()).map(String::as_str);
    let Some(root) = one("permitrootlogin") else {
        return Finding::unknown(
            backend,
            "sshd -T printed no effective configuration (permitrootlogin missing)",
        )
        .with_raw(text);
    };
    // sshd -T prints every keyword; one missing means cut-off or foreign
    // output, and a missing setting must never read as a secure one.
    let kbd_key = if cfg.contains_key("kbdinteractiveauthentication") {
        "kbdinteractiveauthentication"
    } else {
        "challengeresponseauthentication"
    };
    let required =
        ["passwordauthentication", kbd_key, "permitemptypasswords", "ciphers", "macs", "kexalgorithms"];
    let missing: Vec<&str> = required.iter().copied().filter(|k| !cfg.contains_key(*k)).collect();
    if !missing.is_empty() {
        return Finding::unknown(
            backend,
            format!(
                "sshd -T output lacks {} (cut off?); the effective configuration is not known",
                missing.join(", ")
            ),
        )
        .with_raw(text);
    }
    let yes = |k: &str| one(k) == Some("yes");
    let password = yes("passwordauthentication");
    // Keyboard-interactive (via PAM) asks for the password too.
    let kbd = yes("kbdinteractiveauthentication") || yes("challengeresponseauthentication");
    let empty = yes("permitemptypasswords");
    let max_tries = one("maxauthtries").and_then(|v| v.parse::<u32>().ok());
    let weak_ciphers = weak(cfg.get("ciphers"), WEAK_CIPHER_MARKS);
    let weak_macs = weak(cfg.get("macs"), WEAK_MAC_MARKS);
    let weak_kex = weak(cfg.get("kexalgorithms"), WEAK_KEX_MARKS);

    let mut problems = Vec::new();
    if root == "yes" {
        problems.push("root may log in with a password (PermitRootLogin yes)".to_string());
    }
    if empty {
        problems.push("empty passwords are accepted (PermitEmptyPasswords yes)".to_string());
    }
    if !ALLOW_PASSWORD_LOGINS && (password || kbd) {
        let how = match (password, kbd) {
            (true, true) => "PasswordAuthentication and KbdInteractiveAuthentication",
            (true, false) => "PasswordAuthentication",
            _ => "KbdInteractiveAuthentication",
        };
        problems.push(format!("password logins are accepted ({how} yes)"));
    }
    if let Some(n) = max_tries.filter(|n| *n > MAX_AUTH_TRIES) {
        problems.push(format!("MaxAuthTries is {n} (limit {MAX_AUTH_TRIES})"));
    }
    for (what, list) in [("ciphers", &weak_ciphers), ("MACs", &weak_macs), ("key exchange", &weak_kex)] {
        if !list.is_empty() {
            problems.push(format!("weak {what} offered: {}", list.join(", ")));
        }
    }
    let status = if problems.is_empty() { CheckStatus::Pass } else { CheckStatus::Fail };
    let reason = if problems.is_empty() {
        "no root password login, keys only, no weak algorithms".to_string()
    } else {
        problems.join("; ")
    };
    Finding::new(status, backend)
        .with_reason(reason)
        .fact("permit_root_login", root)
        .fact("password_authentication", password)
        .fact("kbd_interactive_authentication", kbd)
        .fact("permit_empty_passwords", empty)
        .fact("pubkey_authentication", one("pubkeyauthentication") != Some("no"))
        .fact("max_auth_tries", json!(max_tries))
        .fact("ports", cfg.get("port").cloned().unwrap_or_default())
        .fact("weak_ciphers", weak_ciphers)
        .fact("weak_macs", weak_macs)
        .fact("weak_kex", weak_kex)
        .with_raw(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_algorithms_are_named_and_strong_ones_pass() {
        let hardened = "port 22\npermitrootlogin no\npasswordauthentication no\n\
            kbdinteractiveauthentication no\npermitemptypasswords no\nmaxauthtries 4\n\
            ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr\n\
            macs hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com\n\
            kexalgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256\n";
        let f = evaluate_sshd_t(hardened, "openssh");
        assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
        let weak = hardened
            .replace("aes128-ctr", "aes128-ctr,aes256-cbc")
            .replace("umac-128-etm@openssh.com", "umac-128-etm@openssh.com,hmac-sha1,umac-64@openssh.com")
            .replace("curve25519-sha256\n", "curve25519-sha256,diffie-hellman-group14-sha1\n");
        let f = evaluate_sshd_t(&weak, "openssh");
        assert_eq!(f.status, CheckStatus::Fail);
        let r = f.reason.unwrap();
        assert!(r.contains("weak ciphers offered: aes256-cbc"), "{r}");
        assert!(r.contains("weak MACs offered: hmac-sha1, umac-64@openssh.com"), "{r}");
        assert!(r.contains("diffie-hellman-group14-sha1"), "{r}");
    }

    #[test]
    fn cut_off_output_is_unknown_not_secure() {
        let f = evaluate_sshd_t("port 22\npermitrootlogin no\n", "openssh");
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("lacks passwordauthentication"));
    }

    #[test]
    fn error_output_is_unknown() {
        let f = evaluate_sshd_t("sshd: no hostkeys available -- exiting.\n", "openssh");
        assert_eq!(f.status, CheckStatus::Unknown);
    }
}
