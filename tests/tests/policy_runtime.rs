//! The organisation's policy at run time: a `policy.toml` in the data dir
//! changes what passes without code; a malformed one is refused with file,
//! line and reason while the last good policy stays in force; scopes take
//! controls off hosts by their tags; every changed standing lands in the
//! change log with its record digest and the policy version.

use std::sync::Arc;

use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::{CheckResult, CheckStatus, Observation};
use custos_server::datadir::DataDir;
use custos_tests::{TestAgent, TestServer, core_results};
use serde_json::{Value, json};

fn system() -> Arc<dyn Host> {
    Arc::new(SystemHost::default())
}

/// ClamAV running with signatures 100 hours old: the agent fails it (72 h limit).
fn old_signatures() -> CheckResult {
    let facts = json!({"products": [{"name": "ClamAV", "version": "27000", "active": true,
        "signatures_age_hours": 100, "problem": "signatures are 100 h old (limit 72 h)"}]});
    CheckResult {
        id: "antivirus".into(),
        status: CheckStatus::Fail,
        backend: "clamav".into(),
        facts: facts.as_object().unwrap().clone(),
        observation: Observation::default(),
        reason: Some("signatures are 100 h old (limit 72 h)".into()),
    }
}

fn antivirus(hosts: &Value) -> Value {
    hosts[0]["checks"].as_array().unwrap().iter().find(|c| c["check_id"] == "antivirus").unwrap().clone()
}

