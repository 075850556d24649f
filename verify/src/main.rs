//! `custos-verify`: the offline verifier on its own, for auditors.

use clap::Parser;

/// Checks a Custos export bundle offline: the log checkpoint's signature,
/// every file's digest, inclusion proofs, record signatures, chains and the
/// evidence and OSCAL documents.
#[derive(Parser)]
#[command(name = "custos-verify", version)]
struct Cli {
    #[command(flatten)]
    args: custos_verify::cli::VerifyArgs,
}

fn main() -> anyhow::Result<()> {
    let code = Cli::parse().args.run()?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
