//! Tests of the pf evaluator: the parser on pfctl's printed forms, the
//! semantics on hand-made rule sets, and the region evaluation against an
//! independent single-packet model of xnu's `pf_test_rule` on random rule
//! sets (`pf_differential.rs`).

use std::collections::BTreeMap;

use super::*;
use crate::collect::Input;
use crate::collect::firewall::exposure::{Judgement, judge};
use crate::collect::firewall::intervals::{PORT_MAX, V4_MAX};
use crate::collect::firewall::pf_addr::{self, by_op, parse_prefix};
use crate::collect::firewall::pf_rule::admits_syn;

/// Anchors, tables and services from maps; a missing anchor cannot be read.
#[derive(Default)]
pub struct Map {
    pub rules: BTreeMap<String, String>,
    pub children: BTreeMap<String, Vec<String>>,
    pub tables: BTreeMap<(String, String), Result<Option<String>, String>>,
}

impl Map {
    pub fn anchor(mut self, path: &str, rules: &str) -> Self {
        self.rules.insert(path.into(), rules.into());
        self
    }

    pub fn table(mut self, anchor: &str, name: &str, contents: Result<Option<&str>, &str>) -> Self {
        let v = contents.map(|c| c.map(str::to_string)).map_err(str::to_string);
        self.tables.insert((anchor.into(), name.into()), v);
        self
    }
}

impl PfAnchors for Map {
    fn rules(&mut self, path: &str) -> Result<String, String> {
        self.rules.get(path).cloned().ok_or_else(|| format!("anchor {path} unreadable"))
    }
    fn children(&mut self, path: &str) -> Result<Vec<String>, String> {
        Ok(self.children.get(path).cloned().unwrap_or_default())
    }
    fn nat(&mut self, path: &str) -> Result<String, String> {
        Ok(self.rules.get(&format!("nat:{path}")).cloned().unwrap_or_default())
    }
    fn table(&mut self, anchor: &str, name: &str) -> Result<Option<String>, String> {
        self.tables.get(&(anchor.to_string(), name.to_string())).cloned().unwrap_or(Ok(None))
    }
}

fn outcome(main: &str, map: &mut Map) -> PfOutcome {
    evaluate_pf_rules(main, map).unwrap_or_else(|e| panic!("{e}"))
}

fn services(o: &PfOutcome) -> Vec<String> {
    o.exposures.iter().map(|e| format!("{} {}", e.family.as_str(), e.service())).collect()
}

fn filtered(main: &str) -> bool {
    judge(&outcome(main, &mut Map::default()).exposures) == Judgement::Filtered
}

#[test]
fn a_full_rule_in_pfctls_form_is_read() {
    let line = "block drop in log quick on en0 inet proto tcp from <t> port = 53 to any port 1000:2000 \
                flags S/SA keep state label \"x\"";
    let mut map = Map::default().table("", "t", Ok(Some("   192.0.2.0/24\n  !192.0.2.7\n")));
    let o = outcome(&format!("{line}\npass in all\n"), &mut map);
    // Everything but that box is passed by rule 2; the box is blocked.
    let v4_tcp: Vec<&Exposure> =
        o.exposures.iter().filter(|e| e.family == Family::Ipv4 && e.proto == "tcp").collect();
    assert!(v4_tcp.iter().all(|e| e.because == "rule 2"));
    let sourced: Vec<&&Exposure> = v4_tcp.iter().filter(|e| e.from.is_some()).collect();
    assert!(
        sourced.iter().any(|e| e.from.as_ref().is_some_and(|f| f.contains(&"192.0.2.7/32".to_string()))),
        "{sourced:?}"
    );
    assert_eq!(o.default_block.as_deref(), Some("rule 1 blocks inbound traffic no other rule passes"));
}

