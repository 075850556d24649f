//! `custos-agent` command line: enroll, run, and a dry-run `collect`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use custos_agent::collect::run_checks;
use custos_agent::host::{Host, SystemHost};
use custos_agent::record::{describe_host, hostname};
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
    },
    /// Collect, sign, spool and deliver evidence on the server's schedule.
    Run {
        #[arg(long, default_value = default_state_dir())]
        state_dir: PathBuf,
        /// One pass (collect and deliver), then exit.
        #[arg(long)]
        once: bool,
        /// Most records kept while the server is unreachable.
        #[arg(long, default_value_t = 10_000)]
        spool_max_records: u64,
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
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn default_state_dir() -> &'static str {
    "/var/lib/custos-agent"
}

fn main() -> anyhow::Result<()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a TLS crypto provider was already installed"))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match cli.command {
        Command::Enroll { server, token, ca_cert, state_dir, display_name } => rt.block_on(async {
            let ca = std::fs::read_to_string(&ca_cert)
                .with_context(|| format!("reading {}", ca_cert.display()))?;
            let name = display_name.or_else(|| hostname(&SystemHost::default())).unwrap_or_default();
            let id = custos_agent::enroll::enroll(&StateDir(state_dir.clone()), &server, &token, &ca, &name)
                .await?;
            println!(
                "enrolled as agent {} with {}; state in {}",
                id.agent_id,
                id.server,
                state_dir.display()
            );
            anyhow::Ok(())
        }),
        Command::Run { state_dir, once, spool_max_records } => rt.block_on(async {
            let settings = Settings { spool_max_records, ..Settings::default() };
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
                anyhow::Ok(())
            } else {
                agent
                    .run_forever(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await?;
                anyhow::Ok(())
            }
        }),
        Command::Collect { json, checks, timeout } => {
            let host: Arc<dyn Host> = Arc::new(SystemHost::default());
            let results = run_checks(Arc::clone(&host), &checks, Duration::from_secs(timeout));
            if json {
                let out = serde_json::json!({
                    "collected_at": time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)?,
                    "host": describe_host(host.as_ref(), hostname(host.as_ref())),
                    "checks": results,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for r in &results {
                    println!(
                        "{:<16} {:<8} [{}] {}",
                        r.id,
                        r.status,
                        r.backend,
                        r.reason.as_deref().unwrap_or("")
                    );
                    for (k, v) in &r.facts {
                        println!("    {k}: {v}");
                    }
                }
            }
            Ok(())
        }
    }
}
