//! The fleet cache and the incremental keeper against the uncached path, on
//! a real store with real signed records: the cache must always answer what
//! `evaluation_inputs::fleet_evidence` answers, deciding again only the hosts whose
//! evidence, facts or policy changed; the keeper logs only changed pairs,
//! also after a restart; and the change log answers as of a past time.

use std::sync::Arc;

use custos_agent::spool::ChainTip;
use custos_proto::evidence::statement::Facts;
use custos_proto::evidence::{CheckResult, CheckStatus, HostInfo, Observation};
use custos_server::api::views;
use custos_server::compliance::catalog::Catalog;
use custos_server::compliance::policy::Policy;
use custos_server::config::Config;
use custos_server::datadir::reload::Reloadable;
use custos_server::keeper::Keeper;
use custos_server::keeper::fleet::{Fleet, Refresh};
use custos_server::store::Store;
use custos_server::store::agents::AgentKey;
use custos_server::store::bulk::BulkAgent;
use custos_server::store::records::{AppendOutcome, NewRecord};
use custos_server::store::requirements::Requirements;
use ed25519_dalek::SigningKey;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const NOW: i64 = 1_795_000_000;
const FIREWALL_ONLY: &str = "bsi-grundschutz:2023/SYS.1.1.A19";

struct Agent {
    id: String,
    key: SigningKey,
    tip: ChainTip,
}

fn agents(n: usize) -> Vec<Agent> {
    (0..n)
        .map(|i| Agent {
            id: format!("host-{i}"),
            key: SigningKey::from_bytes(&[i as u8 + 1; 32]),
            tip: ChainTip { seq: 1, prev: None, gap: None },
        })
        .collect()
}

fn result(id: &str, status: CheckStatus) -> CheckResult {
    // What the built-in firewall rule reads: filtered or not.
    let mut facts = Facts::new();
    facts.insert("ipv4_filtered".into(), serde_json::json!(status == CheckStatus::Pass));
    facts.insert("ipv6_enabled".into(), serde_json::json!(false));
    CheckResult {
        id: id.into(),
        status,
        backend: "test".into(),
        facts,
        observation: Observation { sha256: "00".repeat(32), excerpt: String::new() },
        reason: (status != CheckStatus::Pass).then(|| format!("{id}: not compliant")),
    }
}

/// Signs the agent's next record, verifies it as ingest does and appends it.
fn send(store: &Store, a: &mut Agent, at: i64, checks: &[(&str, CheckStatus)]) {
    let collected = OffsetDateTime::from_unix_timestamp(at).unwrap().format(&Rfc3339).unwrap();
    let host = HostInfo {
        os: "linux".into(),
        os_version: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.1.0".into(),
        arch: "x86_64".into(),
        display_name: Some(a.id.clone()),
        tags: Vec::new(),
    };
    let checks = checks.iter().map(|(c, s)| result(c, *s)).collect();
    let env = custos_agent::signing::sign_record(&a.key, &a.id, &a.tip, &collected, host, checks);
    let key =
        AgentKey { agent_id: a.id.clone(), evidence_key: a.key.verifying_key().to_bytes(), revoked: false };
    let rec: NewRecord = custos_server::intake::ingest::verify_record(env, &key, at).unwrap();
    a.tip = ChainTip { seq: rec.seq + 1, prev: Some(rec.digest), gap: None };
    let out = store.record_writer().unwrap().append(&[rec], at).unwrap();
    assert_eq!(out, [AppendOutcome::Accepted]);
}

fn setup(n: usize) -> (tempfile::TempDir, Store, Vec<Agent>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("custos.db")).unwrap();
    let agents = agents(n);
    let bulk: Vec<BulkAgent> = agents
        .iter()
        .map(|a| BulkAgent {
            agent_id: a.id.clone(),
            display_name: a.id.clone(),
            evidence_key: a.key.verifying_key().to_bytes(),
            cert_serial: a.id.clone(),
            cert_not_after: NOW + 86_400,
            agent_version: "0.1.0".into(),
            tags: vec!["laptop".into()],
        })
        .collect();
    store.enroll_bulk(&bulk, NOW - 3600).unwrap();
    (dir, store, agents)
}

