//! A private apt world for live tests: one local archive offering a
//! stand-in `openssl` at a chosen version, with the `Release` fields of a
//! chosen archive (Debian's security archive, or its updates archive), and
//! a copy of the machine's dpkg status in which openssl is installed at a
//! chosen version (and perhaps held). Seen only inside a private mount
//! namespace, where `/etc/apt`, `/var/lib/apt/lists`, `/var/lib/dpkg/status`,
//! `/var/log` and `/run` are the lab's: the machine's own apt and dpkg state
//! is never touched.

// Each test binary that includes the lab uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

#[path = "private.rs"]
mod private;

/// The archive the lab serves.
pub struct Archive {
    pub label: &'static str,
    /// `Suite`, e.g. `oldstable-security`.
    pub suite: &'static str,
    /// Appended to the distribution's codename: `-security`, `-updates`.
    pub codename_suffix: &'static str,
    /// The version of openssl it offers.
    pub version: &'static str,
}

/// Debian's security archive offering openssl 99.0.
pub const SECURITY: Archive = Archive {
    label: "Debian-Security",
    suite: "oldstable-security",
    codename_suffix: "-security",
    version: "99.0",
};

/// Whether the lab can be built here (root, `unshare` and the tools).
pub fn ready(name: &str, tools: &[&str]) -> bool {
    let mut all = vec!["/usr/bin/dpkg-deb", "/usr/bin/dpkg-scanpackages", "/usr/bin/apt-get"];
    all.extend(tools);
    private::ready(name, &all)
}

/// The distribution's codename, as `${distro_codename}` expands.
pub fn codename() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .expect("VERSION_CODENAME in /etc/os-release")
}

/// Builds the lab under `dir` (emptied first) and fetches its lists:
/// `archive` offers openssl, which is installed at `installed` (above any
/// real version, so that what depends on openssl stays satisfied), held
/// when `held`.
pub fn build(dir: &Path, archive: &Archive, installed: &str, held: bool) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    let dist = format!("{}{}", codename(), archive.codename_suffix);
    let (label, suite, version) = (archive.label, archive.suite, archive.version);
    let status = if held { "hold ok installed" } else { "install ok installed" };
    let script = format!(
        r#"set -e
cd '{d}'
mkdir -p pkg/DEBIAN repo/pool lists/partial cache/archives/partial log/unattended-upgrades updates run etcapt
printf 'Package: openssl\nVersion: {version}\nArchitecture: all\nMaintainer: Custos tests <tests@invalid>\nDescription: stand-in\n' > pkg/DEBIAN/control
dpkg-deb -Zgzip --build pkg repo/pool/openssl_{version}_all.deb >/dev/null
for arch in all amd64 arm64; do
  mkdir -p repo/dists/{dist}/main/binary-$arch
  (cd repo && dpkg-scanpackages -m pool /dev/null 2>/dev/null) > repo/dists/{dist}/main/binary-$arch/Packages
done
printf 'Origin: Debian\nLabel: {label}\nSuite: {suite}\nCodename: {dist}\nArchitectures: all amd64 arm64\nComponents: main\n' > repo/dists/{dist}/Release
cp -a /etc/apt/. etcapt/
rm -f etcapt/sources.list.d/*
echo 'deb [trusted=yes] file:{d}/repo {dist} main' > etcapt/sources.list
printf 'Dir::Cache "{d}/cache";\n' > etcapt/apt.conf.d/00custos-test
"#
    );
    let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The machine's packages, with openssl replaced by the stand-in.
    let real = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let mut copy: String = real
        .split("\n\n")
        .filter(|p| !p.trim().is_empty() && !p.starts_with("Package: openssl\n"))
        .map(|p| format!("{}\n\n", p.trim_end()))
        .collect();
    copy += &format!(
        "Package: openssl\nStatus: {status}\nPriority: optional\nMaintainer: Custos tests <tests@invalid>\n\
         Architecture: all\nVersion: {installed}\nDescription: stand-in\n\n"
    );
    std::fs::write(dir.join("status"), copy).unwrap();
    let out = inside(dir, "apt-get update -qq");
    assert!(out.0, "apt-get update in the lab failed: {}", out.1);
}

/// Runs `script` with the lab's apt configuration, lists, logs and `/run`;
/// its success and its output (stdout, then stderr).
pub fn inside(dir: &Path, script: &str) -> (bool, String) {
    let d = dir.display();
    let out = private::unshared(&format!(
        "mount --bind '{d}/etcapt' /etc/apt && mount --bind '{d}/lists' /var/lib/apt/lists && \
         mount --bind '{d}/status' /var/lib/dpkg/status && mount --bind '{d}/log' /var/log && \
         mount --bind '{d}/run' /run && {script}"
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The agent's finding for `check` in the lab, recorded as case `case` when
/// `UPDATE_EXPECT` is set and `record` holds.
pub fn agent_says(dir: &Path, check: &str, case: &str, record: bool) -> serde_json::Value {
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    let (ok, out) = inside(dir, &format!("'{agent}' collect --json --check {check} 2>/dev/null"));
    assert!(ok, "{case}: the agent failed: {out}");
    if std::env::var_os("UPDATE_EXPECT").is_some() && record {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/cases/{case}"));
        let _ = std::fs::remove_dir_all(&path);
        let cmd = format!(
            "'{agent}' record '{}' --check {check} --description 'state {case} of the apt lab (tests/support/apt_lab.rs)' >&2",
            path.display()
        );
        assert!(inside(dir, &cmd).0, "recording {case} failed");
    }
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{case}: {e}: {out}"));
    doc["checks"][0].clone()
}
