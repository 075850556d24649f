//! The whole path over real mTLS on loopback: enroll → collect → sign →
//! spool → deliver → verify → store → controls and risks reflect evidence.

use std::collections::BTreeSet;
use std::sync::Arc;

use custos_agent::host::{Host, SystemHost};
use custos_agent::spool::Appended;
use custos_proto::evidence::{CheckStatus, Statement, payload_digest};
use custos_tests::{TestAgent, TestServer, core_results};
use serde_json::Value;

fn system() -> Arc<dyn Host> {
    Arc::new(SystemHost::default())
}

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn control<'a>(controls: &'a Value, id: &str) -> &'a Value {
    controls["controls"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["control_id"] == id))
        .unwrap_or_else(|| panic!("control {id} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_collection_is_signed_delivered_stored_and_mapped() {
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "this-host", system()).await;
    let pass = a.agent.run_once().await.expect("pass");
    assert_eq!(pass.appended, Appended::Stored { seq: 1 });
    let delivery = pass.delivery.expect("delivered");
    assert_eq!((delivery.accepted, delivery.duplicate), (1, 0));
    assert_eq!(pass.spooled_after, 0, "acknowledged record left the spool");
    assert_eq!(pass.results.len(), custos_agent::collect::CHECKS.len());

    // Stored verbatim: the stored bytes verify under the agent's key.
    let stored = server.handle().store.records_of(&a.id()).unwrap();
    assert_eq!(stored.len(), 1);
    let st = Statement::from_payload(&stored[0].payload).unwrap();
    assert_eq!(st.predicate.agent_id, a.id());
    assert_eq!(st.predicate.checks, pass.results);
    let key = a.state.load_evidence_key().unwrap().verifying_key();
    let env = custos_proto::evidence::Envelope {
        payload: stored[0].payload.clone(),
        payload_type: stored[0].payload_type.clone(),
        signatures: vec![custos_proto::evidence::EnvelopeSignature {
            keyid: stored[0].keyid.clone(),
            sig: stored[0].sig.clone(),
        }],
    };
    custos_proto::evidence::verify_envelope(&env, &key).unwrap();

    // The host shows up with each check's latest status.
    let (status, hosts) = server.api("/api/v1/hosts").await;
    assert_eq!(status, 200);
    let host = &hosts[0];
    assert_eq!(host["agent_id"], a.id());
    assert_eq!(host["head_seq"], 1);
    assert_eq!(host["evidence"], "current");
    for r in &pass.results {
        let c = host["checks"].as_array().unwrap().iter().find(|c| c["check_id"] == r.id.as_str()).unwrap();
        assert_eq!(c["status"], r.status.as_str(), "{c:#}");
    }

    // A control only the firewall check supports counts the host in that check's bucket.
    let (_, controls) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    let firewall = pass.results.iter().find(|r| r.id == "firewall").unwrap();
    let a820 = control(&controls, "bsi-grundschutz:2023/SYS.1.1.A19");
    let bucket = match firewall.status {
        CheckStatus::Pass => "passing",
        CheckStatus::Fail => "failing",
        _ => "unknown",
    };
    assert!(ids(&a820[bucket]).contains(&a.id()), "{a820:#}");
    // A control no check maps to has no evidence and is not assessed.
    let (_, controls) = server.api("/api/v1/controls?framework=iso27001:2022").await;
    assert_eq!(control(&controls, "iso27001:2022/A.6.3")["state"], "not_assessed");

    // Each failing check opens a risk on the ISO 27001:2022 requirements it
    // supports, naming this host, the check, and the related requirements
    // of the other frameworks.
    let names_check =
        |x: &Value, check: &str| x["checks"].as_array().is_some_and(|c| c.iter().any(|c| c == check));
    for r in pass.results.iter().filter(|r| r.status == CheckStatus::Fail) {
        let risks = server
            .wait_for("/api/v1/risks", |v| {
                v.as_array().is_some_and(|rs| rs.iter().any(|x| names_check(x, &r.id)))
            })
            .await;
        let risk = risks.as_array().unwrap().iter().find(|x| names_check(x, &r.id)).unwrap();
        assert!(ids(&risk["affected_hosts"]).contains(&a.id()));
        assert!(risk["requirement"].as_str().unwrap().starts_with("iso27001:2022/"), "{risk:#}");
        assert_eq!(risk["status"], "open");
        assert!(risk["due_at"].as_i64().is_some());
        assert!(!risk["related"].as_array().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_outage_loses_nothing_and_stores_nothing_twice() {
    let mut server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "laptop", system()).await;
    for _ in 0..3 {
        a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    }
    assert_eq!(a.agent.deliver().await.unwrap().accepted, 3);

    server.stop().await;
    for _ in 0..5 {
        a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    }
    assert!(a.agent.deliver().await.is_err(), "server is down");
    assert_eq!(a.agent.spool.len().unwrap(), 5, "records wait in the spool");

    // The agent restarts too: the spool is on disk.
    let state = a.state.clone();
    let settings = custos_agent::runner::Settings::default();
    a.agent = custos_agent::runner::Agent::open(state, &settings, system()).unwrap();
    assert_eq!(a.agent.spool.len().unwrap(), 5);

    server.restart().await;
    let report = a.agent.deliver().await.unwrap();
    assert_eq!((report.accepted, report.duplicate), (5, 0));
    assert_eq!(a.agent.spool.len().unwrap(), 0);

    // Every record exactly once, in order, the chain unbroken.
    let stored = server.handle().store.records_of(&a.id()).unwrap();
    assert_eq!(stored.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    let mut prev = None;
    for r in &stored {
        let st = Statement::from_payload(&r.payload).unwrap();
        assert_eq!(st.prev_digest(), prev);
        prev = Some(payload_digest(&r.payload));
    }

    // An acknowledgement lost in transit: the agent sends a record again.
    // The server answers duplicate and stores nothing.
    let again = stored[7].clone();
    let env = custos_proto::evidence::Envelope {
        payload: again.payload,
        payload_type: again.payload_type,
        signatures: vec![custos_proto::evidence::EnvelopeSignature { keyid: again.keyid, sig: again.sig }],
    };
    let channel = a.agent.channel().await.unwrap();
    let acks = custos_tests::send_raw(channel, vec![env]).await.unwrap();
    assert_eq!(acks[0].status, custos_proto::v1::AckStatus::Duplicate as i32);
    assert_eq!(server.handle().store.records_of(&a.id()).unwrap().len(), 8);
    assert_eq!(server.handle().store.integrity_check().unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_register_follows_the_evidence_across_the_fleet() {
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "a", system()).await;
    let mut b = TestAgent::enroll(&server, "b", system()).await;
    let fw_fail = [("firewall", CheckStatus::Fail)];
    let firewall_risk = |v: &Value| -> Option<Value> {
        v.as_array()?.iter().find(|r| r["requirement"] == "iso27001:2022/A.8.20").cloned()
    };

    // A fails: one risk, affecting A.
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &fw_fail)).unwrap();
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    b.agent.deliver().await.unwrap();
    let risks = server.wait_for("/api/v1/risks", |v| firewall_risk(v).is_some()).await;
    let r = firewall_risk(&risks).unwrap();
    assert_eq!(ids(&r["affected_hosts"]), BTreeSet::from([a.id()]));
    let risk_id = r["id"].clone();

    // B fails too: the same entry now lists both.
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &fw_fail)).unwrap();
    b.agent.deliver().await.unwrap();
    let risks = server
        .wait_for("/api/v1/risks", |v| {
            firewall_risk(v).is_some_and(|r| r["affected_hosts"].as_array().unwrap().len() == 2)
        })
        .await;
    assert_eq!(firewall_risk(&risks).unwrap()["id"], risk_id, "one entry per requirement, not per host");

    // A turns unknown: still affected (only passing clears a host).
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[("firewall", CheckStatus::Unknown)])).unwrap();
    a.agent.deliver().await.unwrap();
    // A passes, B still fails: A leaves.
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    let risks = server
        .wait_for("/api/v1/risks", |v| {
            firewall_risk(v).is_some_and(|r| ids(&r["affected_hosts"]) == BTreeSet::from([b.id()]))
        })
        .await;
    assert_eq!(firewall_risk(&risks).unwrap()["status"], "open");

    // B passes: closed.
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    b.agent.deliver().await.unwrap();
    server.wait_for("/api/v1/risks", |v| firewall_risk(v).is_none()).await;
    let (_, all) = server.api("/api/v1/risks?status=closed").await;
    let closed = firewall_risk(&all).expect("closed entry kept");
    assert_eq!(closed["id"], risk_id);
    assert_eq!(closed["status"], "closed");

    // A fails again: the same entry reopens, and its history tells the story.
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &fw_fail)).unwrap();
    a.agent.deliver().await.unwrap();
    let risks = server.wait_for("/api/v1/risks", |v| firewall_risk(v).is_some()).await;
    assert_eq!(firewall_risk(&risks).unwrap()["id"], risk_id, "reopened, not a new entry");
    let (_, one) = server.api(&format!("/api/v1/risks/{risk_id}")).await;
    let changes: Vec<&str> =
        one["history"].as_array().unwrap().iter().map(|h| h["change"].as_str().unwrap()).collect();
    assert_eq!(changes.first(), Some(&"opened"));
    assert_eq!(changes.last(), Some(&"reopened"));
    assert!(changes.contains(&"closed") && changes.contains(&"hosts_changed"), "{changes:?}");
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    server.wait_for("/api/v1/risks", |v| firewall_risk(v).is_none()).await;

    // Controls reflect it: the local packet-filter requirement (supported by
    // the firewall check alone) is effective again with both hosts passing.
    let (_, controls) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    let a820 = control(&controls, "bsi-grundschutz:2023/SYS.1.1.A19");
    assert_eq!(ids(&a820["passing"]), BTreeSet::from([a.id(), b.id()]));
    assert_eq!(a820["state"], "effective");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_private_and_the_certificate_is_renewed_before_expiry() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "renewing", system()).await;
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(a.state.0.clone()), 0o700);
    for f in [a.state.evidence_key(), a.state.tls_key(), a.state.client_cert(), a.state.spool()] {
        assert_eq!(mode(f.clone()), 0o600, "{}", f.display());
    }

    // Not due yet: nothing happens.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(!a.agent.renew_if_due(now).await.unwrap());
    let old_cert = std::fs::read_to_string(a.state.client_cert()).unwrap();
    // Two thirds of the lifetime have passed: the agent renews with a new key.
    let id = a.agent.identity();
    let later = id.cert_not_before + (id.cert_not_after - id.cert_not_before) * 3 / 4;
    assert!(a.agent.renew_if_due(later).await.unwrap());
    let new_cert = std::fs::read_to_string(a.state.client_cert()).unwrap();
    assert_ne!(old_cert, new_cert);
    // The new certificate still names the same agent and works.
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    assert_eq!(a.agent.deliver().await.unwrap().accepted, 1);
    assert_eq!(server.handle().store.records_of(&a.id()).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_becomes_an_explicit_signed_gap_on_the_server() {
    let mut server = TestServer::start().await;
    let settings = custos_agent::runner::Settings { spool_max_records: 2, ..Default::default() };
    let mut a = TestAgent::enroll_with(&server, "offline-laptop", system(), settings).await;
    server.stop().await;
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap());
    }
    assert_eq!(outcomes[..2], [Appended::Stored { seq: 1 }, Appended::Stored { seq: 2 }]);
    assert_eq!(outcomes[4], Appended::Missed { missed_so_far: 3 });

    server.restart().await;
    assert_eq!(a.agent.deliver().await.unwrap().accepted, 2);
    // The next record declares the three skipped collections.
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    assert_eq!(a.agent.deliver().await.unwrap().accepted, 1);
    let (_, gaps) = server.api("/api/v1/gaps").await;
    let gap = &gaps.as_array().unwrap()[0];
    assert_eq!(gap["agent_id"], a.id());
    assert_eq!(gap["missed_collections"], 3);
    assert_eq!(gap["record_seq"], 3);
    assert!(gap["reason"].as_str().unwrap().contains("spool full"));
}
