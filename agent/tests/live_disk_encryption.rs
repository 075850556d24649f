//! Live `disk_encryption` test: the real `cryptsetup` writes LUKS headers to
//! image files (LUKS2 with the distribution's default cipher, LUKS1, and a
//! weak CBC-plain one), and the check reads them back with `cryptsetup
//! luksDump` through the agent's host. Opening the volumes needs the kernel's
//! device-mapper, which containers lack, so the block-device tree around the
//! header is the recorded one of a laptop. Needs `cryptsetup` (CI installs
//! cryptsetup-bin); outside CI it says why and stops when it is missing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use custos_agent::collect::disk_encryption::linux::{Observed, evaluate, parse_luks_dump};
use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;

/// Formats `image` with the extra `args` and returns `cryptsetup luksDump`.
fn format_and_dump(dir: &Path, name: &str, args: &[&str]) -> String {
    let image = dir.join(name);
    let key = dir.join("key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::File::create(&image).unwrap().set_len(20 << 20).unwrap();
    let out = Command::new("cryptsetup")
        .args(["luksFormat", "-q", "--key-file"])
        .arg(&key)
        // Fast key derivation: this tests the header, not its strength.
        .args(["--pbkdf-force-iterations", "1000"])
        .args(args)
        .arg(&image)
        .output()
        .expect("cryptsetup runs");
    assert!(out.status.success(), "luksFormat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let dump = SystemHost::default().run("cryptsetup", &["luksDump", image.to_str().unwrap()]).unwrap();
    assert!(dump.success(), "luksDump: {}", dump.stderr);
    dump.stdout
}

/// The laptop's recorded tree: root on LVM inside LUKS on nvme0n1p3.
fn laptop_with_header(dump: String) -> Observed {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/disk_encryption");
    let read = |n: &str| std::fs::read_to_string(fixtures.join(n)).unwrap();
    Observed {
        lsblk: Ok(read("laptop_luks_lvm_lsblk.json")),
        mounts: Ok(read("laptop_luks_lvm_mounts.txt")),
        swaps: Some(read("laptop_luks_lvm_swaps.txt")),
        dm_uuids: BTreeMap::new(),
        luks_dumps: BTreeMap::from([("nvme0n1p3".to_string(), Ok(dump))]),
    }
}

#[test]
fn luks_headers_written_by_cryptsetup_are_read_back() {
    if Command::new("cryptsetup").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "live LUKS test cannot run in CI: cryptsetup is missing");
        eprintln!("skipping the live LUKS test: cryptsetup is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    let luks2 = format_and_dump(dir.path(), "luks2.img", &["--type", "luks2", "--pbkdf", "pbkdf2"]);
    let h = parse_luks_dump(&luks2).unwrap();
    assert_eq!((h.version, h.cipher.as_str(), h.key_bits), (2, "aes-xts-plain64", Some(512)), "{luks2}");
    assert_eq!((h.pbkdf, h.keyslots), (vec!["pbkdf2".to_string()], 1));
    let f = evaluate(&laptop_with_header(luks2));
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
    assert_eq!(f.facts["luks_headers"][0]["cipher"], "aes-xts-plain64");

    let luks1 = format_and_dump(dir.path(), "luks1.img", &["--type", "luks1"]);
    let h = parse_luks_dump(&luks1).unwrap();
    assert_eq!((h.version, h.cipher.as_str(), h.keyslots), (1, "aes-xts-plain64", 1), "{luks1}");

    let weak = format_and_dump(
        dir.path(),
        "weak.img",
        &["--type", "luks1", "--cipher", "aes-cbc-plain", "--key-size", "256"],
    );
    let f = evaluate(&laptop_with_header(weak));
    assert_eq!(f.status, CheckStatus::Fail);
    let why = f.reason.unwrap();
    assert!(why.contains("weak encryption: nvme0n1p3: cipher aes-cbc-plain"), "{why}");

    // Not a LUKS device: cryptsetup refuses, and the parser says what is missing.
    let plain = dir.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 1 << 20]).unwrap();
    let out = SystemHost::default().run("cryptsetup", &["luksDump", plain.to_str().unwrap()]).unwrap();
    assert!(!out.success());
    assert!(parse_luks_dump(&out.stdout).unwrap_err().to_string().contains("Version missing"));
}
