//! The Windows backend of the `local_admins` check.
//!
//! Lists the members of the local Administrators group by its well-known SID
//! `S-1-5-32-544` (the group name is translated, the SID is not):
//! `Get-LocalGroupMember -SID S-1-5-32-544` with `Name`, `SID`,
//! `PrincipalSource` and `ObjectClass` as JSON.
//!
//! Status rule: fail when a broad principal is an administrator: Everyone
//! (`S-1-1-0`), Anonymous (`S-1-5-7`), Interactive (`S-1-5-4`),
//! Authenticated Users (`S-1-5-11`), Users (`S-1-5-32-545`), Domain Users
//! (`*-513`) or Domain Computers (`*-515`); pass otherwise, with the members
//! as facts. Unknown when the group cannot be listed (for example on a
//! domain controller, or when an orphaned SID makes the cmdlet fail). User
//! names enter the facts only through the privacy settings; group names are
//! kept as printed.

use serde_json::{Value, json};

use crate::collect::windows::{json_items, json_str, powershell};
use crate::collect::{Context, Finding};
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

/// Why a SID is too broad to be an administrator, if it is.
pub fn broad_principal(sid: &str) -> Option<&'static str> {
    match sid {
        "S-1-1-0" => Some("Everyone"),
        "S-1-5-7" => Some("Anonymous Logon"),
        "S-1-5-4" => Some("Interactive"),
        "S-1-5-11" => Some("Authenticated Users"),
        "S-1-5-32-545" => Some("Users"),
        s if s.starts_with("S-1-5-21-") && s.ends_with("-513") => Some("Domain Users"),
        s if s.starts_with("S-1-5-21-") && s.ends_with("-515") => Some("Domain Computers"),
        _ => None,
    }
}

/// Parses the JSON of [`SCRIPT`].
pub fn parse_members(text: &str) -> Result<Vec<Member>, String> {
    let items = json_items(text)?;
    items
        .iter()
        .map(|m| {
            let sid = json_str(m, "SID")
                .or_else(|| m.get("SID").and_then(|s| s.get("Value")).and_then(Value::as_str))
                .ok_or_else(|| format!("member without SID: {m}"))?;
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
    let base = |status| {
        Finding::new(status, BACKEND)
            .fact("admin_count", members.len())
            .fact("members", listed.clone())
            .fact("broad_principals", broad.clone())
            .with_raw(text)
    };
    if members.is_empty() {
        return base(CheckStatus::Unknown).with_reason("the Administrators group was listed empty");
    }
    if !broad.is_empty() {
        return base(CheckStatus::Fail)
            .with_reason(format!("broad principals are administrators: {}", broad.join(", ")));
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
