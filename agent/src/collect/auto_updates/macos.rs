//! The macOS backend of the `auto_updates` check.
//!
//! Reads `defaults read /Library/Preferences/com.apple.SoftwareUpdate` (the
//! settings behind System Settings > General > Software Update > Automatic
//! updates) and `defaults read "/Library/Managed Preferences/com.apple.SoftwareUpdate"`
//! (written by an MDM configuration profile; when present its keys override
//! the local ones, as softwareupdated does). Keys: `AutomaticCheckEnabled`
//! (check for updates), `AutomaticDownload` (download them),
//! `CriticalUpdateInstall` (install Security Responses and system files),
//! `ConfigDataInstall` (install XProtect/Gatekeeper data), and
//! `AutomaticallyInstallMacOSUpdates` (install macOS updates).
//!
//! All five are required: Apple ships the fixes of almost every macOS
//! vulnerability in macOS point updates (14.7 → 14.7.1), which only
//! `AutomaticallyInstallMacOSUpdates` installs without a person; with it
//! off they are downloaded and wait. `CriticalUpdateInstall` alone covers
//! only Rapid Security Responses and system data files, which are rare.
//!
//! A key that is absent has the macOS default: on for the first four (a
//! fresh macOS 13–15 shows them on and writes a key only once it is toggled),
//! off for `AutomaticallyInstallMacOSUpdates`. Keys taken from the default are
//! listed in the `defaulted_keys` fact.
//!
//! Not read: software-update settings sent as a declaration (declarative
//! device management, macOS 14+), which do not appear as managed
//! preferences; where one turns installs off, the preferences read here
//! do not show it.
//!
//! Status rule: pass when checking, downloading, both security installs
//! (`CriticalUpdateInstall`, `ConfigDataInstall`) and macOS update installs
//! are on; fail naming each one that is off; unknown when neither domain
//! can be read (the local one missing means softwareupdated never ran, so
//! nothing is known).

use std::collections::BTreeMap;

use crate::collect::macos::{parse_bool, read_domain};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const LOCAL_DOMAIN: &str = "/Library/Preferences/com.apple.SoftwareUpdate";
const MANAGED_DOMAIN: &str = "/Library/Managed Preferences/com.apple.SoftwareUpdate";

/// The required settings: key, what it does, macOS default when absent.
const REQUIRED: &[(&str, &str, bool)] = &[
    ("AutomaticCheckEnabled", "checking for updates", true),
    ("AutomaticDownload", "downloading updates", true),
    ("CriticalUpdateInstall", "installing Security Responses and system files", true),
    ("ConfigDataInstall", "installing security configuration data (XProtect, Gatekeeper)", true),
    ("AutomaticallyInstallMacOSUpdates", "installing macOS updates (which carry the security fixes)", false),
];

/// Decides the check from the local and (if any) managed settings.
pub fn evaluate(
    local: Option<&BTreeMap<String, String>>,
    managed: Option<&BTreeMap<String, String>>,
    raw: &str,
) -> Finding {
    if local.is_none() && managed.is_none() {
        return Finding::unknown(
            "softwareupdate-prefs",
            format!("neither {LOCAL_DOMAIN} nor a managed profile could be read"),
        )
        .with_raw(raw);
    }
    // (value, where it came from)
    let lookup = |key: &str, default: bool| -> (Option<bool>, &'static str) {
        if let Some(v) = managed.and_then(|m| m.get(key)) {
            return (parse_bool(v), "managed");
        }
        if let Some(v) = local.and_then(|m| m.get(key)) {
            return (parse_bool(v), "local");
        }
        (Some(default), "default")
    };
    let mut f = Finding::pass("softwareupdate-prefs").fact("managed", managed.is_some()).with_raw(raw);
    let mut off = Vec::new();
    let mut unreadable = Vec::new();
    let mut defaulted = Vec::new();
    for (key, what, default) in REQUIRED {
        let (value, source) = lookup(key, *default);
        if source == "default" {
            defaulted.push(key.to_string());
        }
        match value {
            Some(true) => {}
            Some(false) if source == "default" => {
                off.push(format!("{what} is off ({key} not set: off by default)"))
            }
            Some(false) => off.push(format!("{what} is off ({key} = 0, {source})")),
            None => unreadable.push(format!("{key} has an unreadable value")),
        }
        f = f.fact(&snake(key), value);
    }
    f = f.fact("defaulted_keys", defaulted);
    if !off.is_empty() {
        f.status = CheckStatus::Fail;
        f.with_reason(off.join("; "))
    } else if !unreadable.is_empty() {
        f.status = CheckStatus::Unknown;
        f.with_reason(unreadable.join("; "))
    } else {
        f.with_reason("automatic check, download and security installs on; automatic macOS updates on")
    }
}

/// `AutomaticCheckEnabled` → `automatic_check_enabled`.
fn snake(key: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
        let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
        if c.is_ascii_uppercase()
            && i > 0
            && (prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase()))
        {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let mut raw = String::new();
    let local = read_domain(host, LOCAL_DOMAIN, &mut raw);
    let managed = read_domain(host, MANAGED_DOMAIN, &mut raw);
    match (&local, &managed) {
        (Err(e), _) | (Ok(None), Err(e)) => {
            return Finding::unknown("softwareupdate-prefs", e.clone()).with_raw(raw);
        }
        (Ok(Some(_)), Err(e)) => {
            // A profile may override what the local file says: cannot tell.
            return Finding::unknown("softwareupdate-prefs", format!("managed preferences unreadable: {e}"))
                .with_raw(raw);
        }
        _ => {}
    }
    let local = local.ok().flatten();
    let managed = managed.ok().flatten();
    if local.is_none() && managed.is_none() {
        return Finding::unknown(
            "softwareupdate-prefs",
            format!(
                "{LOCAL_DOMAIN} does not exist: softwareupdated has not run yet and no profile sets updates"
            ),
        )
        .with_raw(raw);
    }
    evaluate(local.as_ref(), managed.as_ref(), &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_snake_case() {
        assert_eq!(snake("AutomaticCheckEnabled"), "automatic_check_enabled");
        assert_eq!(snake("AutomaticallyInstallMacOSUpdates"), "automatically_install_mac_os_updates");
    }
}
