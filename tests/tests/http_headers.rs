//! The shape of every HTTP answer. Errors are JSON, also those the
//! framework writes (a path value that does not parse). The security
//! headers, held against a real browser: every
//! answer (the dashboard, JSON, errors) carries Content-Security-Policy,
//! `X-Frame-Options`, `X-Content-Type-Options` and `Referrer-Policy`, and
//! Chromium, under exactly that policy, still runs the dashboard's script
//! and lets it call the API (and blocks nothing). The bearer scheme is
//! case-insensitive, as RFC 9110 has it. Chromium comes from Debian's
//! package (CI installs it); outside CI the browser part says why and stops
//! when it is missing.

use std::process::Command;

use custos_tests::TestServer;

/// The headers of one answer.
async fn headers(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::header::HeaderMap {
    let mut req = reqwest::Client::new().get(format!("http://{}{path}", server.http_addr));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("HTTP request").headers().clone()
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let server = TestServer::start().await;
    let admin = server.admin_token.clone();
    for (path, token) in
        [("/", None), ("/api/v1/hosts", Some(admin.as_str())), ("/api/v1/hosts", None), ("/nope", None)]
    {
        let h = headers(&server, path, token).await;
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let csp = get("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(get("x-frame-options"), "DENY", "{path}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
    }
}

/// The status of `GET /api/v1/hosts` with this `Authorization` header.
async fn status_with(server: &TestServer, authorization: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{}/api/v1/hosts", server.http_addr))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let server = TestServer::start().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_eq!(status_with(&server, &format!("{scheme} {}", server.admin_token)).await, 200, "{scheme}");
    }
    let basic = status_with(&server, &format!("Basic {}", server.admin_token)).await;
    assert_eq!(basic, 401, "another scheme is not a bearer token");
}

/// The dashboard as Chromium renders it, after its script has had time to
/// call the API; the page's DOM and the browser's console. The browser
/// runs off the runtime's thread, which serves its requests meanwhile.
async fn rendered(url: &str) -> (String, String) {
    let url = url.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
            .args(["--virtual-time-budget=5000", "--dump-dom", &url])
            .output()
            .expect("chromium runs")
    })
    .await
    .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn the_dashboard_runs_in_a_browser_under_its_policy() {
    if Command::new("chromium").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "chromium is needed in CI");
        eprintln!("skipping the browser test: chromium is not installed");
        return;
    }
    let server = TestServer::start().await;
    let base = format!("http://{}/", server.http_addr);
    let (dom, console) = rendered(&base).await;
    assert!(!console.contains("Content Security Policy"), "the browser blocked something:\n{console}");
    assert!(
        dom.contains("enter a valid API token"),
        "the script did not run or could not call the API:\n{dom}"
    );
    // With a token in the fragment the script fetches and fills the page.
    let (dom, console) = rendered(&format!("{base}#token={}", server.admin_token)).await;
    assert!(!console.contains("Content Security Policy"), "the browser blocked something:\n{console}");
    assert!(dom.contains("updated "), "the dashboard did not load its data:\n{dom}");
}

#[tokio::test]
async fn framework_errors_are_json_too() {
    let server = TestServer::start().await;
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/records/some-agent/not-a-number", server.http_addr))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(kind, "application/json");
    let body: serde_json::Value = resp.json().await.expect("a JSON body");
    let message = body["error"].as_str().unwrap_or("");
    assert!(message.contains("not-a-number"), "{body}");
}
