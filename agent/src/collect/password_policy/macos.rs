//! The macOS backend of the `password_policy` check.
//!
//! Reads the global account policies with `pwpolicy getaccountpolicies`
//! (an XML property list, preceded on some versions by a `Getting global
//! account policies` line; MDM passcode profiles land here too). Each policy
//! is a `policyContent` predicate, and every policy of a category must hold:
//! those of `policyCategoryPasswordContent` when a password is set, those
//! of `policyCategoryAuthentication` when someone logs in.
//!
//! Only the predicate counts, read exactly (anything else in a predicate can
//! widen what it accepts, and `policyParameters` such as `minimumLength`
//! are only names for the predicate's values):
//! - the minimum length is the `N` of a password-content predicate that is
//!   nothing but `policyAttributePassword matches '.{N,}'` (or `.{N,}+`,
//!   `.{N,M}`, `.{N,M}+`); a pattern with anything more (`'.{12,}|.*'`) or a
//!   predicate with more clauses (`... OR ...`) gives no length;
//! - the lockout threshold is the `policyAttributeMaximumFailedAuthentications`
//!   parameter (or a number in its place) of an authentication predicate
//!   that is `policyAttributeFailedAuthentications < MAX`, alone or `OR
//!   (policyAttributeCurrentTime > (policyAttributeLastFailedAuthenticationTime
//!   + autoEnableInSeconds))`, which unlocks the account after that many
//!   seconds (the `lockout_seconds` fact).
//!
//! A predicate the agent does not read can only add a requirement (all must
//! hold), so it never lowers what was read; it is counted
//! (`unread_policies`), and where no lockout was read but an authentication
//! policy was not understood, the lockout is `unknown`, not missing.
//!
//! Status rule: pass when the minimum length is at least
//! `super::MIN_PASSWORD_LENGTH` and accounts lock after at most
//! `super::MAX_FAILED_LOGONS` failed attempts; fail when no policy is set or
//! either is missing or weaker; unknown when the output is not a property
//! list (e.g. pwpolicy failed) or only an unread predicate could be the
//! missing lockout.

use serde_json::Value;

use super::{MAX_FAILED_LOGONS, MIN_PASSWORD_LENGTH};
use crate::collect::macos::parse_plist;
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const CONTENT: &str = "policyCategoryPasswordContent";
const AUTHENTICATION: &str = "policyCategoryAuthentication";

/// What the global account policies require.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policies {
    pub count: usize,
    pub min_length: Option<u32>,
    pub max_failed: Option<u32>,
    /// Seconds until a locked account unlocks itself, if set.
    pub lockout_seconds: Option<u64>,
    pub identifiers: Vec<String>,
    /// Content and authentication predicates the agent did not read.
    pub unread_content: usize,
    pub unread_authentication: usize,
}

/// Whitespace collapsed and one pair of enclosing parentheses removed.
fn normalise(content: &str) -> String {
    let mut c = content.split_whitespace().collect::<Vec<_>>().join(" ");
    while c.starts_with('(') && c.ends_with(')') && balanced(&c[1..c.len() - 1]) {
        c = c[1..c.len() - 1].trim().to_string();
    }
    c
}

/// Whether parentheses balance (so `(a) OR (b)` is not taken as one group).
fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for ch in s.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// `N` of a predicate that is only `policyAttributePassword matches
/// '.{N,}'` (`+` and an upper bound allowed); `None` for anything else.
fn length_from_content(content: &str) -> Option<u32> {
    let c = normalise(content);
    let (attr, rest) = c.split_once(' ')?;
    let (op, quoted) = rest.split_once(' ')?;
    if attr != "policyAttributePassword" || !op.eq_ignore_ascii_case("matches") {
        return None;
    }
    let q = quoted.chars().next().filter(|q| *q == '\'' || *q == '"')?;
    let pattern = quoted.strip_prefix(q)?.strip_suffix(q)?;
    let inner = pattern.strip_prefix(".{")?;
    let inner = inner.strip_suffix("}+").or_else(|| inner.strip_suffix('}'))?;
    let (min, max) = inner.split_once(',')?;
    let n: u32 = min.parse().ok()?;
    // An upper bound must be a number not below the minimum.
    if !max.is_empty() && max.parse::<u32>().ok().is_none_or(|m| m < n) {
        return None;
    }
    Some(n)
}