fn control<'a>(controls: &'a Value, id: &str) -> &'a Value {
    controls["controls"].as_array().unwrap().iter().find(|c| c["control_id"] == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_file_changes_what_passes_and_a_bad_one_changes_nothing() {
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "a", system()).await;
    let mut results = core_results(CheckStatus::Pass, &[]);
    results.retain(|r| r.id != "antivirus");
    results.push(old_signatures());
    a.agent.sign_into_spool(results).unwrap();
    a.agent.deliver().await.unwrap();

    // The built-in policy agrees with the agent.
    let (_, hosts) = server.api("/api/v1/hosts").await;
    let av = antivirus(&hosts);
    assert_eq!((av["status"].as_str(), av["by_policy"].as_bool()), (Some("fail"), Some(true)), "{av:#}");
    let (_, policy) = server.api("/api/v1/policy").await;
    let builtin_version = policy["version"].as_str().unwrap().to_string();
    assert_eq!(policy["params"]["max_signature_age_hours"], 72);
    assert!(
        policy["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["check"] == "antivirus" && r["line"].as_u64() > Some(0))
    );

    let changes_path = format!("/api/v1/changes?agent={}&requirement=iso27001:2022/A.8.7", a.id());
    server.wait_for(&changes_path, |v| v.as_array().is_some_and(|c| c.len() == 1)).await;

    // The organisation allows a week: the same evidence now passes, decided by the policy.
    let path = DataDir(server.dir.clone()).policy();
    std::fs::write(&path, "version = \"acme-2026-11\"\n[params]\nmax_signature_age_hours = 168\n").unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(
        (status, r["version"].as_str(), r["changed"].as_bool()),
        (200, Some("acme-2026-11"), Some(true)),
        "{r}"
    );
    let (_, hosts) = server.api("/api/v1/hosts").await;
    let av = antivirus(&hosts);
    assert_eq!((av["status"].as_str(), av["agent_status"].as_str()), (Some("pass"), Some("fail")), "{av:#}");
    let (_, controls) = server.api("/api/v1/controls?framework=iso27001:2022").await;
    assert_eq!(controls["policy_version"], "acme-2026-11");
    assert!(controls["mapping_version"].as_str().unwrap().starts_with("custos-mappings-"));
    assert_eq!(control(&controls, "iso27001:2022/A.8.7")["state"], "effective");
    // The keeper logs the change under the new policy at its next pass.
    server
        .wait_for(&changes_path, |v| {
            v.as_array().is_some_and(|c| {
                c.iter().any(|c| c["to"] == "satisfied" && c["policy_version"] == "acme-2026-11")
            })
        })
        .await;

    // A malformed file: refused with file, line and reason; the last good policy stays.
    std::fs::write(&path, "version = \"acme-broken\"\n\n[[rule]]\ncheck = \"antivirus\"\nmessage = \"m\"\nexpr = 'facts.products.all(p, p.active &&'\n").unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(status, 422, "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("policy.toml:6"), "{err}");
    assert_eq!(r["version_in_force"], "acme-2026-11");
    let (_, policy) = server.api("/api/v1/policy").await;
    assert_eq!(policy["version"], "acme-2026-11");
    assert!(policy["rejected_file_error"].as_str().unwrap().contains("policy.toml:6"));
    let (_, events) = server.api("/api/v1/security-events").await;
    assert!(
        events["events"].as_array().unwrap().iter().any(|e| e["kind"] == "policy_rejected"),
        "{events:#}"
    );
    let (_, hosts) = server.api("/api/v1/hosts").await;
    assert_eq!(antivirus(&hosts)["status"], "pass", "still decided by the last good policy");

    // Unknown keys are refused too, naming the line.
    std::fs::write(
        &path,
        "version = \"x\"\n[params]\nmax_signature_age_hours = 168\ncolour = \"red\"\n[oops]\n",
    )
    .unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(status, 422, "{r}");
    assert!(r["error"].as_str().unwrap().contains("policy.toml:5"), "{r}");

    // The file removed: back to the built-in policy.
    std::fs::remove_file(&path).unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!((status, r["version"].as_str()), (200, Some(builtin_version.as_str())), "{r}");
    let (_, hosts) = server.api("/api/v1/hosts").await;
    assert_eq!(antivirus(&hosts)["status"], "fail");

    // The change log holds each standing change with the deciding record and the policy version.
    let changes = server.wait_for(&changes_path, |v| v.as_array().is_some_and(|c| c.len() >= 3)).await;
    let log = changes.as_array().unwrap();
    assert_eq!(log[0]["from"], Value::Null);
    assert_eq!(log[0]["to"], "not_satisfied");
    assert!(log[0]["record_digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(log[0]["checks"]["antivirus"], "fail", "{changes:#}");
    assert_eq!(log[1]["to"], "satisfied");
    assert_eq!(log[2]["to"], "not_satisfied", "back under the built-in policy: {changes:#}");
    let (status, _) = server.api("/api/v1/changes?limit=0").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_file_is_the_organisations_and_a_bad_one_changes_nothing() {
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "a", system()).await;
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    let builtin = include_str!("../../server/data/mappings.toml");
    let path = DataDir(server.dir.clone()).mappings();

    // The organisation also counts the antivirus check towards A.5.10.
    let own = format!(
        "{}\n[[mapping]]\ncheck = \"antivirus\"\ncontrol = \"iso27001:2022/A.5.10\"\nrelationship = \"intersect\"\nrationale = \"our reading\"\n",
        builtin.replacen("version = \"custos-mappings-", "version = \"acme-mappings-", 1)
    );
    std::fs::write(&path, &own).unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["mapping_version"].as_str().unwrap().starts_with("acme-mappings-"), "{r}");
    let (_, controls) = server.api("/api/v1/controls?framework=iso27001:2022").await;
    let c = control(&controls, "iso27001:2022/A.5.10");
    assert_eq!(
        (c["checks"].clone(), c["state"].clone()),
        (json!(["antivirus"]), json!("effective")),
        "{c:#}"
    );

    // A mapping to a control that does not exist: refused naming file and line.
    let bad = own.replace("iso27001:2022/A.5.10", "iso27001:2022/A.5.99");
    std::fs::write(&path, &bad).unwrap();
    let line = bad[..bad.find("A.5.99").unwrap()].matches('\n').count() + 1;
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(status, 422, "{r}");
    assert!(r["error"].as_str().unwrap().contains(&format!("mappings.toml:{line}:")), "{r}");
    assert!(r["mapping_version_in_force"].as_str().unwrap().starts_with("acme-mappings-"));
    let (_, controls) = server.api("/api/v1/controls?framework=iso27001:2022").await;
    assert_eq!(
        control(&controls, "iso27001:2022/A.5.10")["checks"],
        json!(["antivirus"]),
        "last good mappings stay"
    );
    let (_, events) = server.api("/api/v1/security-events").await;
    assert!(events["events"].as_array().unwrap().iter().any(|e| e["kind"] == "mappings_rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_apply_controls_by_host_tags() {
    let server = TestServer::start().await;
    let path = DataDir(server.dir.clone()).policy();
    std::fs::write(
        &path,
        "version = \"scoped\"\n[[scope]]\ncontrols = [\"bsi-grundschutz:2023/SYS.3.1\"]\ntags_any = [\"laptop\"]\n",
    )
    .unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(status, 200, "{r}");
    let mut a = TestAgent::enroll(&server, "a", system()).await;
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    let req = "bsi-grundschutz:2023/SYS.3.1.A3";
    let (_, controls) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    assert_eq!(
        control(&controls, req)["not_applicable"],
        json!([a.id()]),
        "untagged: a laptop control does not apply"
    );
    assert_eq!(control(&controls, "bsi-grundschutz:2023/SYS.1.1.A19")["passing"], json!([a.id()]));

    let (status, r) = server
        .send(
            "PUT",
            &format!("/api/v1/hosts/{}/tags", a.id()),
            json!({"tags": ["laptop", "laptop", "berlin"]}),
        )
        .await;
    assert_eq!((status, &r["tags"]), (200, &json!(["berlin", "laptop"])), "{r}");
    let (_, controls) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    assert_eq!(control(&controls, req)["passing"], json!([a.id()]));
    let (_, host) = server.api(&format!("/api/v1/hosts/{}", a.id())).await;
    assert_eq!(host["tags"], json!(["berlin", "laptop"]));

    for (body, want) in [
        (json!({"tags": ["Laptop"]}), 400),
        (json!({"tags": ["a b"]}), 400),
        (json!({"tags": "laptop"}), 400),
    ] {
        let (status, _) = server.send("PUT", &format!("/api/v1/hosts/{}/tags", a.id()), body.clone()).await;
        assert_eq!(status, want, "{body}");
    }
    let (status, _) = server.send("PUT", "/api/v1/hosts/nobody/tags", json!({"tags": []})).await;
    assert_eq!(status, 404);

    // Tags the agent reports (its agent.toml) count the same way.
    let settings = custos_agent::runner::Settings { tags: vec!["laptop".into()], ..Default::default() };
    let mut b = TestAgent::enroll_with(&server, "b", system(), settings).await;
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    b.agent.deliver().await.unwrap();
    let (_, controls) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    assert!(control(&controls, req)["passing"].as_array().unwrap().contains(&json!(b.id())), "{controls:#}");
    let (_, host) = server.api(&format!("/api/v1/hosts/{}", b.id())).await;
    assert_eq!((host["tags"].clone(), host["reported_tags"].clone()), (json!([]), json!(["laptop"])));

    // Effectiveness per host group: only the hosts with the tag count.
    let (_, berlin) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023&group=berlin").await;
    assert_eq!(berlin["group"], "berlin");
    assert_eq!(control(&berlin, req)["passing"], json!([a.id()]));
    assert_eq!(control(&berlin, req)["effectiveness"], 1.0);
    // The framework's figure pools every (host, control) pair in scope.
    let (mut passing, mut in_scope) = (0, 0);
    for c in berlin["controls"].as_array().unwrap() {
        let n = |k: &str| c[k].as_array().unwrap().len();
        passing += n("passing");
        in_scope += n("passing") + n("failing") + n("unknown") + n("without_evidence") + n("stale");
    }
    let pooled = berlin["summary"]["effectiveness"].as_f64().unwrap();
    assert!((pooled - passing as f64 / in_scope as f64).abs() < 1e-9, "{pooled} vs {passing}/{in_scope}");
    let (_, nobody) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023&group=no-such-group").await;
    assert_eq!(nobody["summary"]["controls_assessed"], 0);
    assert_eq!(nobody["summary"]["effectiveness"], json!(null));
}

/// `[risk] scopes`: a deviation on a server and the same one on an untagged
/// host are two register entries, each naming its own host and the hosts of
/// its scope, as the API lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_entries_are_kept_per_requirement_and_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = custos_server::config::Config::default();
    config.risk.grace_minutes = 0;
    config.risk.close_after_clean = 1;
    config.risk.scopes = vec!["server".into()];
    let server = TestServer::start_in(&tmp.path().join("server"), config).await;
    let settings = custos_agent::runner::Settings { tags: vec!["server".into()], ..Default::default() };
    let mut s = TestAgent::enroll_with(&server, "s", system(), settings).await;
    let mut w = TestAgent::enroll(&server, "w", system()).await;
    let mut v = TestAgent::enroll(&server, "v", system()).await;
    for (agent, firewall) in
        [(&mut s, CheckStatus::Fail), (&mut w, CheckStatus::Fail), (&mut v, CheckStatus::Pass)]
    {
        agent.agent.sign_into_spool(core_results(CheckStatus::Pass, &[("firewall", firewall)])).unwrap();
        agent.agent.deliver().await.unwrap();
    }
    let path = "/api/v1/risks?requirement=iso27001:2022/A.8.20";
    let risks = server.wait_for(path, |r| r.as_array().is_some_and(|r| r.len() == 2)).await;
    let entry = |scope: &str| {
        risks
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["scope"] == scope)
            .unwrap_or_else(|| panic!("{risks:#}"))
            .clone()
    };
    let (server_entry, fleet_entry) = (entry("server"), entry("fleet"));
    assert_eq!(server_entry["affected_hosts"], json!([s.id()]));
    assert_eq!(server_entry["in_scope_hosts"], 1);
    assert_eq!(fleet_entry["affected_hosts"], json!([w.id()]));
    assert_eq!(fleet_entry["in_scope_hosts"], 2);
    assert_ne!(server_entry["id"], fleet_entry["id"]);
    assert_eq!(server_entry["status"], "open");
}
