//! The whole Custos job on this host in one command (`cargo demo`): a server
//! with its own CA and embedded SQLite on loopback, a local agent enrolled
//! with a one-time token, evidence collected from this machine, signed,
//! delivered over mutual TLS, verified, stored and mapped onto controls;
//! then the results are printed and the API and dashboard stay up until Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use custos_agent::host::{Host, SystemHost};
use custos_agent::runner::{Agent, Settings};
use custos_agent::state::StateDir;
use custos_server::app;
use custos_server::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    custos_tests::install_crypto();
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("server");
    let mut config = Config::default();
    // One collection, shown at once: no grace period before risks open.
    config.risk.grace_minutes = 0;
    // Prefer the standard loopback ports; fall back to free ones if taken.
    for (addr, port) in [(&mut config.grpc_listen, 7443), (&mut config.http_listen, 8080)] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            addr.set_port(0);
        }
    }
    let init = app::init(&data_dir, &[], Some(config.clone()))?;
    // The log's verifier key, which an auditor pins when verifying a bundle.
    let log_key = app::log_signer(&data_dir, &config)?.verifier_key();
    let server = app::start(&data_dir, config).await?;
    let grpc = server.grpc_addr.to_string();
    let http = server.http_addr;

    println!("Custos demo: server data in {}", data_dir.display());
    println!("  gRPC for agents (mutual TLS): {grpc}");
    println!("  HTTP API and dashboard:       http://{http}/");
    println!();

    let token = app::create_enrollment_token(&data_dir, 1, Duration::from_secs(600))?;
    let ca = std::fs::read_to_string(&init.ca_cert_path)?;
    let state = StateDir(tmp.path().join("agent"));
    let host: Arc<dyn Host> = Arc::new(SystemHost::default());
    let name = custos_agent::host_info::hostname(host.as_ref()).unwrap_or_else(|| "this-host".into());
    let id = custos_agent::enroll::enroll(&state, &grpc, &token, &ca, &name)
        .await
        .context("enrolling the local agent")?;
    println!("Enrolled this host ({name}) as agent {} with a one-time token.", id.agent_id);

    let mut agent = Agent::open(state, &Settings::default(), host)?;
    println!("Collecting evidence (effective state, this may take a few seconds)...");
    let pass = agent.run_once().await?;
    println!();
    println!("{:<18} {:<14} {:<20} reason", "check", "status", "backend");
    for r in &pass.results {
        println!("{:<18} {:<14} {:<20} {}", r.id, r.status, r.backend, r.reason.as_deref().unwrap_or("-"));
    }
    match &pass.delivery {
        Ok(d) => println!(
            "\nSigned record delivered over mTLS: {} accepted; verified and stored by the server.",
            d.accepted
        ),
        Err(e) => println!("\nDelivery failed: {e}"),
    }

    // Let the risk keeper reconcile, then show what the evidence means.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let api = Api { client: reqwest::Client::new(), http, token: init.admin_token.clone() };
    print_controls(&api).await?;
    print_risks(&api).await?;
    print_next_steps(&api, &log_key.to_string())?;
    println!("The agent keeps collecting on the server's schedule. Ctrl-C stops everything.");

    agent
        .run_forever(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    server.shutdown().await;
    Ok(())
}

/// The demo server's API, asked with the admin token.
struct Api {
    client: reqwest::Client,
    http: std::net::SocketAddr,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("http://{}{path}", self.http);
        Ok(self.client.get(url).bearer_auth(&self.token).send().await?.json().await?)
    }
}

/// Each framework's controls with the state the evidence gives them.
async fn print_controls(api: &Api) -> anyhow::Result<()> {
    for (fw, label) in
        [("iso27001:2022", "ISO/IEC 27001:2022 Annex A"), ("bsi-grundschutz:2023", "BSI IT-Grundschutz 2023")]
    {
        let controls = api.get(&format!("/api/v1/controls?framework={fw}")).await?;
        let list = controls["controls"].as_array().cloned().unwrap_or_default();
        let count = |state: &str| list.iter().filter(|c| c["state"] == state).count();
        println!(
            "\n{label}: {} controls; {} effective, {} deviating, {} unknown, {} without technical evidence",
            list.len(),
            count("effective"),
            count("deviating"),
            count("unknown"),
            count("not_assessed")
        );
        for c in list.iter().filter(|c| c["state"] != "not_assessed") {
            println!(
                "  {:<34} {:<10} {}",
                c["control_id"].as_str().unwrap_or(""),
                c["state"].as_str().unwrap_or(""),
                c["title"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// The risk register, worst first: what a CISO reads first.
async fn print_risks(api: &Api) -> anyhow::Result<()> {
    let mut risks = api.get("/api/v1/risks").await?.as_array().cloned().unwrap_or_default();
    let rank = |r: &serde_json::Value| match r["current"]["level"].as_str() {
        Some("very_high") => 0,
        Some("high") => 1,
        Some("medium") => 2,
        _ => 3,
    };
    risks.sort_by_key(rank);
    println!(
        "\nRisk register: {} open entries (one per deviating ISO/IEC 27001:2022 requirement, across the fleet)",
        risks.len()
    );
    for r in &risks {
        let list = |key: &str| {
            r[key]
                .as_array()
                .map(|t| t.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        println!(
            "  [{:<9}] {}  (due {}; checks: {})",
            r["current"]["level"].as_str().unwrap_or("?"),
            r["title"].as_str().unwrap_or(""),
            r["due_at"]
                .as_i64()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .map(|t| t.date().to_string())
                .unwrap_or_default(),
            list("checks"),
        );
        // The same deviation elsewhere, counted per framework.
        let mut per_fw: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for r in r["related"].as_array().into_iter().flatten().filter_map(|x| x.as_str()) {
            *per_fw.entry(r.split('/').next().unwrap_or("").to_string()).or_default() += 1;
        }
        let also: Vec<String> = per_fw.iter().map(|(fw, n)| format!("{n} {fw}")).collect();
        println!("      threats: {}; same deviation in: {}", list("threats"), also.join(", "));
    }
    Ok(())
}

/// Where to go from here: the token, the dashboard, the API, and how an
/// auditor pulls and verifies evidence.
fn print_next_steps(api: &Api, log_key: &str) -> anyhow::Result<()> {
    let (http, token) = (api.http, &api.token);
    println!("\nAdmin API token (this demo only): {token}");
    println!("Dashboard: http://{http}/#token={token}");
    println!("API:       curl -H 'Authorization: Bearer {token}' http://{http}/api/v1/controls");
    let today = time::OffsetDateTime::now_utc()
        .replace_time(time::Time::MIDNIGHT)
        .format(&time::format_description::well_known::Rfc3339)?;
    println!(
        "Evidence for an auditor (signed records, log proofs, CSV, OSCAL):\n  curl -H 'Authorization: Bearer {token}' -o evidence.tar.gz 'http://{http}/api/v1/export?from={today}'\n  cargo run --release -p custos-verify -- evidence.tar.gz --log-key '{log_key}'\n  (offline, no server needed; the log key is this server's, GET /api/v1/log/key, which an auditor takes from the organisation, never from the bundle)"
    );
    Ok(())
}
