//! Live `auto_updates` test: unattended-upgrades itself decides, in a dry
//! run, whether it would install a security update, and the agent must
//! agree. In a private mount namespace (the machine's apt state is never
//! touched) apt sees only a local archive built here, with the `Release`
//! fields of Debian's security archive, offering `openssl` 99.0 over the
//! 1.0 of a private package status. For each configuration of origins and
//! package lists, `unattended-upgrade --dry-run --debug` says whether it
//! would upgrade openssl; the agent's facts must say the same: a security
//! archive allowed (`security_origin`) and openssl not held back
//! (`essential_held_back`). `CUSTOS_BLESS=1` records six of the states as
//! cases `tests/cases/linux-auto_updates-uu-*`. Needs root, `unshare`,
//! `unattended-upgrades`, `dpkg-deb` and `dpkg-scanpackages` (CI installs
//! them); outside CI it says why and stops when they are missing.

#[path = "support/private.rs"]
mod private;

use std::path::Path;
use std::process::Command;

/// The distribution's codename, as `${distro_codename}` expands.
fn codename() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .expect("VERSION_CODENAME in /etc/os-release")
}

/// Builds the local archive, the private apt configuration, lists and
/// package status under `dir`, and fetches the lists.
fn lab(dir: &Path, codename: &str) {
    let d = dir.display();
    let script = format!(
        r#"set -e
cd '{d}'
mkdir -p pkg/DEBIAN repo/pool lists/partial cache/archives/partial log/unattended-upgrades updates run etcapt
printf 'Package: openssl\nVersion: 99.0\nArchitecture: all\nMaintainer: Custos tests <tests@invalid>\nDescription: stand-in for a security update\n' > pkg/DEBIAN/control
dpkg-deb -Zgzip --build pkg repo/pool/openssl_99.0_all.deb >/dev/null
for arch in all amd64 arm64; do
  mkdir -p repo/dists/{codename}-security/main/binary-$arch
  (cd repo && dpkg-scanpackages -m pool /dev/null 2>/dev/null) > repo/dists/{codename}-security/main/binary-$arch/Packages
done
printf 'Origin: Debian\nLabel: Debian-Security\nSuite: oldstable-security\nCodename: {codename}-security\nArchitectures: all amd64 arm64\nComponents: main\n' > repo/dists/{codename}-security/Release
printf 'Package: openssl\nStatus: install ok installed\nPriority: optional\nMaintainer: Custos tests <tests@invalid>\nArchitecture: all\nVersion: 1.0\nDescription: stand-in\n\n' > status
cp -a /etc/apt/. etcapt/
rm -f etcapt/sources.list.d/*
echo 'deb [trusted=yes] file:{d}/repo {codename}-security main' > etcapt/sources.list
printf 'Dir::State::status "{d}/status";\nDir::Cache "{d}/cache";\n' > etcapt/apt.conf.d/00custos-test
"#
    );
    let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = inside(dir, "apt-get update -qq");
    assert!(out.0, "apt-get update in the lab failed: {}", out.1);
}

/// Runs `script` with the lab's apt configuration, lists, logs and `/run`.
fn inside(dir: &Path, script: &str) -> (bool, String) {
    let d = dir.display();
    let out = private::unshared(&format!(
        "mount --bind '{d}/etcapt' /etc/apt && mount --bind '{d}/lists' /var/lib/apt/lists && \
         mount --bind '{d}/log' /var/log && mount --bind '{d}/run' /run && {script}"
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The agent's finding in the lab (recorded as a case when blessing).
fn agent_says(dir: &Path, name: &str) -> serde_json::Value {
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let (ok, out) = inside(dir, &format!("'{agent}' collect --json --check auto_updates 2>/dev/null"));
    assert!(ok, "{name}: the agent failed: {out}");
    if std::env::var_os("CUSTOS_BLESS").is_some() && RECORDED.contains(&name) {
        let case =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/cases/linux-auto_updates-uu-{name}"));
        let _ = std::fs::remove_dir_all(&case);
        let description = format!("unattended-upgrades configuration {name} of live_auto_updates.rs");
        let cmd = format!(
            "'{agent}' record '{}' --check auto_updates --description '{description}' >&2",
            case.display()
        );
        assert!(inside(dir, &cmd).0, "recording {name} failed");
    }
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
    doc["checks"][0].clone()
}

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
    let tools = ["/usr/bin/unattended-upgrade", "/usr/bin/dpkg-deb", "/usr/bin/dpkg-scanpackages"];
    if !private::ready("live auto_updates test", &tools) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    lab(dir.path(), &codename());
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
        let (ok, out) = inside(dir.path(), "unattended-upgrade --dry-run --debug");
        assert!(ok, "{name}: unattended-upgrade failed:\n{out}");
        let upgrades = out.lines().any(|l| {
            l.strip_prefix("Packages that will be upgraded:")
                .is_some_and(|p| p.split_whitespace().any(|w| w == "openssl"))
        });
        assert_eq!(upgrades, *expected, "{name}: unattended-upgrades' own decision changed:\n{out}");
        let f = agent_says(dir.path(), name);
        let held = f["facts"]["essential_held_back"].as_array().cloned().unwrap_or_default();
        let claims = f["facts"]["security_origin"] == true && !held.iter().any(|p| p == "openssl");
        assert_eq!(claims, upgrades, "{name}: the agent disagrees with unattended-upgrades: {f:#}");
    }
}
