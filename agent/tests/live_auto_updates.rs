//! Live `auto_updates` test: unattended-upgrades itself decides, in a dry
//! run, whether it would install a security update, and the agent must
//! agree. In a private mount namespace (the machine's apt state is never
//! touched) apt sees only a local archive built here, with the `Release`
//! fields of Debian's security archive, offering `openssl` 99.0 over the
//! 1.0 of a private package status. For each configuration of origins and
//! package lists, `unattended-upgrade --dry-run --debug` says whether it
//! would upgrade openssl; the agent's facts must say the same: a security
//! archive allowed (`security_origin`) and openssl not held back
//! (`essential_held_back`). `UPDATE_EXPECT=1` records six of the states as
//! cases `tests/cases/linux-auto_updates-uu-*`. Needs root, `unshare`,
//! `unattended-upgrades`, `dpkg-deb` and `dpkg-scanpackages` (CI installs
//! them); outside CI it says why and stops when they are missing.

#[path = "support/apt_lab.rs"]
mod apt_lab;

/// The states recorded as cases (the others differ from these only in
/// the pattern text).
const RECORDED: [&str; 6] = [
    "default",
    "pattern-no-such-codename",
    "pattern-label-only",
    "allowed-codename",
    "blacklist-prefix",
    "whitelist-strict-other",
];

const DEFAULT_ORIGINS: &str = r#"Unattended-Upgrade::Origins-Pattern {
  "origin=Debian,codename=${distro_codename},label=Debian";
  "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
"#;

#[test]
fn unattended_upgrades_installs_what_the_agent_says_it_does() {
    if !apt_lab::ready("live auto_updates test", &["/usr/bin/unattended-upgrade"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    apt_lab::build(dir.path(), &apt_lab::SECURITY, "90.0", false);
    // (state, the 50unattended-upgrades it writes, whether unattended-upgrades upgrades openssl)
    let states: Vec<(&str, String, bool)> = vec![
        ("default", DEFAULT_ORIGINS.to_string(), true),
        (
            "pattern-no-such-codename",
            r#"Unattended-Upgrade::Origins-Pattern { "origin=Debian,codename=nonexistent-security,label=Debian-Security"; };"#.into(),
            false,
        ),
        ("pattern-label-only", r#"Unattended-Upgrade::Origins-Pattern { "origin=Debian,label=Security-Theatre"; };"#.into(), false),
        ("pattern-wildcard", r#"Unattended-Upgrade::Origins-Pattern { "o=Debian,a=*-security"; };"#.into(), true),
        ("pattern-site", r#"Unattended-Upgrade::Origins-Pattern { "site=security.debian.org"; };"#.into(), false),
        (
            "allowed-codename",
            r#"Unattended-Upgrade::Allowed-Origins { "${distro_id}:${distro_codename}-security"; };"#.into(),
            false,
        ),
        ("allowed-suite", r#"Unattended-Upgrade::Allowed-Origins { "Debian:oldstable-security"; };"#.into(), true),
        ("blacklist-name", format!("{DEFAULT_ORIGINS}Unattended-Upgrade::Package-Blacklist {{ \"openssl\"; }};"), false),
        ("blacklist-prefix", format!("{DEFAULT_ORIGINS}Unattended-Upgrade::Package-Blacklist {{ \"open\"; }};"), false),
        ("blacklist-inside", format!("{DEFAULT_ORIGINS}Unattended-Upgrade::Package-Blacklist {{ \"ssl\"; }};"), true),
        ("blacklist-all", format!("{DEFAULT_ORIGINS}Unattended-Upgrade::Package-Blacklist {{ \".*\"; }};"), false),
        // A whitelist only raises the priority of what it names...
        ("whitelist-other", format!("{DEFAULT_ORIGINS}Unattended-Upgrade::Package-Whitelist {{ \"libc6\"; }};"), true),
        // ... unless it is strict.
        (
            "whitelist-strict-other",
            format!(
                "{DEFAULT_ORIGINS}Unattended-Upgrade::Package-Whitelist {{ \"libc6\"; }};\n\
                 Unattended-Upgrade::Package-Whitelist-Strict \"true\";"
            ),
            false,
        ),
        ("whitelist-openssl", format!("{DEFAULT_ORIGINS}Unattended-Upgrade::Package-Whitelist {{ \"openssl\"; }};"), true),
    ];
    for (name, config, expected) in &states {
        let conf = dir.path().join("etcapt/apt.conf.d/50unattended-upgrades");
        std::fs::write(&conf, config).unwrap();
        let (ok, out) = apt_lab::inside(dir.path(), "unattended-upgrade --dry-run --debug");
        assert!(ok, "{name}: unattended-upgrade failed:\n{out}");
        let upgrades = out.lines().any(|l| {
            l.strip_prefix("Packages that will be upgraded:")
                .is_some_and(|p| p.split_whitespace().any(|w| w == "openssl"))
        });
        assert_eq!(upgrades, *expected, "{name}: unattended-upgrades' own decision changed:\n{out}");
        let case = format!("linux-auto_updates-uu-{name}");
        let f = apt_lab::agent_says(dir.path(), "auto_updates", &case, RECORDED.contains(name));
        let held = f["facts"]["essential_held_back"].as_array().cloned().unwrap_or_default();
        let claims = f["facts"]["security_origin"] == true && !held.iter().any(|p| p == "openssl");
        assert_eq!(claims, upgrades, "{name}: the agent disagrees with unattended-upgrades: {f:#}");
    }
}
