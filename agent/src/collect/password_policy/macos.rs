//! The macOS backend of the `password_policy` check.
//!
//! Reads the global account policies with `pwpolicy getaccountpolicies`
//! (an XML property list, preceded on some versions by a `Getting global
//! account policies` line; MDM passcode profiles land here too). Each policy
//! is a `policyContent` predicate: the minimum length is the `N` of
//! `policyAttributePassword matches '.{N,}+'` (or the `minimumLength`
//! parameter of `com.apple.policy.legacy.minChars`); the lockout threshold is
//! the `policyAttributeMaximumFailedAuthentications` parameter of a predicate
//! `policyAttributeFailedAuthentications < policyAttributeMaximumFailedAuthentications`.
//!
//! Status rule: pass when the minimum length is at least
//! `super::MIN_PASSWORD_LENGTH` and accounts lock after at most
//! `super::MAX_FAILED_LOGONS` failed attempts; fail when no policy is set or
//! either is missing or weaker; unknown when the output is not a property
//! list (e.g. pwpolicy failed).

use serde_json::Value;

use super::{MAX_FAILED_LOGONS, MIN_PASSWORD_LENGTH};
use crate::collect::macos::parse_plist;
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

/// What the global account policies require.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policies {
    pub count: usize,
    pub min_length: Option<u32>,
    pub max_failed: Option<u32>,
    /// Seconds until a locked account unlocks itself, if set.
    pub lockout_seconds: Option<u64>,
    pub identifiers: Vec<String>,
}

/// `N` of a `matches '.{N,}+'` (or `'.{N,M}'`) length predicate.
fn length_from_content(content: &str) -> Option<u32> {
    if !content.contains("policyAttributePassword matches") {
        return None;
    }
    let pattern = content.split('\'').nth(1)?;
    let rest = pattern.strip_prefix(".{")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn as_u64(v: Option<&Value>) -> Option<u64> {
    v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
}

/// Reads the policies from `pwpolicy getaccountpolicies` output.
pub fn parse_account_policies(text: &str) -> Result<Policies, String> {
    if text.contains("No global policies") {
        return Ok(Policies::default());
    }
    let doc = parse_plist(text)?;
    let mut p = Policies::default();
    let Some(categories) = doc.as_object() else { return Ok(p) };
    for policy in categories.values().filter_map(Value::as_array).flatten() {
        p.count += 1;
        let content = policy.get("policyContent").and_then(Value::as_str).unwrap_or("");
        let params = policy.get("policyParameters");
        if let Some(id) = policy.get("policyIdentifier").and_then(Value::as_str) {
            p.identifiers.push(id.to_string());
        }
        let length = length_from_content(content).or_else(|| {
            as_u64(params.and_then(|m| m.get("minimumLength"))).and_then(|n| u32::try_from(n).ok())
        });
        if let Some(n) = length {
            p.min_length = Some(p.min_length.map_or(n, |m| m.max(n)));
        }
        if content.contains("policyAttributeFailedAuthentications")
            && content.contains("policyAttributeMaximumFailedAuthentications")
            && let Some(n) = as_u64(params.and_then(|m| m.get("policyAttributeMaximumFailedAuthentications")))
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
        {
            // Several lockout policies: the strictest applies.
            p.max_failed = Some(p.max_failed.map_or(n, |m| m.min(n)));
            p.lockout_seconds = as_u64(params.and_then(|m| m.get("autoEnableInSeconds")));
        }
    }
    Ok(p)
}

/// Decides the check from the policies.
pub fn evaluate(p: &Policies, raw: &str) -> Finding {
    let f = Finding::pass("pwpolicy")
        .fact("policy_count", p.count)
        .fact("min_length", p.min_length)
        .fact("max_failed_logons", p.max_failed)
        .fact("lockout_seconds", p.lockout_seconds)
        .fact("policy_identifiers", p.identifiers.clone())
        .with_raw(raw);
    let mut problems = Vec::new();
    match p.min_length {
        Some(n) if n >= MIN_PASSWORD_LENGTH => {}
        Some(n) => {
            problems.push(format!("minimum password length is {n} (at least {MIN_PASSWORD_LENGTH} needed)"))
        }
        None => problems.push("no minimum password length".into()),
    }
    match p.max_failed {
        Some(n) if n <= MAX_FAILED_LOGONS => {}
        Some(n) => {
            problems.push(format!("accounts lock after {n} failed logons (at most {MAX_FAILED_LOGONS})"))
        }
        None => problems.push("no lockout after failed logons".into()),
    }
    let mut f = f;
    if p.count == 0 {
        f.status = CheckStatus::Fail;
        return f.with_reason("no global account policies are set");
    }
    if problems.is_empty() {
        f.with_reason(format!(
            "passwords of at least {} characters; lockout after {} failed logons",
            p.min_length.unwrap_or(0),
            p.max_failed.unwrap_or(0)
        ))
    } else {
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
}
