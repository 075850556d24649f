//! The Linux firewall collector against recorded real `nft -j list ruleset`
//! and `iptables-save` output: judged by what the rules accept, never by
//! a chain's policy alone. Every fixture here was printed by nft 1.0.6 or
//! iptables 1.8.9 (Debian 12) in a network namespace.

use custos_agent::collect::Finding;
use custos_agent::collect::firewall::linux::{Observed, evaluate};
use custos_proto::evidence::CheckStatus;
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/firewall/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// An nftables ruleset on a host with one outside interface, `eth0`, and a
/// default route through it in each family (recorded `ip -j route` output).
fn nft(name: &str, ipv6_enabled: bool) -> Observed {
    Observed {
        nft: Some(Ok(fixture(name))),
        routes_v4: Some(fixture("ip_route_v4.json")),
        routes_v6: Some(fixture("ip_route_v6.json")),
        ipv6_enabled,
        ..Observed::default()
    }
}

/// Each exposed service as `family proto/ports from ... [via ...] [qualifiers]`.
fn exposed(f: &Finding) -> Vec<String> {
    let mut out = Vec::new();
    for e in f.facts["exposed"].as_array().into_iter().flatten() {
        let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        let mut tail = format!(" from {}", text("from"));
        if text("via") != "any" {
            tail.push_str(&format!(" via {}", text("via")));
        }
        if !text("also").is_empty() {
            tail.push_str(&format!(" {}", text("also")));
        }
        if e["certain"] == false {
            tail.push_str(" (possibly)");
        }
        for s in e["services"].as_array().into_iter().flatten() {
            out.push(format!("{} {}{tail}", text("family"), s.as_str().unwrap_or_default()));
        }
    }
    out
}

#[test]
fn recorded_rulesets_give_the_expected_status() {
    use CheckStatus::*;
    // (fixture, ipv6 enabled, status, ipv4 filtered, ipv6 filtered, reason contains)
    let cases = [
        ("nft_inet_drop.json", true, Pass, true, true, "dropped except"),
        // iptables-nft's conntrack match, unreadable in nft's JSON alone.
        ("nft_from_iptables_drop.json", true, Unknown, false, true, "iptables-nft match `conntrack`"),
        ("nft_ip_only_final_reject.json", false, Pass, true, false, "dropped except"),
        ("nft_ip_only_final_reject.json", true, Fail, true, false, "ipv6 tcp/any"),
        ("nft_inet_accept.json", true, Fail, false, false, "ipv4 tcp/any from any"),
        ("nft_empty.json", true, Fail, false, false, "no input filter chain"),
    ];
    for (file, v6, status, f4, f6, reason) in cases {
        let f = evaluate(&nft(file, v6));
        assert_eq!(f.status, status, "{file}: {:?} {:?}", f.reason, exposed(&f));
        assert_eq!(f.facts["ipv4_filtered"], f4, "{file}");
        assert_eq!(f.facts["ipv6_filtered"], f6, "{file}");
        assert!(f.reason.as_deref().unwrap_or("").contains(reason), "{file}: {:?}", f.reason);
        assert_eq!(f.backend, "nftables");
        assert!(!f.raw.is_empty(), "the raw ruleset is kept as the observation");
    }
}

#[test]
fn iptables_nft_rules_read_with_their_save_output_pass() {
    let o = Observed {
        nft_save_v4: Some(fixture("iptables_save_drop.txt")),
        ..nft("nft_from_iptables_drop.json", true)
    };
    let f = evaluate(&o);
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
    assert_eq!(exposed(&f), Vec::<String>::new());
}

#[test]
fn an_unconditional_accept_defeats_a_drop_policy() {
    let text = fixture("nft_inet_drop.json").replace(
        r#""expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]"#,
        r#""expr": [{"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]"#,
    );
    let f = evaluate(&Observed { nft: Some(Ok(text)), ipv6_enabled: true, ..Observed::default() });
    assert_eq!(f.status, CheckStatus::Fail);
    let reason = f.reason.unwrap();
    assert!(reason.contains("ipv4 tcp/any from any") && reason.contains("`accept`"), "{reason}");
}

#[test]
fn every_kind_of_expression_is_read_by_its_meaning() {
    let f = evaluate(&nft("nft_many_expressions.json", true));
    let got = exposed(&f);
    for want in [
        "ipv4 tcp/22 from any",
        "ipv4 tcp/80-81 from any",
        "ipv4 tcp/443 from any except 192.0.2.0/24",
        "ipv4 tcp/2022 from any",
        "ipv4 tcp/5000 from any",
        "ipv4 tcp/8000-8010 from any",
        // Rules after the reverse path check (`fib saddr . iif oif missing drop`)
        // only see packets that arrive where the routes expect them.
        "ipv4 tcp/6000 from any via eth0",
        "ipv6 tcp/6000 from fe80::/64 via eth1",
        // Port 82 of these sources meets `tcp dport vmap { 81 : accept, 82 : drop }` first.
        "ipv4 tcp/1-79 from 198.51.100.4/32,203.0.113.0/24 via eth0",
        "ipv4 tcp/83-1023 from 198.51.100.4/32,203.0.113.0/24 via eth0",
        "ipv4 tcp/7001 from any via eth0 (possibly)",
        "ipv4 udp/53 from any via eth*",
        "ipv4 udp/5353 from any",
        "ipv6 udp/546 from fe80::/10",
        "ipv6 tcp/22 from any",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
    }
    for never in ["tcp/82", "tcp/9 ", "ipv6 tcp/7001", "ipv6 tcp/1-1023"] {
        assert!(!got.iter().any(|g| g.contains(never)), "{never:?} should not be exposed: {got:#?}");
    }
    // `ip saddr @allowed tcp dport != 22 accept` opens every other port to 10.0.0.0/8 (and 22 is open anyway).
    assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
    assert!(got.iter().any(|g| g.starts_with("ipv4 tcp/any from 10.0.0.0/8,192.168.1.1/32")), "{got:#?}");
}

