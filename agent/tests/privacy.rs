//! Privacy settings applied by the real agent on this host: with host names
//! omitted and user names pseudonymised, neither the host's name nor any
//! account name of `/etc/passwd` that a collector reported appears in what
//! the agent would sign, facts or raw excerpts.

use std::process::Command;

fn collect(config: Option<&std::path::Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos-agent"));
    cmd.args([
        "collect",
        "--json",
        "--check",
        "local_admins",
        "--check",
        "os_support",
        "--check",
        "ssh_server",
    ]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().expect("agent runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pseudonymised_and_omitted_personal_data_never_reaches_the_record() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), [b'k'; 48]).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[privacy]\nuser_names = \"pseudonymise\"\nhost_names = \"omit\"\nkey_file = \"{}\"\n",
            dir.path().join("key").display()
        ),
    )
    .unwrap();

    let plain: serde_json::Value = serde_json::from_str(&collect(None)).unwrap();
    let private_text = collect(Some(&config));
    let private: serde_json::Value = serde_json::from_str(&private_text).unwrap();

    // The names the agent reports without privacy settings...
    let admins = |doc: &serde_json::Value| {
        let c = doc["checks"].as_array().unwrap().iter().find(|c| c["id"] == "local_admins").unwrap().clone();
        c["facts"]["uid0_accounts"].as_array().cloned().unwrap_or_default()
    };
    let names: Vec<String> = admins(&plain).iter().filter_map(|v| v.as_str().map(String::from)).collect();
    assert!(names.contains(&"root".to_string()), "{plain:#}");
    // ...are pseudonyms with them, and the excerpts no longer show them.
    for n in admins(&private) {
        assert!(n.as_str().unwrap().starts_with("p:"), "{private:#}");
    }
    for c in private["checks"].as_array().unwrap() {
        let excerpt = c["observation"]["excerpt"].as_str().unwrap_or("");
        assert!(!excerpt.contains("root:x:0:0"), "{} excerpt keeps a user name: {excerpt}", c["id"]);
    }
    // As a word: a short name like "vm" may be part of other words.
    let words: Vec<&str> = private_text.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect();
    assert!(!words.contains(&host.as_str()), "the host name {host} is in the output");
    assert!(private["host"]["display_name"].is_null(), "{:#}", private["host"]);
}
