//! Unit tests of the policy: loading, merging, deciding.

use super::*;
use custos_proto::checks::CHECK_IDS;
use serde_json::json;

fn facts(v: Json) -> Facts {
    match v {
        Json::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn host() -> HostFacts {
    HostFacts { os: "linux".into(), tags: vec![] }
}

fn load_err(text: &str) -> PolicyError {
    let builtin = Policy::builtin().unwrap();
    Policy::with_override(&builtin, Path::new("org/policy.toml"), text).unwrap_err()
}

#[test]
fn the_builtin_policy_loads_with_a_rule_for_every_check_but_the_inventory() {
    // Shared by the server's tasks behind an `Arc`.
    fn shared<T: Send + Sync + Clone>() {}
    shared::<Policy>();
    let p = Policy::builtin().unwrap();
    assert_eq!(p.version(), "custos-default-2026.11");
    let checks: Vec<&str> = p.rules().map(|r| r.check.as_str()).collect();
    let mut want: Vec<&str> = CHECK_IDS.iter().copied().filter(|c| *c != "software_inventory").collect();
    want.sort();
    assert_eq!(checks, want);
    assert_eq!(p.params()["max_signature_age_hours"], json!(72));
    assert!(p.scopes().is_empty());
}

#[test]
fn only_pass_and_fail_are_decided_by_a_rule() {
    let p = Policy::builtin().unwrap();
    // Facts that would satisfy the rule: still never a pass.
    let good = facts(json!({"uefi": true, "secure_boot": true}));
    for s in [CheckStatus::Unknown, CheckStatus::Error, CheckStatus::NotApplicable] {
        assert_eq!(p.decide("secure_boot", s, &good, &host()), Decision::stands(s));
    }
    // No rule: the agent's status stands.
    let d = p.decide("software_inventory", CheckStatus::Fail, &Facts::new(), &host());
    assert_eq!(d, Decision::stands(CheckStatus::Fail));
    let d = p.decide("secure_boot", CheckStatus::Pass, &good, &host());
    assert_eq!(d, Decision { status: CheckStatus::Pass, reason: None, by_rule: true });
    let bad = facts(json!({"uefi": true, "secure_boot": false}));
    let d = p.decide("secure_boot", CheckStatus::Pass, &bad, &host());
    assert_eq!(d.status, CheckStatus::Fail);
    assert!(d.reason.unwrap().contains("Secure Boot is off or lowered (policy custos-default-2026.11)"));
}

#[test]
fn a_rule_that_cannot_be_evaluated_gives_unknown_with_the_reason() {
    let p = Policy::builtin().unwrap();
    // Missing fact.
    let d = p.decide("secure_boot", CheckStatus::Pass, &Facts::new(), &host());
    assert_eq!(d.status, CheckStatus::Unknown);
    let r = d.reason.unwrap();
    assert!(
        r.contains("rule for secure_boot")
            && r.contains("custos-default-2026.11")
            && r.contains("No such key"),
        "{r}"
    );
    // Wrong type.
    let d = p.decide(
        "ssh_server",
        CheckStatus::Pass,
        &facts(json!({"permit_root_login": 3, "permit_empty_passwords": "no"})),
        &host(),
    );
    assert_eq!(d.status, CheckStatus::Unknown, "{:?}", d.reason);
    // A result that is not a boolean.
    let o = "version = \"org-1\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'facts.secure_boot'\nmessage = \"off\"\n";
    let p = Policy::with_override(&p, Path::new("org.toml"), o).unwrap();
    let d = p.decide("secure_boot", CheckStatus::Pass, &facts(json!({"secure_boot": "yes"})), &host());
    assert_eq!(d.status, CheckStatus::Unknown);
    assert!(d.reason.unwrap().contains("instead of true or false"));
}

#[test]
fn an_override_merges_version_params_rules_and_scopes() {
    let builtin = Policy::builtin().unwrap();
    let text = r#"
version = "acme-2026.12"
[params]
max_signature_age_hours = 168
max_offset_ms = 250
acme_min_tags = 1
[[rule]]
check = "secure_boot"
expr = 'facts.secure_boot == true && size(host.tags) >= params.acme_min_tags'
message = "Secure Boot off or host untagged"
[[scope]]
controls = ["bsi-grundschutz:2023/SYS.2.1"]
tags_any = ["client"]
tags_none = ["kiosk"]
"#;
    let p = Policy::with_override(&builtin, Path::new("acme.toml"), text).unwrap();
    assert_eq!(p.version(), "acme-2026.12");
    assert_eq!(p.params()["max_signature_age_hours"], json!(168));
    assert_eq!(p.params()["max_offset_ms"], json!(250));
    assert_eq!(p.params()["min_password_length"], json!(12), "untouched params stay");
    assert_eq!(p.rule("secure_boot").unwrap().source, PathBuf::from("acme.toml"));
    assert_eq!(p.rule("firewall").unwrap().source, PathBuf::from(BUILTIN_PATH));
    let on = facts(json!({"secure_boot": true}));
    let tagged = HostFacts { os: "linux".into(), tags: vec!["client".into()] };
    assert_eq!(p.decide("secure_boot", CheckStatus::Pass, &on, &tagged).status, CheckStatus::Pass);
    assert_eq!(p.decide("secure_boot", CheckStatus::Pass, &on, &host()).status, CheckStatus::Fail);
    // Scopes: prefix at an id boundary, tags_any and tags_none.
    let client = vec!["client".to_string()];
    assert!(p.applies("bsi-grundschutz:2023/SYS.2.1.A31", &client));
    assert!(!p.applies("bsi-grundschutz:2023/SYS.2.1.A31", &["server".to_string()]));
    assert!(!p.applies("bsi-grundschutz:2023/SYS.2.1", &["client".to_string(), "kiosk".to_string()]));
    assert!(p.applies("bsi-grundschutz:2023/SYS.2.10", &[]), "not a prefix at a boundary: no scope names it");
    assert!(p.applies("iso27001:2022/A.8.1", &[]), "a control no scope names applies everywhere");
    // The built-in policy itself is unchanged.
    assert_eq!(builtin.version(), "custos-default-2026.11");
    assert_eq!(builtin.params()["max_signature_age_hours"], json!(72));
}

#[test]
fn load_errors_name_the_file_the_line_and_the_reason() {
    let cases: &[(&str, usize, &str)] = &[
        ("version = \"v\"\n[params\n", 2, ""),
        ("version = \"v\"\nflavour = 1\n", 2, "unknown field `flavour`"),
        (
            "version = \"v\"\n\n[[rule]]\ncheck = \"firewall\"\nexpr = 'facts.a &&'\nmessage = \"m\"\n",
            5,
            "CEL does not compile",
        ),
        (
            "version = \"v\"\n[[rule]]\ncheck = \"fire_wall\"\nexpr = 'true'\nmessage = \"m\"\n",
            3,
            "unknown check \"fire_wall\"",
        ),
        (
            "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nexpr = 'true'\nmessage = \"m\"\n[[rule]]\ncheck = \"firewall\"\nexpr = 'false'\nmessage = \"m\"\n",
            7,
            "a second rule for check firewall",
        ),
        ("version = \"v\"\n[[scope]]\ncontrols = []\n", 2, "empty control list"),
        (
            "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nexpo = 'true'\nmessage = \"m\"\n",
            4,
            "unknown field `expo`",
        ),
        ("version = \"v\"\n[params]\nmax_idle_seconds = \"15 minutes\"\n", 3, "must be a number"),
        ("version = \"v\"\n[params]\nwhen = 2026-01-01\n", 3, "dates"),
        (
            "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nexpr = 'params.nope > 1'\nmessage = \"m\"\n",
            4,
            "params.nope",
        ),
        (
            "version = \"v\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'facts.secure_boot == true'\nmessage = \"m\"\n[[rule.example]]\nfacts = '{\"secure_boot\": false}'\nexpect = \"pass\"\n",
            6,
            "expects pass but the policy decides fail",
        ),
        (
            "version = \"v\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'true'\nmessage = \"m\"\n[[rule.example]]\nfacts = '[1]'\nexpect = \"pass\"\n",
            6,
            "not a JSON object",
        ),
    ];
    for (text, line, want) in cases {
        let e = load_err(text);
        assert_eq!(e.path, PathBuf::from("org/policy.toml"), "{text}");
        assert_eq!(e.line, Some(*line), "{text}: {e}");
        assert!(e.message.contains(want), "{text}: {e}");
        assert!(e.to_string().starts_with(&format!("org/policy.toml:{line}: ")), "{e}");
    }
    let e = load_err("[params]\nmax_idle_seconds = 600\n");
    assert_eq!(e.line, None);
    assert!(e.to_string().contains("`version` is missing"), "{e}");
    let e = Policy::from_text(Path::new("x.toml"), "").unwrap_err();
    assert!(e.to_string().contains("`version` is missing"), "{e}");
}

#[test]
fn a_multi_line_expression_error_points_at_its_own_line() {
    let text = "version = \"v\"\n[[rule]]\ncheck = \"firewall\"\nmessage = \"m\"\nexpr = '''\nfacts.a\n  && facts.b +* 2\n  && true\n'''\n";
    let e = load_err(text);
    assert_eq!(e.line, Some(7), "{e}");
}

#[test]
fn hostile_input_is_refused_with_a_reason_not_a_panic() {
    let huge = format!("version = \"v\"\n# {}\n", "x".repeat(MAX_POLICY_BYTES));
    assert!(load_err(&huge).message.contains("limit"));
    let e = load_err("version = \"v\"\n[params]\n\"not an ident\" = 1\n");
    assert!(e.message.contains("not an identifier"), "{e}");
    assert!(load_err("version = \"\"\n").message.contains("empty"));
    assert!(load_err("version = \"v\"\n[[scope]]\ncontrols = [\"\"]\n").message.contains("empty control id"));
    // Deeply nested facts evaluate (or fail) without harm.
    let p = Policy::builtin().unwrap();
    let mut deep = json!(true);
    for _ in 0..100 {
        deep = json!({ "x": deep });
    }
    let d = p.decide("secure_boot", CheckStatus::Pass, &facts(json!({"secure_boot": deep})), &host());
    assert_eq!(d.status, CheckStatus::Fail);
}

#[test]
fn a_missing_override_is_the_builtin_policy() {
    let b = Policy::builtin().unwrap();
    let p = Policy::with_optional_override(&b, Path::new("gone.toml"), None).unwrap();
    assert_eq!(p.version(), b.version());
    let p = Policy::with_optional_override(&b, Path::new("o.toml"), Some("version = \"x\"\n")).unwrap();
    assert_eq!(p.version(), "x");
}

fn decide_with(p: &Policy, check: &str, f: Json) -> CheckStatus {
    p.decide(check, CheckStatus::Pass, &facts(f), &host()).status
}

#[test]
fn allowed_inbound_services_are_decided_per_host_tag() {
    let builtin = Policy::builtin().unwrap();
    let text = "version = \"fw\"\n[params]\nfirewall_allowed_inbound = { default = [\"*\"], laptop = [], server = [\"tcp/22\", \"udp/53\"] }\n";
    let p = Policy::with_override(&builtin, Path::new("fw.toml"), text).unwrap();
    let exposed = |service: &str, certain: bool| {
        json!({"family": "ipv4", "proto": "tcp", "port_count": 1, "services": [service],
               "program": "any", "certain": certain})
    };
    let with = |list: Vec<Json>| {
        json!({"ipv4_filtered": true, "ipv6_filtered": false, "ipv6_enabled": false,
               "ipv4_filtered_by": ["nftables"], "exposed_total": list.len(), "exposed": list})
    };
    let on = |tags: &[&str], f: Json| {
        let h = HostFacts { os: "linux".into(), tags: tags.iter().map(|t| t.to_string()).collect() };
        p.decide("firewall", CheckStatus::Pass, &facts(f), &h).status
    };
    let ssh = || with(vec![exposed("tcp/22", true)]);
    assert_eq!(on(&["server"], ssh()), CheckStatus::Pass);
    assert_eq!(on(&["laptop"], ssh()), CheckStatus::Fail);
    assert_eq!(on(&["server", "laptop"], ssh()), CheckStatus::Pass, "the lists of all tags together");
    assert_eq!(on(&[], ssh()), CheckStatus::Pass, "untagged hosts take `default`");
    assert_eq!(on(&["laptop"], with(vec![])), CheckStatus::Pass);
    let web = with(vec![exposed("tcp/22", true), exposed("tcp/443", true)]);
    assert_eq!(on(&["server"], web), CheckStatus::Fail);
    let maybe = with(vec![exposed("tcp/22", true), exposed("tcp/443", false)]);
    assert_eq!(on(&["server"], maybe.clone()), CheckStatus::Unknown, "possibly open, not allowed");
    assert_eq!(on(&[], maybe), CheckStatus::Pass);
    // A capped list: what was left out cannot be judged unless anything goes.
    let mut capped = ssh();
    capped["exposed_total"] = json!(300);
    assert_eq!(on(&["server"], capped.clone()), CheckStatus::Unknown);
    assert_eq!(on(&[], capped), CheckStatus::Pass);
    // The port space fails even where any service is allowed.
    let all =
        with(vec![json!({"services": ["tcp/any"], "port_count": 65536, "program": "any", "certain": true})]);
    assert_eq!(on(&[], all), CheckStatus::Fail);
}

#[test]
fn accepted_firewall_backends_decide_which_filter_may_do_the_filtering() {
    let builtin = Policy::builtin().unwrap();
    let nft = json!({"ipv4_filtered": true, "ipv6_filtered": true, "ipv6_enabled": true,
        "ipv4_filtered_by": ["nftables"], "ipv6_filtered_by": ["nftables"]});
    let legacy = json!({"ipv4_filtered": true, "ipv6_filtered": false, "ipv6_enabled": false,
        "ipv4_filtered_by": ["iptables-legacy"], "ipv6_filtered_by": []});
    let profiles: Vec<Json> = ["Domain", "Private", "Public"]
        .map(|n| json!({"name": n, "enabled": true, "default_inbound": "Block"}))
        .into();
    let windows = json!({ "profiles": profiles });
    let pf = json!({"application_firewall_state": 0, "pf": "enabled", "pf_default_deny": true});
    let alf = json!({"application_firewall_state": 2, "pf": "disabled"});
    for f in [&nft, &legacy, &windows, &pf, &alf] {
        assert_eq!(decide_with(&builtin, "firewall", f.clone()), CheckStatus::Pass, "{f}");
    }
    let only = |list: &str| {
        let text = format!("version = \"fw\"\n[params]\naccepted_firewall_backends = {list}\n");
        Policy::with_override(&builtin, Path::new("fw.toml"), &text).unwrap()
    };
    let nft_only = only(r#"["nftables"]"#);
    assert_eq!(decide_with(&nft_only, "firewall", nft.clone()), CheckStatus::Pass);
    let d = nft_only.decide("firewall", CheckStatus::Pass, &facts(legacy.clone()), &host());
    assert_eq!(d.status, CheckStatus::Fail, "IPv4 filtered by legacy iptables only");
    let reason = d.reason.unwrap();
    assert!(
        reason.contains("not by an accepted packet filter") && reason.contains("(policy fw)"),
        "{reason}"
    );
    for f in [&windows, &pf, &alf] {
        assert_eq!(decide_with(&nft_only, "firewall", f.clone()), CheckStatus::Fail, "{f}");
    }
    // IPv6 enabled: it too must be filtered by an accepted backend.
    let mixed = json!({"ipv4_filtered": true, "ipv6_filtered": true, "ipv6_enabled": true,
        "ipv4_filtered_by": ["nftables"], "ipv6_filtered_by": ["iptables-legacy"]});
    assert_eq!(decide_with(&builtin, "firewall", mixed.clone()), CheckStatus::Pass);
    assert_eq!(decide_with(&nft_only, "firewall", mixed.clone()), CheckStatus::Fail);
    assert_eq!(decide_with(&only(r#"["iptables-legacy"]"#), "firewall", mixed), CheckStatus::Fail);
    // Facts that do not say which backend filters: unknown, never a pass.
    let bare = json!({"ipv4_filtered": true, "ipv6_enabled": false});
    assert_eq!(decide_with(&builtin, "firewall", bare.clone()), CheckStatus::Pass);
    let d = nft_only.decide("firewall", CheckStatus::Pass, &facts(bare), &host());
    assert_eq!(d.status, CheckStatus::Unknown);
    assert!(d.reason.unwrap().contains("the facts cannot tell"));
    let apple = only(r#"["pf"]"#);
    assert_eq!(decide_with(&apple, "firewall", pf.clone()), CheckStatus::Pass);
    assert_eq!(decide_with(&apple, "firewall", alf), CheckStatus::Fail);
    assert_eq!(decide_with(&only(r#"["windows-firewall"]"#), "firewall", windows), CheckStatus::Pass);
    // Unknown stays unknown whatever is accepted.
    let d = nft_only.decide("firewall", CheckStatus::Unknown, &facts(nft), &host());
    assert_eq!(d.status, CheckStatus::Unknown);
    // Not a list: refused at load.
    let e = load_err("version = \"v\"\n[params]\naccepted_firewall_backends = \"nftables\"\n");
    assert!(e.message.contains("must be a list"), "{e}");
}

#[test]
fn max_patch_age_days_limits_the_age_of_the_newest_installed_update() {
    let builtin = Policy::builtin().unwrap();
    assert_eq!(builtin.params()["max_patch_age_days"], json!(35));
    let windows = |age: Json| {
        json!({"pending_updates": 1, "pending_security_updates": 0, "updates": [],
               "last_installed_age_days": age})
    };
    assert_eq!(decide_with(&builtin, "os_patches", windows(json!(35))), CheckStatus::Pass);
    let d = builtin.decide("os_patches", CheckStatus::Pass, &facts(windows(json!(36))), &host());
    assert_eq!(d.status, CheckStatus::Fail);
    assert!(d.reason.unwrap().contains("updates were last installed too long ago"));
    // The age could not be read: cannot tell.
    assert_eq!(decide_with(&builtin, "os_patches", windows(Json::Null)), CheckStatus::Unknown);
    // A security update pending fails whatever the age.
    let mut pending = windows(json!(1));
    pending["pending_security_updates"] = json!(1);
    let d = builtin.decide("os_patches", CheckStatus::Fail, &facts(pending.clone()), &host());
    assert_eq!(d.status, CheckStatus::Fail);
    pending["last_installed_age_days"] = Json::Null;
    let d = builtin.decide("os_patches", CheckStatus::Fail, &facts(pending), &host());
    assert_eq!(d.status, CheckStatus::Fail, "failing is known without the age");

    let text = "version = \"patch\"\n[params]\nmax_patch_age_days = 14\n";
    let strict = Policy::with_override(&builtin, Path::new("p.toml"), text).unwrap();
    assert_eq!(decide_with(&strict, "os_patches", windows(json!(14))), CheckStatus::Pass);
    assert_eq!(decide_with(&strict, "os_patches", windows(json!(20))), CheckStatus::Fail);
    let text = "version = \"patch\"\n[params]\nmax_patch_age_days = 90\n";
    let lenient = Policy::with_override(&builtin, Path::new("p.toml"), text).unwrap();
    assert_eq!(decide_with(&lenient, "os_patches", windows(json!(60))), CheckStatus::Pass);
    assert_eq!(decide_with(&lenient, "os_patches", windows(Json::Null)), CheckStatus::Unknown);
    // Linux reports no install date: the limit leaves it as the agent decided.
    let apt = json!({"package_manager": "apt", "pending_upgrades": 0, "pending_security_upgrades": 0,
        "lists_age_days": 1, "running_kernel": null, "newest_kernel": null, "reboot_required": false});
    assert_eq!(decide_with(&strict, "os_patches", apt), CheckStatus::Pass);
}

#[test]
fn examples_may_set_their_own_parameters_and_are_checked_with_them() {
    let builtin = Policy::builtin().unwrap();
    let rule = "version = \"v\"\n[params]\nmax_level = 2\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'facts.level <= params.max_level'\nmessage = \"m\"\n";
    let with = |example: &str| format!("{rule}[[rule.example]]\n{example}");
    let ok = with("facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { max_level = 3 }\n");
    // The example's own limit makes it pass; the policy's own stays 2.
    let p = Policy::with_override(&builtin, Path::new("o.toml"), &ok).unwrap();
    assert_eq!(p.params()["max_level"], json!(2));
    assert_eq!(decide_with(&p, "secure_boot", json!({"level": 3})), CheckStatus::Fail);
    let cases = [
        (
            "facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { max_level = 2 }\n",
            "expects pass but the policy decides fail",
        ),
        (
            "facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { nope = 2 }\n",
            "params.nope, which the policy does not define",
        ),
        (
            "facts = '{\"level\": 3}'\nexpect = \"pass\"\nparams = { max_level = \"3\" }\n",
            "to a string, not a number",
        ),
    ];
    for (example, want) in cases {
        let e = Policy::with_override(&builtin, Path::new("o.toml"), &with(example)).unwrap_err();
        assert!(e.message.contains(want), "{example}: {e}");
        assert_eq!(e.line, Some(8), "{e}");
    }
}

/// The evaluation benchmark seeds facts from the built-in examples whose
/// status is their expected verdict and asserts that the policy decides
/// the seeded mix: those must hold under the policy's own parameters
/// (not only an example's), and every rule needs a pass and a fail.
#[test]
fn every_rule_has_a_pass_and_a_fail_example_that_hold_under_the_builtin_parameters() {
    let builtin = Policy::builtin().unwrap();
    let env = cel_env(Path::new(BUILTIN_PATH)).unwrap();
    let parsed = parse(Path::new(BUILTIN_PATH), BUILTIN_TEXT, &env).unwrap();
    for rule in builtin.rules() {
        for want in [CheckStatus::Pass, CheckStatus::Fail] {
            let seeded: Vec<&Example> = parsed
                .examples
                .iter()
                .filter(|e| e.check == rule.check && e.status == want && e.expect == want)
                .collect();
            assert!(!seeded.is_empty(), "{}: no {want} example whose status is {want}", rule.check);
            for ex in seeded {
                let d = builtin.decide(&ex.check, ex.status, &ex.facts, &HostFacts::default());
                assert_eq!(d.status, want, "{} example at line {}: {:?}", ex.check, ex.line, d.reason);
            }
        }
    }
}

#[test]
fn a_null_verdict_is_unknown_never_a_pass() {
    let builtin = Policy::builtin().unwrap();
    let text = "version = \"v\"\n[[rule]]\ncheck = \"secure_boot\"\nexpr = 'has(facts.secure_boot) ? facts.secure_boot : null'\nmessage = \"off\"\n";
    let p = Policy::with_override(&builtin, Path::new("o.toml"), text).unwrap();
    for status in [CheckStatus::Pass, CheckStatus::Fail] {
        let d = p.decide("secure_boot", status, &Facts::new(), &host());
        assert_eq!(d.status, CheckStatus::Unknown);
        assert!(d.by_rule);
        assert_eq!(
            d.reason.unwrap(),
            "policy v: the facts cannot tell whether the secure_boot result meets the rule (off)"
        );
    }
    assert_eq!(decide_with(&p, "secure_boot", json!({"secure_boot": true})), CheckStatus::Pass);
}

#[test]
fn param_references_are_found_outside_other_names() {
    assert_eq!(param_references("params.a + x.params.b + myparams.c + (params.d_2)"), vec!["a", "d_2"]);
}
