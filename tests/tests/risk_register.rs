//! The risk register through the API, as the CISO uses it: deviations
//! become entries, a person takes ownership, accepts with an expiry,
//! records a risk no agent can see, and exports the register as CSV that a
//! spreadsheet reads back intact. Bad input gets 400 with the reason; a
//! read token cannot write.

use std::sync::Arc;

use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;
use custos_tests::{TestAgent, TestServer, core_results};
use serde_json::{Value, json};

fn system() -> Arc<dyn Host> {
    Arc::new(SystemHost::default())
}

fn find<'a>(v: &'a Value, requirement: &str) -> Option<&'a Value> {
    v.as_array()?.iter().find(|r| r["requirement"] == requirement)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn the_ciso_works_the_register_through_the_api() {
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "a", system()).await;
    a.agent
        .sign_into_spool(core_results(CheckStatus::Pass, &[("disk_encryption", CheckStatus::Fail)]))
        .unwrap();
    a.agent.deliver().await.unwrap();
    let risks = server.wait_for("/api/v1/risks", |v| find(v, "iso27001:2022/A.8.24").is_some()).await;
    let r = find(&risks, "iso27001:2022/A.8.24").unwrap().clone();
    let id = r["id"].as_i64().unwrap();
    assert_eq!(r["origin"], "evidence");
    assert_eq!(r["goals"], json!(["confidentiality"]));
    // The evidence behind it: the signed record, fetched as a DSSE envelope.
    let link = r["evidence"][a.id()].as_str().unwrap().to_string();
    let (status, env) = server.api(&link).await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(env["signatures"].as_array().unwrap().len(), 1);
    assert!(r["title"].as_str().unwrap().starts_with("A.8.24 Use of cryptography: "), "{r:#}");
    // One host in scope and affected: a wide deviation, one step above the inherent rating.
    assert!(r["current"]["likelihood"].as_u64() > r["inherent"]["likelihood"].as_u64(), "{r:#}");

    // Ownership and treatment, with who did it in the history.
    let (status, e) = server
        .send("PATCH", &format!("/api/v1/risks/{id}"), json!({"actor": "ciso", "owner": "it-ops", "treatment": "mitigate", "status": "in_treatment", "residual": {"likelihood": "rare", "impact": 4}}))
        .await;
    assert_eq!(status, 200, "{e:#}");
    assert_eq!((e["owner"].as_str(), e["status"].as_str()), (Some("it-ops"), Some("in_treatment")));
    assert_eq!(e["residual"]["likelihood"], 1);
    // Refusals, each with its reason.
    for (body, want) in [
        (json!({"actor": "ciso", "status": "closed"}), "closes when its hosts pass again"),
        (json!({"actor": "ciso", "treatment": "accept"}), "use accept"),
        (json!({"actor": "ciso", "residual": {"likelihood": 9, "impact": 1}}), "outside"),
        (json!({"actor": "ciso", "owner": "x", "colour": "red"}), "unknown field"),
        (json!({"owner": "x"}), "actor"),
        (json!({"actor": "ciso"}), "nothing to change"),
    ] {
        let (status, e) = server.send("PATCH", &format!("/api/v1/risks/{id}"), body.clone()).await;
        assert!(status == 400 || status == 409, "{body}: {status}");
        assert!(e["error"].as_str().unwrap().contains(want), "{body}: {e}");
    }
    let (status, _) =
        server.send("PATCH", "/api/v1/risks/999999", json!({"actor": "ciso", "owner": "x"})).await;
    assert_eq!(status, 404);

    // Acceptance needs an approver, a justification and an expiry.
    let accept = format!("/api/v1/risks/{id}/accept");
    let (status, e) = server
        .send("POST", &accept, json!({"approver": "ciso", "justification": "x", "expires_at": "tomorrow"}))
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = server
        .send(
            "POST",
            &accept,
            json!({"approver": "ciso", "justification": "x", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, e) = server
        .send(
            "POST",
            &accept,
            json!({"approver": "ciso", "justification": "test host, no data", "expires_at": expires}),
        )
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["status"], "accepted");
    assert_eq!(e["acceptance"]["approver"], "ciso");

    // A manual entry, rated with the matrix's labels.
    let (status, m) = server
        .send("POST", "/api/v1/risks", json!({"actor": "ciso", "title": "=SUM(A1) supplier, \"no\" contract", "likelihood": "possible", "impact": "major", "goals": ["confidentiality"], "owner": "Doe, Jane"}))
        .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!((m["origin"].as_str(), m["current"]["level"].as_str()), (Some("manual"), Some("high")));
    let (status, e) = server
        .send(
            "POST",
            "/api/v1/risks",
            json!({"actor": "ciso", "title": "t", "likelihood": "often", "impact": 1}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("almost certain"), "{e}");

    // Filters.
    let (_, manual) = server.api("/api/v1/risks?origin=manual").await;
    assert_eq!(manual.as_array().unwrap().len(), 1);
    let (_, accepted) = server.api("/api/v1/risks?status=accepted").await;
    assert!(accepted.as_array().unwrap().iter().all(|r| r["status"] == "accepted"));
    assert!(find(&accepted, "iso27001:2022/A.8.24").is_some());
    let (status, e) = server.api("/api/v1/risks?status=opened").await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("in_treatment"), "{e}");
    filters_return_exactly_the_matching_entries(&server, id, m["id"].as_i64().unwrap()).await;
    let (status, m) = server.api("/api/v1/risks/matrix").await;
    assert_eq!((status, m["matrix"].as_str()), (200, Some("iso27005-5x5")));
    assert_eq!(m["levels"][4][4], "very_high");

    // History names who did what.
    let (_, one) = server.api(&format!("/api/v1/risks/{id}")).await;
    let history = one["history"].as_array().unwrap();
    let actors: Vec<(&str, &str)> =
        history.iter().map(|h| (h["change"].as_str().unwrap(), h["actor"].as_str().unwrap())).collect();
    assert_eq!(actors[0], ("opened", "custos"));
    assert!(actors.contains(&("updated", "ciso")) && actors.contains(&("accepted", "ciso")), "{actors:?}");

    // CSV: read back by a CSV reader, every field intact, formulas defused.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/risks?status=all&format=csv", server.http_addr))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let mut rows = text.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(header[..5], ["id", "origin", "requirement", "scope", "title"]);
    assert!(text.contains("\"'=SUM(A1) supplier, \"\"no\"\" contract\""), "{text}");
    assert!(text.contains("\"Doe, Jane\""), "{text}");

    // A read-only token cannot write.
    let read_token = server.read_token();
    let resp = reqwest::Client::new()
        .patch(format!("http://{}/api/v1/risks/{id}", server.http_addr))
        .bearer_auth(&read_token)
        .json(&json!({"actor": "x", "owner": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// The ids `path` lists.
async fn ids(server: &TestServer, path: &str) -> Vec<i64> {
    let (status, v) = server.api(path).await;
    assert_eq!(status, 200, "{path}: {v}");
    v.as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// `level`, `owner` and `requirement` each list exactly the entries of the
/// whole register that match, and a bad value is refused with the reason.
/// `evidence` is an evidence entry owned by `it-ops`, `manual` a manual one
/// owned by `Doe, Jane`.
async fn filters_return_exactly_the_matching_entries(server: &TestServer, evidence: i64, manual: i64) {
    // A low manual entry besides the high one: two levels to tell apart.
    let (status, low) = server
        .send("POST", "/api/v1/risks", json!({"actor": "ciso", "title": "t", "likelihood": 1, "impact": 1}))
        .await;
    assert_eq!((status, low["current"]["level"].as_str()), (201, Some("low")), "{low}");
    let (_, all) = server.api("/api/v1/risks?status=all").await;
    let all = all.as_array().unwrap().clone();
    let matching = |pred: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        all.iter().filter(|e| pred(e)).map(|e| e["id"].as_i64().unwrap()).collect()
    };

    let mut seen_levels = 0;
    for level in ["low", "medium", "high", "very_high"] {
        let want = matching(&|e| e["current"]["level"] == level);
        seen_levels += usize::from(!want.is_empty());
        assert_eq!(ids(server, &format!("/api/v1/risks?status=all&level={level}")).await, want, "{level}");
    }
    assert!(seen_levels >= 2, "the register spans fewer than two levels: {all:#?}");

    assert_eq!(ids(server, "/api/v1/risks?status=all&owner=it-ops").await, [evidence]);
    assert_eq!(ids(server, "/api/v1/risks?status=all&owner=Doe%2C%20Jane").await, [manual]);
    assert_eq!(ids(server, "/api/v1/risks?status=all&owner=nobody").await, Vec::<i64>::new());

    for requirement in ["iso27001:2022/A.8.24", "iso27001:2022/A.8.2", "iso27001:2022/"] {
        let want = matching(&|e| e["requirement"].as_str().is_some_and(|r| r.starts_with(requirement)));
        assert!(want.contains(&evidence), "{requirement}");
        assert!(want.len() < all.len(), "{requirement} matches manual entries too");
        let got = ids(server, &format!("/api/v1/risks?status=all&requirement={requirement}")).await;
        assert_eq!(got, want, "{requirement}");
    }
    assert_eq!(ids(server, "/api/v1/risks?status=all&requirement=iso27001:2022/A.8.24").await, [evidence]);
    // Filters combine.
    let path = "/api/v1/risks?status=all&owner=it-ops&requirement=iso27001:2022/A.8.24&level=low";
    let want = matching(&|e| e["id"] == evidence && e["current"]["level"] == "low");
    assert_eq!(ids(server, path).await, want);

    for (query, want) in [
        ("level=severe", "level unknown value \"severe\""),
        ("level=", "level is empty"),
        ("owner=", "owner is empty"),
        ("owner=%20", "owner is empty"),
        ("requirement=", "requirement is empty"),
        ("requirement=iso27001:2022/Z.9", "neither a requirement of the catalog nor the start of one"),
        ("origin=robot", "origin"),
    ] {
        let (status, e) = server.api(&format!("/api/v1/risks?{query}")).await;
        assert_eq!(status, 400, "{query}: {e}");
        let message = e["error"].as_str().unwrap();
        assert!(message.contains(want) && message.contains("allowed:"), "{query}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_takes_a_host_out_of_a_requirement_until_withdrawn() {
    let server = TestServer::start().await;
    let mut a = TestAgent::enroll(&server, "kiosk", system()).await;
    let mut b = TestAgent::enroll(&server, "laptop", system()).await;
    let failing = core_results(CheckStatus::Pass, &[("disk_encryption", CheckStatus::Fail)]);
    a.agent.sign_into_spool(failing.clone()).unwrap();
    b.agent.sign_into_spool(core_results(CheckStatus::Pass, &[])).unwrap();
    a.agent.deliver().await.unwrap();
    b.agent.deliver().await.unwrap();
    let risks = server.wait_for("/api/v1/risks", |v| find(v, "iso27001:2022/A.8.24").is_some()).await;
    let entry_id = find(&risks, "iso27001:2022/A.8.24").unwrap()["id"].as_i64().unwrap();

    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(90))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = |agent: &str, requirement: &str, expires: &str| json!({"agent_id": agent, "requirement": requirement, "approver": "ciso", "justification": "kiosk holds no data", "expires_at": expires, "actor": "it-ops"});
    // Refusals first.
    let (status, _) =
        server.send("POST", "/api/v1/exceptions", body("nobody", "iso27001:2022/A.8.24", &expires)).await;
    assert_eq!(status, 404);
    let (status, e) =
        server.send("POST", "/api/v1/exceptions", body(&a.id(), "iso27001:2022/A.99", &expires)).await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("not in the catalog"), "{e}");
    let (status, e) = server
        .send("POST", "/api/v1/exceptions", body(&a.id(), "iso27001:2022/A.8.24", "2020-01-01T00:00:00Z"))
        .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("future"), "{e}");

    let (status, ex) =
        server.send("POST", "/api/v1/exceptions", body(&a.id(), "iso27001:2022/A.8.24", &expires)).await;
    assert_eq!(status, 201, "{ex}");
    let ex_id = ex["id"].as_i64().unwrap();
    // The host is excepted, not passing; effectiveness counts the other host only.
    let (_, controls) = server.api("/api/v1/controls?framework=iso27001:2022").await;
    let c = controls["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["control_id"] == "iso27001:2022/A.8.24")
        .unwrap();
    assert_eq!(c["excepted"], json!([a.id()]));
    assert!(c["passing"].as_array().unwrap().iter().all(|h| h != &json!(a.id())));
    assert_eq!(c["state"], "effective", "{c:#}");
    // Its risk closes: the only affected host is excepted.
    server.wait_for("/api/v1/risks", |v| find(v, "iso27001:2022/A.8.24").is_none()).await;
    let (_, closed) = server.api(&format!("/api/v1/risks/{entry_id}")).await;
    assert_eq!(closed["entry"]["status"], "closed", "{closed:#}");

    // Withdrawn: the host fails the requirement again and the same entry reopens.
    let (status, _) = server.send("POST", &format!("/api/v1/exceptions/{ex_id}/withdraw"), json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = server.send("POST", &format!("/api/v1/exceptions/{ex_id}/withdraw"), json!({})).await;
    assert_eq!(status, 409);
    let risks = server.wait_for("/api/v1/risks", |v| find(v, "iso27001:2022/A.8.24").is_some()).await;
    let reopened = find(&risks, "iso27001:2022/A.8.24").unwrap();
    assert_eq!(reopened["id"].as_i64(), Some(entry_id), "the same entry reopens: {reopened:#}");
    assert_eq!(reopened["status"], "open");
    // One entry for the requirement in the whole register, its history telling the story.
    assert_eq!(ids(&server, "/api/v1/risks?status=all&requirement=iso27001:2022/A.8.24").await, [entry_id]);
    let (_, one) = server.api(&format!("/api/v1/risks/{entry_id}")).await;
    let changes: Vec<&str> =
        one["history"].as_array().unwrap().iter().map(|h| h["change"].as_str().unwrap()).collect();
    let at =
        |c: &str| changes.iter().position(|x| *x == c).unwrap_or_else(|| panic!("no {c} in {changes:?}"));
    assert!(at("opened") < at("closed") && at("closed") < at("reopened"), "{changes:?}");
    let (_, list) = server.api("/api/v1/exceptions").await;
    assert_eq!(list[0]["state"], "withdrawn");
    assert_eq!(list[0]["created_by"], "it-ops");
}
