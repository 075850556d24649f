//! How libpam runs an `auth` stack, for one question: does it lock accounts?
//!
//! A lockout module in the file is not a lockout. pam_faillock counts a
//! failure only when its `authfail` line runs after the password module
//! failed, and a locked account stays out only when every way through the
//! stack fails for it, even with the right password. Both depend on the
//! control values: a `[default=1]` on pam_unix jumps over `authfail`, a
//! `sufficient` pam_unix ends the stack with success before any lockout
//! line. So the stack is run here the way libpam's dispatcher runs it
//! (`_pam_dispatch_aux`: impression and status, `ok`, `done`, `bad`, `die`,
//! `reset`, `ignore`, jumps; `required`, `requisite`, `sufficient` and
//! `optional` as their bracket forms; an action a bracket leaves unset is
//! `bad`) over two scenarios, with every outcome a module could give:
//! - a wrong password on an account that is not locked: every path must
//!   fail and reach a line that counts the failure;
//! - a locked account, with the right password or any other: every path
//!   must fail.
//!
//! Modules whose outcome the scenario fixes: pam_unix (the password),
//! pam_faillock (`preauth`, `authfail`, `authsucc`: a locked account fails
//! each), pam_tally2, pam_permit, pam_deny; modules that check the password
//! against a directory (pam_sss, pam_ldap, pam_krb5, ...) fail a wrong one
//! or ignore it. Any other module may succeed, fail or be ignored, and every path is followed (an attacker picks the
//! path). Substack levels are not told apart (a substack's `done` and `die`
//! are read as ending the whole stack); the stacks read are included with
//! `@include`/`include`, which have no levels.
//!
//! Invariant: pure; a stack counts as locking only when both scenarios hold
//! on every path.

use super::linux::PamRule;

/// A module's return value, as far as the controls tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ret {
    Success,
    AuthErr,
    Ignore,
}

/// What libpam does with a return value under a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    Jump(usize),
}

/// The two runs of the stack that decide whether it locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A wrong password, the account not locked.
    WrongPassword,
    /// The account locked, whatever password is typed.
    Locked,
}

/// Modules that check the typed password against a directory of their own.
const PASSWORD_MODULES: &[&str] =
    &["pam_sss.so", "pam_ldap.so", "pam_krb5.so", "pam_winbind.so", "pam_systemd_home.so", "pam_pwdb.so"];

/// Most paths followed before giving up (each unknown module triples them).
const MAX_PATHS: usize = 100_000;

/// libpam's action for `ret` under `control`; `None` for a control it
/// would not accept.
fn action(control: &str, ret: Ret) -> Option<Action> {
    let bracket = match control {
        "required" => "[success=ok new_authtok_reqd=ok ignore=ignore default=bad]",
        "requisite" => "[success=ok new_authtok_reqd=ok ignore=ignore default=die]",
        "sufficient" => "[success=done new_authtok_reqd=done default=ignore]",
        "optional" => "[success=ok new_authtok_reqd=ok default=ignore]",
        other => other,
    };
    let inner = bracket.strip_prefix('[')?.strip_suffix(']')?;
    let key = match ret {
        Ret::Success => "success",
        Ret::AuthErr => "auth_err",
        Ret::Ignore => "ignore",
    };
    let value =
        |k: &str| inner.split_whitespace().filter_map(|kv| kv.split_once('=')).find(|(key, _)| *key == k);
    let Some((_, v)) = value(key).or_else(|| value("default")) else { return Some(Action::Bad) };
    Some(match v {
        "ignore" => Action::Ignore,
        "ok" => Action::Ok,
        "done" => Action::Done,
        "bad" => Action::Bad,
        "die" => Action::Die,
        "reset" => Action::Reset,
        n => Action::Jump(n.parse().ok().filter(|n| *n > 0)?),
    })
}

/// What running a module does to the failure count of an unlocked account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tally {
    Keep,
    /// Records the failure (`authfail`, pam_tally2).
    Count,
    /// Clears the record (`authsucc` on an account that is not locked).
    Reset,
}

