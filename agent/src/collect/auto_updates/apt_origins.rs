//! Which archives unattended-upgrades may install from, as it decides it.
//!
//! A pattern that merely mentions "security" is not a security archive:
//! `codename=nonexistent-security` or `label=Security-Theatre` match no
//! archive the host has, and unattended-upgrades then installs nothing.
//! So the patterns are matched, the way unattended-upgrades matches them,
//! against the archives apt actually uses: the `Release`/`InRelease` files
//! of `/var/lib/apt/lists`.
//!
//! unattended-upgrades' rules (`match_whitelist_string`,
//! `get_allowed_origins_legacy`): an `Origins-Pattern` entry is
//! comma-separated `key=value` pairs, all of which must hold (`o`/`origin`,
//! `l`/`label`, `a`/`archive`/`suite`, `n`/`codename`, `c`/`component`,
//! `site`), each value a shell wildcard (`fnmatch`) after
//! `${distro_id}` and `${distro_codename}` are put in; an
//! `Allowed-Origins` entry `ORIGIN:ARCHIVE` is the pattern `o=ORIGIN,a=ARCHIVE`.
//! A key it does not know makes it stop with an error.
//!
//! Invariant: pure; the archive is judged by its own `Release` fields.

use crate::collect::ParseError;
use crate::collect::os_support::linux::os_release_field;

/// The fields of one archive's `Release` file that patterns match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    pub origin: String,
    pub label: String,
    /// `Suite`, which unattended-upgrades calls the archive.
    pub suite: String,
    pub codename: String,
    pub components: Vec<String>,
    /// The host it comes from (the list file's name up to the first `_`;
    /// empty for `file:` archives).
    pub site: String,
}

/// The distribution, as unattended-upgrades substitutes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Distro {
    /// `Debian`, `Ubuntu`, ... (lsb_release's id).
    pub id: String,
    pub codename: String,
}

impl Distro {
    /// From `/etc/os-release` (`ID=debian`, `VERSION_CODENAME=bookworm`).
    pub fn from_os_release(text: &str) -> Distro {
        let field = |key: &str| os_release_field(text, key).unwrap_or_default();
        let id = field("ID");
        let mut chars = id.chars();
        let id = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
        Distro { id, codename: field("VERSION_CODENAME") }
    }
}

/// Parses the first paragraph of a `Release` or `InRelease` file (the
/// signed message's armour header skipped). `None` without an `Origin` or
/// `Suite`.
pub fn parse_release(list_file: &str, text: &str) -> Option<Release> {
    let body = match text.strip_prefix("-----BEGIN PGP SIGNED MESSAGE-----") {
        Some(rest) => rest.split_once("\n\n").map_or("", |(_, b)| b),
        None => text,
    };
    let mut r = Release { site: list_file.split('_').next().unwrap_or("").to_string(), ..Release::default() };
    for line in body.lines().take_while(|l| !l.trim().is_empty()) {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_string();
        match key {
            "Origin" => r.origin = value,
            "Label" => r.label = value,
            "Suite" => r.suite = value,
            "Codename" => r.codename = value,
            "Components" => r.components = value.split_whitespace().map(str::to_string).collect(),
            _ => {}
        }
    }
    (!r.origin.is_empty() || !r.suite.is_empty()).then_some(r)
}

impl Release {
    /// A security archive: Debian's label, or a suite or codename ending in
    /// `-security` (Ubuntu's, and Debian's since 11).
    pub fn is_security(&self) -> bool {
        self.label.contains("Security")
            || [&self.suite, &self.codename].iter().any(|s| s.ends_with("-security"))
    }
}

/// An `Allowed-Origins` entry as the pattern unattended-upgrades turns it
/// into (`ORIGIN:ARCHIVE`, or `ORIGIN ARCHIVE`).
pub fn legacy_pattern(entry: &str) -> String {
    let (origin, archive) = entry.split_once(':').or_else(|| entry.split_once(' ')).unwrap_or((entry, ""));
    format!("o={},a={}", origin.trim(), archive.trim())
}

