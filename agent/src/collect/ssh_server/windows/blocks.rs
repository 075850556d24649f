//! The `Match` blocks of a Windows sshd configuration, and the service's
//! own command-line options. Pure: reading the file and asking sshd happen
//! in the backend.
//!
//! Plain `sshd -T` prints the settings outside every `Match` block, so a
//! block that turns password or root logins on for some users, groups or
//! addresses is invisible to it (sshd_config(5): the lines after a
//! satisfied `Match` "override those set in the global section"). A block
//! that sets none of the judged keywords, or only tightens them, cannot
//! loosen anything and is listed only. A block that loosens one is asked
//! about with `sshd -T -C` for a connection meeting it (built by
//! [`super::super::matches::spec_for`]); `Group` criteria are not resolved
//! on Windows (no member is looked up), so such a block is `unknown`, as is
//! any `Include`, which is not followed here.

use crate::collect::ssh_server::{ALLOW_PASSWORD_LOGINS, MAX_AUTH_TRIES};

/// One `Match` block: its criteria as written and its `keyword value`
/// lines (keywords lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchBlock {
    pub criteria: String,
    pub settings: Vec<(String, String)>,
}

/// What a configuration file holds that plain `sshd -T` does not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub blocks: Vec<MatchBlock>,
    /// `Include` patterns, in order (not followed).
    pub includes: Vec<String>,
}

/// A keyword and its value, as sshd splits a line (`Keyword value`,
/// `Keyword=value`, surrounding quotes removed).
fn split_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, rest) = line.split_once(|c: char| c.is_whitespace() || c == '=').unwrap_or((line, ""));
    let value = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=').trim();
    Some((key.to_ascii_lowercase(), value.trim_matches('"').to_string()))
}

/// The `Match` blocks (with their lines, up to the next `Match`) and the
/// `Include` lines of one file.
pub fn parse_config(text: &str) -> Config {
    let mut config = Config::default();
    for (key, value) in text.lines().filter_map(split_line) {
        match key.as_str() {
            "match" => config.blocks.push(MatchBlock { criteria: value, settings: Vec::new() }),
            "include" => config.includes.push(value),
            _ => {
                if let Some(b) = config.blocks.last_mut() {
                    b.settings.push((key, value));
                }
            }
        }
    }
    config
}

/// The keywords this check judges that a `Match` block may set.
const JUDGED: [&str; 6] = [
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
    "permitrootlogin",
    "permitemptypasswords",
    "maxauthtries",
];

/// What a block does to the judged settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Sets none of them.
    None,
    /// Sets some, none to a value that fails the check.
    Tightens,
    /// Sets at least one to a value that fails the check (named).
    Loosens(Vec<String>),
}

impl MatchBlock {
    /// Whether the block can loosen what the check judges, from its own lines.
    pub fn effect(&self) -> Effect {
        let judged: Vec<&(String, String)> =
            self.settings.iter().filter(|(k, _)| JUDGED.contains(&k.as_str())).collect();
        if judged.is_empty() {
            return Effect::None;
        }
        let loose: Vec<String> = judged
            .iter()
            .filter(|(k, v)| {
                let yes = v.eq_ignore_ascii_case("yes");
                match k.as_str() {
                    "maxauthtries" => v.parse::<u32>().map_or(true, |n| n > MAX_AUTH_TRIES),
                    "permitrootlogin" | "permitemptypasswords" => yes,
                    _ => yes && !ALLOW_PASSWORD_LOGINS,
                }
            })
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if loose.is_empty() { Effect::Tightens } else { Effect::Loosens(loose) }
    }

    /// Whether a criterion of the block names groups, which are not
    /// resolved on Windows.
    pub fn by_group(&self) -> bool {
        self.criteria.split_whitespace().any(|w| w.eq_ignore_ascii_case("group"))
    }
}

/// Splits a Windows command line into arguments: whitespace separates,
/// double quotes group (and are removed).
fn command_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

/// The `-f FILE` and `-o OPTION` arguments of the service's command line
/// (`BINARY_PATH_NAME` of `sc qc`), ready to pass to `sshd -T`: the service
/// runs with them, so they change what it applies.
pub fn service_options(binary_path_name: &str) -> Vec<String> {
    let words = command_words(binary_path_name);
    let mut out = Vec::new();
    let mut i = 1;
    while i < words.len() {
        match words[i].as_str() {
            flag @ ("-f" | "-o") if i + 1 < words.len() => {
                out.extend([flag.to_string(), words[i + 1].clone()]);
                i += 2;
            }
            w if (w.starts_with("-o") || w.starts_with("-f")) && w.len() > 2 => {
                out.extend([w[..2].to_string(), w[2..].to_string()]);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_what_they_do() {
        let text = "PasswordAuthentication no\n#Match User x\nMatch Group administrators\n       \
                    AuthorizedKeysFile __PROGRAMDATA__/ssh/administrators_authorized_keys\n\
                    Match Address 10.0.0.0/8\n\tPasswordAuthentication yes\n\tMaxAuthTries=3\n\
                    Match User svc\n    PasswordAuthentication no\nInclude C:/ProgramData/ssh/extra.conf\n";
        let c = parse_config(text);
        assert_eq!(c.blocks.len(), 3);
        assert_eq!(c.includes, vec!["C:/ProgramData/ssh/extra.conf"]);
        assert_eq!(c.blocks[0].effect(), Effect::None);
        assert!(c.blocks[0].by_group());
        assert_eq!(c.blocks[1].effect(), Effect::Loosens(vec!["passwordauthentication yes".into()]));
        assert_eq!(c.blocks[2].effect(), Effect::Tightens);
    }

    #[test]
    fn service_options_from_the_command_line() {
        let line = "\"C:\\Program Files\\OpenSSH\\sshd.exe\" -f \"C:\\ProgramData\\ssh\\custom config\" -oPasswordAuthentication=yes -d";
        assert_eq!(
            service_options(line),
            ["-f", "C:\\ProgramData\\ssh\\custom config", "-o", "PasswordAuthentication=yes"]
                .map(String::from)
                .to_vec()
        );
        assert!(service_options("C:\\Windows\\System32\\OpenSSH\\sshd.exe").is_empty());
    }
}