/// What a module may return in a scenario, and what it does to the count.
fn outcomes(rule: &PamRule, scenario: Scenario) -> (&'static [Ret], Tally) {
    let has = |a: &str| rule.args.iter().any(|x| x == a);
    let wrong = scenario == Scenario::WrongPassword;
    match rule.module.rsplit('/').next().unwrap_or(&rule.module) {
        "pam_unix.so" if wrong => (&[Ret::AuthErr], Tally::Keep),
        // Locked, any password may be typed: a stack can let a locked
        // account in with a wrong one (found by the live test).
        "pam_unix.so" => (&[Ret::Success, Ret::AuthErr], Tally::Keep),
        // The same wrong password fails every module that checks one (or
        // the user is not theirs); the right one may be theirs or not.
        m if wrong && PASSWORD_MODULES.contains(&m) => (&[Ret::AuthErr, Ret::Ignore], Tally::Keep),
        "pam_permit.so" => (&[Ret::Success], Tally::Keep),
        "pam_deny.so" => (&[Ret::AuthErr], Tally::Keep),
        // Every pam_faillock and pam_tally2 line refuses a locked account.
        "pam_faillock.so" | "pam_tally2.so" if !wrong => (&[Ret::AuthErr], Tally::Keep),
        // authfail records the failure and returns PAM_IGNORE (the live
        // test sees `required authfail` with an `optional` pam_unix refuse
        // wrong passwords and admit the right one, which only that allows).
        "pam_faillock.so" if has("authfail") => (&[Ret::Ignore], Tally::Count),
        "pam_faillock.so" if has("preauth") => (&[Ret::Success], Tally::Keep),
        // authsucc clears the record whenever it runs on an unlocked
        // account, before or after a failure is counted (found by the live
        // test): on a failing path the failures never add up.
        "pam_faillock.so" if has("authsucc") => (&[Ret::Success], Tally::Reset),
        // No action named: whichever pam_faillock takes by default, it is
        // not relied on to count, and may clear.
        "pam_faillock.so" => (&[Ret::Success, Ret::Ignore], Tally::Reset),
        "pam_tally2.so" => (&[Ret::Success, Ret::AuthErr], Tally::Count),
        _ => (&[Ret::Success, Ret::AuthErr, Ret::Ignore], Tally::Keep),
    }
}

/// One point of a run: the next rule, libpam's impression and status,
/// whether a counting line ran, and whether a record was cleared (before or
/// after the count, a clear on every failed attempt keeps the count from
/// ever adding up).
#[derive(Debug, Clone, Copy)]
struct State {
    at: usize,
    /// `None` undecided, `Some(true)` positive, `Some(false)` negative.
    impression: Option<bool>,
    status: Ret,
    counted: bool,
    cleared: bool,
}

/// How one path through the stack ended.
#[derive(Debug, Clone, Copy)]
struct End {
    success: bool,
    /// Counted, with nothing cleared: failures add up across attempts.
    counted: bool,
}

/// Every way `auth` rules run in `scenario`; `None` when a control is not
/// understood or the paths are too many to follow.
fn runs(rules: &[&PamRule], scenario: Scenario) -> Option<Vec<End>> {
    let mut ends = Vec::new();
    let mut todo =
        vec![State { at: 0, impression: None, status: Ret::AuthErr, counted: false, cleared: false }];
    while let Some(s) = todo.pop() {
        if ends.len() + todo.len() > MAX_PATHS {
            return None;
        }
        let Some(rule) = rules.get(s.at) else {
            ends.push(End {
                success: s.impression == Some(true) && s.status == Ret::Success,
                counted: s.counted && !s.cleared,
            });
            continue;
        };
        let (rets, tally) = outcomes(rule, scenario);
        let counted = s.counted || tally == Tally::Count;
        let cleared = s.cleared || tally == Tally::Reset;
        for &ret in rets {
            let mut n = State { at: s.at + 1, counted, cleared, ..s };
            let decided = |n: State| End {
                success: n.impression == Some(true) && n.status == Ret::Success,
                counted: n.counted && !n.cleared,
            };
            match action(&rule.control, ret)? {
                Action::Ignore => {}
                Action::Reset => (n.impression, n.status) = (None, Ret::AuthErr),
                Action::Jump(k) => n.at += k,
                act @ (Action::Ok | Action::Done) => {
                    let positive =
                        n.impression.is_none() || (n.impression == Some(true) && n.status == Ret::Success);
                    if positive && ret != Ret::Ignore {
                        (n.impression, n.status) = (Some(true), ret);
                    }
                    if act == Action::Done && n.impression != Some(false) {
                        ends.push(decided(n));
                        continue;
                    }
                }
                act @ (Action::Bad | Action::Die) => {
                    if n.impression != Some(false) {
                        (n.impression, n.status) = (Some(false), ret);
                    }
                    if act == Action::Die {
                        ends.push(decided(n));
                        continue;
                    }
                }
            }
            todo.push(n);
        }
    }
    Some(ends)
}

