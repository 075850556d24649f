//! Assembles the server: data-dir initialisation, token creation, and the
//! running gRPC + HTTP services with the background risk keeper.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, ConfigError, HttpTransport};
use crate::datadir::DataDir;
use crate::datadir::reload::Reloadable;
use crate::identity::ca::{CaError, CertAuthority};
use crate::identity::registry::AgentRegistry;
use crate::identity::{secrets, tls};
use crate::intake::grpc::{AgentService, EnrollmentService, GrpcState};
use crate::intake::ingest::Ingest;
use crate::keeper;
use crate::shutdown::stopped;
use crate::store::tokens::{ApiRole, NewApiToken};
use crate::store::{Store, StoreError};

pub use crate::datadir::catalog_imports::{
    ImportedCatalog, ImportedMapping, catalog_files, import_catalog, import_mapping, load_catalog,
};
pub use crate::datadir::{log_signer, write_private};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} already holds a Custos server (found {found}); refusing to overwrite it")]
    AlreadyInitialised { path: PathBuf, found: &'static str },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error(transparent)]
    HttpPort(#[from] crate::config::HttpPortError),
    #[error(transparent)]
    HttpTls(#[from] crate::api::serve::HttpTlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Import(#[from] crate::datadir::catalog_imports::ImportError),
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error(transparent)]
    Policy(#[from] crate::datadir::PolicyLoadError),
    #[error("{0}")]
    Invalid(String),
}

/// Creates a data dir: config, CA, server certificate, database, admin token.
/// What `init` created that the operator must see once.
pub struct InitOutput {
    pub admin_token: String,
    pub ca_cert_path: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AppError + '_ {
    move |source| AppError::Io { path: path.to_path_buf(), source }
}

pub fn init(dir: &Path, extra_names: &[String], config: Option<Config>) -> Result<InitOutput, AppError> {
    let data = DataDir(dir.to_path_buf());
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    for (path, found) in
        [(data.config(), "config.toml"), (data.ca_key(), "ca.key"), (data.database(), "custos.db")]
    {
        if path.exists() {
            return Err(AppError::AlreadyInitialised { path: dir.to_path_buf(), found });
        }
    }
    let mut config = config.unwrap_or_default();
    for name in extra_names {
        if !config.server_names.contains(name) {
            config.server_names.push(name.clone());
        }
    }
    let now = OffsetDateTime::now_utc();
    let (ca, ca_key_pem) = CertAuthority::generate("Custos agent CA", now)?;
    let server = ca.issue_server(&config.server_names, now)?;
    write_private(&data.ca_key(), ca_key_pem.as_bytes())?;
    write_private(&data.ca_cert(), ca.cert_pem().as_bytes())?;
    write_private(&data.server_key(), server.key_pem.as_bytes())?;
    write_private(&data.server_cert(), server.cert_pem.as_bytes())?;
    write_private(&data.config(), config.to_toml().as_bytes())?;
    log_signer(dir, &config)?;
    let store = Store::open(&data.database())?;
    let admin_token = secrets::new_token("cadm");
    store.create_api_token(
        &secrets::token_hash(&admin_token),
        &NewApiToken::new(ApiRole::Admin, "admin (from init)"),
        now.unix_timestamp(),
    )?;
    Ok(InitOutput { admin_token, ca_cert_path: data.ca_cert() })
}

/// Creates an enrollment token with `uses` uses, valid for `ttl`.
pub fn create_enrollment_token(dir: &Path, uses: u32, ttl: Duration) -> Result<String, AppError> {
    if uses == 0 {
        return Err(AppError::Invalid("--uses must be at least 1".into()));
    }
    let data = DataDir(dir.to_path_buf());
    if !data.database().exists() {
        return Err(AppError::Invalid(format!(
            "{} is not initialised: run `custos-server init` first",
            dir.display()
        )));
    }
    let store = Store::open(&data.database())?;
    let token = secrets::new_token("cenr");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let ttl = i64::try_from(ttl.as_secs()).map_err(|_| AppError::Invalid("--ttl too long".into()))?;
    store.create_enrollment_token(&secrets::token_hash(&token), uses, now.saturating_add(ttl), now)?;
    Ok(token)
}

/// Creates an API token in an initialised data dir and returns it (shown
/// once; only its hash is kept). The name says who holds it, for the audit
/// trail; an auditor's window must be a real interval.
pub fn create_api_token(dir: &Path, t: &NewApiToken) -> Result<String, AppError> {
    let data = DataDir(dir.to_path_buf());
    if !data.database().exists() {
        return Err(AppError::Invalid(format!(
            "{} is not initialised: run `custos-server init` first",
            dir.display()
        )));
    }
    if t.name.trim().is_empty() || t.name.chars().count() > 200 || t.name.chars().any(char::is_control) {
        return Err(AppError::Invalid("--name must say who holds the token (1 to 200 characters)".into()));
    }
    if let Some((from, to)) = t.window
        && from > to
    {
        return Err(AppError::Invalid("the window's start lies after its end".into()));
    }
    if t.role != ApiRole::Auditor && (t.window.is_some() || !t.controls.is_empty()) {
        return Err(AppError::Invalid("a window and controls limit auditor tokens only".into()));
    }
    let store = Store::open(&data.database())?;
    let prefix = match t.role {
        ApiRole::Admin => "cadm",
        ApiRole::Auditor => "caud",
        ApiRole::Viewer => "cview",
    };
    let token = secrets::new_token(prefix);
    store.create_api_token(&secrets::token_hash(&token), t, OffsetDateTime::now_utc().unix_timestamp())?;
    Ok(token)
}

/// Signs checkpoints at the configured cadence while the log grows.
fn spawn_checkpointer(
    store: Arc<Store>,
    signer: custos_verify::tlog::NoteSigner,
    origin: String,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let signer = Arc::new(signer);
    tokio::spawn(async move {
        loop {
            let (st, signer, origin) = (Arc::clone(&store), Arc::clone(&signer), origin.clone());
            let done = tokio::task::spawn_blocking(move || {
                st.sign_checkpoint(&signer, &origin, OffsetDateTime::now_utc().unix_timestamp())
            })
            .await;
            match done {
                Ok(Ok(crate::store::tlog::Signed::New(c))) => {
                    tracing::info!(size = c.size, "checkpoint signed")
                }
                Ok(Ok(crate::store::tlog::Signed::Unchanged)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "checkpoint not signed");
                    let detail = format!("checkpoint not signed: {e}");
                    let now = OffsetDateTime::now_utc().unix_timestamp();
                    if let Err(e) = store.record_security_event(now, None, "checkpoint_refused", &detail) {
                        tracing::error!(error = %e, "could not record the refused checkpoint");
                    }
                }
                Err(e) => tracing::error!(error = %e, "checkpoint signing panicked"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    })
}

/// A running server.
pub struct ServerHandle {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Whether the HTTP port serves TLS.
    pub http_tls: bool,
    pub store: Arc<Store>,
    pub grpc: Arc<GrpcState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// The HTTP port's base URL (`https://ADDR` or `http://ADDR`).
    pub fn http_url(&self) -> String {
        let scheme = if self.http_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// Stops accepting, ends the services and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// The risk register may only follow frameworks the catalog has.
fn check_risk_frameworks(
    config: &Config,
    loaded: &crate::compliance::catalog::Catalog,
) -> Result<(), AppError> {
    match config.risk.frameworks.iter().find(|f| !loaded.frameworks().contains(f)) {
        Some(fw) => Err(AppError::Invalid(format!(
            "config risk.frameworks names {fw:?}, which is not a loaded framework ({})",
            loaded.frameworks().join(", ")
        ))),
        None => Ok(()),
    }
}

/// The HTTP port's TLS configuration, or `None` when it serves plain HTTP
/// (which beyond loopback `[http]` must allow, and is logged as a
/// warning). The certificate and key are read here, once.
fn http_tls_config(dir: &Path, config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, AppError> {
    match config.http.transport(config.http_listen)? {
        HttpTransport::Tls => {
            let data = DataDir(dir.to_path_buf());
            let (cert, key) =
                config.http.cert_files(dir).unwrap_or_else(|| (data.server_cert(), data.server_key()));
            Ok(Some(crate::api::serve::tls_config(&cert, &key)?))
        }
        HttpTransport::Plain => Ok(None),
        HttpTransport::PlainOffLoopback => {
            tracing::warn!(
                addr = %config.http_listen,
                "the HTTP API is served in clear text on {}, beyond loopback ([http] \
                 allow_plain_off_loopback): bearer tokens cross the network unencrypted unless \
                 a proxy in front terminates TLS",
                config.http_listen
            );
            Ok(None)
        }
    }
}

/// Binds the gRPC port and serves enrollment and the agent service behind
/// the TLS accept loop (its connection cap and handshake timeout).
async fn serve_grpc(
    dir: &Path,
    config: &Config,
    tls_config: rustls::ServerConfig,
    state: &Arc<GrpcState>,
    shutdown_rx: &watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), AppError> {
    let grpc_listener = TcpListener::bind(config.grpc_listen)
        .await
        .map_err(|source| AppError::Listen { addr: config.grpc_listen, source })?;
    let grpc_addr = grpc_listener.local_addr().map_err(io_err(dir))?;
    let l = &config.limits;
    let incoming = tls::accept_loop(
        grpc_listener,
        Arc::new(tls_config),
        Duration::from_secs(l.handshake_timeout_secs),
        l.max_connections,
        state.events.clone(),
        shutdown_rx.clone(),
    );
    let max_msg = l.max_message_bytes;
    let router = tonic::transport::Server::builder()
        .timeout(crate::intake::grpc::unary_timeout(config))
        .max_concurrent_streams(l.max_streams_per_connection)
        .concurrency_limit_per_connection(l.max_streams_per_connection as usize)
        .http2_keepalive_interval(Some(Duration::from_secs(l.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(l.keepalive_timeout_secs)))
        .add_service(
            custos_proto::v1::enrollment_server::EnrollmentServer::new(EnrollmentService(Arc::clone(state)))
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            custos_proto::v1::agent_service_server::AgentServiceServer::new(AgentService(Arc::clone(state)))
                .max_decoding_message_size(max_msg),
        );
    let mut rx = shutdown_rx.clone();
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming);
        let stop = async move { stopped(&mut rx).await };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    Ok((grpc_addr, task))
}

/// Starts the services of the data dir `dir` with `config`.
pub async fn start(dir: &Path, config: Config) -> Result<ServerHandle, AppError> {
    let data = DataDir(dir.to_path_buf());
    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|source| AppError::Io { path: p, source });
    let ca_pem = read(data.ca_cert())?;
    let ca = Arc::new(CertAuthority::load(&ca_pem, &read(data.ca_key())?)?);
    let store = Arc::new(Store::open(&data.database())?);
    let agents = Arc::new(AgentRegistry::new(Arc::clone(&store)));
    let tls_config = tls::server_config(
        &ca_pem,
        &read(data.server_cert())?,
        &read(data.server_key())?,
        Arc::clone(&agents),
    )?;
    let http_tls = http_tls_config(dir, &config)?;
    let loaded = load_catalog(dir)?;
    check_risk_frameworks(&config, &loaded)?;
    // A webhook that could not sign is refused now, not at each delivery.
    crate::webhook::check_secrets(&config.webhooks, dir)
        .await
        .map_err(|e| AppError::Invalid(e.to_string()))?;
    // Mappings can change at run time; a bad file keeps the last good catalog.
    let catalog = Arc::new(Reloadable::new(loaded, catalog_files(dir)));
    // A policy that does not load stops the start: there is no last good one yet.
    let policy = Arc::new(Reloadable::new(crate::datadir::load_policy(dir)?, vec![data.policy()]));
    let ingest =
        Ingest::start(store.record_writer()?, store.checkpointer()?, config.limits.max_batch_records);
    let state = GrpcState::new(Arc::clone(&store), ca, config.clone(), ingest.clone(), Arc::clone(&agents));

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let (grpc_addr, grpc_task) = serve_grpc(dir, &config, tls_config, &state, &shutdown_rx).await?;
    tasks.push(grpc_task);

    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| AppError::Listen { addr: config.http_listen, source })?;
    let http_addr = http_listener.local_addr().map_err(io_err(dir))?;
    // The log key, read once: it signs checkpoints and is published to verifiers.
    let signer = log_signer(dir, &config)?;
    // The fleet's decided evidence, shared by the keeper and the API.
    let fleet = Arc::new(crate::keeper::fleet::Fleet::new());
    let app = crate::api::router(crate::api::HttpState {
        store: Arc::clone(&store),
        config: config.clone(),
        catalog: Arc::clone(&catalog),
        agents,
        reevaluate: ingest.changed.clone(),
        policy: Arc::clone(&policy),
        data_dir: dir.to_path_buf(),
        log_key: signer.verifier_key().to_string(),
        fleet: Arc::clone(&fleet),
    });
    // Our own accept loop rather than `axum::serve`: connection caps (also
    // per client) and timeouts for idle and half-sent connections.
    let mut http = crate::api::serve::HttpServer::new(app, &config.limits);
    let serves_tls = http_tls.is_some();
    if let Some(tls) = http_tls {
        http = http.with_tls(tls);
    }
    tasks.push(tokio::spawn(http.run(http_listener, shutdown_rx.clone())));

    tasks.push(keeper::spawn(
        Arc::clone(&store),
        keeper::Keeper::new(
            Arc::clone(&catalog),
            config.clone(),
            Arc::clone(&policy),
            dir.to_path_buf(),
            fleet,
        ),
        ingest.changed.clone(),
        shutdown_rx.clone(),
    ));
    tasks.push(spawn_checkpointer(
        Arc::clone(&store),
        signer,
        config.log_origin(),
        Duration::from_secs(config.log.checkpoint_seconds),
        shutdown_rx.clone(),
    ));
    tasks.push(crate::webhook::spawn(
        Arc::clone(&store),
        config.webhooks.clone(),
        dir.to_path_buf(),
        shutdown_rx,
    ));

    Ok(ServerHandle { grpc_addr, http_addr, http_tls: serves_tls, store, grpc: state, shutdown, tasks })
}