#[test]
fn port_operators_follow_pf() {
    let t = |op, a, b| by_op(op, a, b).port_text();
    assert_eq!(t("=", 22, 22), "22");
    assert_eq!(t("!=", 22, 22), "0-21,23-65535");
    assert_eq!(t("<", 1024, 1024), "0-1023");
    assert_eq!(t("<", 0, 0), "");
    assert_eq!(t("<=", 1024, 1024), "0-1024");
    assert_eq!(t(">", 0, 0), "1-65535");
    assert_eq!(t(">", 65535, 65535), "");
    assert_eq!(t(">=", 1024, 1024), "1024-65535");
    assert_eq!(t(":", 1000, 2000), "1000-2000");
    assert_eq!(t("><", 1000, 2000), "1001-1999");
    assert_eq!(t("><", 5, 6), "");
    assert_eq!(t("<>", 1000, 2000), "0-999,2001-65535");
    let o =
        outcome("block in all\npass in proto tcp from any to any port 1000 >< 1004\n", &mut Map::default());
    assert_eq!(services(&o), ["any tcp/1001-1003"]);
    let o = outcome("block in all\npass in proto udp from any to any port = domain\n", &mut Map::default());
    assert_eq!(services(&o), ["any udp/53"]);
    assert_eq!(parse_prefix("10.1.2.3/8"), Some((0x0a00_0000, 0x0aff_ffff, super::Fam::V4)));
    assert_eq!(parse_prefix("10.0.0.0/33"), None);
}

#[test]
fn flags_match_a_syn_as_pf_does() {
    assert!(admits_syn("S/SA"));
    assert!(admits_syn("any"));
    assert!(admits_syn("S/FSRPAUEW"));
    assert!(admits_syn("S/"));
    assert!(!admits_syn("A/A"));
    assert!(!admits_syn("SA/SA"));
    assert!(!admits_syn("/S"));
    // A rule whose flags never match a SYN passes no new TCP connection.
    let o = outcome("block in all\npass in proto tcp all flags A/A keep state\n", &mut Map::default());
    assert!(o.exposures.is_empty());
}

#[test]
fn broad_port_ranges_behind_a_default_deny_are_open() {
    assert!(!filtered(
        "block drop in all\npass in proto tcp from any to any port 1:65535 flags S/SA keep state\n"
    ));
    let o = outcome(
        "block drop in all\npass in inet proto tcp from any to any port > 0 flags S/SA keep state\n\
         pass in inet proto udp from any to any port > 0 keep state\n",
        &mut Map::default(),
    );
    assert_eq!(services(&o), ["ipv4 tcp/1-65535", "ipv4 udp/1-65535"]);
    // The source form with a list, as pf.conf allows it.
    assert!(!filtered("block drop in all\npass in inet proto { tcp udp } to port > 0\n"));
    assert!(filtered("pass in quick on lo0 all flags S/SA keep state\nblock drop in all\n"));
    let o = outcome("block drop in all\npass in proto tcp from any to any port = ssh\n", &mut Map::default());
    assert_eq!(services(&o), ["any tcp/22"]);
    assert_eq!(
        o.default_block.as_deref(),
        Some("rule 1 blocks all inbound traffic not passed by a later rule")
    );
}

#[test]
fn pf_rules_are_last_match_with_quick() {
    let deny = "scrub-anchor \"com.apple/*\" all fragment reassemble\nblock drop in all\n\
                pass in quick on lo0 all flags S/SA keep state\npass out all flags S/SA keep state\n";
    assert!(filtered(deny));
    assert!(!filtered("block drop in all\npass in all flags S/SA keep state\n"));
    assert!(!filtered("pass in quick all no state\nblock drop in all\n"));
    assert!(!filtered("scrub-anchor \"com.apple/*\" all fragment reassemble\n"));
    assert!(!filtered("block drop in on en0 all\n"));
    assert!(!filtered("block drop out all\n"));
    assert!(filtered("block return in quick all\npass in all\n"));
    // An interface exception stays a limited one.
    let o = outcome("block drop in all\npass in on ! en0 proto tcp to port 22\n", &mut Map::default());
    assert_eq!(o.exposures.len(), 1);
    assert_eq!(o.exposures[0].via, Some(vec!["!en0".to_string()]));
}

