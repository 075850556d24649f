//! The Windows backend of the `antivirus` check.
//!
//! Reads two sources through PowerShell, both as JSON:
//! - Microsoft Defender Antivirus: `Get-MpComputerStatus` (`AMServiceEnabled`,
//!   `AntivirusEnabled`, `RealTimeProtectionEnabled`,
//!   `OnAccessProtectionEnabled`, `AntivirusSignatureAge` in days,
//!   `AntivirusSignatureLastUpdated`, `AMProductVersion`, `AMRunningMode`,
//!   `IsTamperProtected`);
//! - Windows Security Center (client editions only): `Get-CimInstance
//!   -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct`
//!   (`displayName`, `productState`), for third-party products. The
//!   `productState` bytes are decoded: bits 8-15 are the scanner state (0x10
//!   or 0x11 on, 0x00 or 0x01 off), bits 0-7 the signatures (0x00 up to date,
//!   0x10 out of date).
//!
//! Defender protects in real time only in its active mode, `AMRunningMode`
//! `Normal`. Microsoft documents the others: `Passive Mode` and `SxS Passive
//! Mode` (limited periodic scanning) leave protection to another product,
//! and `EDR Block Mode` is passive mode with post-breach remediation; in
//! passive mode real-time protection "doesn't provide any antivirus
//! real-time protection blocking or enforcement", even where it reports
//! itself enabled for Endpoint DLP ("Microsoft Defender Antivirus
//! compatibility with other security products"). `Not running` is off. A
//! mode not listed there is not understood. `OnAccessProtectionEnabled`
//! ("Monitor file and program activity", `DisableOnAccessProtection`) is
//! the scanning of files as they are opened and written; without it
//! real-time protection does not scan what is accessed.
//!
//! Status rule: pass when some product protects: Defender with its service,
//! antivirus, real-time protection and on-access scanning on, in `Normal`
//! mode, and signatures at most [`MAX_SIGNATURE_AGE_HOURS`] old; or a
//! third-party product that Security Center reports on and up to date
//! (Defender in passive mode beside it is fine). Fail with the reasons when
//! products are seen but none protects. Unknown when no source could be
//! read, and when Defender says another product is primary (passive or
//! EDR block mode) but Security Center, which Windows Server lacks, cannot
//! show that product. Tamper protection and the running mode are facts.

use super::MAX_SIGNATURE_AGE_HOURS;
use crate::collect::windows::{
    Unavailable, json_bool, json_date, json_i64, json_items, json_str, powershell,
};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const DEFENDER: &str = "Microsoft Defender Antivirus";

/// Defender's state; enums and dates as Windows PowerShell prints them.
pub const MP_SCRIPT: &str = "$ErrorActionPreference='Stop'; Get-MpComputerStatus | Select-Object AMServiceEnabled,AntivirusEnabled,RealTimeProtectionEnabled,OnAccessProtectionEnabled,AntivirusSignatureAge,AntivirusSignatureLastUpdated,AMProductVersion,AMRunningMode,IsTamperProtected | ConvertTo-Json";

/// The anti-virus products registered with Windows Security Center.
pub const SECURITY_CENTER_SCRIPT: &str = "$ErrorActionPreference='Stop'; [Console]::OutputEncoding = [Text.Encoding]::UTF8; ConvertTo-Json -InputObject @(Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct | Select-Object displayName,productState,timestamp)";

pub use super::Product;

/// What `AMRunningMode` says about Defender's real-time protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `Normal`: Defender is the primary antivirus.
    Active,
    /// Passive, SxS passive or EDR block mode: another product is primary.
    NotPrimary,
    /// `Not running`.
    Off,
    /// Not reported, or a value Microsoft does not document.
    NotUnderstood,
}

/// Classifies `AMRunningMode` as Microsoft documents its values.
pub fn running_mode(mode: &str) -> Mode {
    let lower = mode.trim().to_ascii_lowercase();
    match lower.as_str() {
        "normal" => Mode::Active,
        "not running" => Mode::Off,
        l if l.contains("passive") || l.contains("edr block") => Mode::NotPrimary,
        _ => Mode::NotUnderstood,
    }
}

