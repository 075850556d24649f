//! The Windows backend of the `software_inventory` check.
//!
//! Reads the machine-wide Uninstall registry keys, 64-bit
//! (`HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`) and 32-bit
//! (`HKLM\SOFTWARE\WOW6432Node\...\Uninstall`), through PowerShell
//! `Get-ItemProperty`, keeping entries with a `DisplayName`: `DisplayName`,
//! `DisplayVersion`, `Publisher` as JSON. Per-user installs (HKCU) and
//! Store (AppX) packages are not listed.
//!
//! Status rule: facts only (`package_count`, `packages` as `{name, version,
//! publisher}` sorted by name, duplicates of the 32/64-bit views merged):
//! pass when the list was read and is not empty, unknown otherwise.

use serde_json::json;

use crate::collect::windows::{json_items, json_str, powershell};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "uninstall-registry";

/// The installed programs as Windows lists them in "Apps & features".
pub const SCRIPT: &str = "$ErrorActionPreference='Stop'; [Console]::OutputEncoding = [Text.Encoding]::UTF8; ConvertTo-Json -InputObject @(Get-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*','HKLM:\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*' -ErrorAction SilentlyContinue | Where-Object { $_.DisplayName } | Select-Object DisplayName,DisplayVersion,Publisher)";

/// One installed program.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: Option<String>,
    pub publisher: Option<String>,
}

/// Parses the JSON of [`SCRIPT`]: sorted by name, duplicates removed.
pub fn parse_uninstall_entries(text: &str) -> Result<Vec<Package>, ParseError> {
    let items = json_items(text)?;
    let mut out: Vec<Package> = items
        .iter()
        .filter_map(|i| {
            let name = json_str(i, "DisplayName")?.trim();
            let opt = |k: &str| json_str(i, k).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
            (!name.is_empty()).then(|| Package {
                name: name.to_string(),
                version: opt("DisplayVersion"),
                publisher: opt("Publisher"),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Decides the check from the script output.
pub fn evaluate(text: &str) -> Finding {
    match parse_uninstall_entries(text) {
        Ok(p) if !p.is_empty() => Finding::new(CheckStatus::Pass, BACKEND)
            .with_reason(format!("{} installed programs listed", p.len()))
            .fact("package_count", p.len())
            .fact(
                "packages",
                p.iter()
                    .map(|p| json!({"name": p.name, "version": p.version, "publisher": p.publisher}))
                    .collect::<Vec<_>>(),
            )
            .with_raw(text),
        Ok(_) => Finding::unknown(BACKEND, "the Uninstall registry keys listed no program").with_raw(text),
        Err(e) => Finding::unknown(BACKEND, format!("installed programs unreadable: {e}")).with_raw(text),
    }
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    match powershell(host, SCRIPT) {
        Ok(text) => evaluate(&text),
        Err(e) => e.unknown(BACKEND, "the installed programs could not be listed"),
    }
}
