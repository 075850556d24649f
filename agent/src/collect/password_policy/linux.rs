//! The Linux backends of the `password_policy` check.
//!
//! Reads the PAM stacks that set and check local passwords:
//! `/etc/pam.d/common-password` and `common-auth` (Debian, Ubuntu, SUSE),
//! `/etc/pam.d/system-auth` and `password-auth` (RHEL, Fedora; authselect
//! links them), and the files of the services people log in or change
//! passwords through (`login`, `sshd`, `su`, `sudo`, `passwd`, the display
//! managers; [`SERVICES`]), since a service's own lines can skip the shared
//! stack, each with its `@include`, `include` and `substack` files in
//! place, plus `/etc/security/pwquality.conf.d/*.conf` and then
//! `/etc/security/pwquality.conf` (libpwquality's order: the main file
//! wins), `/etc/security/faillock.conf` (pam_faillock reads no drop-ins), and
//! `/etc/login.defs` (`PASS_MAX_DAYS`, `PASS_MIN_LEN`: facts only, PAM
//! ignores `PASS_MIN_LEN`).
//!
//! Minimum length, per `password` stack, from the first enforcing module:
//! - `pam_pwquality`, unless `enforcing=0` (it then only warns): `minlen`
//!   from the module arguments, else the last one read, else 8. pwquality counts
//!   *credits*: with `dcredit`/`ucredit`/`lcredit`/`ocredit` = N > 0 each digit,
//!   upper, lower or other character (up to N of each) counts one extra
//!   towards `minlen`, so a password can be shorter by the sum of the positive
//!   credits. We take the worst case, `minlen - sum(positive credits)`, as the
//!   effective minimum (credits default to 0 in pwquality);
//! - `pam_cracklib`: the same from its arguments, with its defaults `minlen=9`
//!   and all credits 1;
//! - otherwise `pam_unix`'s `minlen=` argument (default 6).
//!
//! A module with control `optional` does not enforce anything and is ignored.
//! Lockout, per `auth` stack: run as libpam runs it ([`super::pam_auth`]),
//! every wrong password must reach a `pam_faillock` `authfail` (or
//! `pam_tally2`) line and a locked account must fail every path; the
//! threshold is the largest `deny` (arguments, else faillock.conf, else 3;
//! 0 disables). When a host has several stacks (RHEL's
//! system-auth and password-auth) the weakest counts.
//!
//! Status rule: `pass` when the effective minimum length is at least
//! [`super::MIN_PASSWORD_LENGTH`] and accounts lock after at most
//! [`super::MAX_FAILED_LOGONS`] failures; `fail` otherwise; `unknown` when no
//! PAM stack could be read, or one could not be read whole (a file unreadable,
//! includes nested past 16 levels, past 256 files or past 1 MiB).

use serde_json::json;

use super::pam_include::expand_includes;
use super::{MAX_FAILED_LOGONS, MIN_PASSWORD_LENGTH};
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// One PAM rule line.
#[derive(Debug, Clone, PartialEq)]
pub struct PamRule {
    /// `auth`, `password`, ... (a leading `-` removed).
    pub kind: String,
    pub control: String,
    /// Module file name, e.g. `pam_pwquality.so`.
    pub module: String,
    pub args: Vec<String>,
}

impl PamRule {
    fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
    }
    fn is(&self, module: &str) -> bool {
        self.module == module || self.module.ends_with(&format!("/{module}"))
    }
}

/// Parses a PAM configuration file (`type control module args`, controls may be `[...]`).
pub fn parse_pam(text: &str) -> Vec<PamRule> {
    let mut rules = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.split_once('#').map_or(line, |(l, _)| l);
        let (kind, rest) = match line.split_once(char::is_whitespace) {
            Some((k, r)) => (k.trim_start_matches('-'), r.trim_start()),
            None => continue,
        };
        let (control, rest) = if rest.starts_with('[') {
            match rest.find(']') {
                Some(i) => (&rest[..=i], rest[i + 1..].trim_start()),
                None => continue,
            }
        } else {
            match rest.split_once(char::is_whitespace) {
                Some((c, r)) => (c, r.trim_start()),
                None => (rest, ""),
            }
        };
        let mut words = rest.split_whitespace();
        let Some(module) = words.next() else { continue };
        rules.push(PamRule {
            kind: kind.to_string(),
            control: control.to_string(),
            module: module.to_string(),
            args: words.map(str::to_string).collect(),
        });
    }
    rules
}