/// Defender as `Get-MpComputerStatus` reports it: the product, its running
/// mode as printed and classified, and tamper protection.
#[derive(Debug, Clone, PartialEq)]
pub struct Defender {
    pub product: Product,
    pub mode_text: String,
    pub mode: Mode,
    pub tamper_protected: Option<bool>,
}

/// Evaluates Defender from the JSON of [`MP_SCRIPT`].
pub fn parse_mp_computer_status(text: &str, now: i64) -> Defender {
    let mut p = Product::named(DEFENDER);
    p.source = Some("Get-MpComputerStatus");
    let unread = |p: Product| Defender {
        product: p,
        mode_text: String::new(),
        mode: Mode::NotUnderstood,
        tamper_protected: None,
    };
    let doc = match json_items(text) {
        Ok(items) if !items.is_empty() => items[0].clone(),
        Ok(_) => {
            p.problem = Some("Get-MpComputerStatus printed nothing".into());
            return unread(p);
        }
        Err(e) => {
            p.problem = Some(format!("Get-MpComputerStatus output unreadable: {e}"));
            return unread(p);
        }
    };
    p.version = json_str(&doc, "AMProductVersion").map(str::to_string);
    let mode_text = json_str(&doc, "AMRunningMode").unwrap_or("").to_string();
    let mode = running_mode(&mode_text);
    let tamper_protected = json_bool(doc.get("IsTamperProtected"));
    // The date gives hours; the day count (65535 or 4294967295 = never) is the fallback.
    p.signatures_age_hours = json_date(doc.get("AntivirusSignatureLastUpdated"))
        .map(|t| (now - t).max(0) / 3600)
        .or_else(|| json_i64(doc.get("AntivirusSignatureAge")).filter(|d| *d < 65_535).map(|d| d * 24));
    let flags =
        ["AMServiceEnabled", "AntivirusEnabled", "RealTimeProtectionEnabled", "OnAccessProtectionEnabled"]
            .map(|k| json_bool(doc.get(k)));
    let [Some(service), Some(av), Some(rtp), Some(on_access)] = flags else {
        p.problem = Some(
            "Get-MpComputerStatus lacks AMServiceEnabled / AntivirusEnabled / RealTimeProtectionEnabled \
             / OnAccessProtectionEnabled"
                .into(),
        );
        return Defender { product: p, mode_text, mode, tamper_protected };
    };
    let problems =
        defender_problems(&mode, &mode_text, [service, av, rtp, on_access], p.signatures_age_hours);
    p.active = match mode {
        Mode::NotUnderstood if service => None,
        _ => Some(service && av && rtp && on_access && mode == Mode::Active),
    };
    if !problems.is_empty() {
        p.problem = Some(problems.join(", "));
    }
    Defender { product: p, mode_text, mode, tamper_protected }
}