fn assert_same(fleet: &Fleet, store: &Store, policy: &Arc<Policy>) -> Refresh {
    let (cached, refresh) = fleet.refresh(store, policy).unwrap();
    let uncached = custos_server::keeper::evaluation_inputs::fleet_evidence(store, policy).unwrap();
    assert_eq!(*cached, uncached, "the cache answers what the store answers");
    refresh
}

#[test]
fn the_cache_decides_again_only_what_changed() {
    use CheckStatus::*;
    let (_dir, store, mut agents) = setup(4);
    let policy = Arc::new(Policy::builtin().unwrap());
    for a in agents.iter_mut() {
        send(&store, a, NOW - 600, &[("firewall", Pass), ("screen_lock", Fail), ("extra", Pass)]);
    }
    let fleet = Fleet::new();
    assert_eq!(assert_same(&fleet, &store, &policy), Refresh { full: true, hosts_decided: 4 });
    assert_eq!(assert_same(&fleet, &store, &policy), Refresh { full: false, hosts_decided: 0 });

    // A new record of one host: only that host is decided again.
    send(&store, &mut agents[1], NOW - 300, &[("firewall", Fail)]);
    assert_eq!(assert_same(&fleet, &store, &policy), Refresh { full: false, hosts_decided: 1 });
    // New tags change what the policy sees of a host: decided again.
    assert!(store.set_tags("host-2", &["server".into()]).unwrap());
    assert_eq!(assert_same(&fleet, &store, &policy), Refresh { full: false, hosts_decided: 1 });
    let (now, _) = fleet.refresh(&store, &policy).unwrap();
    assert!(now.iter().any(|h| h.agent_id == "host-2" && h.tags.contains(&"server".to_string())));
    // A revoked host leaves the fleet.
    assert!(store.revoke_agent("host-3", NOW).unwrap());
    assert_same(&fleet, &store, &policy);
    assert!(!fleet.evidence(&store, &policy).unwrap().iter().any(|h| h.agent_id == "host-3"));
    // Another policy (a reloaded file): everything is decided again.
    let reloaded = Arc::new(Policy::builtin().unwrap());
    assert_eq!(assert_same(&fleet, &store, &reloaded), Refresh { full: true, hosts_decided: 3 });
}

