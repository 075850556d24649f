//! `custos-agent` command line: enroll, run, and a dry-run `collect`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use custos_agent::collect::{Context, Os, run_checks};
use custos_agent::config::AgentConfig;
use custos_agent::deadlines::Deadlines;
use custos_agent::first_start::{FirstStart, ensure_enrolled};
use custos_agent::host::{Host, SystemHost};
use custos_agent::host_info::{describe_host, hostname};
use custos_agent::privacy::Personal;
use custos_agent::recording::{Expected, RecordingHost, Scrub};
use custos_agent::runner::{Agent, Settings};
use custos_agent::state::StateDir;

#[derive(Parser)]
#[command(name = "custos-agent", version, about = "Custos endpoint agent: signed ISMS control evidence")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this host with a Custos server using a bootstrap token.
    Enroll {
        /// The server's gRPC endpoint, HOST:PORT.
        #[arg(long)]
        server: String,
        /// Enrollment token from `custos-server token create`.
        #[arg(long, env = "CUSTOS_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// The server's CA certificate (PEM), obtained out of band.
        #[arg(long)]
        ca_cert: PathBuf,
        #[arg(long, default_value = default_state_dir())]
        state_dir: PathBuf,
        /// Name shown on the dashboard (default: the host name).
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Collect, sign, spool and deliver evidence on the server's schedule.
    ///
    /// Not yet enrolled, it first enrolls with the material in the
    /// environment (CUSTOS_SERVER, CUSTOS_ENROLL_TOKEN, CUSTOS_CA_CERT) or
    /// in --enroll-file, then deletes that file; it never enrolls twice.
    Run {
        #[arg(long, default_value = default_state_dir())]
        state_dir: PathBuf,
        /// Enrollment material for the first start (KEY=value lines, mode 0600).
        #[arg(long, default_value = custos_agent::first_start::ENROLL_FILE)]
        enroll_file: PathBuf,
        /// One pass (collect and deliver), then exit.
        #[arg(long)]
        once: bool,
        /// Most records kept while the server is unreachable.
        #[arg(long, default_value_t = 10_000)]
        spool_max_records: u64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Dry run: print what the agent collects, unsigned, without a server.
    Collect {
        /// Print the records as JSON.
        #[arg(long)]
        json: bool,
        /// Only these checks (repeatable).
        #[arg(long = "check")]
        checks: Vec<String>,
        /// Time limit per collector, seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[command(flatten)]
        config: ConfigArg,
        /// Print the collection's cost (CPU of the agent and of the commands it
        /// ran, peak memory) as JSON on standard error.
        #[arg(long)]
        footprint: bool,
    },
    /// Capture this host's raw outputs (every command and file the collectors
    /// read) as a fixture directory, with host names and serials replaced by
    /// placeholders, plus a snapshot of the results for review.
    Record {
        /// Directory to write (created if missing).
        dir: PathBuf,
        /// Only these checks (repeatable).
        #[arg(long = "check")]
        checks: Vec<String>,
        /// Time limit per collector, seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// One line saying what this host is.
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Agent configuration (tags, privacy, network limits); a missing default file means defaults.
    #[arg(long = "config", env = "CUSTOS_AGENT_CONFIG")]
    path: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<AgentConfig> {
        let (path, explicit) = match &self.path {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("/etc/custos-agent/agent.toml"), false),
        };
        Ok(AgentConfig::load(&path, explicit)?)
    }
}

fn this_os() -> anyhow::Result<Os> {
    Os::current().ok_or_else(|| anyhow::anyhow!("this agent has no collectors for {}", std::env::consts::OS))
}

fn default_state_dir() -> &'static str {
    "/var/lib/custos-agent"
}

fn main() -> anyhow::Result<()> {
    init_process()?;
    let cli = Cli::parse();
    let rt = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    match cli.command {
        Command::Enroll { server, token, ca_cert, state_dir, display_name, config } => {
            rt()?.block_on(enroll(&server, &token, &ca_cert, &state_dir, display_name, &config))
        }
        Command::Run { state_dir, enroll_file, once, spool_max_records, config } => {
            rt()?.block_on(run(state_dir, &enroll_file, once, spool_max_records, &config))
        }
        Command::Collect { json, checks, timeout, config, footprint } => {
            collect(json, &checks, timeout, &config, footprint)
        }
        Command::Record { dir, checks, timeout, description } => record(&dir, &checks, timeout, description),
    }
}

/// The TLS crypto provider and the log (to stderr, filtered by `CUSTOS_LOG`).
fn init_process() -> anyhow::Result<()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// `enroll`: exchanges the token for an identity in the state dir.
async fn enroll(
    server: &str,
    token: &str,
    ca_cert: &Path,
    state_dir: &Path,
    display_name: Option<String>,
    config: &ConfigArg,
) -> anyhow::Result<()> {
    let deadlines = config.load()?.network;
    let ca = std::fs::read_to_string(ca_cert).with_context(|| format!("reading {}", ca_cert.display()))?;
    let name = display_name.or_else(|| hostname(&SystemHost::default())).unwrap_or_default();
    let state = StateDir(state_dir.to_path_buf());
    let id = custos_agent::enroll::enroll_within(&state, server, token, &ca, &name, &deadlines).await?;
    println!("enrolled as agent {} with {}; state in {}", id.agent_id, id.server, state_dir.display());
    Ok(())
}

