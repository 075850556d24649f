//! Auditor access: read-only tokens limited to a window of evidence time
//! and to a set of controls; every write refused; every auditor read in the
//! audit trail with who, when and what, each row a leaf of the transparency log.

use std::sync::Arc;

use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;
use custos_server::app::create_api_token;
use custos_server::store::tokens::{ApiRole, NewApiToken};
use custos_tests::{TestAgent, TestServer, core_results, rfc3339};
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

    // No writes, whatever the route; routes not meant for auditors are refused.
    let viewer = server.read_token();
    for token in [&crypto, &viewer] {
        for (method, path, body) in [
            (
                "POST",
                format!("/api/v1/risks/{}/accept", id_of("iso27001:2022/A.8.24")),
                json!({"approver": "x", "justification": "y", "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            (
                "PATCH",
                format!("/api/v1/risks/{}", id_of("iso27001:2022/A.8.24")),
                json!({"actor": "x", "owner": "y"}),
            ),
            ("PUT", format!("/api/v1/hosts/{}/tags", a.id()), json!({"tags": ["x"]})),
            ("POST", "/api/v1/policy/reload".to_string(), json!({})),
        ] {
            assert_eq!(send(&server, token, method, &path, body).await.0, 403, "{method} {path}");
        }
    }
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