/// The threshold of a lockout predicate, and whether it unlocks itself
/// after `autoEnableInSeconds`; `None` for anything else.
fn lockout_from_content(content: &str, params: Option<&Value>) -> Option<(u32, bool)> {
    let c = normalise(content);
    const UNLOCK: &str =
        "(policyAttributeCurrentTime > (policyAttributeLastFailedAuthenticationTime + autoEnableInSeconds))";
    let (count, unlocks) = match c.split_once(" OR ") {
        None => (c.clone(), false),
        Some((count, rest)) if rest == UNLOCK => (normalise(count), true),
        Some(_) => return None,
    };
    let max = count.strip_prefix("policyAttributeFailedAuthentications < ")?;
    let n = if max == "policyAttributeMaximumFailedAuthentications" {
        as_u64(params.and_then(|m| m.get("policyAttributeMaximumFailedAuthentications")))?
    } else {
        max.parse().ok()?
    };
    // Unlocking after a time needs that time among the parameters.
    if unlocks && as_u64(params.and_then(|m| m.get("autoEnableInSeconds"))).is_none() {
        return None;
    }
    u32::try_from(n).ok().filter(|n| *n > 0).map(|n| (n, unlocks))
}

fn as_u64(v: Option<&Value>) -> Option<u64> {
    v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
}

/// Reads the policies from `pwpolicy getaccountpolicies` output.
pub fn parse_account_policies(text: &str) -> Result<Policies, ParseError> {
    if text.contains("No global policies") {
        return Ok(Policies::default());
    }
    let doc = parse_plist(text)?;
    let mut p = Policies::default();
    let Some(categories) = doc.as_object() else { return Ok(p) };
    for (category, policies) in categories {
        for policy in policies.as_array().into_iter().flatten() {
            p.count += 1;
            let content = policy.get("policyContent").and_then(Value::as_str).unwrap_or("");
            let params = policy.get("policyParameters");
            if let Some(id) = policy.get("policyIdentifier").and_then(Value::as_str) {
                p.identifiers.push(id.to_string());
            }
            match category.as_str() {
                CONTENT => match length_from_content(content) {
                    // Every content policy must hold: the longest minimum applies.
                    Some(n) => p.min_length = Some(p.min_length.map_or(n, |m| m.max(n))),
                    None => p.unread_content += 1,
                },
                AUTHENTICATION => match lockout_from_content(content, params) {
                    Some((n, unlocks)) if p.max_failed.is_none_or(|m| n < m) => {
                        // Several lockout policies: the strictest applies.
                        p.max_failed = Some(n);
                        p.lockout_seconds = if unlocks {
                            as_u64(params.and_then(|m| m.get("autoEnableInSeconds")))
                        } else {
                            None
                        };
                    }
                    Some(_) => {}
                    None => p.unread_authentication += 1,
                },
                // Password change (expiry, history) does not bear on this check.
                _ => {}
            }
        }
    }
    Ok(p)
}

