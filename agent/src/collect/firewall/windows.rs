//! The Windows backend of the `firewall` check.
//!
//! Reads the *effective* Windows Defender Firewall profiles (local settings
//! merged with Group Policy) with
//! `Get-NetFirewallProfile -PolicyStore ActiveStore` as JSON: `Name`,
//! `Enabled` (GpoBoolean: 0 False, 1 True, 2 NotConfigured) and
//! `DefaultInboundAction` (0 NotConfigured, 2 Allow, 4 Block). When
//! PowerShell cannot answer, falls back to `netsh advfirewall show
//! allprofiles` (English text: `State ON`, `Firewall Policy
//! BlockInbound,AllowOutbound`).
//!
//! Status rule: pass only when the Domain, Private and Public profiles are all
//! enabled and block unsolicited inbound traffic by default (NotConfigured on
//! the ActiveStore is the Windows default, Block). A profile that is off or
//! allows inbound by default is fail; a profile missing from the output,
//! `Enabled` NotConfigured (not resolved) or unreadable output is unknown.

use serde_json::{Value, json};

use crate::collect::windows::{Unavailable, console, json_bool, json_items, json_str, powershell};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND_PS: &str = "netsecurity";
const BACKEND_NETSH: &str = "netsh";

/// Effective firewall profiles, GPO merged; enums print as numbers.
pub const PROFILE_SCRIPT: &str = "$ErrorActionPreference='Stop'; ConvertTo-Json -InputObject @(Get-NetFirewallProfile -PolicyStore ActiveStore | Select-Object Name,Enabled,DefaultInboundAction,DefaultOutboundAction)";

/// One firewall profile as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `Domain`, `Private` or `Public`.
    pub name: String,
    /// `None` when not resolved (NotConfigured) or unreadable.
    pub enabled: Option<bool>,
    /// `Block`, `Allow` or `NotConfigured` (Block on the ActiveStore).
    pub default_inbound: String,
}

impl Profile {
    fn blocks_inbound(&self) -> bool {
        matches!(self.default_inbound.as_str(), "Block" | "NotConfigured" | "BlockAll")
    }
    fn to_json(&self) -> Value {
        json!({"name": self.name, "enabled": self.enabled, "default_inbound": self.default_inbound})
    }
}

fn gpo_boolean(v: Option<&Value>) -> Option<bool> {
    match v {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("NotConfigured") => None,
        Some(Value::Number(n)) if n.as_i64() == Some(2) => None,
        other => json_bool(other),
    }
}

fn inbound_action(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => "NotConfigured".into(),
            Some(2) => "Allow".into(),
            Some(4) => "Block".into(),
            other => format!("unknown ({other:?})"),
        },
        _ => "unknown".into(),
    }
}

/// Parses the JSON of [`PROFILE_SCRIPT`].
pub fn parse_netfirewallprofile(text: &str) -> Result<Vec<Profile>, String> {
    let items = json_items(text)?;
    let profiles: Vec<Profile> = items
        .iter()
        .filter_map(|p| {
            Some(Profile {
                name: json_str(p, "Name")?.to_string(),
                enabled: gpo_boolean(p.get("Enabled")),
                default_inbound: inbound_action(p.get("DefaultInboundAction")),
            })
        })
        .collect();
    if profiles.is_empty() {
        return Err("Get-NetFirewallProfile listed no profile".into());
    }
    Ok(profiles)
}

/// Parses `netsh advfirewall show allprofiles` (English output).
pub fn parse_netsh_allprofiles(text: &str) -> Result<Vec<Profile>, String> {
    let mut profiles: Vec<Profile> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(head) =
            line.strip_suffix(':').map(str::trim).and_then(|h| h.strip_suffix("Profile Settings"))
        {
            profiles.push(Profile {
                name: head.trim().to_string(),
                enabled: None,
                default_inbound: "unknown".into(),
            });
            continue;
        }
        let Some(current) = profiles.last_mut() else { continue };
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if key == "State" {
            current.enabled = match value.trim() {
                "ON" => Some(true),
                "OFF" => Some(false),
                _ => None,
            };
        } else if key == "Firewall"
            && let Some(policy) = value.trim().strip_prefix("Policy")
        {
            let inbound = policy.trim().split(',').next().unwrap_or("").trim();
            current.default_inbound = match inbound {
                "BlockInbound" => "Block".into(),
                "BlockInboundAlways" => "BlockAll".into(),
                "AllowInbound" => "Allow".into(),
                "NotConfigured" => "NotConfigured".into(),
                other => format!("unknown ({other})"),
            };
        }
    }
    if profiles.is_empty() {
        return Err("netsh printed no \"... Profile Settings:\" section (non-English output?)".into());
    }
    Ok(profiles)
}