/// Why Defender does not protect: its mode, the switches (service,
/// antivirus, real-time protection, on-access scanning) and the signatures.
fn defender_problems(mode: &Mode, mode_text: &str, switches: [bool; 4], age: Option<i64>) -> Vec<String> {
    let [service, av, rtp, on_access] = switches;
    let mut problems = Vec::new();
    if !service {
        problems.push("the antimalware service is off".to_string());
    }
    match mode {
        Mode::Active if !av => problems.push("antivirus is disabled".to_string()),
        Mode::Active => {}
        Mode::NotPrimary => problems.push(format!(
            "running in {mode_text}, which gives no real-time protection (another product is primary)"
        )),
        Mode::Off => problems.push(format!("running mode is {mode_text}")),
        Mode::NotUnderstood => problems.push(format!("running mode {mode_text:?} is not understood")),
    }
    if av && !rtp {
        problems.push("real-time protection is off".to_string());
    }
    if av && rtp && !on_access {
        problems.push("on-access scanning of files (OnAccessProtectionEnabled) is off".to_string());
    }
    match age {
        Some(h) if h > MAX_SIGNATURE_AGE_HOURS => {
            problems.push(format!("signatures are {h} h old (limit {MAX_SIGNATURE_AGE_HOURS} h)"))
        }
        Some(_) => {}
        None => problems.push("signature age unknown".to_string()),
    }
    problems
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
pub fn parse_security_center(text: &str) -> Result<Vec<Product>, ParseError> {
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
    let defender = match &mp {
        Ok(text) => {
            raw.push_str(text);
            let d = parse_mp_computer_status(text, now);
            products.push(d.product.clone());
            Some(d)
        }
        Err(e) => {
            notes.push(format!("Defender state unreadable: {}", e.message()));
            None
        }
    };
    let sc_missing = matches!(sc, Err(Unavailable::Missing(_)));
    match &sc {
        Ok(text) => {
            raw.push_str(text);
            match parse_security_center(text) {
                // Defender is measured more precisely by Get-MpComputerStatus when that answered.
                Ok(list) => products
                    .extend(list.into_iter().filter(|p| !(defender.is_some() && is_defender(&p.name)))),
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
            .fact("defender_running_mode", defender.as_ref().map(|d| d.mode_text.clone()))
            .fact("defender_tamper_protected", defender.as_ref().and_then(|d| d.tamper_protected))
            .with_raw(raw.clone())
    };
    if let Some(ok) = products.iter().find(|p| p.problem.is_none()) {
        return base(CheckStatus::Pass, &ok.name).with_reason(format!("{} is active and current", ok.name));
    }
    let mut problems: Vec<String> =
        products.iter().map(|p| format!("{}: {}", p.name, p.problem.as_deref().unwrap_or(""))).collect();
    problems.extend(notes);
    let backend = products.first().map_or("none", |p| p.name.as_str());
    // Defender names another product as primary that nothing here can show.
    let primary_unseen = sc_missing && defender.as_ref().is_some_and(|d| d.mode == Mode::NotPrimary);
    // Only a product seen to be off or outdated proves that nothing protects.
    if products.iter().any(|p| p.active.is_some()) && !primary_unseen {
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

    fn defender(mode: &str, rtp: bool, on_access: bool) -> String {
        format!(
            "{{\"AMServiceEnabled\": true, \"AntivirusEnabled\": true, \"RealTimeProtectionEnabled\": {rtp}, \
             \"OnAccessProtectionEnabled\": {on_access}, \"AntivirusSignatureAge\": 0, \
             \"AntivirusSignatureLastUpdated\": \"/Date(1795410120000)/\", \"AMRunningMode\": \"{mode}\"}}"
        )
    }

    #[test]
    fn only_normal_mode_with_on_access_scanning_protects() {
        let now = 1_795_428_000;
        let sc_missing = || Err(Unavailable::Missing("Invalid namespace".into()));
        let no_products = || Ok("[]".to_string());
        assert_eq!(
            evaluate(Ok(defender("Normal", true, true)), no_products(), now).status,
            CheckStatus::Pass
        );
        // EDR block mode is passive mode: real-time protection reported on (Endpoint DLP) blocks nothing.
        let f = evaluate(Ok(defender("EDR Block Mode", true, true)), no_products(), now);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("running in EDR Block Mode"));
        let f = evaluate(Ok(defender("Normal", true, false)), no_products(), now);
        assert_eq!(f.status, CheckStatus::Fail);
        assert!(f.reason.unwrap().contains("on-access scanning"));
        assert_eq!(
            evaluate(Ok(defender("Observer", true, true)), no_products(), now).status,
            CheckStatus::Unknown
        );
        // On Windows Server, the primary product passive mode points to cannot be seen.
        let f = evaluate(Ok(defender("Passive Mode", false, false)), sc_missing(), now);
        assert_eq!(f.status, CheckStatus::Unknown);
        assert_eq!(running_mode("SxS Passive Mode"), Mode::NotPrimary);
        assert_eq!(running_mode("Not running"), Mode::Off);
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
