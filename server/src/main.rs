//! `custos-server` command line: init, run, token create, catalog import,
//! the risk register commands, and evidence export and offline verification.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use custos_server::app;
use custos_server::config::Config;
use custos_server::datadir::DataDir;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Write an evidence bundle (tar.gz) an auditor verifies offline.
    Export {
        #[arg(long)]
        data_dir: PathBuf,
        /// Start of the collection window (RFC 3339, or YYYY-MM-DD: midnight UTC).
        #[arg(long)]
        from: String,
        /// End of the window, included (RFC 3339, or YYYY-MM-DD: the end of that day).
        #[arg(long)]
        to: String,
        /// A control id or prefix (repeatable), e.g. iso27001:2022/A.8.20.
        #[arg(long = "control")]
        controls: Vec<String>,
        /// An agent id (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Export a deterministic sample of N hosts (with --seed).
        #[arg(long, requires = "seed")]
        sample: Option<usize>,
        /// The seed of the sample, named in the manifest.
        #[arg(long, requires = "sample")]
        seed: Option<String>,
        /// Who exports, named in the manifest (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an export bundle offline (the same as `custos-verify`). Exit
    /// status: 0 verified against the pinned log key, 3 consistent but no
    /// --log-key given, 1 a check failed (2 stays clap's: bad arguments).
    Verify(custos_verify::cli::VerifyArgs),
    /// The risk register: list, export, record, update, accept.
    Risk {
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: RiskCommand,
    },
}

#[derive(clap::Args)]
struct RiskFilterArgs {
    /// live (default), all, or a comma list of pending, open, in_treatment, accepted, closed.
    #[arg(long)]
    status: Option<String>,
    /// low, medium, high or very_high.
    #[arg(long)]
    level: Option<String>,
    #[arg(long)]
    owner: Option<String>,
    /// A requirement id or prefix, e.g. iso27001:2022/A.8.
    #[arg(long)]
    requirement: Option<String>,
    /// evidence or manual.
    #[arg(long)]
    origin: Option<String>,
}

