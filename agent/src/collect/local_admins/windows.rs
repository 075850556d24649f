//! The Windows backend of the `local_admins` check.
//!
//! Lists the members of the local Administrators group by its well-known SID
//! `S-1-5-32-544` (the group name is translated, the SID is not):
//! `Get-LocalGroupMember -SID S-1-5-32-544` with `Name`, `SID`,
//! `PrincipalSource` and `ObjectClass` as JSON. These are the direct
//! members: a directory group among them makes every one of its (nested)
//! members an administrator, and the agent does not see who they are.
//!
//! Status rule: fail when a broad principal is an administrator
//! ([`broad_principal`]: Everyone, Authenticated Users, Users, Guests, the
//! logon-type groups such as Network and Interactive, Anonymous, the
//! application-package groups, Domain Users, Domain Guests, Domain
//! Computers, the Guest account); unknown when a directory group other than
//! Domain Admins or Enterprise Admins is a member ([`unresolved_group`]: its
//! members are not resolved, and it may take in every user), and when the
//! group cannot be listed (for example on a domain controller, or when an
//! orphaned SID makes the cmdlet fail); pass otherwise, with the members as
//! facts. User names enter the facts only through the privacy settings;
//! group names are kept as printed.

use serde_json::{Value, json};

use crate::collect::windows::{json_items, json_str, powershell};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "localaccounts";

/// Members of the Administrators group; SID and source as plain strings.
pub const SCRIPT: &str = "$ErrorActionPreference='Stop'; [Console]::OutputEncoding = [Text.Encoding]::UTF8; ConvertTo-Json -InputObject @(Get-LocalGroupMember -SID S-1-5-32-544 | Select-Object Name,@{n='SID';e={$_.SID.Value}},@{n='PrincipalSource';e={[string]$_.PrincipalSource}},ObjectClass)";

/// One member of the group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub sid: String,
    pub source: String,
    pub class: String,
}

/// Why a SID is too broad to be an administrator, if it is: the
/// well-known SIDs that stand for whole classes of logons, users or
/// programs (Microsoft Learn, "Well-known SIDs").
pub fn broad_principal(sid: &str) -> Option<&'static str> {
    let well_known = match sid {
        "S-1-1-0" => Some("Everyone"),
        "S-1-2-0" => Some("LOCAL (every local logon)"),
        "S-1-2-1" => Some("Console Logon"),
        "S-1-5-1" => Some("Dialup"),
        "S-1-5-2" => Some("Network (every network logon)"),
        "S-1-5-3" => Some("Batch (every batch logon)"),
        "S-1-5-4" => Some("Interactive"),
        "S-1-5-6" => Some("Service (every service logon)"),
        "S-1-5-7" => Some("Anonymous Logon"),
        "S-1-5-11" => Some("Authenticated Users"),
        "S-1-5-13" => Some("Terminal Server User"),
        "S-1-5-14" => Some("Remote Interactive Logon"),
        "S-1-5-15" => Some("This Organization"),
        "S-1-5-17" => Some("IUSR (anonymous web users)"),
        "S-1-5-113" => Some("Local account (every local account)"),
        "S-1-5-1000" => Some("Other Organization"),
        "S-1-5-32-545" => Some("Users"),
        "S-1-5-32-546" => Some("Guests"),
        "S-1-15-2-1" => Some("ALL APPLICATION PACKAGES"),
        "S-1-15-2-2" => Some("ALL RESTRICTED APPLICATION PACKAGES"),
        _ => None,
    };
    well_known.or_else(|| match domain_rid(sid)? {
        501 => Some("Guest"),
        513 => Some("Domain Users"),
        514 => Some("Domain Guests"),
        515 => Some("Domain Computers"),
        _ => None,
    })
}

/// The relative ID of an account or group SID of a domain or computer
/// (`S-1-5-21-a-b-c-RID`).
fn domain_rid(sid: &str) -> Option<u32> {
    let rest = sid.strip_prefix("S-1-5-21-")?;
    (rest.split('-').count() == 4).then(|| rest.rsplit('-').next()?.parse().ok())?
}

/// Whether a member is a directory group whose members the agent does not
/// see: an Active Directory group (local groups cannot be members of a
/// local group, so a group with a domain SID is a domain group) or a
/// Microsoft Entra ID group, other than the domain's own administrator
/// groups (Domain Admins, RID 512; Enterprise Admins, RID 519), whose
/// membership is the domain's control.
pub fn unresolved_group(m: &Member) -> bool {
    m.class.eq_ignore_ascii_case("Group")
        && broad_principal(&m.sid).is_none()
        && ((m.sid.starts_with("S-1-5-21-") && !matches!(domain_rid(&m.sid), Some(512 | 519)))
            || m.sid.starts_with("S-1-12-1-"))
}