#[test]
fn anchors_are_followed_where_they_stand() {
    let main =
        "block drop in all\npass in quick on lo0 all flags S/SA keep state\nanchor \"com.apple/*\" all\n";
    let mut m = Map::default().anchor("com.apple/200.AirDrop", "").anchor(
        "com.apple/250.ApplicationFirewall",
        "pass in on awdl0 proto udp from any to any port = 5353 keep state\n",
    );
    m.children.insert(
        "com.apple".into(),
        vec!["com.apple/250.ApplicationFirewall".into(), "com.apple/200.AirDrop".into()],
    );
    let o = outcome(main, &mut m);
    assert_eq!(judge(&o.exposures), Judgement::Filtered);
    assert_eq!(o.exposures[0].because, "rule 1 of anchor com.apple/250.ApplicationFirewall");
    assert_eq!(o.exposures[0].via, Some(vec!["awdl0".to_string()]));

    // A pass-all inside an anchor after the block reopens everything.
    m.rules.insert("com.apple/200.AirDrop".into(), "anchor \"Bonjour\" all\n".into());
    m.rules.insert("com.apple/200.AirDrop/Bonjour".into(), "pass in all flags S/SA keep state\n".into());
    let o = outcome(main, &mut m);
    assert!(
        matches!(judge(&o.exposures), Judgement::Open(v) if v[0].because == "rule 1 of anchor com.apple/200.AirDrop/Bonjour")
    );
    // ... but not before it: pf is last-match.
    assert!(filtered_with("anchor \"com.apple/*\" all\nblock drop in all\n", &mut m));
    // A quick block inside an anchor ends the evaluation.
    m.rules.insert("com.apple/200.AirDrop/Bonjour".into(), "block drop in quick all\n".into());
    assert!(filtered_with("anchor \"com.apple/*\" all\npass in all\n", &mut m));
    // A quick anchor stops after a match inside it, for what matched.
    m.rules.insert("x".into(), "block drop in all\n".into());
    assert!(filtered_with("anchor \"x\" quick all\npass in all\n", &mut m));
    m.rules.insert("x".into(), "block drop in on en0 all\n".into());
    let o = outcome("anchor \"x\" quick all\npass in all\n", &mut m);
    assert!(o.exposures.iter().all(|e| e.via == Some(vec!["!en0".to_string()])), "{:?}", o.exposures);
    // A conditional anchor is evaluated for the traffic it matches.
    m.rules.insert("vpn".into(), "pass in all\n".into());
    let o = outcome("block drop in all\nanchor \"vpn\" on utun3 all\n", &mut m);
    assert!(o.exposures.iter().all(|e| e.via == Some(vec!["utun3".to_string()])));
}

fn filtered_with(main: &str, m: &mut Map) -> bool {
    judge(&outcome(main, m).exposures) == Judgement::Filtered
}

#[test]
fn a_nested_anchor_clears_the_match_of_a_quick_anchor_as_xnu_does() {
    // xnu's pf_step_into_anchor clears the match flag and nothing restores
    // it, so the quick anchor below does not end the evaluation.
    let mut m = Map::default().anchor("q", "block drop in all\nanchor \"inner\" all\n").anchor("q/inner", "");
    assert!(!filtered_with("anchor \"q\" quick all\npass in all\n", &mut m));
    m.rules.insert("q".into(), "anchor \"inner\" all\nblock drop in all\n".into());
    assert!(filtered_with("anchor \"q\" quick all\npass in all\n", &mut m));
}

#[test]
fn a_quick_anchor_that_might_have_matched_might_have_ended_the_evaluation() {
    // If `user = 501` matches, the quick anchor passes it for good; if not,
    // rule 2 blocks it: either may happen.
    let mut m = Map::default().anchor("q", "pass in all user = 501\n");
    let o = outcome("anchor \"q\" quick all\nblock drop in all\n", &mut m);
    assert!(matches!(judge(&o.exposures), Judgement::Unclear(_)), "{:?}", o.exposures);
}