/// Decides the check from the profiles read by `backend`.
pub fn evaluate(profiles: &[Profile], backend: &str, raw: &str) -> Finding {
    let enabled = profiles.iter().filter(|p| p.enabled == Some(true)).count();
    let base = |status| {
        Finding::new(status, backend)
            .fact("profiles_enabled", enabled)
            .fact("profiles", profiles.iter().map(Profile::to_json).collect::<Vec<_>>())
            .with_raw(raw)
    };
    let mut problems = Vec::new();
    let mut unclear = Vec::new();
    for name in ["Domain", "Private", "Public"] {
        match profiles.iter().find(|p| p.name.eq_ignore_ascii_case(name)) {
            None => unclear.push(format!("{name} profile not listed")),
            Some(p) => {
                match p.enabled {
                    Some(true) => {}
                    Some(false) => problems.push(format!("{name} profile is off")),
                    None => unclear.push(format!("{name} profile state is not resolved")),
                }
                if p.default_inbound.starts_with("unknown") {
                    unclear.push(format!("{name} profile inbound action is {}", p.default_inbound));
                } else if !p.blocks_inbound() {
                    problems.push(format!("{name} profile allows inbound traffic by default"));
                }
            }
        }
    }
    if !problems.is_empty() {
        problems.extend(unclear);
        return base(CheckStatus::Fail).with_reason(problems.join("; "));
    }
    if !unclear.is_empty() {
        return base(CheckStatus::Unknown).with_reason(unclear.join("; "));
    }
    base(CheckStatus::Pass)
        .with_reason("Domain, Private and Public profiles are on and block inbound by default")
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let ps_problem = match powershell(host, PROFILE_SCRIPT) {
        Ok(text) => match parse_netfirewallprofile(&text) {
            Ok(profiles) => return evaluate(&profiles, BACKEND_PS, &text),
            Err(e) => Unavailable::Failed(e),
        },
        Err(e) => e,
    };
    match console(host, "netsh", &["advfirewall", "show", "allprofiles"]) {
        Ok(text) => match parse_netsh_allprofiles(&text) {
            Ok(profiles) => evaluate(&profiles, BACKEND_NETSH, &text),
            Err(e) => Finding::unknown(
                BACKEND_NETSH,
                format!("{e}; Get-NetFirewallProfile: {}", ps_problem.message()),
            )
            .with_raw(text),
        },
        Err(e) => e.unknown(
            BACKEND_NETSH,
            &format!(
                "firewall profiles could not be read (Get-NetFirewallProfile: {})",
                ps_problem.message()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_object_and_string_enums() {
        let one = "{\"Name\":\"Public\",\"Enabled\":\"True\",\"DefaultInboundAction\":\"Allow\"}";
        let p = parse_netfirewallprofile(one).unwrap();
        assert_eq!(
            p,
            vec![Profile { name: "Public".into(), enabled: Some(true), default_inbound: "Allow".into() }]
        );
        assert!(parse_netfirewallprofile("garbage").is_err());
    }

    #[test]
    fn netsh_block_inbound_always_counts_as_blocking() {
        let text = "\r\nPublic Profile Settings: \r\n-----\r\nState                                 ON\r\n\
                    Firewall Policy                       BlockInboundAlways,AllowOutbound\r\n";
        let p = parse_netsh_allprofiles(text).unwrap();
        assert_eq!(p[0].name, "Public");
        assert_eq!(p[0].enabled, Some(true));
        assert!(p[0].blocks_inbound());
    }
}