/// Exit status when starting again unchanged cannot help (not enrolled and
/// nothing to enroll with, or material the server refused): `EX_CONFIG`
/// from sysexits.h, which the unit names in `RestartPreventExitStatus=` so
/// systemd does not restart the agent in a loop.
const EXIT_NEEDS_A_PERSON: i32 = 78;

/// `run`: the collection loop until Ctrl-C, or one pass with `--once`,
/// after enrolling on the first start.
async fn run(
    state_dir: PathBuf,
    enroll_file: &Path,
    once: bool,
    spool_max_records: u64,
    config: &ConfigArg,
) -> anyhow::Result<()> {
    let loaded = config.load()?;
    first_start(&StateDir(state_dir.clone()), enroll_file, &loaded.network).await?;
    let privacy = loaded.privacy()?;
    let settings = Settings {
        spool_max_records,
        privacy,
        tags: loaded.tags,
        deadlines: loaded.network,
        ..Settings::default()
    };
    let host: Arc<dyn Host> = Arc::new(SystemHost::default());
    let mut agent = Agent::open(StateDir(state_dir), &settings, host)?;
    if once {
        let pass = agent.run_once().await?;
        for r in &pass.results {
            println!("{:<16} {:<8} {}", r.id, r.status, r.reason.as_deref().unwrap_or(""));
        }
        match pass.delivery {
            Ok(d) => println!(
                "delivered: {} accepted, {} duplicate; {} waiting",
                d.accepted, d.duplicate, pass.spooled_after
            ),
            Err(e) => {
                println!("not delivered ({e}); {} records wait in the spool", pass.spooled_after);
                std::process::exit(2);
            }
        }
        Ok(())
    } else {
        agent
            .run_forever(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    }
}

/// Enrolls a state dir that is not yet enrolled (see
/// `custos_agent::first_start`), saying in the log what it did. Material
/// that cannot serve ends the process with [`EXIT_NEEDS_A_PERSON`].
async fn first_start(state: &StateDir, file: &Path, deadlines: &Deadlines) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let name = hostname(&SystemHost::default()).unwrap_or_default();
    match ensure_enrolled(state, &env, file, &name, deadlines).await {
        Ok(FirstStart::AlreadyEnrolled { ignored: Some(origin) }) => {
            tracing::warn!(%origin, "already enrolled: enrollment material ignored (a file of it is deleted)");
        }
        Ok(FirstStart::AlreadyEnrolled { ignored: None }) => {}
        Ok(FirstStart::Enrolled { identity, origin }) => {
            tracing::info!(agent = %identity.agent_id, server = %identity.server, %origin, "enrolled on first start");
        }
        Err(e) if e.needs_a_person() => {
            tracing::error!("{e}");
            std::process::exit(EXIT_NEEDS_A_PERSON);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// `collect`: a dry run, printed as text or JSON.
fn collect(
    json: bool,
    checks: &[String],
    timeout: u64,
    config: &ConfigArg,
    footprint: bool,
) -> anyhow::Result<()> {
    let loaded = config.load()?;
    let privacy = loaded.privacy()?;
    let tags = loaded.tags;
    let host: Arc<dyn Host> = Arc::new(SystemHost::default());
    let host_name = hostname(host.as_ref());
    let name = host_name.as_deref().and_then(|h| privacy.apply(Personal::HostName, h));
    let ctx = Arc::new(Context::now(privacy).with_host_name(host_name.as_deref()));
    let results = run_checks(Arc::clone(&host), ctx, this_os()?, checks, Duration::from_secs(timeout));
    if json {
        let out = serde_json::json!({
            "collected_at": custos_proto::time::rfc3339(time::OffsetDateTime::now_utc()),
            "host": describe_host(host.as_ref(), name, &tags),
            "checks": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &results {
            println!("{:<16} {:<8} [{}] {}", r.id, r.status, r.backend, r.reason.as_deref().unwrap_or(""));
            for (k, v) in &r.facts {
                println!("    {k}: {v}");
            }
        }
    }
    if footprint {
        let f = custos_agent::footprint::Footprint::now();
        eprintln!("{}", serde_json::to_string(&f)?);
    }
    Ok(())
}

/// `record`: this host's raw outputs as a test case.
fn record(dir: &Path, checks: &[String], timeout: u64, description: String) -> anyhow::Result<()> {
    let os = this_os()?;
    let system: Arc<dyn Host> = Arc::new(SystemHost::default());
    let recorder = Arc::new(RecordingHost::new(Arc::clone(&system)));
    let ctx = Context::now(Default::default());
    let now = custos_proto::time::unix_rfc3339(ctx.now).context("the clock is past year 9999")?;
    let host: Arc<dyn Host> = recorder.clone();
    let results = run_checks(host, Arc::new(ctx), os, checks, Duration::from_secs(timeout));
    let scrub = Scrub::of_host(system.as_ref());
    let mut manifest = recorder.write(dir, os, &now, &scrub)?;
    if !description.is_empty() {
        manifest.description = description;
        std::fs::write(dir.join("host.toml"), toml::to_string(&manifest)?)?;
    }
    let expected = toml::to_string(&Expected::snapshot(&results))?;
    std::fs::write(dir.join("expected.toml"), scrub.text(&expected))
        .with_context(|| format!("writing {}", dir.join("expected.toml").display()))?;
    println!(
        "recorded {} commands, {} files, {} directories for {} checks into {}",
        manifest.commands.len(),
        manifest.files.len(),
        manifest.dirs.len(),
        results.len(),
        dir.display()
    );
    println!("review expected.toml before using the directory as a test case");
    Ok(())
}
