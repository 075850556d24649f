//! The examples in `docs/policy.md` load and mean what the document says:
//! the policy example as an override, the webhook example as configuration
//! (with its secret required). The documentation cannot drift from the code.

use std::path::Path;

use custos_proto::evidence::CheckStatus;
use custos_server::compliance::policy::{HostFacts, Policy};

#[test]
fn the_documented_policy_example_loads_and_decides_as_described() {
    let doc = include_str!("../../docs/policy.md");
    let start = doc.find("```toml\nversion = ").expect("a policy example") + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").unwrap()];
    let builtin = Policy::builtin().unwrap();
    let p = Policy::with_override(&builtin, Path::new("policy.toml"), text).unwrap();
    assert_eq!(p.version(), "acme-2026-11");
    assert_eq!(p.params()["max_signature_age_hours"], 168);
    let host = HostFacts { os: "linux".into(), tags: vec![] };
    let facts = |idle: u32| {
        serde_json::json!({"desktops": ["gnome"], "gnome": {"lock_enabled": true, "locked": true,
            "idle_delay_seconds": idle, "lock_delay_seconds": 0}})
        .as_object()
        .unwrap()
        .clone()
    };
    assert_eq!(p.decide("screen_lock", CheckStatus::Pass, &facts(300), &host).status, CheckStatus::Pass);
    assert_eq!(p.decide("screen_lock", CheckStatus::Pass, &facts(900), &host).status, CheckStatus::Fail);
    assert!(!p.applies("bsi-grundschutz:2023/SYS.3.1.A3", &[]));
    assert!(p.applies("bsi-grundschutz:2023/SYS.3.1.A3", &["laptop".into()]));
}

/// The fenced TOML block of `docs/policy.md` that starts with `first_line`.
fn example(first_line: &str) -> &'static str {
    let doc = include_str!("../../docs/policy.md");
    let fence = format!("```toml\n{first_line}");
    let start =
        doc.find(&fence).unwrap_or_else(|| panic!("no example starting {first_line:?}")) + "```toml\n".len();
    &doc[start..start + doc[start..].find("```").expect("closing fence")]
}

#[tokio::test]
async fn the_documented_webhook_example_loads_and_needs_its_secret() {
    use custos_server::config::Config;
    use custos_server::webhook::{Format, RiskEventKind, check_secrets};
    let text = example("[[webhook]]");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let [hook] = config.webhooks.as_slice() else { panic!("one webhook: {:?}", config.webhooks) };
    assert_eq!((hook.name.as_str(), hook.format), ("soc", Format::Json));
    assert_eq!(hook.secret_file, Path::new("webhook.key"));
    assert_eq!(hook.events, RiskEventKind::ALL, "the example lists every event");
    // The server would not start until the file the example names is there...
    let err = check_secrets(&config.webhooks, dir.path()).await.unwrap_err().to_string();
    assert!(err.contains("webhook \"soc\"") && err.contains("webhook.key"), "{err}");
    // ...as the command in its comment writes it (`openssl rand -hex 32`: 64 hex digits).
    std::fs::write(dir.path().join("webhook.key"), format!("{}\n", "0f".repeat(32))).unwrap();
    check_secrets(&config.webhooks, dir.path()).await.unwrap();

    // Without its secret_file line the same example is refused, naming the webhook.
    let unsigned: String =
        text.lines().filter(|l| !l.starts_with("secret_file")).map(|l| format!("{l}\n")).collect();
    assert_ne!(unsigned, text);
    std::fs::write(&path, unsigned).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("webhook \"soc\": secret_file is required"), "{err}");
}

/// Every built-in parameter has its row in the document's table, with its
/// default as the built-in policy has it.
#[test]
fn every_builtin_parameter_is_documented_with_its_default() {
    let doc = include_str!("../../docs/policy.md");
    let builtin = Policy::builtin().unwrap();
    assert!(builtin.params().len() >= 16, "{:?}", builtin.params().keys());
    for (name, value) in builtin.params() {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/policy.md has no row for {name}"));
        let default = row.split('|').nth(2).unwrap().trim().trim_matches('`');
        let documented: serde_json::Value = serde_json::from_str(default)
            .unwrap_or_else(|e| panic!("{name}: default {default:?} is not a value: {e}"));
        let same = match (value.as_f64(), documented.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => *value == documented,
        };
        assert!(same, "{name}: documented {documented}, built-in {value}");
    }
}

/// The `[risk]` example is configuration the server loads, scopes included.
#[test]
fn the_documented_risk_example_loads_with_its_scopes() {
    let text = example("[risk]");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = custos_server::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let policy = config.risk.policy();
    assert_eq!(policy.scopes, ["server", "laptop"]);
    assert_eq!(policy.grace_seconds, 30 * 60);
    let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(custos_server::register::scope_of(&tags(&["laptop", "server"]), &policy.scopes), "server");
    assert_eq!(custos_server::register::scope_of(&tags(&["kiosk"]), &policy.scopes), "fleet");
}