#[test]
fn unreadable_deep_and_inline_anchors_are_errors() {
    let mut m = Map::default();
    let e = evaluate_pf_rules("block drop in all\nanchor \"vpn\" all\n", &mut m).unwrap_err();
    assert_eq!(e.to_string(), "anchor vpn unreadable");
    m.rules.insert("loop".into(), "anchor \"/loop\" all\n".into());
    let e = evaluate_pf_rules("anchor \"loop\" all\n", &mut m).unwrap_err();
    assert!(e.to_string().contains("deeper than 8"), "{e}");
    let e = evaluate_pf_rules("anchor \"x\" all {\n", &mut m).unwrap_err();
    assert!(e.to_string().contains("inline anchor"), "{e}");
    let e = evaluate_pf_rules("frobnicate in all\n", &mut m).unwrap_err();
    assert!(e.to_string().contains("rule 1 is unrecognised rule"), "{e}");
    let e = evaluate_pf_rules("block drop in all\n\nfrobnicate in all\n", &mut m).unwrap_err();
    assert_eq!((e.input, e.line), (Some(Input::PfAnchor(String::new())), Some(3)));
    assert_eq!(e.reason, "unrecognised rule \"frobnicate in all\"");
    // An anchor no inbound traffic reaches is not read.
    assert!(evaluate_pf_rules("anchor \"nowhere\" on lo0 all\nanchor \"out\" out all\n", &mut m).is_ok());
    let e = evaluate_pf_rules("anchor \"x\" all user = 501\n", &mut m).unwrap_err();
    assert!(e.to_string().contains("calls anchor x for traffic limited by `user`"), "{e}");
    assert_eq!(resolve_anchor("a/b", "../c"), Ok("a/c".into()));
    assert_eq!(resolve_anchor("a/b", "/c"), Ok("c".into()));
    assert_eq!(
        resolve_anchor("", "../c").map_err(|e| e.reason),
        Err("anchor \"../c\" reaches above the main rule set".into())
    );
    assert_eq!(parse_pf_anchors("  com.apple/200.AirDrop\n  com.apple/250.ApplicationFirewall\n").len(), 2);
}

#[test]
fn undecided_matches_are_never_assumed() {
    // A pass that might match: possible, so a broad one is unclear.
    let o = outcome(
        "block drop in all\npass in proto tcp all user = 501 flags S/SA keep state\n",
        &mut Map::default(),
    );
    assert!(matches!(judge(&o.exposures), Judgement::Unclear(_)));
    assert!(o.exposures[0].because.contains("`user`"), "{}", o.exposures[0].because);
    // A block that might match does not block for certain.
    let o = outcome("block drop in all user = 0\n", &mut Map::default());
    assert!(matches!(judge(&o.exposures), Judgement::Unclear(_)));
    let o = outcome("block drop in quick all probability 50%\npass in all\n", &mut Map::default());
    assert!(matches!(judge(&o.exposures), Judgement::Unclear(_)));
    // ... unless a later rule decides anyway.
    assert!(filtered("pass in all user = 501\nblock drop in all\n"));
    // A destination that may or may not be this host.
    let o = outcome(
        "block drop in all\npass in proto tcp from any to 192.0.2.10 port 1:65535\n",
        &mut Map::default(),
    );
    assert!(matches!(judge(&o.exposures), Judgement::Unclear(_)));
    assert!(o.exposures.iter().all(|e| e.family == Family::Ipv4), "the literal gives the rule its family");
    // The host's own addresses are this host.
    assert!(!filtered("block drop in all\npass in proto tcp from any to (en0) port 1:65535\n"));
    assert!(!filtered("block drop in all\npass in proto tcp from any to self\n"));
    assert!(filtered("block drop in all\npass in proto tcp from any to ! (self)\n"));
    // An unknown word stops the reading and leaves the rule undecided.
    let o = outcome("block drop in all\npass in proto tcp all frobnicate 7\n", &mut Map::default());
    assert!(matches!(judge(&o.exposures), Judgement::Unclear(_)));
}

