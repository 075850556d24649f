//! Which sudoers rules make a user root: sudo's own reading of the rules
//! (`cvtsudoers -e -f json`, aliases expanded, includes followed), judged
//! by what the commands allow.
//!
//! A rule is root-equivalent when it lets its users run as root (the
//! default run-as user, `ALL`, `root` or `#0`) a command that is `ALL`, a
//! path with wildcards, a shell or interpreter (whatever its arguments), or
//! a program that runs other commands or writes any file (an editor, a
//! pager, `find`, `env`, `tee`, package managers ...) when its arguments
//! are left open. `ALL ALL=(root) NOPASSWD: /bin/bash` gives every user a
//! root shell just as `ALL` does. Pure.

use serde_json::Value;

use crate::collect::ParseError;

/// Shells and interpreters: root with any arguments.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "ash", "busybox", "su", "sudo",
    "python", "python2", "python3", "perl", "ruby", "lua", "node", "nodejs", "php", "tclsh", "wish",
    "expect", "gdb", "script", "socat", "nc", "ncat",
];

/// Programs that run commands or write files when their arguments are open.
const ESCAPES: &[&str] = &[
    "vi",
    "vim",
    "nvim",
    "view",
    "vim.basic",
    "vim.tiny",
    "nano",
    "emacs",
    "ed",
    "ex",
    "less",
    "more",
    "man",
    "find",
    "env",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "tee",
    "cp",
    "mv",
    "dd",
    "tar",
    "zip",
    "rsync",
    "git",
    "docker",
    "podman",
    "apt",
    "apt-get",
    "dpkg",
    "rpm",
    "dnf",
    "yum",
    "pip",
    "pip3",
    "make",
    "systemctl",
    "journalctl",
    "crontab",
    "chmod",
    "chown",
    "install",
    "ln",
    "mount",
    "xargs",
    "nice",
    "nohup",
    "timeout",
    "strace",
    "ltrace",
    "taskset",
    "watch",
    "flock",
    "ionice",
    "stdbuf",
    "chroot",
    "unshare",
    "nsenter",
    "setsid",
    "run-parts",
    "visudo",
    "sed",
    "openssl",
    "wget",
    "curl",
];

/// Whether running `command` as root gives root.
pub fn root_equivalent(command: &str) -> bool {
    let mut words = command.split_whitespace();
    let Some(path) = words.next() else { return false };
    if path == "ALL" || path.contains(['*', '?', '[']) {
        return true;
    }
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let open_args = words.next().is_none();
    SHELLS.contains(&base)
        || SHELLS.iter().any(|s| path.ends_with(&format!("/{s}")))
        || (open_args && ESCAPES.contains(&base))
}

/// A rule that makes its users root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The users as sudoers writes them: `ALL`, `alice`, `%group`, `#uid`, `%#gid`.
    pub users: Vec<String>,
    /// The first root-equivalent command (`ALL`, `/bin/bash`).
    pub command: String,
    /// `NOPASSWD`: no password asked.
    pub nopasswd: bool,
}

/// A user, group or alias entry of a list as sudoers would write it.
fn written(entry: &Value) -> Option<String> {
    let negated = entry.get("negated").and_then(Value::as_bool) == Some(true);
    if negated {
        return None;
    }
    let obj = entry.as_object()?;
    let (kind, v) = obj.iter().find(|(k, _)| k.as_str() != "negated")?;
    let v = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(match kind.as_str() {
        "username" | "useralias" => v,
        "usergroup" => format!("%{v}"),
        "userid" => format!("#{v}"),
        "groupid" => format!("%#{v}"),
        other => format!("{other}:{v}"),
    })
}

/// Whether a command spec runs as root.
fn runs_as_root(spec: &Value) -> bool {
    match spec.get("runasusers").and_then(Value::as_array) {
        // No run-as list: the default user, root (a changed `runas_default` is not followed).
        None => true,
        Some(list) => list.iter().filter_map(written).any(|u| matches!(u.as_str(), "ALL" | "root" | "#0")),
    }
}

