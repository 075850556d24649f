//! The Windows backend of the `antivirus` check.
//!
//! Reads two sources through PowerShell, both as JSON:
//! - Microsoft Defender Antivirus: `Get-MpComputerStatus` (`AMServiceEnabled`,
//!   `AntivirusEnabled`, `RealTimeProtectionEnabled`, `AntivirusSignatureAge`
//!   in days, `AntivirusSignatureLastUpdated`, `AMProductVersion`,
//!   `AMRunningMode`);
//! - Windows Security Center (client editions only): `Get-CimInstance
//!   -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct`
//!   (`displayName`, `productState`), for third-party products. The
//!   `productState` bytes are decoded: bits 8-15 are the scanner state (0x10
//!   or 0x11 on, 0x00 or 0x01 off), bits 0-7 the signatures (0x00 up to date,
//!   0x10 out of date).
//!
//! Status rule: pass when some product protects: Defender with its service,
//! antivirus and real-time protection on, not in passive mode, and
//! signatures at most [`MAX_SIGNATURE_AGE_HOURS`] old; or a third-party
//! product that Security Center reports on and up to date (Defender in
//! passive mode beside it is fine). Fail with the reasons when products are
//! seen but none protects. Unknown when no source could be read. On Windows
//! Server there is no Security Center, so third-party products are not seen;
//! the reason says so.

use super::MAX_SIGNATURE_AGE_HOURS;
use crate::collect::windows::{
    Unavailable, json_bool, json_date, json_i64, json_items, json_str, powershell,
};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const DEFENDER: &str = "Microsoft Defender Antivirus";

/// Defender's state; enums and dates as Windows PowerShell prints them.
pub const MP_SCRIPT: &str = "$ErrorActionPreference='Stop'; Get-MpComputerStatus | Select-Object AMServiceEnabled,AntivirusEnabled,RealTimeProtectionEnabled,AntivirusSignatureAge,AntivirusSignatureLastUpdated,AMProductVersion,AMRunningMode | ConvertTo-Json";

/// The anti-virus products registered with Windows Security Center.
pub const SECURITY_CENTER_SCRIPT: &str = "$ErrorActionPreference='Stop'; [Console]::OutputEncoding = [Text.Encoding]::UTF8; ConvertTo-Json -InputObject @(Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct | Select-Object displayName,productState,timestamp)";

pub use super::Product;

/// Evaluates Defender from the JSON of [`MP_SCRIPT`].
pub fn parse_mp_computer_status(text: &str, now: i64) -> Product {
    let mut p = Product {
        name: DEFENDER.into(),
        source: Some("Get-MpComputerStatus"),
        version: None,
        active: None,
        signatures_age_hours: None,
        problem: None,
    };
    let doc = match json_items(text) {
        Ok(items) if !items.is_empty() => items[0].clone(),
        Ok(_) => {
            p.problem = Some("Get-MpComputerStatus printed nothing".into());
            return p;
        }
        Err(e) => {
            p.problem = Some(format!("Get-MpComputerStatus output unreadable: {e}"));
            return p;
        }
    };
    p.version = json_str(&doc, "AMProductVersion").map(str::to_string);
    let service = json_bool(doc.get("AMServiceEnabled"));
    let av = json_bool(doc.get("AntivirusEnabled"));
    let rtp = json_bool(doc.get("RealTimeProtectionEnabled"));
    let mode = json_str(&doc, "AMRunningMode").unwrap_or("").to_string();
    // The date gives hours; the day count (65535 or 4294967295 = never) is the fallback.
    p.signatures_age_hours = json_date(doc.get("AntivirusSignatureLastUpdated"))
        .map(|t| (now - t).max(0) / 3600)
        .or_else(|| json_i64(doc.get("AntivirusSignatureAge")).filter(|d| *d < 65_535).map(|d| d * 24));
    let (Some(service), Some(av), Some(rtp)) = (service, av, rtp) else {
        p.problem = Some(
            "Get-MpComputerStatus lacks AMServiceEnabled / AntivirusEnabled / RealTimeProtectionEnabled"
                .into(),
        );
        return p;
    };
    let mut problems = Vec::new();
    if !service {
        problems.push("the antimalware service is off".to_string());
    }
    if mode.to_ascii_lowercase().contains("passive") {
        problems.push(format!("running in {mode} (another product is primary)"));
    } else if !av {
        problems.push("antivirus is disabled".to_string());
    }
    if av && !rtp {
        problems.push("real-time protection is off".to_string());
    }
    match p.signatures_age_hours {
        Some(h) if h > MAX_SIGNATURE_AGE_HOURS => {
            problems.push(format!("signatures are {h} h old (limit {MAX_SIGNATURE_AGE_HOURS} h)"))
        }
        Some(_) => {}
        None => problems.push("signature age unknown".to_string()),
    }
    p.active = Some(service && av && rtp && !mode.to_ascii_lowercase().contains("passive"));
    if !problems.is_empty() {
        p.problem = Some(problems.join(", "));
    }
    p
}

