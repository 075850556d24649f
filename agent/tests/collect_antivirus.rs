//! The anti-malware collector against recorded ClamAV database headers,
//! `mdatp health --output json` and `falconctl` output.

use custos_agent::collect::antivirus::linux::{
    NO_DATABASE, Product, clamav, evaluate, parse_cvd_header, parse_falconctl, parse_mdatp_health,
    parse_sentinelctl,
};
use custos_proto::evidence::CheckStatus;

/// 2026-11-22 08:27 UTC, the build time in the recorded header.
const BUILT: i64 = 1_795_336_020;
const HOUR: i64 = 3600;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/antivirus/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

fn status(products: &[Product]) -> (CheckStatus, String) {
    let f = evaluate(products, String::new());
    (f.status, f.reason.unwrap_or_default())
}

#[test]
fn clamav_needs_the_daemon_and_fresh_signatures() {
    assert_eq!(parse_cvd_header(&fixture("daily_cvd_header_20261122.bin")).unwrap(), ("27465".into(), BUILT));
    let header = || Ok(fixture("daily_cvd_header_20261122.bin"));
    let cases = [
        (clamav(Some(true), header(), Some(true), BUILT + 24 * HOUR), CheckStatus::Pass, "ClamAV is active"),
        (
            clamav(Some(true), header(), Some(true), BUILT + 240 * HOUR),
            CheckStatus::Fail,
            "signatures are 240 h old",
        ),
        (clamav(Some(false), header(), Some(true), BUILT + HOUR), CheckStatus::Fail, "clamd is not running"),
        (
            clamav(Some(true), Err("permission denied".into()), Some(true), BUILT),
            CheckStatus::Unknown,
            "unreadable",
        ),
        // Running with current signatures but scanning only on demand.
        (clamav(Some(true), header(), Some(false), BUILT + HOUR), CheckStatus::Fail, "no on-access scanning"),
        (clamav(Some(true), header(), None, BUILT + HOUR), CheckStatus::Unknown, "clamd.conf unreadable"),
        // Installed, stopped, no signatures: off, not unknown.
        (
            clamav(Some(false), Err(NO_DATABASE.into()), Some(false), BUILT),
            CheckStatus::Fail,
            "clamd is not running",
        ),
    ];
    for (p, want, reason) in cases {
        let (got, why) = status(&[p]);
        assert_eq!(got, want, "{why}");
        assert!(why.contains(reason), "{why:?} lacks {reason:?}");
    }
    assert!(parse_cvd_header(b"MZ\x90\x00 not a database").is_err());
    assert!(parse_cvd_header(b"ClamAV-VDB:date:1:2:3:4:5:6:notanumber").is_err());
}

#[test]
fn defender_needs_health_and_real_time_protection() {
    let healthy = parse_mdatp_health(&text("mdatp_health_healthy.json"));
    assert_eq!(healthy.version.as_deref(), Some("101.24082.0004"));
    assert_eq!(status(&[healthy]).0, CheckStatus::Pass);
    let (s, why) = status(&[parse_mdatp_health(&text("mdatp_health_rtp_off.json"))]);
    assert_eq!(s, CheckStatus::Fail);
    assert!(why.contains("unhealthy") || why.contains("real-time protection is off"), "{why}");
    let (s, why) = status(&[parse_mdatp_health(&text("mdatp_health_truncated.json"))]);
    assert_eq!(s, CheckStatus::Unknown, "{why}");
}

#[test]
fn edr_sensors_must_run() {
    assert_eq!(status(&[parse_falconctl(&text("falconctl_ok.txt"), Some(true))]).0, CheckStatus::Pass);
    let p = parse_falconctl(&text("falconctl_ok.txt"), Some(true));
    assert_eq!(p.version.as_deref(), Some("7.18.17106.0"));
    let (s, why) = status(&[parse_falconctl(&text("falconctl_rfm.txt"), Some(true))]);
    assert_eq!((s, why.contains("reduced functionality")), (CheckStatus::Fail, true));
    assert_eq!(status(&[parse_falconctl(&text("falconctl_ok.txt"), Some(false))]).0, CheckStatus::Fail);
    assert_eq!(status(&[parse_sentinelctl("Agent version: 23.4.2.14\n", Some(true))]).0, CheckStatus::Pass);
    assert_eq!(status(&[parse_sentinelctl("Agent version: 23.4.2.14\n", None)]).0, CheckStatus::Unknown);
}

#[test]
fn nothing_found_fails_and_one_good_product_suffices() {
    let (s, why) = status(&[]);
    assert_eq!(s, CheckStatus::Fail);
    assert!(why.contains("no anti-malware or EDR product found"));
    let off = clamav(Some(false), Ok(fixture("daily_cvd_header_20261122.bin")), Some(true), BUILT);
    let on = parse_falconctl(&text("falconctl_ok.txt"), Some(true));
    assert_eq!(status(&[off, on]).0, CheckStatus::Pass);
}
