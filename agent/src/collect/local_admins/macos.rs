//! The macOS backend of the `local_admins` check.
//!
//! Who is an administrator is what opendirectoryd's membership resolver
//! says for the local `admin` group, and it counts more than the names in
//! `GroupMembership`: members by `GroupMembers` (GeneratedUIDs, which need
//! not have a name in `GroupMembership`), every user whose `PrimaryGroupID`
//! is the group's (80), and the members of `NestedGroups`. So the agent
//! reads `dscl . -read /Groups/admin GroupMembership GroupMembers
//! NestedGroups` (`Key: value ...`, a long value continuing on indented
//! lines; dscl exits non-zero when a key is missing but prints the others),
//! and the local users' ids, GeneratedUIDs and primary groups (`dscl .
//! -list /Users UniqueID` / `GeneratedUID` / `PrimaryGroupID`, `name value`
//! per line), and joins them.
//!
//! A nested group stands for everyone when it is one of the built-in groups
//! every account is in (`everyone`, `staff`, `localaccounts`, `netaccounts`,
//! `authedusers`, ...: GeneratedUID `ABCDEFAB-CDEF-ABCD-EFAB-CDEF` + the gid
//! in hex) or a directory group named like one (`Domain Users`); other
//! nested groups are named with `dscl /Search -search /Groups GeneratedUID
//! GUID`. One that cannot be named may be anyone, so it makes a pass
//! `unknown`; its members are not listed (they live in the directory).
//!
//! `/etc/sudoers` and what it includes (`#includedir /private/etc/sudoers.d`
//! on macOS; root only) is read as on Linux: a rule that lets `ALL` users,
//! or a group every account is in (`%staff`, `%everyone`, ...), run a
//! root-equivalent command is a grant to everyone.
//!
//! User names enter facts only through `ctx.personal`.
//!
//! Status rule: fail when an account other than `root` has uid 0, the admin
//! group nests a group of everyone, or sudoers grants root to everyone;
//! unknown when the admin group, the user list or sudoers cannot be read, or
//! a nested group cannot be named; otherwise pass, with the administrators
//! as facts (`admin_count`, `admins`, as on Linux).

use std::collections::{BTreeMap, BTreeSet};

use super::linux::{parse_sudoers, read_sudoers};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

/// The admin group's gid.
const ADMIN_GID: &str = "80";
/// The GeneratedUID of a built-in group is this prefix and its gid in hex.
const BUILTIN_GUID_PREFIX: &str = "ABCDEFAB-CDEF-ABCD-EFAB-CDEF";
/// Built-in groups every account (or every logged-in one) is in, by gid.
const EVERYONE_GIDS: &[(u32, &str)] = &[
    (12, "everyone"),
    (20, "staff"),
    (50, "authedusers"),
    (51, "interactusers"),
    (52, "netusers"),
    (53, "consoleusers"),
    (61, "localaccounts"),
    (62, "netaccounts"),
];
/// Directory groups of every account, by name (case does not matter).
const EVERYONE_NAMES: &[&str] = &["domain users", "authenticated users", "everyone", "users"];

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

/// `(name, value)` pairs from `dscl . -list /Users KEY` (a name may not
/// contain spaces; the value is the last word).
pub fn parse_dscl_list(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let value = words.last()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// `(name, uid)` pairs from `dscl . -list /Users UniqueID`.
pub fn parse_dscl_uids(text: &str) -> Vec<(String, i64)> {
    parse_dscl_list(text).into_iter().filter_map(|(n, u)| u.parse().ok().map(|u| (n, u))).collect()
}

/// The name of a group every account is in, if `guid` is a built-in one.
pub fn builtin_everyone(guid: &str) -> Option<&'static str> {
    let hex = guid.to_ascii_uppercase().strip_prefix(BUILTIN_GUID_PREFIX)?.to_string();
    let gid = u32::from_str_radix(&hex, 16).ok()?;
    EVERYONE_GIDS.iter().find(|(g, _)| *g == gid).map(|(_, n)| *n)
}

/// The record name in `dscl /Search -search /Groups GeneratedUID GUID`
/// output (`Domain Users\t\tGeneratedUID = (...)`).
pub fn parse_search_name(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("GeneratedUID"))?;
    let name = line.split('\t').next()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// What was read from the local directory.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// `GroupMembership`, `GroupMembers` and `NestedGroups` of admin.
    pub membership: Vec<String>,
    pub members: Vec<String>,
    pub nested: Vec<String>,
    pub uids: Vec<(String, i64)>,
    pub guids: Vec<(String, String)>,
    pub primary_gids: Vec<(String, String)>,
    /// The name of each nested group, where the directory gave one.
    pub nested_names: BTreeMap<String, String>,
}

/// Who is an administrator, how, and what cannot be resolved.
struct Admins {
    names: BTreeSet<String>,
    /// `GroupMembers` GUIDs with no local user.
    unresolved_members: usize,
    /// Nested groups of everyone, by name.
    everyone: Vec<String>,
    /// Nested groups that could not be named.
    unnamed: Vec<String>,
}

