//! The Linux backend of the `os_support` check: `ID`, `VERSION_ID` and
//! `PRETTY_NAME` from `/etc/os-release` (or `/usr/lib/os-release`).

use super::{Running, evaluate, table};
use crate::collect::{Context, Finding, Os};
use crate::host::Host;

/// One field of os-release text (shell-style `KEY=value`, values
/// optionally quoted).
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        (k == key).then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// Reads the release from os-release text.
pub fn parse_os_release(text: &str) -> Option<Running> {
    let field = |key: &str| os_release_field(text, key);
    let id = field("ID")?;
    let version = field("VERSION_ID").unwrap_or_default();
    let pretty = field("PRETTY_NAME").unwrap_or_else(|| format!("{id} {version}"));
    Some(Running { os: Os::Linux, id, version, pretty, enterprise: false })
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let read = ["/etc/os-release", "/usr/lib/os-release"].iter().find_map(|p| host.read_text(p).ok());
    let Some(text) = read else {
        return Finding::unknown("os-release", "neither /etc/os-release nor /usr/lib/os-release is readable");
    };
    match parse_os_release(&text) {
        Some(running) => evaluate(table(), &running, "os-release", &text, ctx.now),
        None => Finding::unknown("os-release", "os-release has no ID field").with_raw(text),
    }
}
