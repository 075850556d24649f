//! The patch-level collector against recorded `apt-get -s dist-upgrade`
//! (this machine's included) and `dnf updateinfo` output.

use custos_agent::collect::os_patches::linux::{
    Observed, evaluate, kernel_key, newest_kernel, parse_apt_simulation,
};
use custos_proto::evidence::CheckStatus;

const NOW: i64 = 1_795_400_000;
const DAY: i64 = 86_400;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/os_patches/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

fn apt(name: &str, lists_age_days: Option<i64>) -> Observed {
    Observed {
        manager: Some(("apt".into(), Ok(fixture(name)))),
        lists_updated_at: lists_age_days.map(|d| NOW - d * DAY),
        running_kernel: Some("6.1.0-28-amd64".into()),
        boot_entries: vec!["vmlinuz-6.1.0-28-amd64".into(), "config-6.1.0-28-amd64".into()],
        reboot_required: false,
        apt_ignoring_holds: None,
        apt_holds: Vec::new(),
        security_suites: Vec::new(),
    }
}

#[test]
fn recorded_package_states_give_the_expected_status() {
    use CheckStatus::*;
    let cases = [
        (apt("this_host_apt_dist_upgrade.txt", Some(0)), Fail, "81 security updates pending"),
        (apt("ubuntu_security.txt", Some(1)), Fail, "2 security updates pending (libssl3t64, openssl)"),
        (apt("apt_clean.txt", Some(1)), Pass, "no security updates pending; 0 other"),
        (apt("apt_non_security_only.txt", Some(2)), Pass, "2 other upgrades"),
        (apt("apt_clean.txt", Some(30)), Fail, "package lists are 30 days old"),
        (apt("apt_clean.txt", None), Unknown, "age of the package lists is unknown"),
        (
            Observed {
                manager: Some(("dnf".into(), Ok(fixture("dnf_updateinfo_security.txt")))),
                ..Observed::default()
            },
            Fail,
            "3 security updates pending",
        ),
        (
            Observed {
                manager: Some(("dnf".into(), Ok(fixture("dnf_updateinfo_none.txt")))),
                ..Observed::default()
            },
            Pass,
            "",
        ),
        (Observed::default(), Unknown, "no supported package manager"),
        (
            Observed {
                manager: Some(("apt".into(), Err("exit Some(100): E: dpkg was interrupted".into()))),
                ..Observed::default()
            },
            Unknown,
            "dpkg was interrupted",
        ),
    ];
    for (o, status, reason) in cases {
        let f = evaluate(&o, NOW);
        assert_eq!(f.status, status, "{:?}", f.reason);
        assert!(f.reason.as_deref().unwrap_or("").contains(reason), "{:?} lacks {reason:?}", f.reason);
    }
}

#[test]
fn this_hosts_recorded_output_counts_all_and_security_upgrades() {
    let pending = parse_apt_simulation(&fixture("this_host_apt_dist_upgrade.txt"));
    assert_eq!(pending.len(), 132);
    assert_eq!(pending.iter().filter(|p| p.security).count(), 81);
    let f = evaluate(&apt("this_host_apt_dist_upgrade.txt", Some(0)), NOW);
    assert_eq!(f.facts["pending_upgrades"], 132);
    assert_eq!(f.facts["pending_security_upgrades"], 81);
    assert_eq!(f.facts["security_packages"].as_array().unwrap().len(), 20);
}

#[test]
fn an_older_running_kernel_or_pending_reboot_fails() {
    let mut o = apt("apt_clean.txt", Some(1));
    o.boot_entries.push("vmlinuz-6.1.0-30-amd64".into());
    let f = evaluate(&o, NOW);
    assert_eq!(f.status, CheckStatus::Fail);
    assert!(f.reason.unwrap().contains("older than installed 6.1.0-30-amd64"));
    let mut o = apt("apt_clean.txt", Some(1));
    o.reboot_required = true;
    assert_eq!(evaluate(&o, NOW).status, CheckStatus::Fail);
    // No /boot (a VM booted with an external kernel): the kernel is not judged.
    let mut o = apt("apt_clean.txt", Some(1));
    o.boot_entries.clear();
    assert_eq!(evaluate(&o, NOW).status, CheckStatus::Pass);
}

#[test]
fn gathering_falls_back_from_apt_to_dnf_to_yum() {
    use custos_agent::collect::os_patches::linux::observe;
    use custos_agent::host::FixtureHost;
    let yum = FixtureHost::new()
        .command("yum -q updateinfo list --security", &fixture("dnf_updateinfo_security.txt"))
        .file("/proc/sys/kernel/osrelease", "3.10.0-1160.el7.x86_64\n");
    let o = observe(&yum);
    assert_eq!(o.manager.as_ref().map(|(m, _)| m.as_str()), Some("yum"));
    let f = evaluate(&o, NOW);
    assert_eq!(f.status, CheckStatus::Fail);
    assert_eq!(f.facts["pending_security_upgrades"], 3);
    let apt = FixtureHost::new()
        .command("apt-get -s -o Debug::NoLocking=1 dist-upgrade", &fixture("apt_clean.txt"))
        .command(
            "stat -c %Y /var/lib/apt/periodic/update-success-stamp /var/lib/apt/lists",
            &format!("{}\n", NOW - DAY),
        );
    let f = evaluate(&observe(&apt), NOW);
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
    assert_eq!(evaluate(&observe(&FixtureHost::new()), NOW).status, CheckStatus::Unknown);
    // Where apt lists, the listing is read and the simulation never runs.
    let listing =
        "Listing...\nopenssl/oldoldstable 1.1.1n-0+deb10u6 amd64 [upgradable from: 1.1.1n-0+deb10u5]\n";
    let listed = FixtureHost::new()
        .command("apt list --upgradable", listing)
        .command(
            "stat -c %Y /var/lib/apt/periodic/update-success-stamp /var/lib/apt/lists",
            &format!("{}\n", NOW - DAY),
        )
        .file(
            "/var/lib/apt/lists/security.debian.org_debian-security_dists_buster_updates_InRelease",
            "Origin: Debian\nLabel: Debian-Security\nSuite: oldoldstable\nCodename: buster\n",
        );
    let f = evaluate(&observe(&listed), NOW);
    assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
    assert_eq!(f.facts["security_packages"], serde_json::json!(["openssl"]));
}

#[test]
fn kernel_versions_order_numerically() {
    assert!(kernel_key("6.1.0-28-amd64") > kernel_key("6.1.0-9-amd64"));
    assert!(kernel_key("6.10.2-1") > kernel_key("6.9.12-1"));
    let entries =
        ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-28-amd64", "initrd.img-6.1.0-28-amd64"].map(String::from);
    assert_eq!(newest_kernel(&entries).as_deref(), Some("6.1.0-28-amd64"));
}
