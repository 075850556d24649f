//! Auditor access: read-only tokens limited to a window of evidence time
//! and to a set of controls; every write route refused to auditor and viewer
//! tokens, with nothing changed; every auditor request in the audit trail
//! with who, when and what, each row a leaf of the transparency log.

use std::sync::Arc;

use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;
use custos_server::app::create_api_token;
use custos_server::store::tokens::{ApiRole, NewApiToken};
use custos_tests::{TestAgent, TestServer, core_results, fill_route, rfc3339, write_routes};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn system() -> Arc<dyn Host> {
    Arc::new(SystemHost::default())
}

async fn send(server: &TestServer, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("http://{}{path}", server.http_addr),
        )
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn auditors_read_within_their_limits_and_every_read_is_on_record() {
    let server = TestServer::start().await;
    let before = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let mut a = TestAgent::enroll(&server, "a", system()).await;
    a.agent
        .sign_into_spool(core_results(
            CheckStatus::Pass,
            &[("disk_encryption", CheckStatus::Fail), ("firewall", CheckStatus::Fail)],
        ))
        .unwrap();
    a.agent.deliver().await.unwrap();
    let risks = server
        .wait_for("/api/v1/risks", |v| {
            v.as_array().is_some_and(|r| r.iter().any(|e| e["requirement"] == "iso27001:2022/A.8.20"))
        })
        .await;
    let id_of = |req: &str| {
        risks.as_array().unwrap().iter().find(|e| e["requirement"] == req).unwrap()["id"].as_i64().unwrap()
    };

    // An auditor limited to the cryptography control.
    let mut t = NewApiToken::new(ApiRole::Auditor, "Jane Doe, Example Audit GmbH");
    t.controls = vec!["iso27001:2022/A.8.24".into()];
    let crypto = create_api_token(&server.dir, &t).unwrap();
    let (status, c) =
        send(&server, &crypto, "GET", "/api/v1/controls?framework=iso27001:2022", json!(null)).await;
    assert_eq!(status, 200, "{c}");
    let ids: Vec<&str> =
        c["controls"].as_array().unwrap().iter().map(|c| c["control_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["iso27001:2022/A.8.24"]);
    let (_, r) = send(&server, &crypto, "GET", "/api/v1/risks", json!(null)).await;
    assert!(r.as_array().unwrap().iter().all(|e| e["requirement"] == "iso27001:2022/A.8.24"), "{r}");
    assert_eq!(r.as_array().unwrap().len(), 1);
    let (status, _) = send(
        &server,
        &crypto,
        "GET",
        &format!("/api/v1/risks/{}", id_of("iso27001:2022/A.8.20")),
        json!(null),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(
        &server,
        &crypto,
        "GET",
        "/api/v1/effectiveness?control=iso27001:2022/A.8.20&from=2026-01-01T00:00:00Z",
        json!(null),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(&server, &crypto, "GET", "/api/v1/risks?format=csv", json!(null)).await;
    assert_eq!(status, 403, "CSV cannot be cut to controls: refused, not served whole");
    // The mappings, cut down to the token's controls: the rows that name A.8.24 and no others.
    let (status, m) = send(&server, &crypto, "GET", "/api/v1/mappings", json!(null)).await;
    assert_eq!(status, 200, "{m}");
    let rows = m["mappings"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["check"] == "disk_encryption"), "{m:#}");
    assert!(rows.iter().all(|r| r["requirement"] == "iso27001:2022/A.8.24"), "{m:#}");
    assert!(m["requirements"].as_array().unwrap().iter().all(|r| r["requirement"] == "iso27001:2022/A.8.24"));
    assert!(m["modules"].as_array().unwrap().is_empty(), "no BSI requirement is among the token's controls");
    let (_, all) = server.api("/api/v1/mappings").await;
    assert!(all["mappings"].as_array().unwrap().len() > rows.len(), "the admin sees every mapping");

    // Routes not meant for auditors are refused (writes: see the next test).
    for path in
        ["/api/v1/webhooks/deliveries", "/api/v1/audit-trail", "/api/v1/security-events", "/api/v1/gaps"]
    {
        assert_eq!(send(&server, &crypto, "GET", path, json!(null)).await.0, 403, "{path}");
    }

    // An auditor limited to a window that ended before this host enrolled.
    let mut t = NewApiToken::new(ApiRole::Auditor, "Max Muster, Example Audit GmbH");
    t.window = Some(((before - time::Duration::days(1)).unix_timestamp(), before.unix_timestamp()));
    let past = create_api_token(&server.dir, &t).unwrap();
    let (status, c) =
        send(&server, &past, "GET", "/api/v1/controls?framework=iso27001:2022", json!(null)).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["as_of"], true, "answered as of the window's end");
    assert!(
        c["controls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passing"].as_array().unwrap().is_empty()
                && c["failing"].as_array().unwrap().is_empty()),
        "the host did not exist then"
    );
    let (status, e) = send(
        &server,
        &past,
        "GET",
        &format!("/api/v1/hosts?as_of={}", rfc3339(OffsetDateTime::now_utc())),
        json!(null),
    )
    .await;
    assert_eq!(status, 403);
    assert!(e["error"].as_str().unwrap().contains("outside the auditor token's window"), "{e}");
    let (status, _) =
        send(&server, &past, "GET", &format!("/api/v1/records/{}/1", a.id()), json!(null)).await;
    assert_eq!(status, 403, "the record was collected after the window");
    let (status, _) =
        send(&server, &crypto, "GET", &format!("/api/v1/records/{}/1", a.id()), json!(null)).await;
    assert_eq!(status, 200);
    let (status, _) = send(&server, &past, "GET", "/api/v1/risks", json!(null)).await;
    assert_eq!(status, 403, "the register shows the present, outside any past window");
    let (status, _) = send(&server, &past, "GET", "/api/v1/mappings", json!(null)).await;
    assert_eq!(status, 403, "the mappings in force are the present's too");

    // Expired tokens are invalid.
    let mut t = NewApiToken::new(ApiRole::Auditor, "expired");
    t.expires_at = Some(OffsetDateTime::now_utc().unix_timestamp() - 1);
    let expired = create_api_token(&server.dir, &t).unwrap();
    assert_eq!(send(&server, &expired, "GET", "/api/v1/controls", json!(null)).await.0, 401);
    // Bad token requests are refused with the reason.
    let mut t = NewApiToken::new(ApiRole::Viewer, "v");
    t.controls = vec!["x".into()];
    assert!(create_api_token(&server.dir, &t).unwrap_err().to_string().contains("auditor tokens only"));
    assert!(create_api_token(&server.dir, &NewApiToken::new(ApiRole::Auditor, " ")).is_err());

    // The audit trail names who read what and what they got.
    let (status, trail) = server.api("/api/v1/audit-trail").await;
    assert_eq!(status, 200);
    let rows = trail.as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["name"] == "Jane Doe, Example Audit GmbH"
            && r["target"] == "/api/v1/controls?framework=iso27001:2022"
            && r["status"] == 200),
        "{trail:#}"
    );
    assert!(rows.iter().any(|r| r["name"] == "Max Muster, Example Audit GmbH" && r["status"] == 403));
    assert!(rows.iter().all(|r| r["name"] != "viewer"), "only auditors are traced");
    // Each row is a leaf of the transparency log, one leaf per row.
    let leaves: std::collections::BTreeSet<u64> =
        rows.iter().map(|r| r["leaf_index"].as_u64().unwrap()).collect();
    assert_eq!(leaves.len(), rows.len(), "{trail:#}");
    let store = custos_server::store::Store::open(&server.dir.join("custos.db")).unwrap();
    assert!(store.tlog_size().unwrap() > *leaves.last().unwrap(), "the leaves are in the log");
}

