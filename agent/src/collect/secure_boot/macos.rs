//! The macOS backend of the `secure_boot` check.
//!
//! Reads the CPU (`sysctl -n machdep.cpu.brand_string`: `Apple M2 Pro` on
//! Apple silicon, `Intel(R) Core(TM) ...` otherwise) and the security
//! controller (`system_profiler SPiBridgeDataType`, no root needed). On
//! Apple silicon its `Boot Policy:` block says `Secure Boot: Full Security`,
//! `Reduced Security` or `Permissive Security`. On Intel Macs with a T2 chip
//! it names the `Apple T2 Security Chip`, and the policy is the NVRAM
//! variable `nvram 94b73556-2197-4702-82a8-3e1337dafbfb:AppleSecureBootPolicy`
//! (`%02` full, `%01` medium, `%00` none). Intel Macs without T2 have no
//! Secure Boot at all.
//!
//! On Apple silicon the same `Boot Policy:` block lists what the level
//! allows (`System Integrity Protection`, `Signed System Volume`, `Boot
//! Arguments Filtering`, `Allow All Kernel Extensions`); Full Security
//! permits none of them to be lowered, so a report of Full Security next to
//! a lowered one contradicts itself and is not counted.
//!
//! Status rule: pass only on evidence of Full Security (the `Secure Boot:`
//! line, with nothing lowered beside it, or `%02`); fail on Reduced / Permissive / Medium / No Security;
//! not_applicable on Intel without T2; unknown otherwise (Apple silicon
//! boots securely by design, but a level that cannot be read is not
//! counted).

use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const NVRAM_POLICY: &str = "94b73556-2197-4702-82a8-3e1337dafbfb:AppleSecureBootPolicy";

/// What the security controller report says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Controller {
    /// The `Secure Boot:` value (`Full Security`, ...), when printed.
    pub secure_boot: Option<String>,
    /// Whether a T2 chip is named.
    pub t2: bool,
    /// `System Integrity Protection:` of the boot policy, when printed.
    pub sip: Option<String>,
    /// Protections the boot policy reports lowered (Apple silicon).
    pub lowered: Vec<String>,
}

/// Parses `system_profiler SPiBridgeDataType` text output.
pub fn parse_ibridge(text: &str) -> Controller {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.trim().strip_prefix(key).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_string())
        })
    };
    let mut lowered = Vec::new();
    for (key, bad) in [
        ("System Integrity Protection", "Disabled"),
        ("Signed System Volume", "Disabled"),
        ("Boot Arguments Filtering", "Disabled"),
        ("Kernel CTRR", "Disabled"),
        ("Allow All Kernel Extensions", "Yes"),
    ] {
        if field(key).is_some_and(|v| v.eq_ignore_ascii_case(bad)) {
            lowered.push(format!("{key}: {bad}"));
        }
    }
    Controller {
        secure_boot: field("Secure Boot"),
        t2: field("Model Name").is_some_and(|m| m.contains("T2")),
        sip: field("System Integrity Protection"),
        lowered,
    }
}

/// The level of an `AppleSecureBootPolicy` NVRAM value (`...\t%02`).
pub fn parse_nvram_policy(text: &str) -> Option<&'static str> {
    let value = text.split_whitespace().last()?;
    match value {
        "%02" | "\\x02" => Some("Full Security"),
        "%01" | "\\x01" => Some("Medium Security"),
        "%00" | "\\x00" => Some("No Security"),
        _ => None,
    }
}

/// Decides from a security level name.
fn judge(level: &str, chip: &str, backend: &str, sip: Option<&str>, raw: &str) -> Finding {
    let status = if level.eq_ignore_ascii_case("Full Security") {
        CheckStatus::Pass
    } else if ["Reduced", "Permissive", "Medium", "No Security"].iter().any(|w| level.contains(w)) {
        CheckStatus::Fail
    } else {
        CheckStatus::Unknown
    };
    let reason = match status {
        CheckStatus::Pass => format!("{chip}: Secure Boot at Full Security"),
        CheckStatus::Fail => format!("{chip}: Secure Boot lowered to {level}"),
        _ => format!("{chip}: unrecognised Secure Boot level {level:?}"),
    };
    Finding::new(status, backend)
        .with_reason(reason)
        .fact("platform", chip)
        .fact("secure_boot", level)
        .fact("sip", sip)
        .with_raw(raw)
}

