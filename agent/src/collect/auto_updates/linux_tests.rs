//! Tests of the Linux `auto_updates` backend (`linux.rs`), kept apart for its size.

use super::*;
use crate::collect::auto_updates::apt::{AptObserved, evaluate_apt};
use crate::collect::auto_updates::apt_origins::{Distro, parse_release};
use crate::collect::auto_updates::apt_rules::{apt_runner, periodic_days};

const SHIPPED: &str = "[commands]\n#  default                            = yum upgrade\nupdate_cmd = default\nupdate_messages = yes\ndownload_updates = yes\napply_updates = no\nrandom_sleep = 360\n\n[emitters]\nsystem_name = None\n";

fn observed(
    daily: &str,
    enabled: Result<Option<bool>, String>,
    active: Result<bool, String>,
) -> YumCronObserved {
    YumCronObserved { daily: Some(Ok(daily.to_string())), hourly: None, enabled, active }
}

#[test]
fn yum_cron_must_apply_security_updates_and_run() {
    let applying = SHIPPED.replace("apply_updates = no", "apply_updates = yes");
    let f = evaluate_yum_cron(&observed(&applying, Ok(Some(true)), Ok(true)));
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);

    let f = evaluate_yum_cron(&observed(SHIPPED, Ok(Some(true)), Ok(true)));
    assert_eq!(f.status, CheckStatus::Fail);
    assert!(f.reason.unwrap().contains("only downloads"));

    let f = evaluate_yum_cron(&observed(&applying, Ok(Some(false)), Ok(false)));
    assert!(f.reason.unwrap().contains("service is disabled"));
    let f = evaluate_yum_cron(&observed(&applying, Ok(Some(true)), Ok(false)));
    assert!(f.reason.unwrap().contains("not started"));
    let f = evaluate_yum_cron(&observed(&applying, Err("timeout".into()), Ok(true)));
    assert_eq!(f.status, CheckStatus::Unknown);

    let critical = applying.replace("update_cmd = default", "update_cmd = security-severity:Critical");
    let f = evaluate_yum_cron(&observed(&critical, Ok(Some(true)), Ok(true)));
    assert_eq!(f.status, CheckStatus::Fail);
    assert!(f.reason.unwrap().contains("security-severity:Critical"));
    assert!(yum_cmd_covers_security("minimal-security") && !yum_cmd_covers_security("minimal"));
}

#[test]
fn yum_cron_hourly_counts_and_unreadable_is_unknown() {
    let o = YumCronObserved {
        daily: Some(Ok(SHIPPED.into())),
        hourly: Some(Ok("[commands]\nupdate_cmd = security\napply_updates = yes\n".into())),
        enabled: Ok(Some(true)),
        active: Ok(true),
    };
    let f = evaluate_yum_cron(&o);
    assert_eq!(f.status, CheckStatus::Pass);
    assert!(f.reason.unwrap().contains("yum-cron-hourly.conf"));
    let o = YumCronObserved {
        daily: Some(Err(HostError::PermissionDenied { what: "/etc/yum/yum-cron.conf".into() })),
        ..o
    };
    assert_eq!(evaluate_yum_cron(&o).status, CheckStatus::Unknown);
    let none = YumCronObserved { daily: None, hourly: None, enabled: Ok(None), active: Ok(false) };
    assert!(evaluate_yum_cron(&none).reason.unwrap().contains("not installed"));
    assert_eq!(parse_is_active(Some(3), "inactive\n", ""), Ok(false));
    assert!(parse_is_active(Some(1), "", "Failed to connect to bus").is_err());
}

#[test]
fn apt_intervals_take_suffixes_and_blacklists_can_hold_back_everything() {
    assert_eq!(periodic_days("1"), 1);
    assert_eq!(periodic_days("12h"), 1, "apt.systemd.daily accepts h, m, s and d");
    assert_eq!(periodic_days("3d"), 3);
    assert_eq!(periodic_days("always"), 1);
    assert_eq!(periodic_days("0"), 0);
    assert_eq!(periodic_days("0h"), 0);
    let dump = "APT::Periodic::Update-Package-Lists \"12h\";\nAPT::Periodic::Unattended-Upgrade \"12h\";\n\
        Unattended-Upgrade::Allowed-Origins:: \"${distro_id}:${distro_codename}-security\";\n\
        Unattended-Upgrade::Package-Blacklist \"\";\nUnattended-Upgrade::Package-Blacklist:: \".*\";\n";
    let o = AptObserved {
        package_status: Some("install ok installed".into()),
        apt_config: dump.into(),
        timer: Ok(Some(true)),
        runner: Some(Ok("systemd")),
        releases: Ok(parse_release(
            "deb.debian.org_debian-security_dists_bookworm-security_InRelease",
            "Origin: Debian\nLabel: Debian-Security\nSuite: bookworm-security\nCodename: bookworm-security\n",
        )
        .into_iter()
        .collect()),
        distro: Distro { id: "Debian".into(), codename: "bookworm".into() },
    };
    let f = evaluate_apt(&o);
    assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
    assert!(f.reason.unwrap().contains("hold back every package"));
    let kernel_only = AptObserved { apt_config: dump.replace("\".*\"", "\"linux-\""), ..o.clone() };
    let f = evaluate_apt(&kernel_only);
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
    assert_eq!(f.facts["essential_held_back"], serde_json::json!(["linux-image-amd64"]));
    let broken = AptObserved { apt_config: dump.replace("\".*\"", "\"(\""), ..o };
    assert_eq!(evaluate_apt(&broken).status, CheckStatus::Unknown);
}

#[test]
fn an_enabled_timer_needs_something_that_runs_it() {
    assert_eq!(apt_runner(Some("systemd\n"), None, false), Some(Ok("systemd")));
    assert_eq!(apt_runner(Some("bash"), Some(true), true), Some(Ok("cron")));
    assert!(
        matches!(apt_runner(Some("bash"), Some(false), true), Some(Err(e)) if e.contains("no cron daemon"))
    );
    assert!(matches!(apt_runner(Some("tini"), Some(true), false), Some(Err(_))));
    assert_eq!(apt_runner(None, Some(false), true), None, "PID 1 unreadable: cannot tell");
}
