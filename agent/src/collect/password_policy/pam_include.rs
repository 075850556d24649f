//! A PAM file with its includes put in place, as libpam reads it, within
//! bounds.
//!
//! `@include FILE` inserts every line of FILE; `TYPE include FILE` and
//! `TYPE substack FILE` insert FILE's lines of that TYPE (a substack's
//! `done` and `die` end only the substack, which the reading here does not
//! tell apart). Files are under `/etc/pam.d`; one that cannot be read is
//! left out, as libpam does.
//!
//! Invariant: an expansion is whole or it is an error, never cut short. A
//! file that includes itself a few times expands to copies of copies
//! (exponential in its include lines); libpam itself recurses on it until
//! it crashes (pamtester: a segmentation fault). Cutting the text at some size could drop the very line
//! that denies, so a stack past any bound is reported, and the check that
//! reads it says `unknown`.

use crate::host::Host;

/// Deepest include nesting read. libpam sets none (pamtester runs a
/// 35-deep chain); real stacks nest two or three deep, so a deeper one is
/// read as not known rather than followed further.
pub const MAX_PAM_INCLUDE_DEPTH: usize = 16;
/// Most included files read while expanding one stack. Real stacks read a
/// handful.
pub const MAX_PAM_INCLUDES: usize = 256;
/// Largest expanded stack. Real stacks are a few KiB.
pub const MAX_PAM_EXPANDED_BYTES: usize = 1 << 20;

/// Why a stack was not expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IncludeError {
    #[error("{path}: includes nest deeper than {MAX_PAM_INCLUDE_DEPTH} levels, more than Custos follows")]
    TooDeep { path: String },
    #[error("{path}: the stack includes more than {MAX_PAM_INCLUDES} files")]
    TooMany { path: String },
    #[error("{path}: the stack expands to more than {MAX_PAM_EXPANDED_BYTES} bytes")]
    TooLarge { path: String },
}

/// `text` (the file at `path`) with its includes put in place.
pub fn expand_includes(host: &dyn Host, path: &str, text: &str) -> Result<String, IncludeError> {
    let mut expansion = Expansion { host, reads: 0, held: 0, out: String::new() };
    expansion.file(path, text, 0)?;
    Ok(expansion.out)
}

/// One expansion under way: what it has read and written so far.
struct Expansion<'a> {
    host: &'a dyn Host,
    /// Included files read, by this expansion and those enclosing it.
    reads: usize,
    /// Bytes the enclosing expansions hold (a substack is expanded on its
    /// own before its lines are picked).
    held: usize,
    out: String,
}

impl Expansion<'_> {
    /// Appends `text` (from `path`, `depth` includes deep) to the output:
    /// - a plain line as it is;
    /// - `@include FILE`: every line of FILE, expanded;
    /// - `TYPE include|substack FILE`: FILE's lines of TYPE, expanded;
    /// - an error once any bound is passed.
    fn file(&mut self, path: &str, text: &str, depth: usize) -> Result<(), IncludeError> {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["@include", name, ..] => {
                    if let Some(included) = self.read(path, name, depth)? {
                        self.file(&pam_path(name), &included, depth + 1)?;
                    }
                }
                [kind, "include" | "substack", name, ..] => {
                    let Some(included) = self.read(path, name, depth)? else { continue };
                    let inner = self.expand_apart(&pam_path(name), &included, depth + 1)?;
                    let kind = kind.trim_start_matches('-');
                    for l in inner.lines() {
                        if l.split_whitespace().next().map(|k| k.trim_start_matches('-')) == Some(kind) {
                            self.push(path, l)?;
                        }
                    }
                }
                _ => self.push(path, line)?,
            }
        }
        Ok(())
    }

    /// `text` expanded into a buffer of its own, within the bounds left.
    fn expand_apart(&mut self, path: &str, text: &str, depth: usize) -> Result<String, IncludeError> {
        let mut inner = Expansion {
            host: self.host,
            reads: self.reads,
            held: self.held + self.out.len(),
            out: String::new(),
        };
        let result = inner.file(path, text, depth);
        self.reads = inner.reads;
        result.map(|()| inner.out)
    }

    /// The file an include in `path` names, counted against the bounds;
    /// `None` when it cannot be read.
    fn read(&mut self, path: &str, name: &str, depth: usize) -> Result<Option<String>, IncludeError> {
        if depth + 1 >= MAX_PAM_INCLUDE_DEPTH {
            return Err(IncludeError::TooDeep { path: path.to_string() });
        }
        self.reads += 1;
        if self.reads > MAX_PAM_INCLUDES {
            return Err(IncludeError::TooMany { path: path.to_string() });
        }
        Ok(self.host.read_text(&pam_path(name)).ok())
    }

    /// Appends one line, within the size bound.
    fn push(&mut self, path: &str, line: &str) -> Result<(), IncludeError> {
        if self.held + self.out.len() + line.len() + 1 > MAX_PAM_EXPANDED_BYTES {
            return Err(IncludeError::TooLarge { path: path.to_string() });
        }
        self.out.push_str(line);
        self.out.push('\n');
        Ok(())
    }
}

