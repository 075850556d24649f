//! Tests of the macOS backend: the socketfilterfw readers and the status
//! and facts of both filters together.

use super::*;
use crate::collect::Input;
use crate::collect::firewall::alf::{
    App, parse_allow_signed, parse_global_state, parse_listapps, parse_on_off,
};
use crate::collect::firewall::pf::PfAnchors;

#[test]
fn both_wordings_of_socketfilterfw_are_read() {
    assert_eq!(parse_global_state("Firewall is enabled. (State = 1)\n"), Some(1));
    assert_eq!(parse_global_state("Firewall is disabled. (State = 0)\n"), Some(0));
    assert_eq!(
        parse_global_state("Firewall is blocking all non-essential incoming connections. (State = 2)"),
        Some(2)
    );
    assert_eq!(parse_on_off("Firewall has block all state set to enabled.\n"), Some(true));
    assert_eq!(parse_on_off("Firewall has block all state set to disabled.\n"), Some(false));
    assert_eq!(parse_on_off("Block all DISABLED! \n"), Some(false));
    assert_eq!(parse_on_off("Firewall stealth mode is on\n"), Some(true));
    assert_eq!(parse_on_off("Stealth mode disabled \n"), Some(false));
    assert_eq!(parse_on_off("garbage"), None);
    let signed = "Automatically allow built-in signed software ENABLED.\n\
                  Automatically allow downloaded signed software DISABLED.\n";
    assert_eq!(parse_allow_signed(signed), (Some(true), Some(false)));
    assert_eq!(parse_allow_signed("Automatically allow signed software ENABLED\n"), (Some(true), Some(true)));
    assert_eq!(parse_allow_signed(""), (None, None));
}

#[test]
fn listapps_is_read_in_its_wordings() {
    let text = "ALF: total number of apps = 3 \n\n1 :  /Applications/Foo.app \n \t ( Allow incoming connections ) \n\n\
                2 :  /usr/local/bin/bar \n \t ( Block incoming connections ) \n\n\
                3 :  /Applications/Example App (Beta).app \n \t (Allow incoming connections) \n";
    let apps = parse_listapps(text).unwrap();
    assert_eq!(
        apps,
        [
            App { path: "/Applications/Foo.app".into(), allowed: true },
            App { path: "/usr/local/bin/bar".into(), allowed: false },
            App { path: "/Applications/Example App (Beta).app".into(), allowed: true },
        ]
    );
    let one_line = "Total number of apps = 1\n1 : /Applications/Zoom.app ( Block incoming connections )\n";
    assert!(!parse_listapps(one_line).unwrap()[0].allowed);
    assert!(parse_listapps("ALF: total number of apps = 0 \n\n").unwrap().is_empty());
    assert!(
        parse_listapps("ALF: total number of apps = 2 \n\n1 :  /a \n ( Allow incoming connections )\n")
            .is_err()
    );
    assert!(parse_listapps("").is_err());
    // No mode line: allowed, which can only widen what gets in.
    assert!(parse_listapps("ALF: total number of apps = 1\n1 : /a\n").unwrap()[0].allowed);
}

fn alf(state: Option<u8>, apps: &[(&str, bool)]) -> Alf {
    Alf {
        state,
        block_all: Some(false),
        stealth: Some(true),
        signed_built_in: Some(false),
        signed_downloaded: Some(false),
        apps: Ok(apps.iter().map(|(p, a)| App { path: p.to_string(), allowed: *a }).collect()),
    }
}

struct NoAnchors;