#[test]
fn legacy_iptables_save_output_is_read_whatever_the_alternative() {
    let both = Observed {
        legacy_v4: Some(Ok(fixture("iptables_save_drop.txt"))),
        legacy_v6: Some(Ok(fixture("ip6tables_save_drop.txt"))),
        ipv6_enabled: true,
        ..Observed::default()
    };
    let f = evaluate(&both);
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
    assert_eq!(f.backend, "iptables-legacy");
    let v6_accept = Observed { legacy_v6: Some(Ok(fixture("ip6tables_save_accept.txt"))), ..both.clone() };
    let f = evaluate(&v6_accept);
    assert_eq!(f.status, CheckStatus::Fail);
    assert!(f.reason.unwrap().contains("ipv6"));
    // Legacy rules next to an empty nftables ruleset: both run, the legacy drop filters.
    let mixed = Observed { nft: Some(Ok(fixture("nft_empty.json"))), ..both };
    let f = evaluate(&mixed);
    assert_eq!(f.status, CheckStatus::Pass, "{:?}", f.reason);
    assert_eq!(f.backend, "nftables+iptables-legacy");
    assert_eq!(f.facts["ipv4_filtered_by"], serde_json::json!(["iptables-legacy"]));
}

#[test]
fn iptables_nft_tables_are_read_from_iptables_nft_save() {
    // `iptables-nft -A INPUT -m conntrack --ctstate NEW -j ACCEPT` shows as an opaque xt match in nft's JSON.
    let nft = fixture("nft_xt_conntrack_new.json");
    let save = fixture("iptables_nft_save_conntrack_new.txt");
    let blind = evaluate(&Observed { nft: Some(Ok(nft.clone())), ..Observed::default() });
    assert_eq!(blind.status, CheckStatus::Unknown, "{:?}", blind.reason);
    assert!(blind.reason.unwrap().contains("conntrack"));
    let f = evaluate(&Observed { nft: Some(Ok(nft)), nft_save_v4: Some(save), ..Observed::default() });
    assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
    assert!(f.reason.unwrap().contains("`-A INPUT -m conntrack --ctstate NEW -j ACCEPT`"));
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
    // A legacy table that cannot be read leaves a drop elsewhere undecided.
    let half = Observed {
        nft: Some(Ok(fixture("nft_inet_drop.json"))),
        legacy_v4: Some(Err("iptables-legacy-save exited with Some(4): Permission denied".into())),
        ..Observed::default()
    };
    let f = evaluate(&half);
    assert_eq!(f.status, CheckStatus::Unknown, "{:?}", f.reason);
    // A manager reporting "active" changes nothing when no rules filter.
    let f = evaluate(&Observed { ufw: Some("Status: active".into()), ..nft("nft_empty.json", true) });
    assert_eq!(f.status, CheckStatus::Fail);
    assert_eq!(f.facts["managers"]["ufw"], "Status: active");
}

#[test]
fn facts_name_every_exposure_with_its_rule() {
    let f = evaluate(&nft("nft_inet_accept.json", false));
    let list = f.facts["exposed"].as_array().cloned().unwrap_or_default();
    let tcp: Vec<&Value> = list.iter().filter(|e| e["proto"] == "tcp").collect();
    assert_eq!(tcp.len(), 1, "{list:#?}");
    assert_eq!(tcp[0]["port_count"], 65536);
    assert!(tcp[0]["because"].as_str().unwrap().contains("policy accept"), "{:?}", tcp[0]);
}

/// On the input path there is no output device: the kernel reads `oif` as
/// index 0 and `oifname` as an empty name (kernel 6.x; seen with counters
/// on `oif != "lo"` for local traffic), so `!= "eth0"` matches every packet.
#[test]
fn output_interface_matches_on_the_input_path_read_no_device() {
    let doc = |key: &str, op: &str| {
        let rule = serde_json::json!({"family": "inet", "table": "t", "chain": "input", "handle": 2,
            "expr": [{"match": {"op": op, "left": {"meta": {"key": key}}, "right": "eth0"}}, {"drop": null}]});
        serde_json::json!({"nftables": [
            {"table": {"family": "inet", "name": "t", "handle": 1}},
            {"chain": {"family": "inet", "table": "t", "name": "input", "handle": 1, "type": "filter",
                       "hook": "input", "prio": 0, "policy": "accept"}},
            {"rule": rule}]})
        .to_string()
    };
    for key in ["oif", "oifname"] {
        let not_eth0 = evaluate(&Observed { nft: Some(Ok(doc(key, "!="))), ..Observed::default() });
        assert_eq!(not_eth0.status, CheckStatus::Pass, "{key}: {:?}", not_eth0.reason);
        let eth0 = evaluate(&Observed { nft: Some(Ok(doc(key, "=="))), ..Observed::default() });
        assert_eq!(eth0.status, CheckStatus::Fail, "{key}: {:?}", eth0.reason);
    }
}