/// Parses the JSON of [`SCRIPT`].
pub fn parse_members(text: &str) -> Result<Vec<Member>, ParseError> {
    let items = json_items(text)?;
    items
        .iter()
        .map(|m| {
            let sid = json_str(m, "SID")
                .or_else(|| m.get("SID").and_then(|s| s.get("Value")).and_then(Value::as_str))
                .ok_or_else(|| ParseError::new(format!("member without SID: {m}")))?;
            Ok(Member {
                name: json_str(m, "Name").unwrap_or("").to_string(),
                sid: sid.to_string(),
                source: json_str(m, "PrincipalSource").unwrap_or("Unknown").to_string(),
                class: json_str(m, "ObjectClass").unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Decides the check from the script output.
pub fn evaluate(text: &str, ctx: &Context) -> Finding {
    let members = match parse_members(text) {
        Ok(m) => m,
        Err(e) => {
            return Finding::unknown(BACKEND, format!("Administrators group output unreadable: {e}"))
                .with_raw(text);
        }
    };
    let listed: Vec<Value> = members
        .iter()
        .map(|m| {
            // Groups and well-known principals name no person; accounts do.
            let name = if m.class == "Group" || broad_principal(&m.sid).is_some() {
                Some(m.name.clone())
            } else {
                ctx.personal(Personal::UserName, &m.name)
            };
            let mut v = json!({"object_class": m.class, "source": m.source,
                               "builtin_administrator": m.sid.starts_with("S-1-5-21-") && m.sid.ends_with("-500")});
            if let (Some(name), Some(obj)) = (name, v.as_object_mut()) {
                obj.insert("name".into(), json!(name));
            }
            v
        })
        .collect();
    let broad: Vec<&str> = members.iter().filter_map(|m| broad_principal(&m.sid)).collect();
    let unresolved: Vec<&str> =
        members.iter().filter(|m| unresolved_group(m)).map(|m| m.name.as_str()).collect();
    let base = |status| {
        Finding::new(status, BACKEND)
            .fact("admin_count", members.len())
            .fact("members", listed.clone())
            .fact("broad_principals", broad.clone())
            .fact("unresolved_groups", unresolved.clone())
            .with_raw(text)
    };
    if members.is_empty() {
        return base(CheckStatus::Unknown).with_reason("the Administrators group was listed empty");
    }
    if !broad.is_empty() {
        return base(CheckStatus::Fail)
            .with_reason(format!("broad principals are administrators: {}", broad.join(", ")));
    }
    if !unresolved.is_empty() {
        return base(CheckStatus::Unknown).with_reason(format!(
            "the members of directory groups that are administrators are not resolved by the agent, and \
             any of them may take in every user (Domain Users nested, for one): {}",
            unresolved.join(", ")
        ));
    }
    base(CheckStatus::Pass).with_reason(format!("{} members, no broad principal", members.len()))
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    match powershell(host, SCRIPT) {
        Ok(text) => evaluate(&text, ctx),
        Err(e) => e.unknown(BACKEND, "the Administrators group could not be listed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(sid: &str, class: &str) -> Member {
        Member {
            name: format!("X\\{sid}"),
            sid: sid.into(),
            source: "ActiveDirectory".into(),
            class: class.into(),
        }
    }

    #[test]
    fn broad_and_unresolved_principals() {
        assert_eq!(broad_principal("S-1-5-2"), Some("Network (every network logon)"));
        assert_eq!(broad_principal("S-1-5-21-1-2-3-514"), Some("Domain Guests"));
        assert_eq!(broad_principal("S-1-5-21-1-2-3-1513"), None);
        assert_eq!(broad_principal("S-1-5-21-1-2-513"), None, "not a domain SID");
        assert!(!unresolved_group(&member("S-1-5-21-1-2-3-512", "Group")));
        assert!(unresolved_group(&member("S-1-5-21-1-2-3-1107", "Group")));
        assert!(!unresolved_group(&member("S-1-5-21-1-2-3-1107", "User")));
        assert!(unresolved_group(&member("S-1-12-1-1-2-3-4", "Group")));
    }
}
