//! The guard of the built-in policy: on every recorded host under
//! `agent/tests/cases/` it must decide exactly what the agent decided, for
//! every check, so that the default policy changes nothing. Then it shows
//! that the parameters matter (in both directions) and that no override can
//! turn an `unknown` into a pass.

use std::path::{Path, PathBuf};

use custos_agent::collect::{CHECKS, Os};
use custos_agent::recording::load;
use custos_proto::evidence::{CheckResult, CheckStatus};
use custos_server::compliance::policy::{HostFacts, Policy};

/// One check result the agent produced on a recorded host.
struct Observed {
    case: String,
    os: Os,
    result: CheckResult,
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Every check of every recorded host, through the backend of the host's OS.
fn observe_all() -> (usize, Vec<Observed>) {
    let dirs = case_dirs();
    let mut out = Vec::new();
    for dir in &dirs {
        let case = load(dir).unwrap_or_else(|e| panic!("{e}"));
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for c in CHECKS {
            let result = (c.gather(case.os))(&case.host, &case.context()).into_result(c.id);
            out.push(Observed { case: name.clone(), os: case.os, result });
        }
    }
    (dirs.len(), out)
}

fn host(o: &Observed) -> HostFacts {
    HostFacts { os: o.os.as_str().to_string(), tags: Vec::new() }
}

fn decide(p: &Policy, o: &Observed) -> CheckStatus {
    p.decide(&o.result.id, o.result.status, &o.result.facts, &host(o)).status
}

fn with_override(text: &str) -> Policy {
    let builtin = Policy::builtin().unwrap();
    Policy::with_override(&builtin, Path::new("org-policy.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_builtin_policy_decides_what_the_agent_decided_on_every_recorded_host() {
    let policy = Policy::builtin().unwrap();
    let (cases, observed) = observe_all();
    assert!(cases >= 157, "only {cases} recorded hosts");
    let mut disagreements = Vec::new();
    let mut by_rule = 0;
    let mut decided = [0usize; 2];
    for o in &observed {
        let d = policy.decide(&o.result.id, o.result.status, &o.result.facts, &host(o));
        if d.by_rule {
            by_rule += 1;
        }
        match d.status {
            CheckStatus::Pass if d.by_rule => decided[0] += 1,
            CheckStatus::Fail if d.by_rule => decided[1] += 1,
            _ => {}
        }
        if d.status != o.result.status {
            disagreements.push(format!(
                "{} / {} ({}): agent {}, policy {} ({})\n  facts: {}",
                o.case,
                o.result.id,
                o.os,
                o.result.status,
                d.status,
                d.reason.unwrap_or_default(),
                serde_json::Value::Object(o.result.facts.clone())
            ));
        }
    }
    println!(
        "{cases} recorded hosts, {} results compared, {by_rule} decided by a rule ({} pass, {} fail)",
        observed.len(),
        decided[0],
        decided[1]
    );
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    // Every rule-bearing check was seen both passing and failing under its rule.
    for rule in policy.rules() {
        for want in [CheckStatus::Pass, CheckStatus::Fail] {
            assert!(
                observed.iter().any(|o| o.result.id == rule.check && o.result.status == want),
                "no recorded {} result for {}",
                want,
                rule.check
            );
        }
    }
    assert_eq!(by_rule, decided[0] + decided[1], "the built-in rules evaluate on every recorded result");
}

#[test]
fn the_builtin_parameters_are_the_agents_thresholds() {
    use custos_agent::collect::firewall::exposure;
    use custos_agent::collect::{antivirus, os_patches, password_policy, screen_lock, ssh_server, time_sync};
    let p = Policy::builtin().unwrap();
    let n = |k: &str| p.params()[k].as_f64().unwrap_or_else(|| panic!("{k} is not a number"));
    assert_eq!(n("max_list_age_days"), os_patches::MAX_LIST_AGE_DAYS as f64);
    assert_eq!(n("max_patch_age_days"), os_patches::windows::MAX_PATCH_AGE_DAYS as f64);
    assert_eq!(n("max_signature_age_hours"), antivirus::MAX_SIGNATURE_AGE_HOURS as f64);
    assert_eq!(n("max_xprotect_age_days"), antivirus::macos::MAX_XPROTECT_AGE_DAYS as f64);
    assert_eq!(n("max_idle_seconds"), screen_lock::MAX_IDLE_SECONDS as f64);
    assert_eq!(n("max_lock_delay_seconds"), screen_lock::MAX_LOCK_DELAY_SECONDS as f64);
    assert_eq!(n("min_password_length"), f64::from(password_policy::MIN_PASSWORD_LENGTH));
    assert_eq!(n("max_failed_logons"), f64::from(password_policy::MAX_FAILED_LOGONS));
    assert_eq!(n("max_offset_ms"), time_sync::MAX_OFFSET_MS);
    assert_eq!(n("max_sync_age_seconds"), time_sync::MAX_SYNC_AGE_SECONDS);
    assert_eq!(n("ssh_max_auth_tries"), f64::from(ssh_server::MAX_AUTH_TRIES));
    assert_eq!(p.params()["ssh_allow_password_logins"], ssh_server::ALLOW_PASSWORD_LOGINS);
    assert_eq!(n("firewall_max_service_ports"), exposure::MAX_SERVICE_PORTS as f64);
    assert_eq!(p.params()["firewall_allowed_inbound"], serde_json::json!({"default": ["*"]}));
}

#[test]
fn parameters_change_what_passes() {
    let (_, observed) = observe_all();
    let builtin = Policy::builtin().unwrap();

    // Signatures too old for the agent's limits pass under limits raised far enough.
    let lenient = with_override(
        "version = \"org-av\"\n[params]\nmax_signature_age_hours = 1000000\nmax_xprotect_age_days = 100000\n",
    );
    // A product that runs and whose only problem is the age of its signatures
    // (Linux, Windows), or an XProtect whose age is known (macOS).
    let only_old = |o: &Observed| {
        let products = o.result.facts.get("products").and_then(|p| p.as_array());
        products.is_some_and(|products| {
            products.iter().any(|p| {
                p["active"] == true
                    && p["problem"].as_str().is_some_and(|m| {
                        m.starts_with("signatures are") || m.starts_with("threat data last updated")
                    })
            })
        }) || o.result.facts.get("xprotect_age_days").is_some_and(|d| d.is_number())
    };
    let failing: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.result.id == "antivirus" && o.result.status == CheckStatus::Fail)
        .collect();
    assert!(failing.iter().any(|o| only_old(o)), "no recorded host has merely outdated signatures");
    for o in &failing {
        assert_eq!(decide(&builtin, o), CheckStatus::Fail, "{}", o.case);
        // Off, missing or otherwise broken stays a failure however old signatures may be.
        let want = if only_old(o) { CheckStatus::Pass } else { CheckStatus::Fail };
        assert_eq!(decide(&lenient, o), want, "{}: {:?}", o.case, o.result.facts);
    }

    // A stricter idle time fails every screen lock that passed.
    let strict = with_override("version = \"org-lock\"\n[params]\nmax_idle_seconds = 60\n");
    let locking: Vec<&Observed> = observed
        .iter()
        .filter(|o| o.result.id == "screen_lock" && o.result.status == CheckStatus::Pass)
        .collect();
    assert!(locking.iter().any(|o| o.os == Os::Linux) && locking.iter().any(|o| o.os == Os::Macos));
    for o in &locking {
        assert_eq!(decide(&builtin, o), CheckStatus::Pass, "{}", o.case);
        let d = strict.decide(&o.result.id, o.result.status, &o.result.facts, &host(o));
        assert_eq!(d.status, CheckStatus::Fail, "{}: {:?}", o.case, o.result.facts);
        assert!(d.reason.unwrap().contains("policy org-lock"));
    }

    // Paid extended support accepted: a release only in paid support passes.
    let paid = with_override(
        "version = \"org-esu\"\n[params]\naccepted_support_phases = [\"standard\", \"extended_free\", \"extended_paid\"]\n",
    );
    for o in observed.iter().filter(|o| o.result.id == "os_support" && o.result.status == CheckStatus::Fail) {
        let phase = o.result.facts["support_phase"].as_str().unwrap();
        let want = if phase == "extended_paid" { CheckStatus::Pass } else { CheckStatus::Fail };
        assert_eq!(decide(&paid, o), want, "{} ({phase})", o.case);
    }
}

#[test]
fn no_override_turns_an_unknown_into_a_pass() {
    let (_, observed) = observe_all();
    // Every rule true and every limit as loose as it gets.
    let mut text = String::from(
        "version = \"anything-goes\"\n[params]\nmax_signature_age_hours = 1000000000\nmax_idle_seconds = 1000000000\n\
         max_list_age_days = 1000000\nmin_password_length = 0\nmax_failed_logons = 1000000\n",
    );
    for c in CHECKS {
        text.push_str(&format!("[[rule]]\ncheck = \"{}\"\nexpr = 'true'\nmessage = \"never\"\n", c.id));
    }
    let permissive = with_override(&text);
    let loose = with_override(
        "version = \"loose\"\n[params]\nmax_signature_age_hours = 1000000000\nmax_offset_ms = 1e9\n",
    );
    let mut undecided = 0;
    for o in &observed {
        if matches!(o.result.status, CheckStatus::Pass | CheckStatus::Fail) {
            // The permissive policy does decide: it passes every failure.
            assert_eq!(decide(&permissive, o), CheckStatus::Pass, "{} / {}", o.case, o.result.id);
            continue;
        }
        undecided += 1;
        for p in [&permissive, &loose] {
            assert_eq!(decide(p, o), o.result.status, "{} / {}", o.case, o.result.id);
        }
    }
    assert!(undecided > 100, "only {undecided} unknown, error or not_applicable results");
}