/// Decides the check from the CPU brand, the controller report and (T2 only)
/// the NVRAM policy read.
pub fn evaluate(cpu: &str, ibridge: Option<&str>, nvram: Option<Result<String, String>>) -> Finding {
    let apple_silicon = cpu.trim().starts_with("Apple");
    let controller = ibridge.map(parse_ibridge).unwrap_or_default();
    let raw = format!("{}\n{}", cpu.trim(), ibridge.unwrap_or(""));
    let sip = controller.sip.as_deref();
    if apple_silicon {
        return match &controller.secure_boot {
            Some(level) if level.eq_ignore_ascii_case("Full Security") && !controller.lowered.is_empty() => {
                Finding::unknown(
                    "system_profiler",
                    format!(
                        "Apple silicon: the boot policy says Full Security but also {}, which Full Security does not allow",
                        controller.lowered.join(", ")
                    ),
                )
                .fact("platform", "Apple silicon")
                .fact("secure_boot", level.as_str())
                .fact("sip", sip)
                .with_raw(raw)
            }
            Some(level) => judge(level, "Apple silicon", "system_profiler", sip, &raw),
            None => Finding::unknown(
                "system_profiler",
                "Apple silicon boots securely by design, but the Secure Boot level could not be read",
            )
            .fact("platform", "Apple silicon")
            .with_raw(raw),
        };
    }
    let Some(ibridge) = ibridge else {
        return Finding::unknown("system_profiler", "the security controller report could not be read")
            .fact("platform", "Intel")
            .with_raw(raw);
    };
    if !controller.t2 {
        return Finding::new(CheckStatus::NotApplicable, "system_profiler")
            .with_reason("Intel Mac without a T2 chip: no Secure Boot")
            .fact("platform", "Intel")
            .with_raw(raw);
    }
    if let Some(level) = &controller.secure_boot {
        return judge(level, "Intel with T2", "system_profiler", sip, &raw);
    }
    match nvram {
        Some(Ok(text)) => match parse_nvram_policy(&text) {
            Some(level) => judge(level, "Intel with T2", "nvram", sip, &format!("{raw}\n{text}")),
            None => Finding::unknown(
                "nvram",
                format!("unrecognised AppleSecureBootPolicy value {:?}", text.trim()),
            )
            .fact("platform", "Intel with T2")
            .with_raw(format!("{raw}\n{text}")),
        },
        Some(Err(why)) => Finding::unknown("nvram", format!("T2 Secure Boot policy unreadable: {why}"))
            .fact("platform", "Intel with T2")
            .with_raw(raw),
        None => Finding::unknown("nvram", "T2 Secure Boot policy not read")
            .fact("platform", "Intel with T2")
            .with_raw(ibridge.to_string()),
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let cpu = match host.run("sysctl", &["-n", "machdep.cpu.brand_string"]) {
        Ok(out) if out.success() && !out.stdout.trim().is_empty() => out.stdout,
        Ok(out) => {
            return Finding::unknown(
                "sysctl",
                format!("sysctl exited with {:?}: {}", out.code, out.stderr.trim()),
            );
        }
        Err(e) => return Finding::unknown("sysctl", format!("the CPU could not be identified: {e}")),
    };
    let ibridge = match host.run("system_profiler", &["SPiBridgeDataType"]) {
        Ok(out) if out.success() => Some(out.stdout),
        _ => None,
    };
    let is_t2 = ibridge.as_deref().is_some_and(|t| parse_ibridge(t).t2);
    let needs_nvram = !cpu.trim().starts_with("Apple")
        && is_t2
        && ibridge.as_deref().is_some_and(|t| parse_ibridge(t).secure_boot.is_none());
    let nvram = needs_nvram.then(|| match host.run("nvram", &[NVRAM_POLICY]) {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => Err(format!("nvram exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(e.to_string()),
    });
    evaluate(&cpu, ibridge.as_deref(), nvram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvram_levels() {
        assert_eq!(parse_nvram_policy(&format!("{NVRAM_POLICY}\t%02\n")), Some("Full Security"));
        assert_eq!(parse_nvram_policy(&format!("{NVRAM_POLICY}\t%01\n")), Some("Medium Security"));
        assert_eq!(parse_nvram_policy(&format!("{NVRAM_POLICY}\t%00\n")), Some("No Security"));
        assert_eq!(parse_nvram_policy(""), None);
        let f = evaluate("Apple M1\n", Some("Controller:\n\n      Model Identifier: MacBookAir10,1\n"), None);
        assert_eq!(f.status, CheckStatus::Unknown);
        let contradictory = "Controller:\n\n      Boot Policy:\n        Secure Boot: Full Security\n        \
                             System Integrity Protection: Enabled\n        Allow All Kernel Extensions: Yes\n";
        let f = evaluate("Apple M2\n", Some(contradictory), None);
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("Allow All Kernel Extensions: Yes"));
    }
}
