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
//! `bad`) in every *world* (each combination of what the modules the
//! password does not decide may do), for a wrong and the right password,
//! on an account that is locked and one that is not. In every world where
//! the password decides (the right one gets in, a wrong one does not):
//! - a wrong password reaches a line that counts the failure, and nothing
//!   clears the record on the way;
//! - a locked account is refused, with the right password or any other.
//!
//! Modules whose outcome the scenario fixes: pam_unix (the password),
//! pam_faillock (`preauth`, `authfail`, `authsucc`: a locked account fails
//! each), pam_tally2, pam_permit, pam_deny. A module that checks the
//! password against a directory (pam_sss, pam_ldap, pam_krb5, ...) may not
//! know the user, know them (the password decides) or fail; any other
//! module (pam_env, pam_nologin, pam_succeed_if, pam_rootok, a second
//! factor) does not look at the password and may succeed, fail or be
//! ignored. Substack levels are not told apart (a substack's `done` and
//! `die` are read as ending the whole stack).
//!
//! Invariant: pure; a stack counts as locking only when both conditions
//! hold in every world where the password decides, and there is one.

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

/// The runs of the stack that decide whether it locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A wrong password, the account not locked.
    Wrong,
    /// The right password, the account not locked.
    Right,
    /// The right password, the account locked.
    LockedRight,
    /// A wrong password, the account locked.
    LockedWrong,
}

impl Scenario {
    fn right(self) -> bool {
        matches!(self, Scenario::Right | Scenario::LockedRight)
    }
    fn locked(self) -> bool {
        matches!(self, Scenario::LockedRight | Scenario::LockedWrong)
    }
}

/// Most worlds followed before giving up (each unknown module triples them).
const MAX_WORLDS: usize = 20_000;

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

/// Modules that check the typed password against a directory of their own.
const PASSWORD_MODULES: &[&str] =
    &["pam_sss.so", "pam_ldap.so", "pam_krb5.so", "pam_winbind.so", "pam_systemd_home.so", "pam_pwdb.so"];

/// How a module whose outcome the scenario does not fix behaves in one
/// world: an index into its possible behaviours.
type Disposition = usize;

/// How many behaviours a module has that the scenario does not fix (1: it
/// is fixed). Other modules (pam_env, pam_nologin, pam_succeed_if, pam_rootok,
/// second factors) do not look at the password: each may succeed, fail or
/// be ignored, the same in every scenario of a world. A directory module
/// may not know the user (ignored), know them (the password decides) or
/// fail.
fn dispositions(rule: &PamRule) -> usize {
    match module(rule) {
        "pam_unix.so" | "pam_permit.so" | "pam_deny.so" | "pam_faillock.so" | "pam_tally2.so" => 1,
        _ => 3,
    }
}

fn module(rule: &PamRule) -> &str {
    rule.module.rsplit('/').next().unwrap_or(&rule.module)
}

/// What a module returns in a scenario and world, and what it does to the count.
fn outcome(rule: &PamRule, scenario: Scenario, d: Disposition) -> (Ret, Tally) {
    let has = |a: &str| rule.args.iter().any(|x| x == a);
    let password = |right: bool| if right { Ret::Success } else { Ret::AuthErr };
    match module(rule) {
        "pam_unix.so" => (password(scenario.right()), Tally::Keep),
        "pam_permit.so" => (Ret::Success, Tally::Keep),
        "pam_deny.so" => (Ret::AuthErr, Tally::Keep),
        // Every pam_faillock and pam_tally2 line refuses a locked account.
        "pam_faillock.so" | "pam_tally2.so" if scenario.locked() => (Ret::AuthErr, Tally::Keep),
        // authfail records the failure and returns PAM_IGNORE (the live
        // test sees `required authfail` with an `optional` pam_unix refuse
        // wrong passwords and admit the right one, which only that allows).
        // It runs after the password was checked, so only on failures that
        // reach it; on a right password's path it is the same line.
        "pam_faillock.so" if has("authfail") => (Ret::Ignore, Tally::Count),
        "pam_faillock.so" if has("preauth") => (Ret::Success, Tally::Keep),
        // authsucc clears the record whenever it runs on an unlocked
        // account, before or after a failure is counted (found by the live
        // test): on a failing path the failures never add up.
        "pam_faillock.so" if has("authsucc") => (Ret::Success, Tally::Reset),
        // No action named: whichever pam_faillock takes by default, it is
        // not relied on to count, and may clear.
        "pam_faillock.so" => (Ret::Success, Tally::Reset),
        "pam_tally2.so" => (Ret::Success, Tally::Count),
        m if PASSWORD_MODULES.contains(&m) => match d {
            0 => (Ret::Ignore, Tally::Keep),
            1 => (password(scenario.right()), Tally::Keep),
            _ => (Ret::AuthErr, Tally::Keep),
        },
        _ => ([Ret::Success, Ret::AuthErr, Ret::Ignore][d.min(2)], Tally::Keep),
    }
}