fn admins(d: &Directory) -> Admins {
    let mut names: BTreeSet<String> = d.membership.iter().cloned().collect();
    let mut unresolved_members = 0;
    for guid in &d.members {
        match d.guids.iter().find(|(_, g)| g.eq_ignore_ascii_case(guid)) {
            Some((name, _)) => {
                names.insert(name.clone());
            }
            None => unresolved_members += 1,
        }
    }
    // A user whose primary group is admin is a member without being listed.
    names.extend(d.primary_gids.iter().filter(|(_, g)| g == ADMIN_GID).map(|(n, _)| n.clone()));
    let (mut everyone, mut unnamed) = (Vec::new(), Vec::new());
    for guid in &d.nested {
        match (builtin_everyone(guid), d.nested_names.get(guid)) {
            (Some(name), _) => everyone.push(name.to_string()),
            (None, Some(name)) if EVERYONE_NAMES.contains(&name.to_ascii_lowercase().as_str()) => {
                everyone.push(name.clone())
            }
            (None, Some(_)) => {}
            (None, None) => unnamed.push(guid.clone()),
        }
    }
    Admins { names, unresolved_members, everyone, unnamed }
}

/// Whether a sudoers user entry (after aliases) stands for every account.
fn is_everyone(entry: &str) -> bool {
    let entry = entry.trim();
    if entry == "ALL" {
        return true;
    }
    let Some(group) = entry.strip_prefix('%') else { return false };
    match group.strip_prefix('#') {
        Some(gid) => EVERYONE_GIDS.iter().any(|(g, _)| gid.parse() == Ok(*g)),
        None => EVERYONE_GIDS.iter().any(|(_, n)| *n == group),
    }
}