/// Decodes a Security Center `productState`: (scanner on, signatures up to date).
pub fn decode_product_state(state: i64) -> (Option<bool>, Option<bool>) {
    let scanner = match (state >> 8) & 0xff {
        0x10 | 0x11 => Some(true),
        0x00 | 0x01 => Some(false),
        _ => None,
    };
    let signatures = match state & 0xff {
        0x00 => Some(true),
        0x10 => Some(false),
        _ => None,
    };
    (scanner, signatures)
}

/// Parses the JSON of [`SECURITY_CENTER_SCRIPT`].
pub fn parse_security_center(text: &str) -> Result<Vec<Product>, String> {
    let items = json_items(text)?;
    Ok(items
        .iter()
        .map(|item| {
            let name = json_str(item, "displayName").unwrap_or("unnamed product").to_string();
            let state = json_i64(item.get("productState"));
            let (on, current) = state.map_or((None, None), decode_product_state);
            let problem = match (on, current) {
                (Some(true), Some(true)) => None,
                (Some(false), _) => Some("Security Center reports it off".to_string()),
                (Some(true), Some(false)) => {
                    Some("Security Center reports its signatures out of date".into())
                }
                _ => Some(format!("productState {state:?} not understood")),
            };
            Product {
                name,
                source: Some("SecurityCenter2"),
                version: None,
                active: on,
                signatures_age_hours: None,
                problem,
            }
        })
        .collect())
}

fn is_defender(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("windows defender") || n.contains("microsoft defender")
}

/// Decides the check from both sources (each the script output or why it failed).
pub fn evaluate(mp: Result<String, Unavailable>, sc: Result<String, Unavailable>, now: i64) -> Finding {
    let mut products = Vec::new();
    let mut raw = String::new();
    let mut notes = Vec::new();
    let mp_read = match &mp {
        Ok(text) => {
            raw.push_str(text);
            products.push(parse_mp_computer_status(text, now));
            true
        }
        Err(e) => {
            notes.push(format!("Defender state unreadable: {}", e.message()));
            false
        }
    };
    match &sc {
        Ok(text) => {
            raw.push_str(text);
            match parse_security_center(text) {
                // Defender is measured more precisely by Get-MpComputerStatus when that answered.
                Ok(list) => products.extend(list.into_iter().filter(|p| !(mp_read && is_defender(&p.name)))),
                Err(e) => notes.push(format!("Security Center output unreadable: {e}")),
            }
        }
        Err(Unavailable::Missing(_)) => notes.push(
            "Security Center is not available (Windows Server?): third-party products are not seen".into(),
        ),
        Err(e) => notes.push(format!("Security Center unreadable: {}", e.message())),
    }
    let base = |status, backend: &str| {
        Finding::new(status, backend)
            .fact("products", products.iter().map(Product::to_json).collect::<Vec<_>>())
            .with_raw(raw.clone())
    };
    if let Some(ok) = products.iter().find(|p| p.problem.is_none()) {
        return base(CheckStatus::Pass, &ok.name).with_reason(format!("{} is active and current", ok.name));
    }
    let mut problems: Vec<String> =
        products.iter().map(|p| format!("{}: {}", p.name, p.problem.as_deref().unwrap_or(""))).collect();
    problems.extend(notes);
    // Only a product seen to be off or outdated proves that nothing protects.
    let backend = products.first().map_or("none", |p| p.name.as_str());
    if products.iter().any(|p| p.active.is_some()) {
        base(CheckStatus::Fail, backend)
            .with_reason(format!("no anti-malware product protects: {}", problems.join("; ")))
    } else {
        base(CheckStatus::Unknown, backend).with_reason(problems.join("; "))
    }
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    evaluate(powershell(host, MP_SCRIPT), powershell(host, SECURITY_CENTER_SCRIPT), ctx.now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_state_bytes() {
        assert_eq!(decode_product_state(397_568), (Some(true), Some(true))); // 0x061100
        assert_eq!(decode_product_state(393_472), (Some(false), Some(true))); // 0x060100
        assert_eq!(decode_product_state(397_584), (Some(true), Some(false))); // 0x061110
        assert_eq!(decode_product_state(266_240), (Some(true), Some(true))); // 0x041000
    }

    #[test]
    fn nothing_readable_is_unknown() {
        let f = evaluate(
            Err(Unavailable::Failed("timeout".into())),
            Err(Unavailable::Missing("Invalid namespace".into())),
            0,
        );
        assert_eq!(f.status, CheckStatus::Unknown);
    }
}
