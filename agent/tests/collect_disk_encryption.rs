//! The disk-encryption collector against recorded `lsblk -J`, `/proc/mounts`
//! and `/proc/swaps` (this machine's included).

use std::collections::BTreeMap;

use custos_agent::collect::disk_encryption::linux::{Observed, evaluate, parse_lsblk};
use custos_proto::evidence::CheckStatus;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/disk_encryption/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

fn observed(lsblk: &str, mounts: &str, swaps: Option<&str>) -> Observed {
    Observed {
        lsblk: Ok(fixture(lsblk)),
        mounts: Ok(fixture(mounts)),
        swaps: swaps.map(fixture),
        dm_uuids: BTreeMap::new(),
        luks_dumps: BTreeMap::new(),
    }
}

#[test]
fn recorded_hosts_give_the_expected_status() {
    use CheckStatus::*;
    let cases = [
        // LUKS2 on NVMe with LVM inside: root, /home and swap encrypted; /boot exempt; USB stick out of scope.
        (
            observed(
                "laptop_luks_lvm_lsblk.json",
                "laptop_luks_lvm_mounts.txt",
                Some("laptop_luks_lvm_swaps.txt"),
            ),
            Pass,
            "",
        ),
        // Same laptop with swap on a plain partition.
        (
            observed("plain_swap_lsblk.json", "laptop_luks_lvm_mounts.txt", Some("plain_swap_swaps.txt")),
            Fail,
            "swap /dev/nvme0n1p4",
        ),
        // Older util-linux, plain ext4 root and data disk.
        (observed("old_lsblk_plain.json", "old_lsblk_plain_mounts.txt", None), Fail, "sda1 on sda (/)"),
        // This machine: a VM disk without encryption.
        (
            observed("this_host_lsblk.json", "this_host_mounts.txt", Some("this_host_swaps.txt")),
            Fail,
            "vda (/",
        ),
        // A container: the root's device is not visible.
        (observed("laptop_luks_lvm_lsblk.json", "container_mounts.txt", None), Unknown, "overlay"),
    ];
    for (o, status, reason) in cases {
        let f = evaluate(&o);
        assert_eq!(f.status, status, "{:?}", f.reason);
        assert!(f.reason.as_deref().unwrap_or("").contains(reason), "{:?} lacks {reason:?}", f.reason);
    }
}

#[test]
fn laptop_facts_name_each_volume_and_its_chain() {
    let f = evaluate(&observed(
        "laptop_luks_lvm_lsblk.json",
        "laptop_luks_lvm_mounts.txt",
        Some("laptop_luks_lvm_swaps.txt"),
    ));
    let volumes = f.facts["volumes"].as_array().unwrap();
    let root = volumes.iter().find(|v| v["mountpoint"] == "/").unwrap();
    assert_eq!(root["chain"], serde_json::json!(["dm-1", "dm-0", "nvme0n1p3", "nvme0n1"]));
    assert_eq!(root["encrypted"], true);
    assert!(volumes.iter().any(|v| v["kind"] == "swap" && v["encrypted"] == true));
    let exempt = f.facts["exempt"].to_string();
    assert!(exempt.contains("/boot/efi") && exempt.contains("removable medium"), "{exempt}");
}

#[test]
fn dm_uuid_marks_crypt_devices_that_lsblk_shows_as_plain_dm() {
    // lsblk TYPE "dm" (no crypt info): the sysfs uuid decides.
    let text = fixture("laptop_luks_lvm_lsblk.json").replace("\"type\": \"crypt\"", "\"type\": \"dm\"");
    let mut o = Observed {
        lsblk: Ok(text),
        mounts: Ok(fixture("laptop_luks_lvm_mounts.txt")),
        swaps: Some(fixture("laptop_luks_lvm_swaps.txt")),
        dm_uuids: BTreeMap::new(),
        luks_dumps: BTreeMap::new(),
    };
    assert_eq!(evaluate(&o).status, CheckStatus::Fail);
    o.dm_uuids.insert("dm-0".into(), "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-nvme0n1p3_crypt".into());
    assert_eq!(evaluate(&o).status, CheckStatus::Pass);
}

#[test]
fn unreadable_or_malformed_input_is_unknown() {
    let no_lsblk = Observed {
        lsblk: Err("lsblk: not installed".into()),
        ..observed("this_host_lsblk.json", "this_host_mounts.txt", None)
    };
    assert_eq!(evaluate(&no_lsblk).status, CheckStatus::Unknown);
    for bad in ["", "{}", "{\"blockdevices\": 3}", "nonsense"] {
        let o = Observed {
            lsblk: Ok(bad.into()),
            ..observed("this_host_lsblk.json", "this_host_mounts.txt", None)
        };
        assert_eq!(evaluate(&o).status, CheckStatus::Unknown, "{bad}");
    }
    assert!(parse_lsblk("{\"blockdevices\": []}").unwrap().is_empty());
    let no_root = Observed {
        mounts: Ok("proc /proc proc rw 0 0\n".into()),
        ..observed("this_host_lsblk.json", "this_host_mounts.txt", None)
    };
    assert_eq!(evaluate(&no_root).status, CheckStatus::Unknown);
}
