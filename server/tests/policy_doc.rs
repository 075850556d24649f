//! The policy example in `docs/policy.md` loads as an override and means
//! what the document says: the documentation cannot drift from the code.

use std::path::Path;

use custos_proto::evidence::CheckStatus;
use custos_server::policy::{HostFacts, Policy};

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
