//! The Linux backends of the `local_admins` check.
//!
//! Reads the account and group databases as the system resolves them
//! (`getent passwd`, `getent group`: every NSS source that enumerates, so
//! a uid-0 account or an admin-group member from LDAP counts too; the files
//! `/etc/passwd` and `/etc/group` where getent is missing): accounts with
//! uid 0, members of the administrative groups `sudo`, `wheel` and `admin`,
//! including accounts whose primary group it is; and `/etc/sudoers` with the files it includes
//! (`@includedir`/`#includedir`: every file in the directory whose name has no
//! `.` and does not end in `~`, as sudo does; `@include`/`#include`). The
//! rules are read by sudo's own parser where it is installed (`cvtsudoers -e
//! -f json`: aliases expanded, includes followed), by the text otherwise. A
//! user specification grants administrative rights when it runs as root a
//! root-equivalent command: `ALL`, but also a shell, an interpreter or a
//! program with open arguments that runs commands (`sudo_rules.rs`); its
//! users (`name`, `%group`, `#uid`, `User_Alias` names, `ALL`) are resolved
//! against passwd and group. Not understood: netgroups (`+name`), non-Unix
//! groups (`%:name`), and, without cvtsudoers, `Cmnd_Alias` names.
//!
//! User names enter facts only through `ctx.personal`.
//!
//! Status rule: `fail` when an account other than `root` has uid 0, or
//! sudoers grants a root-equivalent command to `ALL` users; `unknown` when passwd or
//! group cannot be read, or sudoers exists but cannot be read (an
//! everyone-grant cannot then be ruled out; fact `sudoers_readable = false`);
//! otherwise `pass`, with the administrators listed as facts.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::sudo_rules::{self, root_equivalent};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

/// The groups whose members administer the host.
pub const ADMIN_GROUPS: &[&str] = &["sudo", "wheel", "admin"];

/// One `/etc/passwd` account.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One `/etc/group` group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses `/etc/passwd` (`name:x:uid:gid:gecos:home:shell`); NIS `+`/`-` lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<Account> {
    text.lines()
        .filter(|l| !l.starts_with(['#', '+', '-']))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Account {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Parses `/etc/group` (`name:x:gid:member,member`).
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with(['#', '+', '-']))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// What one sudoers file says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sudoers {
    /// Users lists (as written: `alice`, `%wheel`, `ALL`, alias names)
    /// granted root-equivalent commands (`ALL`, a shell ...: see `sudo_rules.rs`).
    pub all_grants: Vec<String>,
    /// The root-equivalent command of each grant to `ALL` users.
    pub everyone: Vec<String>,
    /// `User_Alias` definitions.
    pub user_aliases: BTreeMap<String, Vec<String>>,
    pub include_files: Vec<String>,
    pub include_dirs: Vec<String>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