/// Whether the `auth` rules lock accounts: every wrong password is counted
/// and a locked account never gets through, whatever the password, on
/// every path.
pub fn locks(rules: &[PamRule]) -> bool {
    let auth: Vec<&PamRule> = rules.iter().filter(|r| r.kind == "auth").collect();
    // A path that lets a wrong password in is a hole of its own: no lockout.
    let counted =
        runs(&auth, Scenario::WrongPassword).is_some_and(|e| e.iter().all(|e| !e.success && e.counted));
    counted && runs(&auth, Scenario::Locked).is_some_and(|e| e.iter().all(|e| !e.success))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::password_policy::linux::parse_pam;

    fn locking(text: &str) -> bool {
        locks(&parse_pam(text))
    }

    #[test]
    fn the_distributions_lockout_stacks_lock() {
        // Debian / Ubuntu (pam_faillock's manual page), RHEL's authselect profile.
        assert!(locking(
            "auth required pam_faillock.so preauth\nauth [success=1 default=ignore] pam_unix.so nullok\n\
             auth [default=die] pam_faillock.so authfail\nauth sufficient pam_faillock.so authsucc\n\
             auth requisite pam_deny.so\nauth required pam_permit.so\n"
        ));
        assert!(locking(
            "auth required pam_env.so\nauth required pam_faildelay.so delay=2000000\n\
             auth required pam_faillock.so preauth silent\nauth sufficient pam_unix.so nullok\n\
             auth [default=die] pam_faillock.so authfail\nauth required pam_deny.so\n"
        ));
    }

    #[test]
    fn lockout_lines_that_never_run_or_never_refuse_do_not_lock() {
        // pam_unix's failure jumps over authfail: failures are never counted.
        assert!(!locking(
            "auth required pam_faillock.so preauth\nauth [success=2 default=1] pam_unix.so\n\
             auth [default=die] pam_faillock.so authfail\nauth requisite pam_deny.so\nauth required pam_permit.so\n"
        ));
        // A sufficient pam_unix before any lockout line lets a locked account in.
        assert!(!locking(
            "auth sufficient pam_unix.so\nauth required pam_faillock.so preauth\n\
             auth [default=die] pam_faillock.so authfail\nauth required pam_deny.so\n"
        ));
        // The failures are counted, but nothing refuses the locked account.
        assert!(!locking(
            "auth [success=1 default=ignore] pam_unix.so\nauth [default=die] pam_faillock.so authfail\n\
             auth required pam_permit.so\n"
        ));
        // An unknown module's success ends the stack before the lockout.
        assert!(!locking(
            "auth sufficient pam_sss.so\nauth required pam_faillock.so preauth\nauth sufficient pam_unix.so\n\
             auth [default=die] pam_faillock.so authfail\nauth required pam_deny.so\n"
        ));
        assert!(!locking("auth required pam_unix.so\n"));
        // Found by the live differential test: authsucc clears the failure
        // authfail has just counted, so the count never grows.
        assert!(!locking(
            "auth required pam_faillock.so authfail\nauth [success=ok default=bad] pam_faillock.so authsucc\n\
             auth sufficient pam_unix.so\nauth [default=die] pam_unix.so\n"
        ));
        // The same, with the clear before the count.
        assert!(!locking(
            "auth [success=ok default=bad] pam_faillock.so authsucc\nauth required pam_unix.so\n\
             auth required pam_faillock.so authfail\n"
        ));
        // Found by the live differential test: locked, the right password is
        // refused but a wrong one gets in (pam_unix's failure falls through
        // to pam_permit).
        assert!(!locking(
            "auth [success=2 default=ignore] pam_faillock.so preauth\nauth [success=1 default=ignore] pam_unix.so\n\
             auth required pam_permit.so\nauth sufficient pam_faillock.so authfail\n"
        ));
        // Found by the live differential test: an unlocked account gets in
        // with any password, so no failure is ever counted.
        assert!(!locking(
            "auth sufficient pam_faillock.so preauth\nauth [success=1 default=ignore] pam_unix.so\n\
             auth required pam_unix.so\n"
        ));
    }

    #[test]
    fn controls_read_as_libpam_reads_them() {
        assert_eq!(action("[success=1 default=ignore]", Ret::AuthErr), Some(Action::Ignore));
        assert_eq!(action("[success=1 default=ignore]", Ret::Success), Some(Action::Jump(1)));
        assert_eq!(action("[success=ok]", Ret::AuthErr), Some(Action::Bad));
        assert_eq!(action("sufficient", Ret::Success), Some(Action::Done));
        assert_eq!(action("requisite", Ret::Ignore), Some(Action::Ignore));
        assert_eq!(action("[default=sideways]", Ret::AuthErr), None);
        assert_eq!(action("mandatory", Ret::AuthErr), None);
    }
}