/// Whether `pattern` matches `release`; `Err` names a key unattended-upgrades
/// would refuse.
pub fn matches(pattern: &str, release: &Release, distro: &Distro) -> Result<bool, ParseError> {
    for token in split_unescaped(pattern) {
        let (key, value) = token.split_once('=').unwrap_or((token.as_str(), ""));
        let value = value
            .trim()
            .replace("${distro_id}", &distro.id)
            .replace("${distro_codename}", &distro.codename)
            .replace("\\,", ",");
        let wild = |field: &str| wildcard(&value, field);
        let hit = match key.trim() {
            "o" | "origin" => wild(&release.origin),
            "l" | "label" => wild(&release.label),
            "a" | "archive" | "suite" => wild(&release.suite),
            "n" | "codename" => wild(&release.codename),
            "c" | "component" => release.components.iter().any(|c| wild(c)),
            "site" => wild(&release.site),
            other => return Err(format!("unknown key {other:?} in origin pattern {pattern:?}").into()),
        };
        if !hit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Splits on commas not escaped by a backslash.
fn split_unescaped(pattern: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut prev = '\0';
    for c in pattern.chars() {
        if c == ',' && prev != '\\' {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
        prev = c;
    }
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Shell wildcard match (`*`, `?`, `[...]`), as Python's `fnmatch` does on
/// POSIX (case-sensitive).
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut re = String::from("^(?s:");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let class: String = chars.by_ref().take_while(|c| *c != ']').collect();
                let class = class.strip_prefix('!').map_or(class.clone(), |rest| format!("^{rest}"));
                re.push('[');
                re.push_str(&class.replace('\\', "\\\\"));
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push_str(")$");
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(text))
}

/// The security archives some pattern allows, by `Suite`; `Err` when a
/// pattern cannot be read.
pub fn allowed_security<'a>(
    patterns: &[String],
    releases: &'a [Release],
    distro: &Distro,
) -> Result<Vec<&'a Release>, ParseError> {
    let mut allowed = Vec::new();
    for r in releases.iter().filter(|r| r.is_security()) {
        for p in patterns {
            if matches(p, r, distro)? {
                allowed.push(r);
                break;
            }
        }
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of Debian 12's security `InRelease` as apt stores it.
    const DEBIAN_SECURITY: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n\
        Label: Debian-Security\nSuite: oldstable-security\nVersion: 12\nCodename: bookworm-security\n\
        Components: updates/main updates/contrib\nSHA256:\n e3b0  0 contrib/Contents-amd64\n";

    fn debian() -> (Release, Distro) {
        let file = "deb.debian.org_debian-security_dists_bookworm-security_InRelease";
        let r = parse_release(file, DEBIAN_SECURITY).unwrap();
        (
            r,
            Distro::from_os_release(
                "PRETTY_NAME=\"Debian GNU/Linux 12\"\nID=debian\nVERSION_CODENAME=bookworm\n",
            ),
        )
    }

    #[test]
    fn release_files_and_os_release_are_read() {
        let (r, d) = debian();
        assert_eq!(
            (r.origin.as_str(), r.label.as_str(), r.suite.as_str()),
            ("Debian", "Debian-Security", "oldstable-security")
        );
        assert_eq!((r.codename.as_str(), r.site.as_str()), ("bookworm-security", "deb.debian.org"));
        assert!(r.is_security());
        assert_eq!(d, Distro { id: "Debian".into(), codename: "bookworm".into() });
    }

    #[test]
    fn patterns_match_as_unattended_upgrades_matches_them() {
        let (r, d) = debian();
        let m = |p: &str| matches(p, &r, &d).unwrap();
        assert!(m("origin=Debian,codename=${distro_codename}-security,label=Debian-Security"));
        assert!(m("o=Debian,a=*-security"));
        assert!(!m("origin=Debian,codename=nonexistent-security,label=Debian-Security"));
        assert!(!m("origin=Debian,label=Security-Theatre"));
        assert!(!m("site=security.debian.org"));
        // Allowed-Origins' archive is the suite, which Debian no longer names by codename.
        assert!(!m(&legacy_pattern("${distro_id}:${distro_codename}-security")));
        assert!(m(&legacy_pattern("Debian:oldstable-security")));
        assert!(matches("origin=Debian,colour=blue", &r, &d).is_err());
    }
}