/// Reads `key = value` settings (pwquality.conf, faillock.conf); the last one wins.
pub fn conf_value(texts: &[String], key: &str) -> Option<String> {
    let mut found = None;
    for text in texts {
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = line.split_once('=')
                && k.trim() == key
            {
                found = Some(v.trim().to_string());
            }
        }
    }
    found
}

/// Reads `KEY value` from login.defs.
pub fn login_defs_value(text: &str, key: &str) -> Option<i64> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == key).then(|| w.next()?.parse().ok())?
        })
        .next_back()
}

/// Effective minimum length of one `password` stack: (length, module, nominal minlen, credit sum).
pub fn min_length(rules: &[PamRule], pwquality_confs: &[String]) -> (i64, &'static str, i64, i64) {
    let enforcing =
        |m: &str| rules.iter().find(|r| r.kind == "password" && fails_the_stack(&r.control) && r.is(m));
    let credits = |rule: &PamRule, conf: &[String], default: i64| -> i64 {
        ["dcredit", "ucredit", "lcredit", "ocredit"]
            .iter()
            .map(|k| {
                rule.arg(k)
                    .map(str::to_string)
                    .or_else(|| conf_value(conf, k))
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(default)
                    .max(0)
            })
            .sum()
    };
    // `enforcing=0` (argument or pwquality.conf): pwquality only warns; and
    // a rule before it that can end the stack with success skips it.
    let pwquality = enforcing("pam_pwquality.so").filter(|r| !bypassed(rules, r)).filter(|r| {
        r.arg("enforcing").map(str::to_string).or_else(|| conf_value(pwquality_confs, "enforcing")).as_deref()
            != Some("0")
    });
    if let Some(r) = pwquality {
        let minlen = r
            .arg("minlen")
            .map(str::to_string)
            .or_else(|| conf_value(pwquality_confs, "minlen"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let c = credits(r, pwquality_confs, 0);
        return (minlen - c, "pam_pwquality", minlen, c);
    }
    if let Some(r) = enforcing("pam_cracklib.so") {
        let minlen = r.arg("minlen").and_then(|v| v.parse().ok()).unwrap_or(9);
        let c = credits(r, &[], 1);
        return (minlen - c, "pam_cracklib", minlen, c);
    }
    let minlen =
        enforcing("pam_unix.so").and_then(|r| r.arg("minlen")).and_then(|v| v.parse().ok()).unwrap_or(6);
    (minlen, "pam_unix", minlen, 0)
}

/// Whether a module's failure (a weak password: `PAM_AUTHTOK_ERR`) fails
/// the stack under this control: `required` and `requisite` do; a failing
/// `sufficient` or `optional` module is ignored; in libpam's bracket form
/// the `authtok_err` action, else the `default` one, must be `bad` or `die`
/// (`ignore`, `ok`, `done` and jumps are not taken as enforcing).
pub fn fails_the_stack(control: &str) -> bool {
    match control {
        "required" | "requisite" => true,
        "sufficient" | "optional" => false,
        c => {
            let Some(inner) = c.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else { return false };
            let action = |key: &str| {
                inner
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v)
            };
            matches!(action("authtok_err").or_else(|| action("default")), Some("bad" | "die"))
        }
    }
}

/// Whether a `password` rule before `target` can end the stack, or jump
/// past `target`, when it succeeds: `sufficient`, `[success=done ...]`,
/// `[success=N ...]` landing beyond it, or any `default=` that does the
/// same (libpam's control values). Whether that rule succeeds is not
/// known, so it is taken as able to: the check behind it is skipped on
/// that path, and an attacker picks the path.
pub fn bypassed(rules: &[PamRule], target: &PamRule) -> bool {
    let stack: Vec<&PamRule> = rules.iter().filter(|r| r.kind == target.kind).collect();
    let Some(at) = stack.iter().position(|r| std::ptr::eq(*r, target)) else { return false };
    stack[..at].iter().enumerate().any(|(i, r)| {
        let control = r.control.as_str();
        if control == "sufficient" {
            return true;
        }
        let Some(inner) = control.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else { return false };
        inner.split_whitespace().filter_map(|kv| kv.split_once('=')).any(|(k, v)| {
            let ends_well = matches!(k, "success" | "default" | "ignore" | "new_authtok_reqd");
            ends_well && (v == "done" || v.parse::<usize>().is_ok_and(|n| i + n >= at))
        })
    })
}

/// Lockout threshold of one `auth` stack: `Some((module, deny))`, or `None`
/// when nothing locks. The stack must lock as libpam runs it
/// ([`super::pam_auth::locks`]); the threshold is then the largest `deny` of
/// its lockout lines (each line tests the count against its own `deny`,
/// from its arguments, else faillock.conf, else 3; pam_tally2 has no
/// default), and a `deny` of 0 on any of them means that line never refuses.
pub fn lockout(rules: &[PamRule], faillock_conf: &[String]) -> Option<(&'static str, i64)> {
    if !super::pam_auth::locks(rules) {
        return None;
    }
    let mut threshold: Option<(&'static str, i64)> = None;
    for r in rules.iter().filter(|r| r.kind == "auth") {
        let deny = if r.is("pam_faillock.so") {
            let deny = r.arg("deny").map(str::to_string).or_else(|| conf_value(faillock_conf, "deny"));
            ("pam_faillock", deny.and_then(|v| v.parse::<i64>().ok()).unwrap_or(3))
        } else if r.is("pam_tally2.so") {
            ("pam_tally2", r.arg("deny").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0))
        } else {
            continue;
        };
        if deny.1 <= 0 {
            return None;
        }
        threshold = threshold.filter(|t| t.1 >= deny.1).or(Some(deny));
    }
    threshold
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// (path, contents) of the PAM stacks read.
    pub pam: Vec<(String, String)>,
    /// Files that exist but could not be read, and stacks whose includes
    /// pass a bound (`pam_include`).
    pub unreadable: Vec<String>,
    pub pwquality: Vec<String>,
    pub faillock: Vec<String>,
    pub login_defs: Option<String>,
}

/// The shared stacks (Debian's `common-*`, RHEL's authselect files) and
/// every service through which people log in or change their password,
/// with the kinds of rules judged in each: each service's own file decides,
/// whatever the shared ones say (a `sufficient` line before `@include
/// common-auth` in `/etc/pam.d/sshd` skips it).
const SERVICES: &[(&str, &[&str])] = &[
    ("common-password", &["password"]),
    ("common-auth", &["auth"]),
    ("system-auth", &["password", "auth"]),
    ("password-auth", &["password", "auth"]),
    ("login", &["password", "auth"]),
    ("sshd", &["password", "auth"]),
    ("su", &["auth"]),
    ("sudo", &["auth"]),
    ("passwd", &["password"]),
    ("gdm-password", &["password", "auth"]),
    ("lightdm", &["password", "auth"]),
    ("sddm", &["password", "auth"]),
];

/// Decides the check from what was observed.
pub fn evaluate(o: &Observed) -> Finding {
    let mut raw = String::new();
    for (p, t) in &o.pam {
        raw.push_str(&format!("# {p}\n{t}\n"));
    }
    for t in o.pwquality.iter().chain(&o.faillock) {
        raw.push_str(t);
        raw.push('\n');
    }
    // A service's stack of one kind, where it is judged for that kind and
    // its file has rules of it.
    let stacks = |kind: &str| -> Vec<(String, Vec<PamRule>)> {
        let judged = |path: &str| {
            SERVICES.iter().any(|(n, kinds)| path.ends_with(&format!("/{n}")) && kinds.contains(&kind))
        };
        o.pam
            .iter()
            .filter(|(p, _)| judged(p))
            .map(|(p, t)| (p.clone(), parse_pam(t)))
            .filter(|(_, rules)| rules.iter().any(|r| r.kind == kind))
            .collect()
    };
    let password = stacks("password");
    let auth = stacks("auth");
    if password.is_empty() && auth.is_empty() {
        let why = if o.unreadable.is_empty() {
            "no PAM password or auth stack found (common-password, system-auth, password-auth)".to_string()
        } else {
            format!("the PAM stacks could not be read: {}", o.unreadable.join("; "))
        };
        return Finding::unknown("pam", why).with_raw(raw);
    }
    // The weakest stack counts.
    let length = password.iter().map(|(_, r)| min_length(r, &o.pwquality)).min_by_key(|l| l.0);
    let locks: Vec<Option<(&str, i64)>> = auth.iter().map(|(_, r)| lockout(r, &o.faillock)).collect();
    let lock = if locks.is_empty() || locks.iter().any(Option::is_none) {
        None
    } else {
        locks.iter().flatten().max_by_key(|l| l.1).copied()
    };
    let unlocked: Vec<&str> =
        auth.iter().zip(&locks).filter(|(_, l)| l.is_none()).map(|((p, _), _)| p.as_str()).collect();
    let defs = o.login_defs.as_deref().unwrap_or("");
    let f = |status| {
        Finding::new(status, "pam")
            .fact("min_length", length.map_or(json!(null), |l| json!(l.0)))
            .fact("min_length_module", length.map_or(json!(null), |l| json!(l.1)))
            .fact("minlen", length.map_or(json!(null), |l| json!(l.2)))
            .fact("length_credits", length.map_or(json!(null), |l| json!(l.3)))
            .fact("lockout_module", lock.map_or(json!(null), |l| json!(l.0)))
            .fact("lockout_threshold", lock.map_or(json!(null), |l| json!(l.1)))
            .fact("pass_max_days", login_defs_value(defs, "PASS_MAX_DAYS").map_or(json!(null), |v| json!(v)))
            .fact("pass_min_len", login_defs_value(defs, "PASS_MIN_LEN").map_or(json!(null), |v| json!(v)))
            .fact("pam_files", o.pam.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>())
            .with_raw(raw.clone())
    };
    let problems = problems(length, lock, &unlocked);
    if !problems.is_empty() {
        return f(CheckStatus::Fail).with_reason(problems.join("; "));
    }
    if !o.unreadable.is_empty() {
        return f(CheckStatus::Unknown)
            .with_reason(format!("some PAM files could not be read: {}", o.unreadable.join("; ")));
    }
    let (len, module, ..) = length.unwrap_or((0, "", 0, 0));
    let (lmod, deny) = lock.unwrap_or(("", 0));
    f(CheckStatus::Pass)
        .with_reason(format!("minimum length {len} ({module}); {lmod} locks after {deny} failures"))
}

/// What keeps the check from passing: a short minimum length, or stacks
/// that do not lock (named) or lock too late.
fn problems(
    length: Option<(i64, &str, i64, i64)>,
    lock: Option<(&str, i64)>,
    unlocked: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    match length {
        Some((len, module, minlen, credits)) if len < i64::from(MIN_PASSWORD_LENGTH) => {
            let detail = if credits > 0 {
                format!(" (minlen {minlen} less {credits} credits)")
            } else {
                String::new()
            };
            problems.push(format!(
                "passwords may be {len} characters long{detail} under {module} (minimum {MIN_PASSWORD_LENGTH})"
            ));
        }
        Some(_) => {}
        None => problems.push("no PAM password stack found".into()),
    }
    match lock {
        None if unlocked.is_empty() => problems.push("accounts are not locked after failed logons (no PAM auth stack)".into()),
        None => problems.push(format!(
            "accounts are not locked after failed logons (no pam_faillock or pam_tally2 that locks as libpam runs it in {})",
            unlocked.join(", ")
        )),
        Some((module, deny)) if deny > i64::from(MAX_FAILED_LOGONS) => problems
            .push(format!("{module} locks only after {deny} failed logons (limit {MAX_FAILED_LOGONS})")),
        Some(_) => {}
    }
    problems
}

/// Reads the PAM and policy files through the host.
pub fn observe(host: &dyn Host) -> Observed {
    let mut o = Observed::default();
    for (name, _) in SERVICES {
        let path = format!("/etc/pam.d/{name}");
        match host.read_text(&path) {
            Ok(t) => match expand_includes(host, &path, &t) {
                Ok(stack) => o.pam.push((path, stack)),
                // Never a shortened stack: the line cut off could be the one that denies.
                Err(e) => o.unreadable.push(e.to_string()),
            },
            Err(HostError::NoFile { .. }) => {}
            Err(e) => o.unreadable.push(e.to_string()),
        }
    }
    // libpwquality reads the drop-ins (in name order) first and the main
    // file last, so the main file wins (`conf_value` takes the last value).
    let mut dropins: Vec<String> = host
        .read_dir("/etc/security/pwquality.conf.d")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(".conf"))
        .collect();
    dropins.sort();
    o.pwquality = dropins
        .iter()
        .filter_map(|n| host.read_text(&format!("/etc/security/pwquality.conf.d/{n}")).ok())
        .chain(host.read_text("/etc/security/pwquality.conf").ok())
        .collect();
    // pam_faillock reads only faillock.conf (no drop-in directory).
    o.faillock = host.read_text("/etc/security/faillock.conf").ok().into_iter().collect();
    o.login_defs = host.read_text("/etc/login.defs").ok();
    o
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    evaluate(&observe(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_lines_with_bracket_controls() {
        let r = parse_pam(
            "auth\t[default=die]\tpam_faillock.so authfail deny=5\n-password optional pam_gnome_keyring.so\n",
        );
        assert_eq!(r[0].control, "[default=die]");
        assert_eq!(r[0].arg("deny"), Some("5"));
        assert_eq!(r[1].kind, "password");
    }

    #[test]
    fn credits_shorten_the_minimum() {
        let rules = parse_pam("password requisite pam_pwquality.so retry=3 minlen=14 dcredit=1 ucredit=-1\n");
        assert_eq!(min_length(&rules, &[]), (13, "pam_pwquality", 14, 1));
        let rules = parse_pam("password requisite pam_cracklib.so retry=3 minlen=12\n");
        assert_eq!(min_length(&rules, &[]).0, 8);
        let rules =
            parse_pam("password optional pam_pwquality.so minlen=20\npassword sufficient pam_unix.so\n");
        assert_eq!(min_length(&rules, &[]).0, 6);
    }

    #[test]
    fn pwquality_that_only_warns_enforces_nothing() {
        let stack = parse_pam(
            "password requisite pam_pwquality.so retry=3\npassword [success=1 default=ignore] pam_unix.so obscure\n",
        );
        let conf = vec!["minlen = 14\n".to_string()];
        assert_eq!(min_length(&stack, &conf).1, "pam_pwquality");
        let warns = vec!["minlen = 14\nenforcing = 0\n".to_string()];
        assert_eq!(min_length(&stack, &warns), (6, "pam_unix", 6, 0));
        let by_arg = parse_pam("password requisite pam_pwquality.so enforcing=0 minlen=14\n");
        assert_eq!(min_length(&by_arg, &conf).1, "pam_unix");
    }

    /// An `auth` stack that locks as libpam runs it (faillock's deny
    /// defaults to 3).
    const LOCKING_AUTH: &str = "auth required pam_faillock.so preauth\nauth [success=1 default=ignore] pam_unix.so\n\
        auth [default=die] pam_faillock.so authfail\nauth sufficient pam_faillock.so authsucc\n\
        auth requisite pam_deny.so\nauth required pam_permit.so\n";

    #[test]
    fn includes_are_followed_and_faillock_drop_ins_are_not_read() {
        let host = crate::host::FixtureHost::new()
            .file("/etc/pam.d/common-password", "@include hardened\n")
            .file("/etc/pam.d/hardened", "password requisite pam_pwquality.so minlen=14\n")
            .file("/etc/pam.d/common-auth", LOCKING_AUTH)
            .file("/etc/security/faillock.conf.d/deny.conf", "deny = 20\n");
        let o = observe(&host);
        assert!(o.faillock.is_empty(), "pam_faillock never reads faillock.conf.d");
        let f = evaluate(&o);
        assert_eq!(f.facts["min_length"], json!(14), "{:?}", f.reason);
        // Not 20 from the drop-in: faillock's default, 3, applies.
        assert_eq!(f.facts["lockout_threshold"], json!(3));
    }

    #[test]
    fn a_stack_past_the_include_bounds_is_unknown_never_pass() {
        let sound = crate::host::FixtureHost::new()
            .file("/etc/pam.d/common-password", "password requisite pam_pwquality.so minlen=14\n")
            .file("/etc/pam.d/common-auth", LOCKING_AUTH);
        assert_eq!(gather(&sound, &Context::at(0)).status, CheckStatus::Pass);
        // sshd's stack includes a file that includes itself: libpam crashes on
        // it, and what it would run is not known here.
        let bomb = "auth optional pam_permit.so\n@include loop\n@include loop\n";
        let hostile = sound.file("/etc/pam.d/sshd", "@include loop\n").file("/etc/pam.d/loop", bomb);
        let f = gather(&hostile, &Context::at(0));
        assert_eq!(f.status, CheckStatus::Unknown, "{:?}", f.reason);
        assert!(f.reason.as_deref().unwrap_or("").contains("/etc/pam.d/loop"), "{:?}", f.reason);
    }

    #[test]
    fn a_rule_that_can_end_the_stack_first_skips_pwquality() {
        let sound = parse_pam(
            "password requisite pam_pwquality.so minlen=14\npassword [success=1 default=ignore] pam_unix.so obscure\n\
             password requisite pam_deny.so\npassword required pam_permit.so\n",
        );
        assert_eq!(min_length(&sound, &[]).0, 14);
        for first in [
            "password sufficient pam_unix.so",
            "password [success=1 default=ignore] pam_permit.so",
            "password [success=done default=ignore] pam_unix.so",
        ] {
            let hostile = parse_pam(&format!("{first}\npassword requisite pam_pwquality.so minlen=14\n"));
            assert_eq!(min_length(&hostile, &[]).1, "pam_unix", "{first}");
        }
        // A jump that lands before pwquality skips nothing.
        let short = parse_pam(
            "password [success=1 default=ignore] pam_permit.so\npassword optional pam_echo.so x\n\
             password requisite pam_pwquality.so minlen=14\n",
        );
        assert_eq!(min_length(&short, &[]).0, 14);
    }
}
