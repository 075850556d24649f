//! The state on a past date, as an auditor asks for it, over the real API:
//! hosts `as_of` a time are rebuilt from the signed records received by then;
//! controls and effectiveness `as_of` a time are what the change log had
//! decided by then (so the answer about a past time never changes later).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use custos_agent::host::{FixtureHost, Host};
use custos_proto::evidence::CheckStatus;
use custos_tests::{TestAgent, TestServer, core_results};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix).unwrap().format(&Rfc3339).unwrap()
}

fn firewall_status(host: &Value) -> Option<String> {
    host["checks"].as_array()?.iter().find(|c| c["check_id"] == "firewall").map(|c| c["status"].to_string())
}

fn control<'a>(controls: &'a Value, id: &str) -> &'a Value {
    controls["controls"].as_array().unwrap().iter().find(|c| c["control_id"] == id).unwrap()
}

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// Waits until the change log has `agent` at `state` on `requirement` and
/// returns when that change was logged.
async fn logged(server: &TestServer, agent: &str, requirement: &str, state: &str) -> i64 {
    for _ in 0..100 {
        let (_, changes) =
            server.api(&format!("/api/v1/changes?agent={agent}&requirement={requirement}")).await;
        if let Some(change) = changes.as_array().and_then(|c| c.iter().rev().find(|c| c["to"] == state)) {
            return change["at"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{agent} never logged {state} on {requirement}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_controls_as_of_a_past_time_follow_the_records() {
    let server = TestServer::start().await;
    let host: Arc<dyn Host> = Arc::new(FixtureHost::new());
    let mut a = TestAgent::enroll(&server, "audited", host).await;
    let id = a.id();
    let before_any = OffsetDateTime::now_utc().unix_timestamp() - 1;

    // The firewall fails first, then is fixed a couple of seconds later.
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[("firewall", CheckStatus::Fail)])).unwrap();
    a.agent.deliver().await.unwrap();
    let (_, h) = server.api(&format!("/api/v1/hosts/{id}")).await;
    let failing_at = h["checks"][0]["collected_at"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();

    // Now: passing.
    let (status, now) = server.api(&format!("/api/v1/hosts/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(firewall_status(&now).as_deref(), Some("\"pass\""), "{now:#}");

    // As of the failing record: failing, and that record's time is the evidence time.
    let (status, then) = server.api(&format!("/api/v1/hosts/{id}?as_of={}", rfc3339(failing_at))).await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(firewall_status(&then).as_deref(), Some("\"fail\""), "{then:#}");
    assert_eq!(then["last_collected_at"], failing_at);

    let fw_only = "bsi-grundschutz:2023/SYS.1.1.A19";
    let decided_failing = logged(&server, &id, fw_only, "not_satisfied").await;
    let decided_passing = logged(&server, &id, fw_only, "satisfied").await;
    assert!(decided_failing >= failing_at && decided_passing > decided_failing);
    let q = |at: i64| format!("/api/v1/controls?framework=bsi-grundschutz:2023&as_of={}", rfc3339(at));
    let (_, c) = server.api(&q(decided_failing)).await;
    assert_eq!((c["as_of"].as_bool(), c["evaluated_at"].as_i64()), (Some(true), Some(decided_failing)));
    assert_eq!(ids(&control(&c, fw_only)["failing"]), BTreeSet::from([id.clone()]));
    assert_eq!(control(&c, fw_only)["state"], "deviating");
    let (_, c) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    assert_eq!(control(&c, fw_only)["state"], "effective");
    let (_, c) = server.api(&q(decided_passing)).await;
    assert_eq!(control(&c, fw_only)["state"], "effective", "as of the fix the log says passing");

    // Before any evidence the host had none: never counted as compliant.
    let (_, c) = server.api(&q(before_any)).await;
    let ctl = control(&c, fw_only);
    assert!(ids(&ctl["passing"]).is_empty() && ids(&ctl["failing"]).is_empty(), "{ctl:#}");
    let (_, hosts) = server.api(&format!("/api/v1/hosts?as_of={}", rfc3339(before_any))).await;
    for h in hosts.as_array().unwrap() {
        assert_ne!(h["evidence"], "current", "{h:#}");
    }

    // Effectiveness over time: nothing in scope before any evidence, 0 while
    // failing, 1 once fixed.
    let url = format!(
        "/api/v1/effectiveness?control={fw_only}&from={}&to={}&points=2",
        rfc3339(decided_failing),
        rfc3339(decided_passing)
    );
    let (status, series) = server.api(&url).await;
    assert_eq!(status, 200, "{series}");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[0]["at"].as_i64(), points[0]["effectiveness"].as_f64()),
        (Some(decided_failing), Some(0.0))
    );
    assert_eq!(points[0]["state"], "deviating");
    assert_eq!(points[1]["effectiveness"].as_f64(), Some(1.0), "{series:#}");
    let url = format!(
        "/api/v1/effectiveness?control={fw_only}&from={}&to={}&points=1",
        rfc3339(before_any),
        rfc3339(before_any)
    );
    let (_, series) = server.api(&url).await;
    assert_eq!(series["points"][0]["in_scope"], 0, "no host before any evidence: {series:#}");
    assert_eq!(series["points"][0]["effectiveness"], Value::Null);
    let (status, body) =
        server.api("/api/v1/effectiveness?control=iso27001:2022/A.99&from=2026-01-01T00:00:00Z").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.api(&format!("/api/v1/effectiveness?control={fw_only}")).await;
    assert_eq!(status, 400, "from is required");

    // Malformed and future times are refused with the reason.
    let (status, body) = server.api("/api/v1/controls?as_of=yesterday").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("RFC 3339"));
    let future = rfc3339(OffsetDateTime::now_utc().unix_timestamp() + 3600);
    let (status, body) = server.api(&format!("/api/v1/hosts?as_of={future}")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("as_of lies in the future")));
    let (status, _) = server.api("/api/v1/hosts/0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, 404);
}

