//! Shared harness for Custos end-to-end tests, the demo and the benchmark:
//! a real server (own CA, SQLite, mTLS gRPC, HTTP) on loopback ports in a
//! temporary data dir, and real agents enrolled against it. The API
//! helpers speak HTTPS, trusting the server's CA only, when the server
//! serves its API over TLS, plain HTTP otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use custos_agent::host::Host;
use custos_agent::runner::{Agent, Settings};
use custos_agent::state::StateDir;
use custos_proto::evidence::{CheckResult, CheckStatus, Observation};
use custos_server::app::{self, ServerHandle};
use custos_server::config::Config;
use custos_server::datadir::DataDir;
use rustls::pki_types::pem::PemObject as _;

/// A binary of this workspace, built by `cargo test --workspace` next to the
/// test executables, for tests that run it as a person does.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

pub mod raw_tcp;
pub mod units;

/// Installs the one TLS crypto provider of the process (aws-lc-rs).
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A server running in this process on loopback.
pub struct TestServer {
    pub dir: PathBuf,
    pub admin_token: String,
    pub handle: Option<ServerHandle>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Whether the API is served over TLS.
    pub http_tls: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Initialises a fresh data dir in a temp dir and starts the server on
    /// ephemeral loopback ports. The risk register reacts at once (no grace
    /// period, closed after one clean evaluation): the lifecycle's timing is
    /// tested with an injected clock in the server's own tests.
    pub async fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.risk.grace_minutes = 0;
        config.risk.close_after_clean = 1;
        let mut s = Self::start_in(&tmp.path().join("server"), config).await;
        s._tmp = Some(tmp);
        s
    }

    /// Initialises `dir` (which must not exist yet) and starts the server.
    pub async fn start_in(dir: &Path, mut config: Config) -> TestServer {
        install_crypto();
        config.grpc_listen = "127.0.0.1:0".parse().expect("addr");
        if config.http_listen.port() == 8080 {
            config.http_listen = "127.0.0.1:0".parse().expect("addr");
        }
        let init = app::init(dir, &[], Some(config.clone())).expect("init data dir");
        let handle = app::start(dir, config).await.expect("start server");
        TestServer {
            dir: dir.to_path_buf(),
            admin_token: init.admin_token,
            grpc_addr: handle.grpc_addr,
            http_addr: handle.http_addr,
            http_tls: handle.http_tls,
            handle: Some(handle),
            _tmp: None,
        }
    }

    /// Stops the server (the data dir stays).
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    /// Starts the server again on the same ports and data dir.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut config = Config::load(&DataDir(self.dir.clone()).config()).expect("config");
        config.grpc_listen = self.grpc_addr;
        config.http_listen = self.http_addr;
        // The port may linger briefly after shutdown.
        for _ in 0..50 {
            match app::start(&self.dir, config.clone()).await {
                Ok(h) => {
                    self.http_tls = h.http_tls;
                    self.handle = Some(h);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("server did not restart on {}", self.grpc_addr);
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server is running")
    }

    /// A new read-only API token.
    pub fn read_token(&self) -> String {
        let token = custos_server::identity::secrets::new_token("cread");
        self.handle()
            .store
            .create_api_token(
                &custos_server::identity::secrets::token_hash(&token),
                &custos_server::store::tokens::NewApiToken::new(
                    custos_server::store::tokens::ApiRole::Viewer,
                    "viewer",
                ),
                0,
            )
            .expect("read token");
        token
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(DataDir(self.dir.clone()).ca_cert()).expect("CA PEM")
    }

    pub fn token(&self, uses: u32) -> String {
        app::create_enrollment_token(&self.dir, uses, Duration::from_secs(3600)).expect("token")
    }

    pub fn grpc(&self) -> String {
        self.grpc_addr.to_string()
    }

    /// The URL of an API path, `https://` when the API is on TLS.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.http_tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.http_addr)
    }

    /// A client for the API: over TLS it trusts the data dir's CA only.
    pub fn client(&self) -> reqwest::Client {
        if self.http_tls { client_trusting(&[&self.ca_pem()]) } else { reqwest::Client::new() }
    }

    /// GET an API path with the admin token; returns status and the body's bytes.
    pub async fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let resp = self
            .client()
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("HTTP request");
        (resp.status().as_u16(), resp.bytes().await.expect("HTTP body").to_vec())
    }

    /// GET an API path with the admin token; returns status and JSON body.
    pub async fn api(&self, path: &str) -> (u16, serde_json::Value) {
        self.api_with(path, Some(&self.admin_token)).await
    }

    pub async fn api_with(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.client().get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// POST to an API path with `token`; returns status and JSON body.
    pub async fn post_with(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = self.client().post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Sends `method` with a JSON body and the admin token; returns status and JSON body.
    pub async fn send(&self, method: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = self
            .client()
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .expect("HTTP request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Polls `path` until `pred` holds (the risk keeper runs asynchronously).
    pub async fn wait_for(&self, path: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        for _ in 0..100 {
            let (status, body) = self.api(path).await;
            if status == 200 && pred(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, body) = self.api(path).await;
        panic!("condition on {path} never held; last body: {body:#}");
    }
}

/// An HTTPS client that trusts the CA certificates in `roots` (PEM) and
/// no others: rustls with the process's provider, HTTP/1.1.
pub fn client_trusting(roots: &[&str]) -> reqwest::Client {
    client_builder_trusting(roots).build().expect("HTTPS client")
}

/// [`client_trusting`], still to be built (a local address, a timeout).
pub fn client_builder_trusting(roots: &[&str]) -> reqwest::ClientBuilder {
    install_crypto();
    let mut store = rustls::RootCertStore::empty();
    for pem in roots {
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            store.add(cert.expect("a CA certificate in PEM")).expect("a CA certificate rustls takes");
        }
    }
    let tls =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(store)
            .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls)
}

/// An agent enrolled with a server, with its own state dir.
pub struct TestAgent {
    pub agent: Agent,
    pub state: StateDir,
    _tmp: tempfile::TempDir,
}

impl TestAgent {
    pub async fn enroll(server: &TestServer, name: &str, host: Arc<dyn Host>) -> TestAgent {
        Self::enroll_with(server, name, host, Settings::default()).await
    }

    pub async fn enroll_with(
        server: &TestServer,
        name: &str,
        host: Arc<dyn Host>,
        settings: Settings,
    ) -> TestAgent {
        let tmp = tempfile::tempdir().expect("temp dir");
        let state = StateDir(tmp.path().join("agent"));
        custos_agent::enroll::enroll(&state, &server.grpc(), &server.token(1), &server.ca_pem(), name)
            .await
            .expect("enroll");
        let agent = Agent::open(state.clone(), &settings, host).expect("open agent");
        TestAgent { agent, state, _tmp: tmp }
    }

    pub fn id(&self) -> String {
        self.agent.identity().agent_id.clone()
    }
}

/// A check result with the given status (a reason is added when not pass).
/// Facts for the core checks in the shape the Linux agent reports them,
/// agreeing with `status`: the server's policy decides from facts, and a
/// result without them cannot be judged (it would be unknown).
fn facts_for(id: &str, status: CheckStatus) -> serde_json::Map<String, serde_json::Value> {
    let pass = status == CheckStatus::Pass;
    let v = match id {
        "firewall" => serde_json::json!({
            "ipv4_filtered": pass, "ipv6_enabled": false, "ipv6_filtered": false, "input_chains": [], "managers": {}
        }),
        "disk_encryption" => serde_json::json!({
            "luks_headers": [{"device": "sda3", "cipher": "aes-xts-plain64"}],
            "volumes": [{"kind": "filesystem", "mountpoint": "/", "encrypted": pass}],
            "exempt": [], "undetermined": []
        }),
        "os_patches" => serde_json::json!({
            "package_manager": "apt", "pending_upgrades": 3,
            "pending_security_upgrades": if pass { 0 } else { 2 },
            "security_packages": [], "lists_age_days": 1,
            "running_kernel": "6.1.0-28-amd64", "newest_kernel": "6.1.0-28-amd64", "reboot_required": false
        }),
        "antivirus" => serde_json::json!({
            "products": [{"name": "ClamAV", "version": "27000", "active": pass, "signatures_age_hours": 5,
                          "problem": if pass { serde_json::Value::Null } else { "clamd is not running".into() }}]
        }),
        _ => serde_json::json!({}),
    };
    match v {
        serde_json::Value::Object(m) if matches!(status, CheckStatus::Pass | CheckStatus::Fail) => m,
        _ => serde_json::Map::new(),
    }
}

/// Every write route (any method but GET) in the server's route table
/// (`custos_server::api::routes::ROUTES`): method and path template.
pub fn write_routes() -> Vec<(&'static str, &'static str)> {
    custos_server::api::routes::ROUTES
        .iter()
        .filter(|r| r.method != reqwest::Method::GET)
        .map(|r| (r.method.as_str(), r.path))
        .collect()
}

/// A route template as the router spells it (`/api/v1/risks/{id}/accept`,
/// see [`write_routes`]) with each `{name}` replaced by its value in
/// `params`; a parameter without a value is a test bug.
pub fn fill_route(template: &str, params: &[(&str, &str)]) -> String {
    template
        .split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("no value for {{{name}}} in {template}")),
            None => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `t` in RFC 3339, as records and query parameters carry times.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    custos_proto::time::rfc3339(t).expect("a time RFC 3339 can express")
}

pub fn result(id: &str, status: CheckStatus) -> CheckResult {
    CheckResult {
        id: id.to_string(),
        status,
        backend: "test".to_string(),
        facts: facts_for(id, status),
        observation: Observation::default(),
        reason: (status != CheckStatus::Pass).then(|| format!("{id} is {status} in this test")),
    }
}

/// The four core checks, all with `status`, except `overrides`.
pub fn core_results(status: CheckStatus, overrides: &[(&str, CheckStatus)]) -> Vec<CheckResult> {
    ["firewall", "disk_encryption", "os_patches", "antivirus"]
        .iter()
        .map(|id| {
            let s = overrides.iter().find(|(o, _)| o == id).map_or(status, |(_, s)| *s);
            result(id, s)
        })
        .collect()
}

/// Sends envelopes as-is on one evidence stream and returns the answers.
pub async fn send_raw(
    channel: tonic::transport::Channel,
    envelopes: Vec<custos_proto::evidence::Envelope>,
) -> Result<Vec<custos_proto::v1::Ack>, tonic::Status> {
    let records: Vec<_> = envelopes
        .into_iter()
        .enumerate()
        .map(|(i, e)| custos_proto::v1::EvidenceRecord {
            envelope: Some(custos_agent::transport::to_wire(e)),
            client_ref: i as u64 + 1,
        })
        .collect();
    let n = records.len();
    let mut client = custos_proto::v1::agent_service_client::AgentServiceClient::new(channel);
    let mut acks = client.submit_evidence(tokio_stream::iter(records)).await?.into_inner();
    let mut out = Vec::new();
    while out.len() < n {
        match acks.message().await? {
            Some(a) => out.push(a),
            None => break,
        }
    }
    Ok(out)
}
