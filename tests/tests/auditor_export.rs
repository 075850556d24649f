//! An auditor pulls an evidence bundle over the API and verifies it offline:
//! the bundle streamed by `GET /api/v1/export` verifies with
//! `custos-server verify`'s library against the pinned log key (only
//! consistent without it), names the token's holder as exporter,
//! and the export is in the audit trail; viewers, tokens limited to
//! controls and times outside an auditor's window are refused.

use std::sync::Arc;

use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;
use custos_server::app::create_api_token;
use custos_server::store::tokens::{ApiRole, NewApiToken};
use custos_tests::{TestAgent, TestServer, core_results, rfc3339};
use time::OffsetDateTime;

async fn get(server: &TestServer, token: &str, path: &str) -> (u16, Option<String>, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}{path}", server.http_addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
    (status, kind, resp.bytes().await.unwrap().to_vec())
}

fn token(server: &TestServer, role: ApiRole, name: &str, edit: impl FnOnce(&mut NewApiToken)) -> String {
    let mut t = NewApiToken::new(role, name);
    edit(&mut t);
    create_api_token(&server.dir, &t).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_pulls_a_bundle_that_verifies_offline() {
    let server = TestServer::start().await;
    let before = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let host: Arc<dyn Host> = Arc::new(SystemHost::default());
    let mut a = TestAgent::enroll(&server, "exported", host).await;
    for status in [CheckStatus::Fail, CheckStatus::Pass] {
        a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[("firewall", status)])).unwrap();
    }
    a.agent.deliver().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let query = format!("/api/v1/export?from={}&to={}", rfc3339(before), rfc3339(now));

    let auditor = token(&server, ApiRole::Auditor, "Erika Mustermann, Audit AG", |_| {});
    let (status, kind, body) = get(&server, &auditor, &query).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind.as_deref(), Some("application/gzip"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.tar.gz");
    std::fs::write(&file, &body).unwrap();
    // Against its own key the bundle is only consistent; against the log key
    // the organisation publishes (here read from the server's data dir, not
    // from the bundle or the server that sent it) it is verified.
    let unpinned = custos_verify::verify_bundle(&file, None).unwrap();
    assert_eq!(unpinned.outcome(), custos_verify::Outcome::Unpinned, "{unpinned}");
    let config =
        custos_server::config::Config::load(&custos_server::datadir::DataDir(server.dir.clone()).config())
            .unwrap();
    let published = custos_server::app::log_signer(&server.dir, &config).unwrap().verifier_key();
    let report = custos_verify::verify_bundle(&file, Some(&published)).unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.records, 2);
    assert_eq!(report.in_window(), 2);
    // Nothing is left behind on the server.
    let left = std::fs::read_dir(server.dir.join("exports")).unwrap().count();
    assert_eq!(left, 0, "the bundle file is removed once streamed");
    // The export is on record under the token's holder, as a log leaf.
    let (_, trail) = server.api("/api/v1/audit-trail").await;
    let rows = trail.as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["action"] == "export"
            && r["name"] == "Erika Mustermann, Audit AG"
            && r["leaf_index"].is_u64()),
        "{trail:#}"
    );

    // Refusals, each with its reason.
    let viewer = token(&server, ApiRole::Viewer, "viewer", |_| {});
    assert_eq!(get(&server, &viewer, &query).await.0, 403);
    let limited =
        token(&server, ApiRole::Auditor, "limited", |t| t.controls = vec!["iso27001:2022/A.8.20".into()]);
    let (status, _, body) = get(&server, &limited, &query).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("limited to controls cannot export"));
    let past = token(&server, ApiRole::Auditor, "past", |t| {
        t.window = Some((
            (before - time::Duration::days(2)).unix_timestamp(),
            (before - time::Duration::days(1)).unix_timestamp(),
        ))
    });
    let (status, _, body) = get(&server, &past, &query).await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("outside the auditor token's window"));
    let (status, _, body) = get(&server, &auditor, "/api/v1/export").await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("from is required"));
    let (status, _, body) = get(&server, &auditor, &format!("{query}&colour=blue")).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("unknown query parameter"));
    let (status, _, _) = get(&server, "cadm_wrong", &query).await;
    assert_eq!(status, 401);
}
