//! `custos-server` command line: init, run, token create.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use custos_server::app;
use custos_server::config::{Config, DataDir};

#[derive(Parser)]
#[command(
    name = "custos-server",
    version,
    about = "Custos server: verified ISMS evidence, controls and risks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data dir: CA, server certificate, config, database, admin API token.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// Extra DNS name or IP address for the server certificate (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Serve gRPC (agents, mTLS) and HTTP (API, dashboard).
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        /// Override the gRPC listen address from config.toml.
        #[arg(long)]
        grpc_listen: Option<std::net::SocketAddr>,
        /// Override the HTTP listen address from config.toml.
        #[arg(long)]
        http_listen: Option<std::net::SocketAddr>,
    },
    /// Enrollment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Control catalogs beyond the built-in ones.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate an OSCAL catalog (JSON, OSCAL 1.0-1.2) and add it as a
    /// framework; the server loads it at its next start.
    Import {
        #[arg(long)]
        data_dir: PathBuf,
        /// Edition-qualified framework id, e.g. bsi-gspp-kernel:2026-07-29.
        #[arg(long)]
        framework: String,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new enrollment token.
    Create {
        #[arg(long)]
        data_dir: PathBuf,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a number with s, m, h or d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("ttl must be positive".into());
    }
    Ok(Duration::from_secs(secs))
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
    match Cli::parse().command {
        Command::Init { data_dir, sans } => {
            let out = app::init(&data_dir, &sans, None)?;
            println!("initialised {}", data_dir.display());
            println!("CA certificate for agents: {}", out.ca_cert_path.display());
            println!("admin API token (shown once, stored only as a hash):");
            println!("{}", out.admin_token);
        }
        Command::Catalog { command: CatalogCommand::Import { data_dir, framework, file } } => {
            let imported = app::import_catalog(&data_dir, &file, &framework)?;
            println!(
                "imported {} ({} controls) as framework {}; restart the server to use it",
                imported.name, imported.controls, imported.framework
            );
        }
        Command::Token { command: TokenCommand::Create { data_dir, uses, ttl } } => {
            println!("{}", app::create_enrollment_token(&data_dir, uses, ttl)?);
        }
        Command::Run { data_dir, grpc_listen, http_listen } => {
            let data = DataDir(data_dir.clone());
            let mut config = Config::load(&data.config()).with_context(|| {
                format!("{} is not initialised? run `custos-server init`", data_dir.display())
            })?;
            if let Some(a) = grpc_listen {
                config.grpc_listen = a;
            }
            if let Some(a) = http_listen {
                config.http_listen = a;
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let server = app::start(&data_dir, config).await?;
                tracing::info!(grpc = %server.grpc_addr, http = %server.http_addr, "custos-server running");
                println!("gRPC (agents, mTLS): {}", server.grpc_addr);
                println!("HTTP API and dashboard: http://{}", server.http_addr);
                let _ = tokio::signal::ctrl_c().await;
                server.shutdown().await;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;
    use std::time::Duration;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
