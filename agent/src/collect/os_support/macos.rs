//! The macOS backend of the `os_support` check: `sw_vers` (ProductVersion);
//! support follows the major version (10.x releases by their minor).

use super::{Running, evaluate, table};
use crate::collect::{Context, Finding, Os};
use crate::host::Host;

/// Reads the release from `sw_vers` output.
pub fn parse_sw_vers(text: &str) -> Option<Running> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string())
        })
    };
    let full = field("ProductVersion")?;
    let mut parts = full.split('.');
    let major = parts.next()?.to_string();
    // 10.15 Catalina and older are one release per minor version.
    let version = if major == "10" { format!("10.{}", parts.next().unwrap_or("0")) } else { major };
    let name = field("ProductName").unwrap_or_else(|| "macOS".into());
    Some(Running {
        os: Os::Macos,
        id: "macos".into(),
        version,
        pretty: format!("{name} {full}"),
        enterprise: false,
    })
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    match host.run("sw_vers", &[]) {
        Ok(out) if out.success() => match parse_sw_vers(&out.stdout) {
            Some(running) => evaluate(table(), &running, "sw_vers", &out.stdout, ctx.now),
            None => Finding::unknown("sw_vers", "sw_vers printed no ProductVersion").with_raw(out.stdout),
        },
        Ok(out) => Finding::unknown("sw_vers", format!("sw_vers failed: {}", out.stderr.trim())),
        Err(e) => Finding::unknown("sw_vers", format!("sw_vers: {e}")),
    }
}