/// Parses one sudoers file.
pub fn parse_sudoers(text: &str) -> Sudoers {
    let mut out = Sudoers::default();
    // Join continuation lines first.
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    for line in joined.lines().map(str::trim) {
        // `#include` and `#includedir` are directives, not comments.
        for (prefix, dir) in
            [("@includedir ", true), ("#includedir ", true), ("@include ", false), ("#include ", false)]
        {
            if let Some(path) = line.strip_prefix(prefix) {
                let path = path.trim().trim_matches('"').to_string();
                if dir {
                    out.include_dirs.push(path);
                } else {
                    out.include_files.push(path);
                }
            }
        }
        let uid_spec = line.strip_prefix('#').is_some_and(|r| r.starts_with(|d: char| d.is_ascii_digit()));
        if (line.starts_with(['#', '@']) && !uid_spec) || line.is_empty() {
            continue;
        }
        // A comment starts at a '#' that does not introduce a uid (`#1000`).
        let line = match line
            .char_indices()
            .find(|(i, c)| *c == '#' && !line[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            Some((i, _)) => line[..i].trim(),
            None => line,
        };
        let first = line.split_whitespace().next().unwrap_or("");
        if first.starts_with("Defaults")
            || matches!(first, "Runas_Alias" | "Host_Alias" | "Cmnd_Alias" | "Cmd_Alias")
        {
            continue;
        }
        if first == "User_Alias" {
            // User_Alias NAME = a, b : NAME2 = c
            for def in line["User_Alias".len()..].split(':') {
                if let Some((name, members)) = def.split_once('=') {
                    out.user_aliases.insert(name.trim().to_string(), split_list(members));
                }
            }
            continue;
        }
        let Some((left, right)) = line.split_once('=') else { continue };
        // "alice, bob  ALL" -> users "alice,bob", hosts "ALL".
        let left = left.replace(", ", ",").replace(" ,", ",");
        let Some(users) = left.split_whitespace().next() else { continue };
        // The first Runas part: no list runs as root; `(:group)` as oneself.
        let as_root = match (right.find('('), right.find(')')) {
            (Some(a), Some(b)) if a < b => {
                let runas = right[a + 1..b].split(':').next().unwrap_or("");
                split_list(runas).iter().any(|u| matches!(u.as_str(), "ALL" | "root" | "#0"))
            }
            _ => true,
        };
        // Drop the Runas part "(ALL:ALL)" and tags "NOPASSWD:" before reading the commands.
        let mut cmds = right.to_string();
        while let (Some(a), Some(b)) = (cmds.find('('), cmds.find(')')) {
            if b < a {
                break;
            }
            cmds.replace_range(a..=b, " ");
        }
        let cmds: Vec<String> = split_list(&cmds)
            .into_iter()
            .map(|c| {
                c.split_whitespace()
                    .filter(|w| {
                        !(w.ends_with(':')
                            && w[..w.len() - 1].chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if let Some(cmd) = cmds.iter().find(|c| as_root && root_equivalent(c)) {
            let users = split_list(users);
            if users.iter().any(|u| u == "ALL") {
                out.everyone.push(cmd.clone());
            }
            out.all_grants.extend(users);
        }
    }
    out
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub passwd: Option<Result<String, HostError>>,
    pub group: Option<Result<String, HostError>>,
    /// `None`: no /etc/sudoers (sudo not installed); `Some(Err)`: not readable.
    pub sudoers: Option<Result<Vec<(String, String)>, HostError>>,
    /// `cvtsudoers -e -f json /etc/sudoers`: sudo's own reading of the
    /// rules, which wins over the files' text; `None` where it is missing.
    pub sudo_json: Option<Result<String, String>>,
}

/// The account database: accounts and groups.
struct Accounts {
    accounts: Vec<Account>,
    groups: Vec<Group>,
}

impl Accounts {
    /// A group's members: listed ones and those whose primary group it is.
    fn members(&self, name: &str) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        if let Some(g) = self.groups.iter().find(|g| g.name == name) {
            set.extend(g.members.iter().cloned());
            set.extend(self.accounts.iter().filter(|a| a.gid == g.gid).map(|a| a.name.clone()));
        }
        set
    }

    /// The accounts sudoers user entries stand for (`name`, `%group`,
    /// `%#gid`, `#uid`, `User_Alias` names); `ALL` is counted apart.
    fn resolve(&self, entries: Vec<String>, aliases: &BTreeMap<String, Vec<String>>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = entries;
        let mut seen_alias = BTreeSet::new();
        while let Some(p) = stack.pop() {
            if p == "ALL" || p.starts_with(['!', '+']) {
                continue;
            }
            if let Some(gid) = p.strip_prefix("%#") {
                if let Some(g) = self.groups.iter().find(|g| gid.parse() == Ok(g.gid)) {
                    out.extend(self.members(&g.name));
                }
            } else if let Some(g) = p.strip_prefix('%') {
                out.extend(self.members(g));
            } else if let Some(uid) = p.strip_prefix('#') {
                out.extend(self.accounts.iter().filter(|a| uid.parse() == Ok(a.uid)).map(|a| a.name.clone()));
            } else if let Some(members) = aliases.get(&p) {
                if seen_alias.insert(p.clone()) {
                    stack.extend(members.iter().cloned());
                }
            } else {
                out.insert(p);
            }
        }
        out
    }
}

/// What the sudoers rules grant, as read.
struct SudoView {
    /// `null` (no sudoers), `false` (unreadable) or `true`.
    readable: serde_json::Value,
    /// Why the rules could not be read.
    error: Option<String>,
    /// User entries granted root-equivalent commands, and the aliases naming users.
    grants: Vec<String>,
    aliases: BTreeMap<String, Vec<String>>,
    /// The root-equivalent command of each grant to `ALL` users.
    everyone: Vec<String>,
}

/// The grants: sudo's own reading (cvtsudoers) where there is one, the
/// files' text otherwise; the files are kept in `raw` either way.
fn sudo_view(o: &Observed, raw: &mut String) -> SudoView {
    // Either failure leaves the grants unknown, and becomes a reason.
    let sudo_rules = o
        .sudo_json
        .as_ref()
        .map(|r| r.clone().and_then(|text| sudo_rules::grants(&text).map_err(|e| e.to_string())));
    let files = match (&o.sudoers, &sudo_rules) {
        (None, _) => None,
        (Some(_), Some(Err(e))) => Some(Err(e.clone())),
        (Some(Err(e)), _) => Some(Err(e.to_string())),
        (Some(Ok(files)), _) => Some(Ok(files)),
    };
    let mut view = SudoView {
        readable: json!(null),
        error: None,
        grants: Vec::new(),
        aliases: BTreeMap::new(),
        everyone: Vec::new(),
    };
    let files = match files {
        None => return view,
        Some(Err(e)) => {
            view.readable = json!(false);
            view.error = Some(e);
            return view;
        }
        Some(Ok(files)) => files,
    };
    view.readable = json!(true);
    let parsed: Vec<Sudoers> = match &sudo_rules {
        // sudo's reading: aliases expanded, nothing left to resolve.
        Some(Ok(grants)) => {
            raw.push_str(&format!(
                "\n# cvtsudoers -e -f json /etc/sudoers\n{}",
                o.sudo_json.clone().and_then(Result::ok).unwrap_or_default()
            ));
            vec![Sudoers {
                all_grants: grants.iter().flat_map(|g| g.users.clone()).collect(),
                everyone: everyone_of(grants),
                ..Sudoers::default()
            }]
        }
        _ => files.iter().map(|(_, t)| parse_sudoers(t)).collect(),
    };
    for (path, text) in files {
        raw.push_str(&format!("\n# {path}\n{text}"));
    }
    view.aliases = parsed.iter().flat_map(|s| s.user_aliases.clone()).collect();
    view.everyone = parsed.iter().flat_map(|s| s.everyone.clone()).collect();
    view.grants = parsed.iter().flat_map(|s| s.all_grants.clone()).collect();
    view
}

/// The commands that grants to `ALL` users allow, as the reason names them.
fn everyone_of(grants: &[sudo_rules::Grant]) -> Vec<String> {
    grants
        .iter()
        .filter(|g| g.users.iter().any(|u| u == "ALL"))
        .map(|g| if g.nopasswd { format!("{} without a password", g.command) } else { g.command.clone() })
        .collect()
}

/// Why the account database cannot be judged, if it cannot.
fn unreadable_accounts(o: &Observed) -> Option<Finding> {
    let why = |name: &str, r: &Option<Result<String, HostError>>| match r {
        Some(Ok(_)) => None,
        Some(Err(e)) => Some(format!("{name}: {e}")),
        None => Some(format!("{name} is missing")),
    };
    let reasons: Vec<String> =
        [why("/etc/passwd", &o.passwd), why("/etc/group", &o.group)].into_iter().flatten().collect();
    (!reasons.is_empty()).then(|| {
        Finding::unknown("passwd", format!("the account database could not be read ({})", reasons.join("; ")))
    })
}

/// Decides the check from what was observed: the admin groups, uid 0, the
/// sudoers grants, then the status.
pub fn evaluate(o: &Observed, ctx: &Context) -> Finding {
    if let Some(f) = unreadable_accounts(o) {
        return f;
    }
    let (passwd, group) = (
        o.passwd.clone().and_then(Result::ok).unwrap_or_default(),
        o.group.clone().and_then(Result::ok).unwrap_or_default(),
    );
    let db = Accounts { accounts: parse_passwd(&passwd), groups: parse_group(&group) };
    let mut admins: BTreeSet<String> = BTreeSet::new();
    let mut by_group = serde_json::Map::new();
    for g in ADMIN_GROUPS.iter().filter(|g| db.groups.iter().any(|x| x.name == **g)) {
        let m = db.members(g);
        by_group.insert(g.to_string(), json!(m.len()));
        admins.extend(m);
    }
    let uid0: Vec<&str> = db.accounts.iter().filter(|a| a.uid == 0).map(|a| a.name.as_str()).collect();
    admins.extend(uid0.iter().map(|s| s.to_string()));
    let mut raw = format!("# /etc/passwd\n{passwd}\n# /etc/group\n{group}");
    let sudo = sudo_view(o, &mut raw);
    admins.extend(db.resolve(sudo.grants.clone(), &sudo.aliases));

    let f = |status| {
        Finding::new(status, "passwd+sudoers")
            .fact("admin_count", admins.len())
            .fact("admins", ctx.personal_list(Personal::UserName, admins.iter().map(String::as_str)))
            .fact("uid0_accounts", ctx.personal_list(Personal::UserName, uid0.iter().copied()))
            .fact("uid0_count", uid0.len())
            .fact("admin_groups", serde_json::Value::Object(by_group.clone()))
            .fact("sudoers_readable", sudo.readable.clone())
            .fact("sudoers_all_grants", sudo.grants.len())
            .fact("sudo_grants_everyone", !sudo.everyone.is_empty())
            .with_raw(raw.clone())
    };
    let problems = problems(&uid0, &sudo.everyone, ctx);
    if !problems.is_empty() {
        return f(CheckStatus::Fail).with_reason(problems.join("; "));
    }
    if let Some(e) = &sudo.error {
        return f(CheckStatus::Unknown)
            .with_reason(format!("sudoers could not be read ({e}); its grants are not known"));
    }
    f(CheckStatus::Pass).with_reason(format!("{} administrative accounts; only root has uid 0", admins.len()))
}

/// What fails the check: accounts besides root with uid 0, and a grant of
/// a root-equivalent command to every user.
fn problems(uid0: &[&str], everyone: &[String], ctx: &Context) -> Vec<String> {
    let mut problems = Vec::new();
    let others: Vec<&str> = uid0.iter().copied().filter(|n| *n != "root").collect();
    if !others.is_empty() {
        let shown = ctx.personal_list(Personal::UserName, others.iter().copied());
        let list = if shown.is_empty() { String::new() } else { format!(" ({})", shown.join(", ")) };
        problems.push(format!("{} account(s) other than root have uid 0{list}", others.len()));
    }
    match everyone.first().map(String::as_str) {
        Some("ALL") => problems.push("sudoers grants ALL commands to ALL users".to_string()),
        Some(cmd) => {
            problems.push(format!("sudoers lets ALL users run {cmd} as root, which gives a root shell"))
        }
        None => {}
    }
    problems
}

fn read(host: &dyn Host, path: &str) -> Option<Result<String, HostError>> {
    match host.read_text(path) {
        Ok(t) => Some(Ok(t)),
        Err(HostError::NoFile { .. }) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Reads /etc/sudoers and what it includes (two levels deep, as far as any
/// real configuration goes). macOS keeps the same files (`/etc` is
/// `/private/etc`, which its `#includedir` names).
pub fn read_sudoers(host: &dyn Host) -> Option<Result<Vec<(String, String)>, HostError>> {
    let main = match read(host, "/etc/sudoers")? {
        Ok(t) => t,
        Err(e) => return Some(Err(e)),
    };
    let mut files = vec![("/etc/sudoers".to_string(), main)];
    let mut next = 0;
    while next < files.len() && files.len() < 200 {
        let parsed = parse_sudoers(&files[next].1);
        next += 1;
        let mut paths = parsed.include_files.clone();
        for dir in &parsed.include_dirs {
            match host.read_dir(dir) {
                Ok(names) => paths.extend(
                    names
                        .into_iter()
                        .filter(|n| !n.contains('.') && !n.ends_with('~'))
                        .map(|n| format!("{}/{n}", dir.trim_end_matches('/'))),
                ),
                Err(HostError::NoFile { .. }) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        for p in paths {
            if files.iter().any(|(q, _)| *q == p) {
                continue;
            }
            match read(host, &p) {
                Some(Ok(t)) => files.push((p, t)),
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
        }
    }
    Some(Ok(files))
}

/// sudo's own parser over the rules: `None` where cvtsudoers is missing.
fn cvtsudoers(host: &dyn Host) -> Option<Result<String, String>> {
    match host.run("cvtsudoers", &["-e", "-f", "json", "/etc/sudoers"]) {
        Ok(out) if out.success() => Some(Ok(out.stdout)),
        Ok(out) => Some(Err(format!("cvtsudoers exited with {:?}: {}", out.code, out.stderr.trim()))),
        Err(HostError::NotFound { .. }) => None,
        Err(e) => Some(Err(e.to_string())),
    }
}

/// One NSS database as the system resolves it (`getent DB`, the same
/// `name:x:...` lines as the file), or the file itself where getent cannot
/// answer.
fn database(host: &dyn Host, db: &str) -> Option<Result<String, HostError>> {
    match host.run("getent", &[db]) {
        Ok(out) if out.success() && !out.stdout.trim().is_empty() => Some(Ok(out.stdout)),
        _ => read(host, &format!("/etc/{db}")),
    }
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let o = Observed {
        passwd: database(host, "passwd"),
        group: database(host, "group"),
        sudoers: read_sudoers(host),
        sudo_json: cvtsudoers(host),
    };
    evaluate(&o, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_privacy_settings() {
        use crate::privacy::{Handling, Privacy};
        let o = Observed {
            passwd: Some(Ok("root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n".into())),
            group: Some(Ok("root:x:0:\nwheel:x:10:alice\n".into())),
            sudoers: None,
            sudo_json: None,
        };
        let omit = Context::new(
            0,
            Privacy::with_key(Handling::Omit, Handling::Collect, Handling::Collect, &[1; 32]),
        );
        let f = evaluate(&o, &omit);
        assert_eq!(f.status, CheckStatus::Fail);
        assert_eq!(f.facts["admin_count"], json!(3));
        assert_eq!(f.facts["admins"], json!([]));
        assert!(!f.reason.as_deref().unwrap_or("").contains("toor"));
        let pseudo = Context::new(
            0,
            Privacy::with_key(Handling::Pseudonymise, Handling::Collect, Handling::Collect, &[1; 32]),
        );
        let f = evaluate(&o, &pseudo);
        let admins = f.facts["admins"].as_array().unwrap();
        assert!(admins.iter().all(|a| a.as_str().unwrap().starts_with("p:")), "{admins:?}");
    }

    #[test]
    fn accounts_come_from_every_source_the_system_resolves() {
        use crate::host::FixtureHost;
        let files = "root:x:0:0:root:/root:/bin/bash\n";
        let host = FixtureHost::new()
            .file("/etc/passwd", files)
            .file("/etc/group", "root:x:0:\nsudo:x:27:\n")
            // An LDAP account with uid 0, which only the resolver knows.
            .command("getent passwd", &format!("{files}ops:*:0:0:ops:/home/ops:/bin/bash\n"));
        let f = gather(&host, &Context::at(0));
        assert_eq!(f.status, CheckStatus::Fail, "{:?}", f.reason);
        assert!(f.reason.as_deref().unwrap_or("").contains("ops"), "{:?}", f.reason);
        let files_only =
            FixtureHost::new().file("/etc/passwd", files).file("/etc/group", "root:x:0:\nsudo:x:27:\n");
        assert_ne!(gather(&files_only, &Context::at(0)).status, CheckStatus::Fail);
    }

    #[test]
    fn sudoers_grants() {
        let s = parse_sudoers(
            "Defaults env_reset\n# comment ALL ALL=(ALL) ALL\nroot\tALL=(ALL:ALL) ALL\n%sudo   ALL=(ALL:ALL) ALL\n\
             alice, bob ALL = (ALL) NOPASSWD: ALL\ndeploy ALL=(root) /usr/bin/systemctl restart app\n\
             #1001 ALL=(ALL) ALL  # by uid\nUser_Alias OPS = carol, dave\nOPS ALL=(ALL) \\\n  ALL\n\
             @includedir /etc/sudoers.d\n#includedir /etc/sudoers.local\n",
        );
        assert_eq!(s.all_grants, vec!["root", "%sudo", "alice", "bob", "#1001", "OPS"]);
        assert_eq!(s.user_aliases["OPS"], vec!["carol", "dave"]);
        assert_eq!(s.include_dirs, vec!["/etc/sudoers.d", "/etc/sudoers.local"]);
    }
}
