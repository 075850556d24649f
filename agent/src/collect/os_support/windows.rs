//! The Windows backend of the `os_support` check: caption, build number and
//! product type from `Win32_OperatingSystem` (PowerShell, JSON). Support
//! follows the build (feature update) and, for clients, the edition:
//! Enterprise and Education get a year more than Home and Pro. Pro Education
//! is serviced like Pro (24 months, Microsoft's lifecycle for Windows 11 Home,
//! Pro, Pro Education and Pro for Workstations), although its name contains
//! "Education": it never gets the Enterprise dates.

use serde_json::Value;

use super::{Running, evaluate, table};
use crate::collect::{Context, Finding, Os, ParseError};
use crate::host::Host;

pub const SCRIPT: &str = "Get-CimInstance Win32_OperatingSystem | Select-Object Caption,Version,BuildNumber,ProductType | ConvertTo-Json";

/// Reads the running release from the JSON object.
pub fn parse_win32_os(text: &str) -> Result<Running, ParseError> {
    let doc: Value = serde_json::from_str(text.trim()).map_err(|e| format!("not JSON: {e}"))?;
    let caption = doc.get("Caption").and_then(Value::as_str).ok_or("no Caption")?.trim().to_string();
    let build = match doc.get("BuildNumber") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(ParseError::new("no BuildNumber")),
    };
    // ProductType 1 is a workstation; 2 (domain controller) and 3 are servers.
    let server =
        doc.get("ProductType").and_then(Value::as_u64).map(|t| t != 1).unwrap_or(caption.contains("Server"));
    let enterprise = is_enterprise_servicing(&caption);
    Ok(Running {
        os: Os::Windows,
        id: if server { "server" } else { "client" }.into(),
        version: build,
        pretty: caption,
        enterprise: enterprise && !server,
    })
}

/// Whether the edition gets the Enterprise and Education servicing dates:
/// Enterprise or Education in the caption, but not Pro Education, which
/// Microsoft services like Pro.
fn is_enterprise_servicing(caption: &str) -> bool {
    (caption.contains("Enterprise") || caption.contains("Education")) && !caption.contains("Pro Education")
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let out = match host.run("powershell", &["-NoProfile", "-NonInteractive", "-Command", SCRIPT]) {
        Ok(out) if out.success() => out,
        Ok(out) => {
            return Finding::unknown("win32_os", format!("Get-CimInstance failed: {}", out.stderr.trim()));
        }
        Err(e) => return Finding::unknown("win32_os", format!("powershell: {e}")),
    };
    match parse_win32_os(&out.stdout) {
        Ok(running) => evaluate(table(), &running, "win32_os", &out.stdout, ctx.now),
        Err(e) => {
            Finding::unknown("win32_os", format!("Win32_OperatingSystem output: {e}")).with_raw(out.stdout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pro_education_is_serviced_like_pro() {
        let json = |caption: &str| {
            format!("{{\"Caption\": \"{caption}\", \"BuildNumber\": \"26100\", \"ProductType\": 1}}")
        };
        let edu = parse_win32_os(&json("Microsoft Windows 11 Pro Education")).unwrap();
        assert!(!edu.enterprise);
        assert!(parse_win32_os(&json("Microsoft Windows 11 Education")).unwrap().enterprise);
        assert!(parse_win32_os(&json("Microsoft Windows 11 Enterprise")).unwrap().enterprise);
        assert!(!parse_win32_os(&json("Microsoft Windows 11 Pro")).unwrap().enterprise);
    }
}
