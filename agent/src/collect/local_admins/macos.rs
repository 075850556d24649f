//! The macOS backend of the `local_admins` check.
//!
//! Reads the members of the local `admin` group with `dscl . -read
//! /Groups/admin GroupMembership` (`GroupMembership: root alice`; a long
//! value may continue on indented lines) and the `NestedGroups` of that
//! group (directory groups granted admin rights, e.g. by a directory
//! binding), and the user ids with `dscl . -list /Users UniqueID` (`name`
//! and uid per line). `/etc/sudoers` (needs root) is not read: on macOS it
//! grants `ALL` to `%admin`, which the group already covers.
//!
//! User names enter facts only through `ctx.personal`.
//!
//! Status rule: fail when an account other than `root` has uid 0; unknown
//! when the admin group or the user list cannot be read; otherwise pass,
//! with the administrators as facts (`admin_count`, `admins`, as on Linux).

use crate::collect::{Context, Finding};
use crate::host::Host;
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

/// The values of one attribute in `dscl . -read` output.
pub fn parse_dscl_attribute(text: &str, key: &str) -> Option<Vec<String>> {
    let prefix = format!("{key}:");
    let mut lines = text.lines();
    let first = lines.by_ref().find(|l| l.starts_with(&prefix))?;
    let mut values: Vec<String> = first[prefix.len()..].split_whitespace().map(str::to_string).collect();
    // Continuation lines start with a space; the next attribute does not.
    for l in lines.take_while(|l| l.starts_with(' ')) {
        values.extend(l.split_whitespace().map(str::to_string));
    }
    Some(values)
}

/// `(name, uid)` pairs from `dscl . -list /Users UniqueID`.
pub fn parse_dscl_uids(text: &str) -> Vec<(String, i64)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let uid = words.next()?.parse::<i64>().ok()?;
            Some((name.to_string(), uid))
        })
        .collect()
}

/// Decides the check from the admin group members, nested groups and uids.
pub fn evaluate(
    members: &[String],
    nested: usize,
    uids: &[(String, i64)],
    ctx: &Context,
    raw: &str,
) -> Finding {
    let uid0: Vec<&str> = uids.iter().filter(|(_, u)| *u == 0).map(|(n, _)| n.as_str()).collect();
    let others: Vec<&str> = uid0.iter().copied().filter(|n| *n != "root").collect();
    let mut f = Finding::pass("dscl")
        .fact("admin_count", members.len())
        .fact("admins", ctx.personal_list(Personal::UserName, members.iter().map(String::as_str)))
        .fact("nested_admin_groups", nested)
        .fact("uid0_accounts", ctx.personal_list(Personal::UserName, uid0.iter().copied()))
        .fact("uid0_count", uid0.len())
        .with_raw(raw);
    if !others.is_empty() {
        let shown = ctx.personal_list(Personal::UserName, others.iter().copied());
        let list = if shown.is_empty() { String::new() } else { format!(" ({})", shown.join(", ")) };
        f.status = CheckStatus::Fail;
        return f.with_reason(format!("{} account(s) other than root have uid 0{list}", others.len()));
    }
    let groups = if nested > 0 { format!(" and {nested} nested directory group(s)") } else { String::new() };
    f.with_reason(format!("{} members of the admin group{groups}; only root has uid 0", members.len()))
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let mut raw = String::new();
    let group = match host.run("dscl", &[".", "-read", "/Groups/admin", "GroupMembership", "NestedGroups"]) {
        // dscl exits non-zero when one of the keys is missing but prints the other.
        Ok(out) if out.stdout.contains("GroupMembership:") || out.success() => out.stdout,
        Ok(out) => {
            return Finding::unknown(
                "dscl",
                format!("the admin group could not be read: {}", out.stderr.trim()),
            );
        }
        Err(e) => return Finding::unknown("dscl", format!("dscl: {e}")),
    };
    raw.push_str(&group);
    let members = parse_dscl_attribute(&group, "GroupMembership").unwrap_or_default();
    let nested = parse_dscl_attribute(&group, "NestedGroups").map_or(0, |g| g.len());
    let uids = match host.run("dscl", &[".", "-list", "/Users", "UniqueID"]) {
        Ok(out) if out.success() => out.stdout,
        Ok(out) => {
            return Finding::unknown(
                "dscl",
                format!("the user list could not be read: {}", out.stderr.trim()),
            )
            .with_raw(raw);
        }
        Err(e) => return Finding::unknown("dscl", format!("dscl: {e}")).with_raw(raw),
    };
    raw.push_str(&uids);
    let uids = parse_dscl_uids(&uids);
    if uids.is_empty() {
        return Finding::unknown("dscl", "dscl listed no user ids").with_raw(raw);
    }
    evaluate(&members, nested, &uids, ctx, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_attributes_are_joined() {
        let text =
            "GroupMembership:\n root alice\n bob\nNestedGroups: ABCDEFAB-CDEF-ABCD-EFAB-CDEFABCDEF01\n";
        assert_eq!(parse_dscl_attribute(text, "GroupMembership").unwrap(), vec!["root", "alice", "bob"]);
        assert_eq!(parse_dscl_attribute(text, "NestedGroups").unwrap().len(), 1);
        assert!(parse_dscl_attribute(text, "RealName").is_none());
    }
}