/// An answer about the past names the policy and mapping versions that
/// decided it then, not today's: the policy is changed (a reloaded file),
/// time passes, and the answer as of before the change names the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_answers_name_the_versions_in_force_then() {
    let server = TestServer::start().await;
    let host: Arc<dyn Host> = Arc::new(FixtureHost::new());
    let mut a = TestAgent::enroll(&server, "audited", host).await;
    let id = a.id();
    a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    let (_, policy) = server.api("/api/v1/policy").await;
    let builtin = policy["version"].as_str().unwrap().to_string();
    let mappings = policy["mapping_version"].as_str().unwrap().to_string();
    let fw_only = "bsi-grundschutz:2023/SYS.1.1.A19";
    let passing_at = logged(&server, &id, fw_only, "satisfied").await;

    // A second later the organisation's policy fails every firewall.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let path = custos_server::datadir::DataDir(server.dir.clone()).policy();
    let text = "version = \"acme-no-firewall\"\n[[rule]]\ncheck = \"firewall\"\nexpr = 'false'\nmessage = \"not ours\"\n";
    std::fs::write(&path, text).unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", serde_json::json!({})).await;
    assert_eq!((status, r["version"].as_str()), (200, Some("acme-no-firewall")), "{r}");
    let failing_at = logged(&server, &id, fw_only, "not_satisfied").await;
    assert!(failing_at > passing_at);

    let q = |at: i64| format!("/api/v1/controls?framework=bsi-grundschutz:2023&as_of={}", rfc3339(at));
    let names = |c: &Value| -> Vec<String> {
        c["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["policy_version"].as_str().unwrap().into())
            .collect()
    };
    // Today: today's policy.
    let (_, now) = server.api("/api/v1/controls?framework=bsi-grundschutz:2023").await;
    assert_eq!(now["policy_version"], "acme-no-firewall");
    assert_eq!(now["provenance"], Value::Null);
    // As of before the change: the built-in policy and mappings decided it.
    let (status, then) = server.api(&q(failing_at - 1)).await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(control(&then, fw_only)["state"], "effective");
    assert_eq!(
        (then["policy_version"].as_str(), then["mapping_version"].as_str()),
        (Some(builtin.as_str()), Some(mappings.as_str()))
    );
    assert_eq!(names(&then), [builtin.as_str()]);
    let today: Vec<&str> =
        then["provenance"]["current"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(today.iter().any(|p| p.contains("today's tags")), "{then:#}");
    // As of the change: the firewall's standings by the new version, the rest by the old.
    let (_, after) = server.api(&q(failing_at)).await;
    assert_eq!(control(&after, fw_only)["state"], "deviating");
    assert_eq!(names(&after), [builtin.as_str(), "acme-no-firewall"]);
    assert_eq!(after["policy_version"], "acme-no-firewall");

    // One host as of before the change: its standings as decided then, under
    // the versions then, next to its checks re-decided under today's policy.
    let standing = |h: &Value| {
        h["requirements"].as_array().unwrap().iter().find(|r| r["requirement"] == fw_only).unwrap().clone()
    };
    let (status, host_then) =
        server.api(&format!("/api/v1/hosts/{id}?as_of={}", rfc3339(failing_at - 1))).await;
    assert_eq!(status, 200, "{host_then}");
    let s = standing(&host_then);
    assert_eq!(
        (s["state"].as_str(), s["policy_version"].as_str()),
        (Some("satisfied"), Some(builtin.as_str()))
    );
    assert_eq!(s["since"].as_i64(), Some(passing_at));
    assert!(s["record_digest"].as_str().unwrap().starts_with("sha256:"), "{s:#}");
    assert_eq!(s["checks"]["firewall"], "pass", "{s:#}");
    assert_eq!(
        firewall_status(&host_then).as_deref(),
        Some("\"fail\""),
        "today's policy re-decides the checks"
    );
    let (_, host_now) = server.api(&format!("/api/v1/hosts/{id}")).await;
    let s = standing(&host_now);
    assert_eq!(
        (s["state"].as_str(), s["policy_version"].as_str()),
        (Some("not_satisfied"), Some("acme-no-firewall"))
    );
    assert_eq!(s["since"].as_i64(), Some(failing_at));

    // Effectiveness over time names each point's versions.
    let url = format!(
        "/api/v1/effectiveness?control={fw_only}&from={}&to={}&points=2",
        rfc3339(failing_at - 1),
        rfc3339(failing_at)
    );
    let (status, series) = server.api(&url).await;
    assert_eq!(status, 200, "{series}");
    let points = series["points"].as_array().unwrap();
    assert_eq!(names(&points[0]), [builtin.as_str()]);
    assert_eq!(names(&points[1]), ["acme-no-firewall"]);
}