/// Decides the check from the policies.
pub fn evaluate(p: &Policies, raw: &str) -> Finding {
    let mut f = Finding::pass("pwpolicy")
        .fact("policy_count", p.count)
        .fact("min_length", p.min_length)
        .fact("max_failed_logons", p.max_failed)
        .fact("lockout_seconds", p.lockout_seconds)
        .fact("policy_identifiers", p.identifiers.clone())
        .fact("unread_policies", p.unread_content + p.unread_authentication)
        .with_raw(raw);
    if p.count == 0 {
        f.status = CheckStatus::Fail;
        return f.with_reason("no global account policies are set");
    }
    let mut problems = Vec::new();
    match p.min_length {
        Some(n) if n >= MIN_PASSWORD_LENGTH => {}
        Some(n) => {
            problems.push(format!("minimum password length is {n} (at least {MIN_PASSWORD_LENGTH} needed)"))
        }
        None => problems.push("no minimum password length".into()),
    }
    if problems.is_empty() || p.max_failed.is_some() || p.unread_authentication == 0 {
        match p.max_failed {
            Some(n) if n <= MAX_FAILED_LOGONS => {}
            Some(n) => {
                problems.push(format!("accounts lock after {n} failed logons (at most {MAX_FAILED_LOGONS})"))
            }
            None if p.unread_authentication > 0 => {
                f.status = CheckStatus::Unknown;
                return f.with_reason(format!(
                    "no lockout policy was read, and {} authentication policies are in a form the agent does not read",
                    p.unread_authentication
                ));
            }
            None => problems.push("no lockout after failed logons".into()),
        }
    }
    if problems.is_empty() {
        f.with_reason(format!(
            "passwords of at least {} characters; lockout after {} failed logons",
            p.min_length.unwrap_or(0),
            p.max_failed.unwrap_or(0)
        ))
    } else {
        if p.unread_content > 0 {
            let noun = if p.unread_content == 1 { "policy" } else { "policies" };
            problems.push(format!("{} password-content {noun} not read", p.unread_content));
        }
        f.status = CheckStatus::Fail;
        f.with_reason(problems.join("; "))
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    match host.run("pwpolicy", &["getaccountpolicies"]) {
        Ok(out) => {
            let text = format!("{}{}", out.stdout, out.stderr);
            match parse_account_policies(&text) {
                Ok(p) if out.success() || p.count > 0 => evaluate(&p, &text),
                Ok(_) => Finding::unknown(
                    "pwpolicy",
                    format!("pwpolicy getaccountpolicies exited with {:?}: {}", out.code, out.stderr.trim()),
                )
                .with_raw(text),
                Err(e) => {
                    Finding::unknown("pwpolicy", format!("pwpolicy output unreadable: {e}")).with_raw(text)
                }
            }
        }
        Err(e) => Finding::unknown("pwpolicy", format!("pwpolicy getaccountpolicies: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plist_values_entities_and_empty_elements() {
        let v = parse_plist(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
             \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n\
             <key>a</key><string>x &lt; y &amp;&#38; z</string><key>b</key><integer>-5</integer>\
             <key>c</key><array><true/><false/><dict/><string/></array><key>d</key><real>1.5</real>\
             <!-- note --><key>e</key><data>\n\tAAEC\n\tAw==\n</data>\n</dict>\n</plist>\n",
        )
        .unwrap();
        assert_eq!(v["a"], "x < y && z");
        assert_eq!(v["b"], -5);
        assert_eq!(v["c"], serde_json::json!([true, false, {}, ""]));
        assert_eq!(v["d"], 1.5);
        assert_eq!(v["e"], "AAECAw==");
        assert!(parse_plist("<plist><dict><key>a</key>").is_err());
        assert!(parse_plist("no plist").is_err());
    }

    #[test]
    fn length_patterns() {
        assert_eq!(length_from_content("policyAttributePassword matches '.{12,}+'"), Some(12));
        assert_eq!(length_from_content("policyAttributePassword matches '.{8,64}'"), Some(8));
        assert_eq!(length_from_content("policyAttributePassword matches '(.*[0-9].*){1,}+'"), None);
    }

    #[test]
    fn only_plain_length_and_lockout_predicates_are_read() {
        assert_eq!(length_from_content("policyAttributePassword MATCHES \".{14,}\""), Some(14));
        assert_eq!(length_from_content("(policyAttributePassword matches '.{12,}+')"), Some(12));
        // Broader than they look: an alternation, a second clause, a bound below the minimum.
        assert_eq!(length_from_content("policyAttributePassword matches '.{12,}+|.*'"), None);
        assert_eq!(
            length_from_content(
                "policyAttributePassword matches '.{12,}+' OR policyAttributeRecordName == 'kiosk'"
            ),
            None
        );
        assert_eq!(length_from_content("policyAttributePassword matches '.{12,4}'"), None);
        let params =
            serde_json::json!({"policyAttributeMaximumFailedAuthentications": 5, "autoEnableInSeconds": 900});
        let lock = "(policyAttributeFailedAuthentications < policyAttributeMaximumFailedAuthentications) OR \
                    (policyAttributeCurrentTime > (policyAttributeLastFailedAuthenticationTime + autoEnableInSeconds))";
        assert_eq!(lockout_from_content(lock, Some(&params)), Some((5, true)));
        assert_eq!(lockout_from_content("policyAttributeFailedAuthentications < 3", None), Some((3, false)));
        // An extra escape clause unlocks whenever it likes.
        assert_eq!(
            lockout_from_content(
                "policyAttributeFailedAuthentications < policyAttributeMaximumFailedAuthentications OR policyAttributeCurrentTime > 0",
                Some(&params)
            ),
            None
        );
    }

    #[test]
    fn a_policy_in_the_wrong_category_or_only_in_parameters_does_not_count() {
        let plist = |body: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n{body}</dict>\n</plist>\n"
            )
        };
        // The length only in policyParameters; the lockout among password-content policies.
        let text = plist(
            "<key>policyCategoryPasswordContent</key><array>\
             <dict><key>policyContent</key><string>policyAttributePassword matches '.{4,}+'</string>\
             <key>policyParameters</key><dict><key>minimumLength</key><integer>12</integer></dict></dict>\
             <dict><key>policyContent</key><string>policyAttributeFailedAuthentications &lt; 5</string></dict>\
             </array>",
        );
        let p = parse_account_policies(&text).unwrap();
        assert_eq!((p.min_length, p.max_failed, p.unread_content), (Some(4), None, 1));
        assert_eq!(evaluate(&p, "").status, CheckStatus::Fail);
        // A lockout in a form not read is not a missing lockout.
        let text = plist(
            "<key>policyCategoryPasswordContent</key><array><dict><key>policyContent</key>\
             <string>policyAttributePassword matches '.{12,}+'</string></dict></array>\
             <key>policyCategoryAuthentication</key><array><dict><key>policyContent</key>\
             <string>policyAttributeFailedAuthentications &lt;= 4</string></dict></array>",
        );
        let f = evaluate(&parse_account_policies(&text).unwrap(), "");
        assert_eq!(f.status, CheckStatus::Unknown, "{:?}", f.reason);
    }
}
