//! The `Match` blocks of an sshd configuration and, for each, a connection
//! that meets it, so that sshd itself can be asked (`sshd -T -C SPEC`) what
//! applies to that connection. Plain `sshd -T` prints the settings outside
//! every `Match` block: a block that turns password or root logins on for
//! some addresses, users or groups is invisible to it.
//!
//! Only finding the blocks and building a connection is done here; which
//! settings apply stays sshd's decision. Pure: reading the files and the
//! group members happens in the backend.

use std::net::IpAddr;

use ipnet::IpNet;

/// A line of an sshd configuration that matters for finding the blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `Include` with its patterns (relative ones are under `/etc/ssh`).
    Include(Vec<String>),
    /// `Match` with its criteria as written.
    Match(String),
}

/// The `Include` and `Match` lines of one file, in order (keywords are
/// case-insensitive; `#` starts a comment line; `Keyword=value` is accepted
/// as sshd does).
pub fn directives(text: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line.split_once(|c: char| c.is_whitespace() || c == '=').unwrap_or((line, ""));
        let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=').trim();
        match key.to_ascii_lowercase().as_str() {
            "include" => out.push(Directive::Include(rest.split_whitespace().map(str::to_string).collect())),
            "match" => out.push(Directive::Match(rest.to_string())),
            _ => {}
        }
    }
    out
}

/// sshd's wildcard patterns: `*` any run, `?` one character.
pub fn wildcard(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A connection, as `sshd -C` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub user: Option<String>,
    pub host: Option<String>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    pub lport: Option<String>,
    pub rdomain: Option<String>,
}