impl PfAnchors for NoAnchors {
    fn rules(&mut self, path: &str) -> Result<String, String> {
        Err(format!("anchor {path} unreadable"))
    }
    fn children(&mut self, _: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    fn nat(&mut self, _: &str) -> Result<String, String> {
        Ok(String::new())
    }
}

fn pf(rules: &str) -> Pf {
    Pf::Enabled(evaluate_pf_rules(rules, &mut NoAnchors).unwrap())
}

const OPEN: &str =
    "block drop in all\npass in proto tcp from any to any port 1:65535 flags S/SA keep state\n";
const SSH: &str = "block drop in all\npass in proto tcp from any to any port = ssh flags S/SA keep state\n";

#[test]
fn pf_alone_decides_when_the_application_firewall_is_off() {
    let f = evaluate(&alf(Some(0), &[]), &pf(OPEN), String::new());
    assert_eq!(f.status, CheckStatus::Fail);
    assert!(
        f.reason.as_deref().unwrap_or("").contains("(rule 2 passes any tcp/1-65535 from any)"),
        "{:?}",
        f.reason
    );
    assert_eq!(f.facts["pf_default_deny"], false);
    let f = evaluate(&alf(Some(0), &[]), &pf(SSH), String::new());
    assert_eq!((f.status, f.backend.as_str()), (CheckStatus::Pass, "pf"));
    assert!(
        f.reason.as_deref().unwrap_or("").contains("pf passes only: any tcp/22 from any"),
        "{:?}",
        f.reason
    );
    assert_eq!(f.facts["exposed"][0]["service"], "tcp/22");
    // State unreadable: pf alone may still show the host filters.
    let f = evaluate(&alf(None, &[]), &pf(SSH), String::new());
    assert_eq!(f.status, CheckStatus::Pass);
    let f = evaluate(&alf(None, &[]), &pf(OPEN), String::new());
    assert_eq!(f.status, CheckStatus::Unknown);
    let f = evaluate(&alf(Some(0), &[]), &pf("block drop in all\npass in all user = 501\n"), String::new());
    assert_eq!(f.status, CheckStatus::Unknown);
    assert!(!f.facts.contains_key("pf_default_deny"), "undecided: no verdict of pf alone");
    let f = evaluate(&alf(Some(0), &[]), &Pf::Disabled, String::new());
    assert_eq!(f.status, CheckStatus::Fail);
    assert_eq!(f.facts["exposed"][0]["service"], "any/any");
}

#[test]
fn the_application_firewall_limits_what_pf_passes_to_its_programs() {
    let on = alf(Some(1), &[("/usr/sbin/sshd", true), ("/Applications/Game.app", false)]);
    let f = evaluate(&on, &pf(OPEN), String::new());
    assert_eq!((f.status, f.backend.as_str()), (CheckStatus::Pass, "socketfilterfw"));
    assert_eq!(f.facts["allowed_apps"], serde_json::json!(["/usr/sbin/sshd"]));
    assert_eq!(f.facts["exposed"][0]["program"], "/usr/sbin/sshd");
    assert_eq!(f.facts["exposed"][0]["ports"], "1-65535");
    assert_eq!(f.facts["pf_default_deny"], false);
    let f = evaluate(&on, &Pf::Disabled, String::new());
    assert!(
        f.reason
            .as_deref()
            .unwrap_or("")
            .starts_with("application firewall on, stealth mode on; what gets in:")
    );
    assert_eq!(f.facts["exposed"][0]["ports"], "any");
    // Signed software allowed: possible, limited to signed programs.
    let signed = Alf { signed_built_in: Some(true), ..on.clone() };
    let f = evaluate(&signed, &Pf::Disabled, String::new());
    assert_eq!(f.status, CheckStatus::Pass);
    assert_eq!(f.facts["exposed"][1]["program"], "built-in signed software");
    assert_eq!(f.facts["exposed"][1]["certain"], false);
    // Block all admits nothing, whatever the list says.
    let all = Alf { block_all: Some(true), ..on };
    let f = evaluate(&all, &Pf::Unreadable("pfctl needs root".into()), String::new());
    assert_eq!(f.facts["exposed"], serde_json::json!([]));
    assert!(f.reason.as_deref().unwrap_or("").contains("blocks all incoming connections"));
    let odd = evaluate(&alf(Some(7), &[]), &Pf::Disabled, String::new());
    assert_eq!(odd.status, CheckStatus::Unknown);
}

#[test]
fn user_names_in_app_paths_follow_the_privacy_settings() {
    let ctx = Context::at(0);
    assert_eq!(
        alf::recordable_path("/Users/alice/Applications/X.app", &ctx),
        "/Users/alice/Applications/X.app"
    );
    assert_eq!(alf::recordable_path("/Users/Shared/X.app", &ctx), "/Users/Shared/X.app");
    let omit = crate::privacy::Privacy::with_key(
        crate::privacy::Handling::Omit,
        crate::privacy::Handling::Collect,
        crate::privacy::Handling::Collect,
        b"0123456789abcdef0123456789abcdef",
    );
    let ctx = Context::new(0, omit);
    assert_eq!(
        alf::recordable_path("/Users/alice/Applications/X.app", &ctx),
        "/Users/<omitted>/Applications/X.app"
    );
}

/// A recorded case, replayed.
fn recorded(name: &str) -> crate::recording::Recorded {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(name);
    crate::recording::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn a_recorded_translation_rule_is_named_by_its_anchor_and_line() {
    let case = recorded("macos-firewall-pf-rdr-pass");
    let mut raw = String::new();
    let e = check_translation(&mut HostAnchors { host: &case.host, raw: &mut raw }).unwrap_err();
    assert_eq!(e.input, Some(Input::PfAnchor("org.example.devproxy".into())));
    assert_eq!(e.line, Some(1));
    assert_eq!(e.reason, "a translation rule (`rdr`), which this agent does not evaluate");
    assert!(e.to_string().starts_with("rule 1 of anchor org.example.devproxy is a translation rule (`rdr`)"));
}

#[test]
fn a_recorded_rule_set_with_a_rule_not_read_names_its_line() {
    let case = recorded("macos-firewall-pf-ssh-only");
    let main = case.host.run("pfctl", &["-s", "rules"]).unwrap().stdout;
    let lines = main.lines().count();
    let broken = format!("{main}anchor \"inline\" all {{\n");
    let mut raw = String::new();
    let e = evaluate_pf_rules(&broken, &mut HostAnchors { host: &case.host, raw: &mut raw }).unwrap_err();
    assert_eq!((e.input, e.line), (Some(Input::PfAnchor(String::new())), Some(lines + 1)));
    assert_eq!(e.reason, "an inline anchor, which this agent does not evaluate");
}

#[test]
fn a_recorded_app_list_that_miscounts_names_the_command() {
    let case = recorded("macos-firewall-alf-allowed-apps");
    let listed = case.host.run(SOCKETFILTERFW, &["--listapps"]).unwrap().stdout;
    let total = parse_listapps(&listed).unwrap().len();
    let miscounted = listed.replacen(&format!("= {total}"), &format!("= {}", total + 1), 1);
    let e = parse_listapps(&miscounted).unwrap_err();
    assert_eq!(e.input, Some(Input::Command("socketfilterfw --listapps".into())));
    assert_eq!(e.reason, format!("counts {} apps but lists {total}", total + 1));
}

#[test]
fn zz_print_cases() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for d in dirs.iter().filter(|d| d.file_name().unwrap().to_string_lossy().starts_with("macos-firewall")) {
        let case = crate::recording::load(d).unwrap();
        let f = gather(&case.host, &case.context());
        println!(
            "== {}\n{:?} {} {:?}\n{}",
            d.display(),
            f.status,
            f.backend,
            f.reason,
            serde_json::to_string(&f.facts).unwrap()
        );
    }
}