#[derive(Subcommand)]
enum RiskCommand {
    /// List entries as a table (or --json).
    List {
        #[command(flatten)]
        filter: RiskFilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// One entry with its history.
    Show { id: i64 },
    /// Write the register as CSV (RFC 4180) to a file, or to stdout with `-`.
    Export {
        #[command(flatten)]
        filter: RiskFilterArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Record a risk no agent can see.
    Add {
        /// Who records it.
        #[arg(long)]
        actor: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Step number or label of the matrix (e.g. 3 or possible).
        #[arg(long)]
        likelihood: String,
        /// Step number or label of the matrix (e.g. 4 or major).
        #[arg(long)]
        impact: String,
        #[arg(long)]
        owner: Option<String>,
        /// confidentiality, integrity or availability (repeatable).
        #[arg(long = "goal")]
        goals: Vec<String>,
        /// A threat, e.g. "G 0.18 Fehlplanung oder fehlende Anpassung" (repeatable).
        #[arg(long = "threat")]
        threats: Vec<String>,
        /// The catalog requirement it concerns, if any.
        #[arg(long)]
        requirement: Option<String>,
    },
    /// Change owner, treatment, status or ratings.
    Update {
        id: i64,
        #[arg(long)]
        actor: String,
        #[arg(long)]
        owner: Option<String>,
        /// mitigate, transfer or avoid (accept: use `risk accept`).
        #[arg(long)]
        treatment: Option<String>,
        /// open, in_treatment, or closed (manual entries only).
        #[arg(long)]
        status: Option<String>,
        /// Residual likelihood,impact after treatment, e.g. 1,4 or rare,major.
        #[arg(long)]
        residual: Option<String>,
        /// Likelihood,impact of a manual entry.
        #[arg(long)]
        rating: Option<String>,
    },
    /// Accept a risk until a date, with the approver and the reason.
    Accept {
        id: i64,
        #[arg(long)]
        approver: String,
        #[arg(long)]
        justification: String,
        /// RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
        #[arg(long)]
        expires: String,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate an OSCAL catalog (JSON, OSCAL 1.0.x to 1.2.x) and add it as
    /// a framework; the server loads it at its next start.
    Import {
        #[arg(long)]
        data_dir: PathBuf,
        /// Edition-qualified framework id, e.g. bsi-gspp-kernel:2026-07-29.
        #[arg(long)]
        framework: String,
        file: PathBuf,
    },
    /// Apply one mapping of an OSCAL mapping collection (JSON, OSCAL 1.2.x;
    /// e.g. ISO/IEC 27001:2022 → Grundschutz++): the checks supporting a
    /// source control then support its targets; the server applies it at
    /// its next start.
    Map {
        #[arg(long)]
        data_dir: PathBuf,
        /// Framework of the sources, e.g. iso27001:2022.
        #[arg(long)]
        source: String,
        /// Framework of the targets (an imported catalog).
        #[arg(long)]
        target: String,
        /// Which mapping of the collection: its target-resource href or file name.
        #[arg(long)]
        target_href: String,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new API token (shown once; only its hash is kept).
    Api {
        #[arg(long)]
        data_dir: PathBuf,
        /// admin, auditor (read-only, every read kept in the audit trail) or viewer (read-only).
        #[arg(long)]
        role: String,
        /// Who holds it, e.g. "Jane Doe, Example Audit GmbH": named in the audit trail.
        #[arg(long)]
        name: String,
        /// Lifetime, e.g. 30d; none: until revoked.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Auditors: the evidence time they may see, from (RFC 3339 or YYYY-MM-DD)...
        #[arg(long)]
        from: Option<String>,
        /// ...to (RFC 3339 or YYYY-MM-DD, end of that day).
        #[arg(long)]
        to: Option<String>,
        /// Auditors: a control id or prefix they may see (repeatable), e.g. iso27001:2022/A.8.
        #[arg(long = "control")]
        controls: Vec<String>,
    },
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
        Command::Catalog { command: CatalogCommand::Map { data_dir, source, target, target_href, file } } => {
            let m = app::import_mapping(&data_dir, &file, &source, &target, &target_href)?;
            println!("imported {} ({} → {}): {} check mappings derived", m.label, m.source, m.target, m.rows);
            if !m.dangling.is_empty() {
                println!("targets not in {} (skipped): {}", m.target, m.dangling.join(", "));
            }
            println!("restart the server to use it");
        }
        Command::Export { data_dir, from, to, controls, hosts, sample, seed, by, out } => {
            let opts = custos_server::export::ExportOptions {
                data_dir,
                from: parse_expiry(&from)?,
                to: parse_expiry(&to)? + time::Duration::seconds(if to.len() == 10 { 86_399 } else { 0 }),
                controls,
                hosts,
                sample: sample.zip(seed),
                by: by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".into()),
                out,
                now: time::OffsetDateTime::now_utc(),
                progress: true,
            };
            export_command(&opts)?;
        }
        Command::Verify(args) => {
            let code = args.run()?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Risk { data_dir, command } => {
            let data_dir = data_dir.context("--data-dir is required")?;
            risk_command(&data_dir, command)?;
        }
        Command::Token { command: TokenCommand::Api { data_dir, role, name, ttl, from, to, controls } } => {
            let role = role.parse().map_err(anyhow::Error::msg)?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let t = custos_server::store::tokens::NewApiToken {
                role,
                name,
                expires_at: ttl.map(|d| now + d.as_secs() as i64),
                window: api_window(from, to)?,
                controls,
            };
            println!("{}", app::create_api_token(&data_dir, &t)?);
        }
        Command::Token { command: TokenCommand::Create { data_dir, uses, ttl } } => {
            println!("{}", app::create_enrollment_token(&data_dir, uses, ttl)?);
        }
        Command::Run { data_dir, grpc_listen, http_listen } => {
            run_command(&data_dir, grpc_listen, http_listen)?
        }
    }
    Ok(())
}

/// An auditor token's window from `--from` and `--to` (a bare date as
/// `--to` includes that whole day).
fn api_window(from: Option<String>, to: Option<String>) -> anyhow::Result<Option<(i64, i64)>> {
    match (from, to) {
        (None, None) => Ok(None),
        (Some(f), Some(t)) => Ok(Some((
            parse_expiry(&f)?.unix_timestamp(),
            parse_expiry(&t)?.unix_timestamp() + if t.len() == 10 { 86_399 } else { 0 },
        ))),
        _ => anyhow::bail!("--from and --to go together"),
    }
}

/// `custos-server export`: writes the bundle and says what it holds.
fn export_command(opts: &custos_server::export::ExportOptions) -> anyhow::Result<()> {
    let done = custos_server::export::export(opts)?;
    let c = &done.manifest.counts;
    println!(
        "wrote {} ({} bytes): {} records of {} agents, {} key bindings, {} CSV rows, checkpoint at tree size {}",
        opts.out.display(),
        done.bytes,
        c.records,
        c.agents,
        c.key_bindings,
        c.csv_rows,
        done.manifest.log.tree_size
    );
    Ok(())
}

/// `custos-server run`: serves until Ctrl-C.
fn run_command(
    data_dir: &std::path::Path,
    grpc_listen: Option<std::net::SocketAddr>,
    http_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let data = DataDir(data_dir.to_path_buf());
    let mut config = Config::load(&data.config())
        .with_context(|| format!("{} is not initialised? run `custos-server init`", data_dir.display()))?;
    if let Some(a) = grpc_listen {
        config.grpc_listen = a;
    }
    if let Some(a) = http_listen {
        config.http_listen = a;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let server = app::start(data_dir, config).await?;
        tracing::info!(grpc = %server.grpc_addr, http = %server.http_url(), "custos-server running");
        println!("gRPC (agents, mTLS): {}", server.grpc_addr);
        println!("HTTP API and dashboard: {}", server.http_url());
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown().await;
        anyhow::Ok(())
    })
}

/// The register filter the arguments ask for, as the API reads it (the
/// catalog is loaded only to check a `--requirement`).
fn risk_filter(
    data_dir: &std::path::Path,
    f: &RiskFilterArgs,
) -> anyhow::Result<custos_server::store::risks::RiskFilter> {
    let catalog = f.requirement.as_ref().map(|_| app::load_catalog(data_dir)).transpose()?;
    custos_server::store::risks::RiskFilter::parse(
        f.status.as_deref(),
        f.level.as_deref(),
        f.owner.as_deref(),
        f.requirement.as_deref(),
        f.origin.as_deref(),
        |r| catalog.as_ref().is_some_and(|c| c.knows_prefix(r)),
    )
    .map_err(anyhow::Error::msg)
}

fn parse_expiry(text: &str) -> anyhow::Result<time::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("{text:?}: use an RFC 3339 time or a date YYYY-MM-DD"))?;
    Ok(date.midnight().assume_utc())
}

fn risk_command(data_dir: &std::path::Path, command: RiskCommand) -> anyhow::Result<()> {
    use custos_server::register::lifecycle::{ManualRisk, Patch};
    let register = custos_server::keeper::register_edits::Register::open(data_dir)?;
    let now = time::OffsetDateTime::now_utc();
    let pair = |text: &str| -> anyhow::Result<(u8, u8)> {
        let (l, i) = text.split_once(',').with_context(|| format!("{text:?}: expected likelihood,impact"))?;
        Ok((register.step(l.trim(), false)?, register.step(i.trim(), true)?))
    };
    let show = |e: &custos_server::register::RiskEntry| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(e)?);
        Ok(())
    };
    match command {
        RiskCommand::List { filter, json } => {
            let entries = register.list(&risk_filter(data_dir, &filter)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", custos_server::keeper::register_edits::table(&entries));
            }
        }
        RiskCommand::Show { id } => {
            let (entry, history) = register.history(id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"entry": entry, "history": history}))?
            );
        }
        RiskCommand::Export { filter, out } => {
            let bytes = register.csv(&risk_filter(data_dir, &filter)?)?;
            if out.as_os_str() == "-" {
                use std::io::Write as _;
                std::io::stdout().write_all(&bytes)?;
            } else {
                std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
                eprintln!("wrote {}", out.display());
            }
        }
        RiskCommand::Add {
            actor,
            title,
            description,
            likelihood,
            impact,
            owner,
            goals,
            threats,
            requirement,
        } => {
            let input = ManualRisk {
                title,
                description,
                likelihood: register.step(&likelihood, false)?,
                impact: register.step(&impact, true)?,
                owner,
                threats,
                goals,
                treatment: None,
                requirement,
            };
            show(&register.add(input, &actor, now)?)?;
        }
        RiskCommand::Update { id, actor, owner, treatment, status, residual, rating } => {
            let patch = Patch {
                owner,
                treatment: treatment.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
                status: status.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
                residual: residual.as_deref().map(pair).transpose()?,
                rating: rating.as_deref().map(pair).transpose()?,
            };
            show(&register.update(id, patch, &actor, now)?)?;
        }
        RiskCommand::Accept { id, approver, justification, expires } => {
            show(&register.accept(id, &approver, &justification, parse_expiry(&expires)?, now)?)?;
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