/// What the write routes could change: the register with each entry's
/// history, the exceptions, the hosts (tags, revocation), the policy and
/// the agent's collect-now generation.
async fn state_of(server: &TestServer, agent: &str) -> Value {
    let get = |path: &'static str| async move {
        let (status, v) = server.api(path).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    };
    let risks = get("/api/v1/risks?status=all").await;
    let mut histories = Vec::new();
    for r in risks.as_array().unwrap() {
        let (_, one) = server.api(&format!("/api/v1/risks/{}", r["id"])).await;
        histories.push(one["history"].clone());
    }
    json!({
        "risks": risks,
        "histories": histories,
        "exceptions": get("/api/v1/exceptions").await,
        "hosts": get("/api/v1/hosts").await,
        "policy": get("/api/v1/policy").await,
        "collect": server.handle().store.collect_generation(agent).unwrap(),
    })
}

/// Every write route (the server's route table, which is complete: a
/// route it does not list is never served) refuses auditor and viewer tokens
/// with 403, each with a request an admin would have had served, and
/// nothing changes; the same requests from an admin then change what was
/// compared, so the comparison could have failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_route_refuses_auditor_and_viewer_tokens_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "a", system()).await;
    let agent = a.id();
    let in_30_days = rfc3339(OffsetDateTime::now_utc() + time::Duration::days(30));
    let exception = |requirement: &str| {
        json!({"agent_id": agent, "requirement": requirement, "approver": "ciso",
               "justification": "kiosk", "expires_at": in_30_days, "actor": "it-ops"})
    };
    let (status, ex) = server.send("POST", "/api/v1/exceptions", exception("iso27001:2022/A.8.20")).await;
    assert_eq!(status, 201, "{ex}");
    let exception_id = ex["id"].to_string();
    a.agent
        .sign_into_spool(core_results(CheckStatus::Pass, &[("disk_encryption", CheckStatus::Fail)]))
        .unwrap();
    a.agent.deliver().await.unwrap();
    let risks = server
        .wait_for("/api/v1/risks", |v| {
            v.as_array().is_some_and(|r| r.iter().any(|e| e["requirement"] == "iso27001:2022/A.8.24"))
        })
        .await;
    let risk_id =
        risks.as_array().unwrap().iter().find(|e| e["requirement"] == "iso27001:2022/A.8.24").unwrap()["id"]
            .to_string();

    // Each write route with a request that is valid for it.
    let request = |method: &str, template: &str| -> (String, Value) {
        let id = if template.starts_with("/api/v1/exceptions/") { &exception_id } else { &risk_id };
        let path = fill_route(template, &[("agent_id", agent.as_str()), ("id", id.as_str())]);
        let body = match (method, template) {
            ("PUT", "/api/v1/hosts/{agent_id}/tags") => json!({"tags": ["refused"]}),
            ("POST", "/api/v1/policy/reload") => json!({}),
            ("POST", "/api/v1/risks") => {
                json!({"actor": "x", "title": "supplier", "likelihood": 2, "impact": 2})
            }
            ("PATCH", "/api/v1/risks/{id}") => json!({"actor": "x", "owner": "it-ops"}),
            ("POST", "/api/v1/risks/{id}/accept") => {
                json!({"approver": "x", "justification": "test host", "expires_at": in_30_days})
            }
            ("POST", "/api/v1/exceptions") => exception("iso27001:2022/A.8.7"),
            ("POST", "/api/v1/exceptions/{id}/withdraw") => json!({}),
            ("POST", "/api/v1/agents/{agent_id}/revoke") => json!({}),
            ("POST", "/api/v1/agents/{agent_id}/collect") => json!({}),
            _ => panic!("{method} {template} is a new write route: give it a request here"),
        };
        (path, body)
    };

    let before = state_of(&server, &agent).await;
    let auditor = create_api_token(&server.dir, &NewApiToken::new(ApiRole::Auditor, "Erika Audit")).unwrap();
    let viewer = server.read_token();
    for (who, token) in [("auditor", &auditor), ("viewer", &viewer)] {
        for (method, template) in write_routes() {
            let (path, body) = request(method, template);
            let (status, e) = send(&server, token, method, &path, body).await;
            assert_eq!(status, 403, "{who}: {method} {path}: {e}");
            assert_eq!(e["error"], "this token may only read", "{who}: {method} {path}");
        }
    }
    assert_eq!(state_of(&server, &agent).await, before, "a refused write changed something");
    // Each refused auditor write is in the audit trail as refused.
    let (_, trail) = server.api("/api/v1/audit-trail").await;
    for (method, template) in write_routes() {
        let (path, _) = request(method, template);
        assert!(
            trail.as_array().unwrap().iter().any(|r| r["name"] == "Erika Audit"
                && r["action"] == *method
                && r["target"] == path
                && r["status"] == 403),
            "{method} {path} not in {trail:#}"
        );
    }

    // The same requests from an admin are served (the revocation last), and
    // each part compared above shows them.
    let mut admin_order = write_routes();
    admin_order.sort_by_key(|(_, t)| t.ends_with("/revoke"));
    for (method, template) in admin_order {
        let (path, body) = request(method, template);
        let (status, e) = server.send(method, &path, body).await;
        assert!((200..300).contains(&status), "admin: {method} {path}: {status} {e}");
    }
    let after = state_of(&server, &agent).await;
    for part in ["risks", "histories", "exceptions", "hosts", "collect"] {
        assert_ne!(after[part], before[part], "{part} does not show the admin's writes");
    }
}
