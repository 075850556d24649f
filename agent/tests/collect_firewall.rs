//! The firewall collector against recorded real `nft -j list ruleset` and
//! `iptables-save` output: pass only when inbound traffic is denied by default.

use custos_agent::collect::firewall::linux::{Observed, evaluate, parse_iptables_save, parse_nft_json};
use custos_proto::evidence::CheckStatus;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/firewall/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn nft(name: &str, ipv6_enabled: bool) -> Observed {
    Observed { nft: Some(Ok(fixture(name))), ipv6_enabled, ..Observed::default() }
}

#[test]
fn recorded_rulesets_give_the_expected_status() {
    use CheckStatus::*;
    // (fixture, ipv6 enabled, status, ipv4 filtered, ipv6 filtered, reason contains)
    let cases = [
        ("nft_inet_drop.json", true, Pass, true, true, "policy drop"),
        ("nft_from_iptables_drop.json", true, Pass, true, true, "policy drop"),
        ("nft_ip_only_final_reject.json", false, Pass, true, false, "last rule rejects"),
        ("nft_ip_only_final_reject.json", true, Fail, true, false, "inbound IPv6"),
        ("nft_inet_accept.json", true, Fail, false, false, "policy accept and no final drop"),
        ("nft_empty.json", true, Fail, false, false, "no input filter chain"),
    ];
    for (file, v6, status, f4, f6, reason) in cases {
        let f = evaluate(&nft(file, v6));
        assert_eq!(f.status, status, "{file}: {:?}", f.reason);
        assert_eq!(f.facts["ipv4_filtered"], f4, "{file}");
        assert_eq!(f.facts["ipv6_filtered"], f6, "{file}");
        assert!(f.reason.as_deref().unwrap_or("").contains(reason), "{file}: {:?}", f.reason);
        assert_eq!(f.backend, "nftables");
        assert!(!f.raw.is_empty(), "the raw ruleset is kept as the observation");
    }
}

#[test]
fn an_unconditional_accept_defeats_a_drop_policy() {
    let text = fixture("nft_inet_drop.json").replace(
        r#""expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]"#,
        r#""expr": [{"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]"#,
    );
    let chains = parse_nft_json(&text).unwrap();
    assert!(!chains[0].default_deny, "{chains:?}");
    let f = evaluate(&Observed { nft: Some(Ok(text)), ipv6_enabled: true, ..Observed::default() });
    assert_eq!(f.status, CheckStatus::Fail);
    assert!(f.reason.unwrap().contains("accepts everything unconditionally"));
}

#[test]
fn legacy_iptables_save_output_is_read() {
    let v4 = parse_iptables_save(&fixture("iptables_save_drop.txt"), "ipv4").unwrap();
    assert!(v4.default_deny);
    assert_eq!((v4.policy.as_str(), v4.rules), ("drop", 2));
    let v6_open = parse_iptables_save(&fixture("ip6tables_save_accept.txt"), "ipv6").unwrap();
    assert!(!v6_open.default_deny);
    let both = Observed {
        legacy_v4: Some(fixture("iptables_save_drop.txt")),
        legacy_v6: Some(fixture("ip6tables_save_drop.txt")),
        ipv6_enabled: true,
        ..Observed::default()
    };
    assert_eq!(evaluate(&both).status, CheckStatus::Pass);
    let v6_accept = Observed { legacy_v6: Some(fixture("ip6tables_save_accept.txt")), ..both };
    let f = evaluate(&v6_accept);
    assert_eq!(f.status, CheckStatus::Fail);
    assert!(f.reason.unwrap().contains("IPv6"));
}

#[test]
fn unreadable_rules_are_unknown_never_pass() {
    let denied = Observed {
        nft: Some(Err("nft exited with Some(1): Operation not permitted (you must be root)".into())),
        ..Observed::default()
    };
    let f = evaluate(&denied);
    assert_eq!(f.status, CheckStatus::Unknown);
    assert!(f.reason.unwrap().contains("you must be root"));
    let f = evaluate(&Observed::default());
    assert_eq!(f.status, CheckStatus::Unknown);
    assert!(f.reason.unwrap().contains("no packet-filter tool"));
    for garbage in ["", "{", "[]", "{\"nftables\": 5}", &"[".repeat(10_000)] {
        let f = evaluate(&Observed { nft: Some(Ok(garbage.to_string())), ..Observed::default() });
        assert_eq!(f.status, CheckStatus::Unknown, "{garbage:.20}");
    }
    // A manager reporting "active" changes nothing when no rules filter.
    let f = evaluate(&Observed { ufw: Some("Status: active".into()), ..nft("nft_empty.json", true) });
    assert_eq!(f.status, CheckStatus::Fail);
    assert_eq!(f.facts["managers"]["ufw"], "Status: active");
}