impl Spec {
    /// `user=root,addr=10.0.0.1`.
    pub fn arg(&self) -> String {
        let fields = [
            ("user", &self.user),
            ("host", &self.host),
            ("addr", &self.addr),
            ("laddr", &self.laddr),
            ("lport", &self.lport),
            ("rdomain", &self.rdomain),
        ];
        fields
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Values tried where a criterion only excludes (`Address !10.0.0.0/8`).
const OUTSIDE_ADDRS: [&str; 3] = ["203.0.113.7", "198.51.100.7", "2001:db8::7"];
const OTHER_NAMES: [&str; 2] = ["custos-probe", "probe.invalid"];

/// Whether an address meets one entry of an address list (CIDR or wildcard).
fn addr_meets(entry: &str, value: &str) -> bool {
    match (entry.parse::<IpNet>(), value.parse::<IpAddr>()) {
        (Ok(net), Ok(a)) => net.contains(&a),
        _ => wildcard(entry, value),
    }
}

/// A value that one positive list entry stands for.
fn example(entry: &str, address: bool) -> String {
    if address && let Ok(net) = entry.parse::<IpNet>() {
        return net.hosts().next().unwrap_or(net.addr()).to_string();
    }
    let fill = if address { "1" } else { "x" };
    entry.replace(['*', '?'], fill)
}

/// A value meeting a pattern list (`a,b*,!c`): one that a positive entry
/// matches and no negated one does, tried from the positive entries
/// themselves, then from probe values; with only negations, a probe value
/// none of them matches (sshd never matches such a list, and asking it
/// about that connection shows so).
fn meeting(list: &str, address: bool) -> Option<String> {
    let entries: Vec<&str> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let meets = |entry: &str, v: &str| if address { addr_meets(entry, v) } else { wildcard(entry, v) };
    let excluded = |v: &str| entries.iter().filter_map(|e| e.strip_prefix('!')).any(|n| meets(n, v));
    let only_negated = entries.iter().all(|e| e.starts_with('!'));
    let included = |v: &str| only_negated || entries.iter().any(|e| !e.starts_with('!') && meets(e, v));
    let pool: &[&str] = if address { &OUTSIDE_ADDRS } else { &OTHER_NAMES };
    entries
        .iter()
        .filter(|e| !e.starts_with('!'))
        .map(|e| example(e, address))
        .chain(pool.iter().map(|s| s.to_string()))
        .find(|v| (!address || v.parse::<IpAddr>().is_ok()) && included(v) && !excluded(v))
}

/// Why no connection could be built for a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoSpec {
    /// The block applies to no one at present (a group without members).
    #[error("applies to no one: {0}")]
    Nobody(String),
    /// The criteria could not be met by construction.
    #[error("{0}")]
    Undecided(String),
}

/// A connection meeting every criterion of `Match CRITERIA`; `member_of`
/// names a member of a group (from the host's group database).
pub fn spec_for(criteria: &str, member_of: &dyn Fn(&str) -> Option<String>) -> Result<Spec, NoSpec> {
    let words: Vec<&str> = criteria.split_whitespace().collect();
    let mut spec = Spec::default();
    let mut i = 0;
    while i < words.len() {
        let key = words[i].to_ascii_lowercase();
        if key == "all" {
            i += 1;
            continue;
        }
        let Some(list) = words.get(i + 1) else {
            return Err(NoSpec::Undecided(format!("`Match {criteria}`: {key} has no value")));
        };
        i += 2;
        let undecided = || NoSpec::Undecided(format!("`Match {criteria}`: no {key} meets `{list}`"));
        let value = |address: bool| meeting(list, address).ok_or_else(undecided);
        match key.as_str() {
            "user" => set(&mut spec.user, value(false)?, criteria)?,
            "group" => {
                let groups: Vec<&str> = list.split(',').filter(|g| !g.starts_with('!')).collect();
                let Some(user) = groups.iter().find_map(|g| member_of(g)) else {
                    return Err(NoSpec::Nobody(format!("`Match {criteria}`: no member of {list}")));
                };
                set(&mut spec.user, user, criteria)?;
            }
            "host" => set(&mut spec.host, value(false)?, criteria)?,
            "address" => set(&mut spec.addr, value(true)?, criteria)?,
            "localaddress" => set(&mut spec.laddr, value(true)?, criteria)?,
            "localport" => set(&mut spec.lport, value(false)?, criteria)?,
            "rdomain" => set(&mut spec.rdomain, value(false)?, criteria)?,
            other => {
                return Err(NoSpec::Undecided(format!("`Match {criteria}`: criterion {other} not followed")));
            }
        }
    }
    Ok(spec)
}

fn set(slot: &mut Option<String>, value: String, criteria: &str) -> Result<(), NoSpec> {
    match slot {
        Some(old) if *old != value => {
            Err(NoSpec::Undecided(format!("`Match {criteria}`: two criteria on one field ({old}, {value})")))
        }
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_match_lines_are_found_whatever_their_case() {
        let text = "Include /etc/ssh/sshd_config.d/*.conf\n# Match User nobody\nmatch Address 10.0.0.0/8\n\
                    PasswordAuthentication yes\nMATCH=User root\n";
        assert_eq!(
            directives(text),
            vec![
                Directive::Include(vec!["/etc/ssh/sshd_config.d/*.conf".into()]),
                Directive::Match("Address 10.0.0.0/8".into()),
                Directive::Match("User root".into()),
            ]
        );
    }

    #[test]
    fn a_connection_meets_each_kind_of_criterion() {
        let none = |_: &str| None;
        let spec = spec_for("Address 10.0.0.0/8,192.168.*", &none).unwrap();
        assert_eq!(spec.arg(), "addr=10.0.0.1");
        assert_eq!(spec_for("Address !10.0.0.0/8", &none).unwrap().arg(), "addr=203.0.113.7");
        assert_eq!(spec_for("Address *,!10.0.0.0/8", &none).unwrap().arg(), "addr=203.0.113.7");
        assert_eq!(spec_for("User adm*,!admin LocalPort 2222", &none).unwrap().arg(), "user=admx,lport=2222");
        let staff = |g: &str| (g == "staff").then(|| "alice".to_string());
        assert_eq!(spec_for("Group staff", &staff).unwrap().arg(), "user=alice");
        assert!(matches!(spec_for("Group wheel", &staff), Err(NoSpec::Nobody(_))));
        assert!(matches!(spec_for("Address 10.0.0.1,!10.0.0.0/8", &none), Err(NoSpec::Undecided(_))));
        assert!(matches!(spec_for("Exec /bin/true", &none), Err(NoSpec::Undecided(_))));
        assert_eq!(spec_for("All", &none).unwrap(), Spec::default());
    }

    #[test]
    fn wildcards_match_as_sshd_does() {
        assert!(wildcard("*.conf", "10-custos.conf") && !wildcard("*.conf", "x.conf.bak"));
        assert!(wildcard("10.0.?.*", "10.0.1.77") && !wildcard("a?", "a"));
    }
}