/// Where libpam looks for an included file.
fn pam_path(name: &str) -> String {
    if name.starts_with('/') { name.to_string() } else { format!("/etc/pam.d/{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FixtureHost;

    #[test]
    fn includes_of_both_forms_are_put_in_place() {
        let host = FixtureHost::new()
            .file(
                "/etc/pam.d/common-auth",
                "auth required pam_faillock.so preauth\naccount required pam_unix.so\n",
            )
            .file("/etc/pam.d/extra", "password requisite pam_pwquality.so\n");
        let text = "@include extra\nauth include common-auth\nauth required pam_deny.so\n@include missing\n";
        let out = expand_includes(&host, "/etc/pam.d/login", text).unwrap();
        assert_eq!(
            out,
            "password requisite pam_pwquality.so\nauth required pam_faillock.so preauth\nauth required pam_deny.so\n"
        );
    }

    #[test]
    fn a_self_including_file_is_an_error_not_a_shorter_stack() {
        // Three includes of itself: 3^16 copies unbounded.
        let bomb = "auth required pam_faillock.so preauth\n@include bomb\n@include bomb\n@include bomb\n";
        let host = FixtureHost::new().file("/etc/pam.d/bomb", bomb);
        let err = expand_includes(&host, "/etc/pam.d/common-auth", "@include bomb\n").unwrap_err();
        assert!(matches!(err, IncludeError::TooDeep { .. }), "{err}");
        // Wide rather than deep: 300 includes of one small file.
        let host = FixtureHost::new().file("/etc/pam.d/leaf", "auth required pam_env.so\n");
        let err = expand_includes(&host, "/etc/pam.d/sshd", &"@include leaf\n".repeat(300)).unwrap_err();
        assert!(matches!(err, IncludeError::TooMany { .. }), "{err}");
        let out = expand_includes(&host, "/etc/pam.d/sshd", &"@include leaf\n".repeat(200)).unwrap();
        assert_eq!(out.lines().count(), 200);
    }

    #[test]
    fn nesting_past_the_depth_bound_is_an_error() {
        // A chain f0 -> f1 -> ... each including the next once: no blow-up,
        // only depth.
        let mut host = FixtureHost::new();
        for i in 0..20 {
            host = host.file(
                &format!("/etc/pam.d/f{i}"),
                format!("auth required pam_env.so\n@include f{}\n", i + 1),
            );
        }
        let err = expand_includes(&host, "/etc/pam.d/common-auth", "@include f0\n").unwrap_err();
        assert!(matches!(err, IncludeError::TooDeep { .. }), "{err}");
        assert!(err.to_string().contains("deeper than 16 levels"), "{err}");
        // Within the limit, the chain expands whole.
        let out = expand_includes(&host, "/etc/pam.d/common-auth", "@include f6\n").unwrap();
        assert_eq!(out.lines().count(), 14);
    }

    #[test]
    fn a_huge_expansion_through_a_substack_is_an_error() {
        let line = format!("auth required pam_env.so {}\n", "x".repeat(4000));
        let big = line.repeat(300);
        let host = FixtureHost::new().file("/etc/pam.d/big", big);
        let err = expand_includes(&host, "/etc/pam.d/sshd", "auth substack big\n").unwrap_err();
        assert!(matches!(err, IncludeError::TooLarge { .. }), "{err}");
    }
}