/// The user entries of root-equivalent sudoers grants to everyone, from the
/// files' text (aliases expanded).
pub fn sudo_everyone(files: &[(String, String)]) -> Vec<String> {
    let parsed: Vec<_> = files.iter().map(|(_, t)| parse_sudoers(t)).collect();
    let aliases: BTreeMap<String, Vec<String>> = parsed.iter().flat_map(|s| s.user_aliases.clone()).collect();
    let mut out = Vec::new();
    for entry in parsed.iter().flat_map(|s| s.all_grants.iter()) {
        let (mut stack, mut seen) = (vec![entry.clone()], BTreeSet::new());
        while let Some(e) = stack.pop() {
            match aliases.get(&e) {
                Some(members) if seen.insert(e.clone()) => stack.extend(members.iter().cloned()),
                Some(_) => {}
                None if is_everyone(&e) => out.push(entry.clone()),
                None => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Decides the check from the directory and the sudoers files (`None`: no
/// sudoers; `Err`: unreadable).
pub fn evaluate(
    d: &Directory,
    sudoers: Option<Result<Vec<(String, String)>, HostError>>,
    ctx: &Context,
    raw: &str,
) -> Finding {
    let a = admins(d);
    let uid0: Vec<&str> = d.uids.iter().filter(|(_, u)| *u == 0).map(|(n, _)| n.as_str()).collect();
    let others: Vec<&str> = uid0.iter().copied().filter(|n| *n != "root").collect();
    let sudo = sudoers.as_ref().map(|r| r.as_ref().map(|files| sudo_everyone(files)));
    let mut f = Finding::pass("dscl")
        .fact("admin_count", a.names.len())
        .fact("admins", ctx.personal_list(Personal::UserName, a.names.iter().map(String::as_str)))
        .fact("nested_admin_groups", d.nested.len())
        .fact("broad_admin_groups", a.everyone.clone())
        .fact("unresolved_admin_members", a.unresolved_members)
        .fact("uid0_accounts", ctx.personal_list(Personal::UserName, uid0.iter().copied()))
        .fact("uid0_count", uid0.len())
        .fact("sudoers_readable", sudoers.as_ref().map(|r| r.is_ok()))
        .fact("sudo_grants_everyone", matches!(&sudo, Some(Ok(e)) if !e.is_empty()))
        .with_raw(raw);
    let mut problems = Vec::new();
    if !others.is_empty() {
        let shown = ctx.personal_list(Personal::UserName, others.iter().copied());
        let list = if shown.is_empty() { String::new() } else { format!(" ({})", shown.join(", ")) };
        problems.push(format!("{} account(s) other than root have uid 0{list}", others.len()));
    }
    if !a.everyone.is_empty() {
        problems.push(format!("the admin group nests {}, which every account is in", a.everyone.join(", ")));
    }
    if let Some(Ok(e)) = &sudo
        && !e.is_empty()
    {
        problems.push(format!(
            "sudoers lets every account run a root shell or any command as root ({})",
            e.join(", ")
        ));
    }
    if !problems.is_empty() {
        f.status = CheckStatus::Fail;
        return f.with_reason(problems.join("; "));
    }
    if let Some(Err(e)) = &sudo {
        f.status = CheckStatus::Unknown;
        return f.with_reason(format!("sudoers could not be read ({e}); its grants are not known"));
    }
    if !a.unnamed.is_empty() {
        f.status = CheckStatus::Unknown;
        return f.with_reason(format!(
            "the admin group nests {} group(s) the directory does not name ({}), which may stand for everyone",
            a.unnamed.len(),
            a.unnamed.join(", ")
        ));
    }
    let groups =
        if d.nested.is_empty() { String::new() } else { format!(" and {} nested group(s)", d.nested.len()) };
    f.with_reason(format!("{} members of the admin group{groups}; only root has uid 0", a.names.len()))
}

/// `dscl . -list /Users KEY`.
fn list_users(host: &dyn Host, key: &str, raw: &mut String) -> Result<String, String> {
    match host.run("dscl", &[".", "-list", "/Users", key]) {
        Ok(out) if out.success() => {
            raw.push_str(&out.stdout);
            Ok(out.stdout)
        }
        Ok(out) => Err(format!("dscl . -list /Users {key}: {}", out.stderr.trim())),
        Err(e) => Err(format!("dscl: {e}")),
    }
}

/// Reads the local directory: the admin group and the users.
fn read_directory(host: &dyn Host, raw: &mut String) -> Result<Directory, String> {
    let group = match host
        .run("dscl", &[".", "-read", "/Groups/admin", "GroupMembership", "GroupMembers", "NestedGroups"])
    {
        // dscl exits non-zero when one of the keys is missing but prints the others.
        Ok(out) if out.stdout.contains("GroupMembership:") || out.success() => out.stdout,
        Ok(out) => return Err(format!("the admin group could not be read: {}", out.stderr.trim())),
        Err(e) => return Err(format!("dscl: {e}")),
    };
    raw.push_str(&group);
    let attr = |k: &str| parse_dscl_attribute(&group, k).unwrap_or_default();
    let mut d = Directory {
        membership: attr("GroupMembership"),
        members: attr("GroupMembers"),
        nested: attr("NestedGroups"),
        ..Directory::default()
    };
    d.uids = parse_dscl_uids(&list_users(host, "UniqueID", raw)?);
    if d.uids.is_empty() {
        return Err("dscl listed no user ids".into());
    }
    d.primary_gids = parse_dscl_list(&list_users(host, "PrimaryGroupID", raw)?);
    if !d.members.is_empty() {
        d.guids = parse_dscl_list(&list_users(host, "GeneratedUID", raw)?);
    }
    for guid in d.nested.iter().filter(|g| builtin_everyone(g).is_none()) {
        let name = host
            .run("dscl", &["/Search", "-search", "/Groups", "GeneratedUID", guid])
            .ok()
            .filter(|o| o.success())
            .and_then(|o| parse_search_name(&o.stdout));
        if let Some(name) = name {
            d.nested_names.insert(guid.clone(), name);
        }
    }
    Ok(d)
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let mut raw = String::new();
    let d = match read_directory(host, &mut raw) {
        Ok(d) => d,
        Err(e) => return Finding::unknown("dscl", e).with_raw(raw),
    };
    let sudoers = read_sudoers(host);
    if let Some(Ok(files)) = &sudoers {
        for (path, text) in files {
            raw.push_str(&format!("\n# {path}\n{text}"));
        }
    }
    evaluate(&d, sudoers, ctx, &raw)
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

    #[test]
    fn members_by_guid_and_primary_group_and_groups_of_everyone_count() {
        let d = Directory {
            membership: vec!["root".into(), "alice".into()],
            members: vec!["11111111-2222-3333-4444-555555555555".into()],
            nested: vec!["ABCDEFAB-CDEF-ABCD-EFAB-CDEF00000014".into()],
            uids: vec![
                ("root".into(), 0),
                ("alice".into(), 501),
                ("bob".into(), 502),
                ("_helper".into(), 401),
            ],
            guids: vec![("bob".into(), "11111111-2222-3333-4444-555555555555".into())],
            primary_gids: vec![("_helper".into(), "80".into()), ("alice".into(), "20".into())],
            nested_names: BTreeMap::new(),
        };
        let a = admins(&d);
        assert_eq!(a.names.into_iter().collect::<Vec<_>>(), vec!["_helper", "alice", "bob", "root"]);
        assert_eq!(a.everyone, vec!["staff"]);
        assert_eq!(builtin_everyone("ABCDEFAB-CDEF-ABCD-EFAB-CDEF00000050"), None, "admin itself");
        assert_eq!(
            parse_search_name(
                "Domain Users\t\tGeneratedUID = (\n    \"7C1B2F3A-4D5E-4F60-8A9B-0C1D2E3F4A5B\"\n)\n"
            ),
            Some("Domain Users".into())
        );
    }

    #[test]
    fn sudo_grants_to_groups_of_everyone() {
        let files = vec![(
            "/etc/sudoers".to_string(),
            "root ALL = (ALL) ALL\n%admin ALL = (ALL) ALL\nUser_Alias STAFF = %staff\nSTAFF ALL = (ALL) NOPASSWD: /bin/zsh\n"
                .to_string(),
        )];
        assert_eq!(sudo_everyone(&files), vec!["STAFF"]);
        let fine =
            vec![("/etc/sudoers".to_string(), "root ALL = (ALL) ALL\n%admin ALL = (ALL) ALL\n".to_string())];
        assert!(sudo_everyone(&fine).is_empty());
    }
}