#[test]
fn tables_limit_sources_as_pf_looks_them_up() {
    let main = "block drop in all\npass in proto tcp from <admins> to any port = ssh flags S/SA keep state\n\
                pass in inet proto tcp from <admins> to any port 1:65535\n";
    let mut m = Map::default().table("", "admins", Ok(Some("   10.1.0.0/16\n  !10.1.9.0/24\n   10.1.9.7\n")));
    let o = outcome(main, &mut m);
    let from = o.exposures[0].from.clone().unwrap_or_default();
    assert!(
        from.contains(&"10.1.9.7/32".to_string()) && !from.contains(&"10.1.9.0/24".to_string()),
        "{from:?}"
    );
    // A source limit does not make the port space specific.
    assert!(matches!(judge(&o.exposures), Judgement::Open(_)));
    // An anchor's table, or the main ruleset's when the anchor has none.
    let mut m = Map::default().anchor("a", "pass in proto tcp from <t> to any port 1:65535\n").table(
        "",
        "t",
        Ok(Some("10.0.0.0/8\n")),
    );
    let o = outcome("block drop in all\nanchor \"a\" all\n", &mut m);
    assert_eq!(o.exposures[0].from, Some(vec!["10.0.0.0/8".to_string()]));
    // A table pf does not have matches nothing.
    let mut m = Map::default();
    assert!(filtered_with("block drop in all\npass in proto tcp from <none> to any port 1:65535\n", &mut m));
    // One that cannot be read leaves the rule undecided.
    let mut m = Map::default().table("", "t", Err("pfctl: Operation not permitted"));
    let o = outcome("block drop in all\npass in proto tcp from <t> to any port 1:65535\n", &mut m);
    assert!(matches!(judge(&o.exposures), Judgement::Unclear(_)));
    assert!(o.exposures[0].because.contains("table <t> unreadable"), "{}", o.exposures[0].because);
    let ten = IntervalSet::from_ranges(V4_MAX, [(0x0a00_0000, 0x0aff_ffff)]);
    assert_eq!(pf_addr::parse_table("   10.0.0.0/8\n").map(|t| t.0), Ok(ten));
    let e = pf_addr::parse_table("10.0.0.0/8\n\n   not-an-address\n").unwrap_err();
    assert_eq!((e.line, e.to_string()), (Some(3), "table entry \"not-an-address\" is not an address".into()));
    assert_eq!(IntervalSet::full(PORT_MAX).count(), 65536);
}

#[test]
fn source_ports_are_qualifiers_not_limits() {
    let o = outcome("block drop in all\npass in proto udp from any port = 53 to any\n", &mut Map::default());
    assert_eq!(o.exposures[0].qualifiers, ["source port 53"]);
    assert!(matches!(judge(&o.exposures), Judgement::Open(_)));
}

#[test]
fn translation_rules_are_found_wherever_they_stand() {
    let mut m = Map::default()
        .anchor("nat:", "nat-anchor \"com.apple/*\" all\nrdr-anchor \"com.apple/*\" all\n")
        .anchor("nat:com.apple/250.ApplicationFirewall", "");
    m.children.insert("com.apple".into(), vec!["com.apple/250.ApplicationFirewall".into()]);
    assert_eq!(check_translation(&mut m), Ok(()));
    m.rules.insert(
        "nat:com.apple/250.ApplicationFirewall".into(),
        "nat on en0 inet from 192.168.2.0/24 to any -> (en0)\nno rdr on en0 all\n\
         rdr pass on en0 inet proto tcp from any to any port = 8080 -> 127.0.0.1 port 80\n"
            .into(),
    );
    let e = check_translation(&mut m).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("rule 3 of anchor com.apple/250.ApplicationFirewall is a translation rule (`rdr`)"),
        "{e}"
    );
    assert_eq!(e.input, Some(Input::PfAnchor("com.apple/250.ApplicationFirewall".into())));
    assert_eq!(e.line, Some(3));
}

#[path = "pf_differential.rs"]
mod differential;
