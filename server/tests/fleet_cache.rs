//! The fleet cache and the incremental keeper against the uncached path, on
//! a real store with real signed records: the cache must always answer what
//! `views::fleet_evidence` answers, deciding again only the hosts whose
//! evidence, facts or policy changed; the keeper logs only changed pairs,
//! also after a restart; and the change log answers as of a past time.

use std::sync::Arc;

use custos_agent::spool::ChainTip;
use custos_proto::evidence::statement::Facts;
use custos_proto::evidence::{CheckResult, CheckStatus, HostInfo, Observation};
use custos_server::catalog::Catalog;
use custos_server::config::Config;
use custos_server::fleet::{Fleet, Refresh};
use custos_server::keeper::Keeper;
use custos_server::policy::Policy;
use custos_server::reload::Reloadable;
use custos_server::store::Store;
use custos_server::store::agents::AgentKey;
use custos_server::store::bulk::BulkAgent;
use custos_server::store::records::{AppendOutcome, NewRecord};
use custos_server::store::requirements::Requirements;
use custos_server::views;
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
    let env = custos_agent::record::sign_record(&a.key, &a.id, &a.tip, &collected, host, checks);
    let key =
        AgentKey { agent_id: a.id.clone(), evidence_key: a.key.verifying_key().to_bytes(), revoked: false };
    let rec: NewRecord = custos_server::ingest::verify_record(env, &key, at).unwrap();
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
    let uncached = views::fleet_evidence(store, policy).unwrap();
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