/// How one run through the stack ended.
#[derive(Debug, Clone, Copy)]
struct End {
    success: bool,
    /// A counting line ran and nothing cleared the record: failures add
    /// up across attempts.
    counted: bool,
}

/// Runs `auth` rules as libpam's dispatcher does, in one scenario and world;
/// `None` when a control is not understood.
fn run(rules: &[&PamRule], world: &[Disposition], scenario: Scenario) -> Option<End> {
    // libpam starts undecided, with a failing status.
    let (mut impression, mut status): (Option<bool>, Ret) = (None, Ret::AuthErr);
    let (mut counted, mut cleared) = (false, false);
    let mut at = 0;
    while let Some(rule) = rules.get(at) {
        let (ret, tally) = outcome(rule, scenario, world[at]);
        counted |= tally == Tally::Count;
        cleared |= tally == Tally::Reset;
        at += 1;
        match action(&rule.control, ret)? {
            Action::Ignore => {}
            Action::Reset => (impression, status) = (None, Ret::AuthErr),
            Action::Jump(k) => at += k,
            act @ (Action::Ok | Action::Done) => {
                if (impression.is_none() || (impression == Some(true) && status == Ret::Success))
                    && ret != Ret::Ignore
                {
                    (impression, status) = (Some(true), ret);
                }
                if act == Action::Done && impression != Some(false) {
                    break;
                }
            }
            act @ (Action::Bad | Action::Die) => {
                if impression != Some(false) {
                    (impression, status) = (Some(false), ret);
                }
                if act == Action::Die {
                    break;
                }
            }
        }
    }
    Some(End { success: impression == Some(true) && status == Ret::Success, counted: counted && !cleared })
}

/// Every world: each combination of the modules' dispositions; `None` when
/// there are too many to follow.
fn worlds(rules: &[&PamRule]) -> Option<Vec<Vec<Disposition>>> {
    let mut all = vec![Vec::new()];
    for r in rules {
        let n = dispositions(r);
        if all.len() * n > MAX_WORLDS {
            return None;
        }
        all = all.into_iter().flat_map(|w| (0..n).map(move |d| [w.clone(), vec![d]].concat())).collect();
    }
    Some(all)
}

/// Whether the `auth` rules lock accounts. Only the worlds in which the
/// password decides matter (the right one gets in, a wrong one does not:
/// where neither or both do, there is nothing to guess); there must be
/// some, and in each a wrong password must be counted, with nothing
/// clearing the record, and a locked account must be refused with any
/// password.
pub fn locks(rules: &[PamRule]) -> bool {
    let auth: Vec<&PamRule> = rules.iter().filter(|r| r.kind == "auth").collect();
    let Some(worlds) = worlds(&auth) else { return false };
    let mut decided_by_password = false;
    for w in &worlds {
        let outcome = |s| run(&auth, w, s);
        let (Some(wrong), Some(right)) = (outcome(Scenario::Wrong), outcome(Scenario::Right)) else {
            return false;
        };
        if wrong.success || !right.success {
            continue;
        }
        decided_by_password = true;
        let locked_out = [Scenario::LockedRight, Scenario::LockedWrong]
            .iter()
            .all(|s| outcome(*s).is_some_and(|e| !e.success));
        if !wrong.counted || !locked_out {
            return false;
        }
    }
    decided_by_password
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
    fn modules_that_do_not_look_at_the_password_do_not_spoil_a_lockout() {
        let common = "auth required pam_faillock.so preauth\nauth [success=1 default=ignore] pam_unix.so\n\
             auth [default=die] pam_faillock.so authfail\nauth sufficient pam_faillock.so authsucc\n\
             auth requisite pam_deny.so\nauth required pam_permit.so\n";
        // Debian's login: where pam_nologin refuses, nobody gets in, so nothing is guessed.
        assert!(locking(&format!(
            "auth optional pam_faildelay.so delay=3000000\nauth requisite pam_nologin.so\n{common}"
        )));
        // su: root needs no password; everyone else goes through the lockout.
        assert!(locking(&format!("auth sufficient pam_rootok.so\n{common}")));
        // Ubuntu's gdm-password: members of nopasswdlogin have no password to guess.
        assert!(locking(&format!("auth sufficient pam_succeed_if.so user ingroup nopasswdlogin\n{common}")));
        // A stack that checks no password at all has nothing to lock.
        assert!(!locking("auth required pam_faillock.so preauth\nauth required pam_permit.so\n"));
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