fn keeper(dir: &std::path::Path, fleet: Arc<Fleet>) -> Keeper {
    Keeper::new(
        Arc::new(Reloadable::new(Catalog::builtin().unwrap(), Vec::new())),
        Config::default(),
        Arc::new(Reloadable::new(Policy::builtin().unwrap(), Vec::new())),
        dir.to_path_buf(),
        fleet,
    )
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

#[test]
fn the_keeper_logs_only_changed_pairs_and_the_log_answers_as_of() {
    use CheckStatus::*;
    let (dir, store, mut agents) = setup(3);
    for a in agents.iter_mut() {
        send(&store, a, NOW - 600, &[("firewall", Pass)]);
    }
    let k = keeper(dir.path(), Arc::new(Fleet::new()));
    let first = k.pass(&store, at(NOW)).unwrap().requirement_changes;
    let state_at = |t: i64, agent: &str| {
        store
            .requirement_states_at(t, Requirements::One(FIREWALL_ONLY), false)
            .unwrap()
            .into_iter()
            .find(|s| s.agent_id == agent)
            .map(|s| s.state)
    };
    assert_eq!(state_at(NOW, "host-0").as_deref(), Some("satisfied"));
    let pairs = store.requirement_states_at(i64::MAX, Requirements::All, false).unwrap().len();
    assert_eq!(first, pairs, "the first pass logs every pair");
    assert!(pairs >= 3 * 10, "{pairs} pairs");
    assert_eq!(k.pass(&store, at(NOW + 1)).unwrap().requirement_changes, 0, "nothing changed");

    // host-1's firewall fails: only its pairs that involve the firewall change.
    send(&store, &mut agents[1], NOW + 5, &[("firewall", Fail)]);
    let changed = k.pass(&store, at(NOW + 10)).unwrap().requirement_changes;
    let log = store
        .requirement_changes(&custos_server::store::requirements::ChangeFilter {
            from: Some(NOW + 10),
            limit: 10_000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(log.len(), changed);
    assert!(changed > 0 && log.iter().all(|c| c.agent_id == "host-1" && c.to == "not_satisfied"), "{log:#?}");
    let fw = log.iter().find(|c| c.requirement == FIREWALL_ONLY).expect("the firewall requirement changed");
    assert_eq!(fw.from.as_deref(), Some("satisfied"));
    assert_eq!(fw.checks["firewall"], "fail");
    assert!(fw.record_digest.as_deref().is_some_and(|d| d.starts_with("sha256:")));

    // As of before the change the log says satisfied; after, not.
    assert_eq!(state_at(NOW + 9, "host-1").as_deref(), Some("satisfied"));
    assert_eq!(state_at(NOW + 10, "host-1").as_deref(), Some("not_satisfied"));
    assert_eq!(state_at(NOW - 1, "host-1"), None, "nothing was logged before the first pass");

    // A restarted keeper reads what was logged and finds nothing new.
    let restarted = keeper(dir.path(), Arc::new(Fleet::new()));
    assert_eq!(restarted.pass(&store, at(NOW + 11)).unwrap().requirement_changes, 0);

    // A revoked host's pairs are logged as removed and leave the as-of answer.
    assert!(store.revoke_agent("host-2", NOW + 20).unwrap());
    let removed = restarted.pass(&store, at(NOW + 21)).unwrap().requirement_changes;
    assert_eq!(removed * 3, pairs, "every pair of one host of three");
    assert_eq!(state_at(NOW + 21, "host-2"), None);
    assert_eq!(state_at(NOW + 20, "host-2").as_deref(), Some("satisfied"));

    // Evidence going stale is a change the keeper logs with time alone.
    let stale_at = NOW + 60 * 86_400;
    let stale = restarted.pass(&store, at(stale_at)).unwrap().requirement_changes;
    assert!(stale > 0);
    assert_eq!(state_at(stale_at, "host-0").as_deref(), Some("stale"));
}

fn keeper_with(dir: &std::path::Path, config: Config, policy: Policy) -> Keeper {
    Keeper::new(
        Arc::new(Reloadable::new(Catalog::builtin().unwrap(), Vec::new())),
        config,
        Arc::new(Reloadable::new(policy, Vec::new())),
        dir.to_path_buf(),
        Arc::new(Fleet::new()),
    )
}

/// Every evidence entry of the register by (requirement, scope).
fn register(
    store: &Store,
) -> std::collections::BTreeMap<(String, String), custos_server::register::RiskEntry> {
    store
        .risks(&custos_server::store::risks::RiskFilter::every_evidence_entry())
        .unwrap()
        .into_iter()
        .map(|e| ((e.requirement.clone().unwrap(), e.scope.clone()), e))
        .collect()
}

#[test]
fn the_keeper_keeps_one_register_entry_per_requirement_and_scope() {
    use CheckStatus::*;
    let (dir, store, mut agents) = setup(4);
    // host-0 and host-1 are servers; host-2 and host-3 keep only "laptop",
    // which is no register scope: they are the rest of the fleet.
    for h in ["host-0", "host-1"] {
        assert!(store.set_tags(h, &["server".into(), "berlin".into()]).unwrap());
    }
    for (i, a) in agents.iter_mut().enumerate() {
        let status = if i % 2 == 0 { Fail } else { Pass };
        send(&store, a, NOW - 600, &[("firewall", status)]);
    }
    let mut config = Config::default();
    config.risk.grace_minutes = 0;
    config.risk.scopes = vec!["server".into(), "kiosk".into()];
    let k = keeper_with(dir.path(), config, Policy::builtin().unwrap());
    k.pass(&store, at(NOW)).unwrap();

    let entries = register(&store);
    let requirement = "iso27001:2022/A.8.20";
    let server = &entries[&(requirement.to_string(), "server".to_string())];
    let fleet = &entries[&(requirement.to_string(), "fleet".to_string())];
    assert_eq!(server.affected_hosts, ["host-0".to_string()].into());
    assert_eq!(fleet.affected_hosts, ["host-2".to_string()].into());
    assert_eq!((server.in_scope_hosts, fleet.in_scope_hosts), (2, 2));
    assert_eq!(server.evidence["host-0"], "/api/v1/records/host-0/1");
    // Every firewall requirement of the register deviates in both scopes,
    // and no scope without a failing host has an entry.
    let firewall_requirements: std::collections::BTreeSet<&String> = entries.keys().map(|(r, _)| r).collect();
    assert!(firewall_requirements.len() >= 2, "{firewall_requirements:?}");
    for r in firewall_requirements {
        let scopes: Vec<&str> =
            entries.keys().filter(|(req, _)| req == r).map(|(_, scope)| scope.as_str()).collect();
        assert_eq!(scopes, ["fleet", "server"], "{r}");
    }

    // host-2 becomes a server: it leaves the fleet's entry and joins the servers'.
    assert!(store.set_tags("host-2", &["server".into()]).unwrap());
    k.pass(&store, at(NOW + 60)).unwrap();
    let entries = register(&store);
    let server = &entries[&(requirement.to_string(), "server".to_string())];
    let fleet = &entries[&(requirement.to_string(), "fleet".to_string())];
    assert_eq!(server.affected_hosts, ["host-0".to_string(), "host-2".to_string()].into());
    assert_eq!(server.in_scope_hosts, 3);
    assert!(fleet.affected_hosts.is_empty());
    assert_eq!((fleet.in_scope_hosts, fleet.clean_evaluations), (1, 1));
    let history = store.risk_history(fleet.id).unwrap();
    assert!(
        history.iter().any(|h| h.change == "hosts_changed" && h.detail.contains("-host-2")),
        "{history:?}"
    );

    // Without scopes (the default) the same evidence is one fleet entry.
    let (dir, store, mut agents) = setup(4);
    for h in ["host-0", "host-1"] {
        store.set_tags(h, &["server".into()]).unwrap();
    }
    for (i, a) in agents.iter_mut().enumerate() {
        send(&store, a, NOW - 600, &[("firewall", if i % 2 == 0 { Fail } else { Pass })]);
    }
    let mut config = Config::default();
    config.risk.grace_minutes = 0;
    keeper_with(dir.path(), config, Policy::builtin().unwrap()).pass(&store, at(NOW)).unwrap();
    let entries = register(&store);
    let fleet = &entries[&(requirement.to_string(), "fleet".to_string())];
    assert_eq!(fleet.affected_hosts, ["host-0".to_string(), "host-2".to_string()].into());
    assert_eq!(fleet.in_scope_hosts, 4);
    assert!(entries.keys().all(|(_, scope)| scope == "fleet"));
}

#[test]
fn as_of_answers_name_the_versions_recorded_in_the_change_log_then() {
    use CheckStatus::*;
    let (dir, store, mut agents) = setup(2);
    for a in agents.iter_mut() {
        send(&store, a, NOW - 600, &[("firewall", Pass)]);
    }
    let builtin = Policy::builtin().unwrap();
    let strict = |version: &str, expr: &str| {
        let text = format!(
            "version = \"{version}\"\n[[rule]]\ncheck = \"firewall\"\nexpr = '{expr}'\nmessage = \"no\"\n"
        );
        Policy::with_override(&builtin, std::path::Path::new("policy.toml"), &text).unwrap()
    };
    let catalog = Catalog::builtin().unwrap();
    let config = Config::default();
    let controls = |rules: &Policy, as_of: Option<i64>| {
        let rules = Arc::new(rules.clone());
        let fleet = Fleet::new();
        let sources = views::Sources {
            store: &store,
            fleet: &fleet,
            catalog: &catalog,
            config: &config,
            rules: &rules,
        };
        views::controls(sources, at(NOW + 1000), Some("bsi-grundschutz:2023"), None, as_of.map(at))
            .unwrap()
            .unwrap()
    };
    let versions =
        |v: &views::ControlsView| v.versions.iter().map(|v| v.policy_version.clone()).collect::<Vec<_>>();
    let mapping = catalog.mapping_version().to_string();

    // The built-in policy at NOW; a policy failing every firewall at NOW + 100.
    keeper_with(dir.path(), config.clone(), builtin.clone()).pass(&store, at(NOW)).unwrap();
    let acme = strict("acme-2", "false");
    let changed = keeper_with(dir.path(), config.clone(), acme.clone()).pass(&store, at(NOW + 100)).unwrap();
    assert!(changed.requirement_changes > 0);

    // Asked today, under today's policy.
    let now = controls(&acme, None);
    assert_eq!((now.policy_version.as_deref(), now.provenance.is_none()), (Some("acme-2"), true));
    // As of before the change: the built-in version decided everything then.
    let before = controls(&acme, Some(NOW + 50));
    assert_eq!(before.policy_version.as_deref(), Some(builtin.version()));
    assert_eq!(before.mapping_version.as_deref(), Some(mapping.as_str()));
    assert_eq!(versions(&before), [builtin.version()]);
    assert_eq!(before.provenance, Some(views::AS_OF_PROVENANCE));
    let fw = before.evaluation.controls.iter().find(|c| c.control_id == FIREWALL_ONLY).unwrap();
    assert_eq!(fw.passing.len(), 2);
    // After it: the firewall pairs were decided by acme-2, the rest still by
    // the built-in policy (unchanged pairs are not logged again).
    let after = controls(&acme, Some(NOW + 100));
    assert_eq!(versions(&after), [builtin.version(), "acme-2"]);
    assert_eq!(after.policy_version.as_deref(), Some("acme-2"), "the newest is named");
    // Before anything was logged: no version decided anything.
    let empty = controls(&acme, Some(NOW - 1));
    assert_eq!((empty.policy_version, empty.versions.len()), (None, 0));

    // A pass under yet another version in the same second is logged at the
    // next second, so one logged time has one version pair.
    let back = keeper_with(dir.path(), config.clone(), strict("acme-3", "true"));
    assert!(back.pass(&store, at(NOW + 100)).unwrap().requirement_changes > 0);
    let log = store
        .requirement_changes(&custos_server::store::requirements::ChangeFilter {
            from: Some(NOW + 100),
            limit: 10_000,
            ..Default::default()
        })
        .unwrap();
    assert!(log.iter().any(|c| c.policy_version == "acme-3"));
    for c in &log {
        let want = if c.policy_version == "acme-3" { NOW + 101 } else { NOW + 100 };
        assert_eq!(c.at, want, "{c:?}");
    }
    assert_eq!(versions(&controls(&acme, Some(NOW + 100))), [builtin.version(), "acme-2"]);
    let last = controls(&acme, Some(NOW + 101));
    assert_eq!(last.policy_version.as_deref(), Some("acme-3"));

    // Effectiveness points name theirs too.
    let rules = Arc::new(acme.clone());
    let fleet = Fleet::new();
    let sources =
        views::Sources { store: &store, fleet: &fleet, catalog: &catalog, config: &config, rules: &rules };
    let points =
        views::effectiveness(sources, None, FIREWALL_ONLY, at(NOW + 50), at(NOW + 101), 2).unwrap().unwrap();
    let named: Vec<Vec<&str>> =
        points.iter().map(|p| p.versions.iter().map(|v| v.policy_version.as_str()).collect()).collect();
    assert_eq!(named, [vec![builtin.version()], vec!["acme-3"]]);
    assert_eq!(points.iter().map(|p| p.passing).collect::<Vec<_>>(), [2, 2]);
}