/// The root-equivalent grants in `cvtsudoers -e -f json` output.
pub fn grants(json: &str) -> Result<Vec<Grant>, ParseError> {
    let printed = |what: String| ParseError::new(what).in_command("cvtsudoers");
    let doc: Value = serde_json::from_str(json).map_err(|e| printed(format!("JSON is malformed: {e}")))?;
    let specs = match doc.get("User_Specs") {
        Some(Value::Array(a)) => a.as_slice(),
        None => &[],
        Some(_) => return Err(printed("JSON: User_Specs is not a list".into())),
    };
    let mut out = Vec::new();
    for spec in specs {
        let users: Vec<String> =
            spec["User_List"].as_array().into_iter().flatten().filter_map(written).collect();
        for cmnd in spec["Cmnd_Specs"].as_array().into_iter().flatten().filter(|c| runs_as_root(c)) {
            let found = cmnd["Commands"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c.get("negated").and_then(Value::as_bool) != Some(true))
                .filter_map(|c| c.get("command").and_then(Value::as_str))
                .find(|c| root_equivalent(c));
            let Some(command) = found else { continue };
            let nopasswd = cmnd["Options"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o.get("authenticate").and_then(Value::as_bool) == Some(false));
            out.push(Grant { users: users.clone(), command: command.to_string(), nopasswd });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_and_open_escapes_are_root_and_fixed_commands_are_not() {
        for yes in
            ["ALL", "/bin/bash", "/usr/bin/python3.11", "/usr/bin/vim", "/usr/bin/*", "/bin/sh -c true"]
        {
            assert!(root_equivalent(yes), "{yes}");
        }
        for no in ["/usr/bin/systemctl restart app", "/usr/bin/apt-get update", "/usr/sbin/reboot", ""] {
            assert!(!root_equivalent(no), "{no}");
        }
    }

    /// `cvtsudoers -e -f json` (sudo 1.9.13) of: `root ALL=(ALL:ALL) ALL`,
    /// `ALL ALL=(root) NOPASSWD: /bin/bash`, `deploy ALL=(www-data) ALL`,
    /// `eve ALL=(ALL) /usr/bin/python3, !/usr/bin/su`.
    const JSON: &str = r#"{"User_Specs": [
        {"User_List": [{"username": "root"}], "Host_List": [{"hostname": "ALL"}],
         "Cmnd_Specs": [{"runasusers": [{"username": "ALL"}], "runasgroups": [{"usergroup": "ALL"}],
                         "Options": [{"setenv": true}], "Commands": [{"command": "ALL"}]}]},
        {"User_List": [{"username": "ALL"}], "Host_List": [{"hostname": "ALL"}],
         "Cmnd_Specs": [{"runasusers": [{"username": "root"}], "Options": [{"authenticate": false}],
                         "Commands": [{"command": "/bin/bash"}]}]},
        {"User_List": [{"username": "deploy"}], "Host_List": [{"hostname": "ALL"}],
         "Cmnd_Specs": [{"runasusers": [{"username": "www-data"}], "Commands": [{"command": "ALL"}]}]},
        {"User_List": [{"username": "eve"}], "Host_List": [{"hostname": "ALL"}],
         "Cmnd_Specs": [{"runasusers": [{"username": "ALL"}],
                         "Commands": [{"command": "/usr/bin/python3"}, {"command": "/usr/bin/su", "negated": true}]}]}
    ]}"#;

    #[test]
    fn sudos_own_reading_gives_the_root_grants() {
        let g = grants(JSON).unwrap();
        let shown: Vec<(String, &str, bool)> =
            g.iter().map(|g| (g.users.join(","), g.command.as_str(), g.nopasswd)).collect();
        assert_eq!(
            shown,
            vec![
                ("root".into(), "ALL", false),
                ("ALL".into(), "/bin/bash", true),
                ("eve".into(), "/usr/bin/python3", false)
            ]
        );
        assert!(grants("not json").is_err());
    }
}
