//! The macOS backend of the `os_patches` check.
//!
//! Runs `softwareupdate --list`, which asks the update catalog live (so
//! the answer is never stale), and reads its output as macOS 13 and later
//! print it: `Software Update found the following new or updated software:`
//! then per update `* Label: <label>` and a tab-indented `Title: ..., Version:
//! ..., Size: ...KiB, Recommended: YES, Action: restart,` line, or `No new
//! software available.` (the banner and that sentence go to stderr, the list
//! to stdout, so both are read). `sw_vers -productVersion` gives the running
//! release, so that an offered upgrade to a new major macOS version (which
//! Apple offers as "recommended" too, while it keeps patching the running
//! one) is reported as a fact and not as a missing patch.
//!
//! What `softwareupdate --list` shows is not always what Apple has released,
//! so two settings that narrow it are read:
//! - a deferral (restrictions profile, `com.apple.applicationaccess`:
//!   `forceDelayedSoftwareUpdates` for macOS updates,
//!   `forceDelayedAppSoftwareUpdates` for other Apple software) hides every
//!   update for `enforcedSoftwareUpdate…DeferredInstallDelay` or
//!   `enforcedSoftwareUpdateDelay` days (30 when not set) after its release;
//! - a `CatalogURL` in `com.apple.SoftwareUpdate` (managed or local, as
//!   `softwareupdate --set-catalog` writes it) points the tool at another
//!   catalog, which lists what that catalog holds.
//!
//! Status rule: fail when a recommended update other than a major upgrade is
//! pending; pass when the tool says no new software is available or only
//! updates marked `Recommended: NO` or major upgrades are listed, and
//! nothing narrows the listing; unknown when the server could not be
//! reached, the output is not understood, an update (other than a major
//! upgrade) lacks a `Recommended: YES` / `NO` field, or a deferral or
//! another catalog (or settings that cannot be read) may hide a pending
//! update. Without `sw_vers` every recommended macOS update counts as
//! pending.

use std::collections::BTreeMap;

use crate::collect::macos::{parse_bool, read_domain};
use crate::collect::{Context, Finding};
use crate::host::Host;
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

const RESTRICTIONS: &str = "/Library/Managed Preferences/com.apple.applicationaccess";
const SU_LOCAL: &str = "/Library/Preferences/com.apple.SoftwareUpdate";
const SU_MANAGED: &str = "/Library/Managed Preferences/com.apple.SoftwareUpdate";
/// Apple's deferral when `forceDelayed…` is set without a number of days.
const DEFAULT_DEFERRAL_DAYS: u32 = 30;

/// One update offered by `softwareupdate --list`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub label: String,
    pub title: String,
    pub version: String,
    /// `None` when the `Recommended:` field is missing or not `YES` / `NO`.
    pub recommended: Option<bool>,
    pub restart: bool,
}

/// What `softwareupdate --list` reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    Updates(Vec<Update>),
    NoUpdates,
    /// The tool could not tell, with why.
    Failed(String),
}

/// Splits a `Title: ..., Version: ..., Recommended: YES,` line into fields;
/// a piece without `key: ` belongs to the previous value (a comma in a title).
fn fields(line: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in line.trim().trim_end_matches(',').split(", ") {
        match piece.split_once(": ") {
            Some((k, v)) if !k.contains(' ') => out.push((k.to_string(), v.trim().to_string())),
            _ => {
                if let Some(last) = out.last_mut() {
                    last.1.push_str(", ");
                    last.1.push_str(piece);
                }
            }
        }
    }
    out
}

/// Parses the combined stdout and stderr of `softwareupdate --list`.
pub fn parse_softwareupdate_list(text: &str) -> Listing {
    let mut updates: Vec<Update> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(label) = trimmed.strip_prefix("* Label:") {
            updates.push(Update { label: label.trim().to_string(), ..Update::default() });
        } else if trimmed.starts_with("Title:")
            && let Some(u) = updates.last_mut()
        {
            for (k, v) in fields(trimmed) {
                match k.as_str() {
                    "Title" => u.title = v,
                    "Version" => u.version = v,
                    "Recommended" if v.eq_ignore_ascii_case("YES") => u.recommended = Some(true),
                    "Recommended" if v.eq_ignore_ascii_case("NO") => u.recommended = Some(false),
                    "Action" => u.restart = v.eq_ignore_ascii_case("restart"),
                    _ => {}
                }
            }
        }
    }
    let lower = text.to_ascii_lowercase();
    // Checked first: a failed lookup may still print the banner.
    if lower.contains("can't connect") || lower.contains("cannot connect") || lower.contains("no network") {
        let line = text
            .lines()
            .find(|l| {
                l.to_ascii_lowercase().contains("connect") || l.to_ascii_lowercase().contains("network")
            })
            .unwrap_or("")
            .trim();
        return Listing::Failed(format!("the update server could not be reached: {line}"));
    }
    if !updates.is_empty() {
        return Listing::Updates(updates);
    }
    if lower.contains("no new software available") {
        return Listing::NoUpdates;
    }
    if lower.contains("found the following new or updated software") {
        return Listing::Failed("updates were announced but none could be parsed".into());
    }
    Listing::Failed("softwareupdate printed neither updates nor \"No new software available\"".into())
}

/// The major version of a macOS version string (`14.7.1` → 14; 10.x keeps
/// its minor, `10.15` → 1015, since those were separate releases).
fn major(version: &str) -> Option<u32> {
    let mut parts = version.trim().split('.');
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 10 {
        let minor: u32 = parts.next()?.parse().ok()?;
        return Some(1000 + minor);
    }
    Some(first)
}

/// Whether an update is an upgrade to another major macOS release.
fn is_major_upgrade(u: &Update, running: Option<&str>) -> bool {
    let Some(running) = running.and_then(major) else { return false };
    u.title.starts_with("macOS") && major(&u.version).is_some_and(|m| m > running)
}

/// What narrows the listing: deferrals and another catalog.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Narrowing {
    /// Days macOS updates are hidden after release, when deferred.
    pub macos_deferral_days: Option<u32>,
    /// Days other Apple software updates are hidden, when deferred.
    pub other_deferral_days: Option<u32>,
    /// The `CatalogURL` softwareupdate asks instead of Apple's catalog.
    pub catalog_url: Option<String>,
}

/// The deferrals a restrictions profile sets (`com.apple.applicationaccess`).
pub fn deferrals(restrictions: &BTreeMap<String, String>) -> (Option<u32>, Option<u32>) {
    let days = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| restrictions.get(*k).and_then(|v| v.trim().parse::<u32>().ok()))
            .unwrap_or(DEFAULT_DEFERRAL_DAYS)
    };
    let on = |k: &str| restrictions.get(k).and_then(|v| parse_bool(v)) == Some(true);
    let macos = on("forceDelayedSoftwareUpdates")
        .then(|| days(&["enforcedSoftwareUpdateMinorOSDeferredInstallDelay", "enforcedSoftwareUpdateDelay"]));
    let other = on("forceDelayedAppSoftwareUpdates")
        .then(|| days(&["enforcedSoftwareUpdateNonOSDeferredInstallDelay", "enforcedSoftwareUpdateDelay"]));
    (macos, other)
}

/// Why a pass cannot stand, if the listing may leave pending updates out.
fn narrowed(n: &Result<Narrowing, String>) -> Option<String> {
    let n = match n {
        Err(why) => {
            return Some(format!("whether a deferral or another catalog hides updates is not known: {why}"));
        }
        Ok(n) => n,
    };
    let mut why = Vec::new();
    for (what, days) in
        [("macOS updates", n.macos_deferral_days), ("other Apple updates", n.other_deferral_days)]
    {
        if let Some(d) = days.filter(|d| *d > 0) {
            why.push(format!(
                "a configuration profile defers {what} by {d} days, so those released in the last {d} days are not listed"
            ));
        }
    }
    if n.catalog_url.is_some() {
        why.push("softwareupdate asks a catalog set by CatalogURL instead of Apple's, so it lists what that catalog holds".into());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Decides the check from the listing and the running macOS version.
pub fn evaluate(listing: &Listing, running: Option<&str>, raw: &str) -> Finding {
    let base = |status| Finding::new(status, "softwareupdate").fact("macos_version", running).with_raw(raw);
    match listing {
        Listing::Failed(why) => base(CheckStatus::Unknown).with_reason(why.clone()),
        Listing::NoUpdates => base(CheckStatus::Pass)
            .with_reason("no new software available")
            .fact("pending_updates", 0)
            .fact("labels", Vec::<String>::new()),
        Listing::Updates(updates) => {
            let (majors, rest): (Vec<&Update>, Vec<&Update>) =
                updates.iter().partition(|u| is_major_upgrade(u, running));
            let labels: Vec<String> = updates.iter().map(|u| u.label.clone()).collect();
            // An update whose recommendation was not read may be a security update.
            let unclear: Vec<&str> =
                rest.iter().filter(|u| u.recommended.is_none()).map(|u| u.label.as_str()).collect();
            let pending: Vec<&Update> = rest.into_iter().filter(|u| u.recommended == Some(true)).collect();
            if pending.is_empty() && !unclear.is_empty() {
                return base(CheckStatus::Unknown)
                    .with_reason(format!(
                        "softwareupdate did not say whether these updates are recommended: {}",
                        unclear.join(", ")
                    ))
                    .fact("labels", labels);
            }
            let f = base(if pending.is_empty() { CheckStatus::Pass } else { CheckStatus::Fail })
                .fact("pending_updates", pending.len())
                .fact("labels", labels)
                .fact("restart_required", pending.iter().any(|u| u.restart))
                .fact("major_upgrades", majors.iter().map(|u| u.label.clone()).collect::<Vec<_>>());
            if pending.is_empty() {
                let what = if majors.is_empty() {
                    "only optional updates are offered".to_string()
                } else {
                    format!("only a major upgrade is offered ({})", majors[0].title)
                };
                f.with_reason(what)
            } else {
                let names: Vec<String> = pending
                    .iter()
                    .map(|u| {
                        if u.title.is_empty() {
                            u.label.clone()
                        } else {
                            format!("{} {}", u.title, u.version)
                        }
                    })
                    .collect();
                let noun = if pending.len() == 1 { "update" } else { "updates" };
                f.with_reason(format!("{} recommended {noun} pending: {}", pending.len(), names.join(", ")))
            }
        }
    }
}

/// Decides the check as [`evaluate`] does, then lets a pass stand only when
/// nothing narrows the listing.
pub fn evaluate_narrowed(
    listing: &Listing,
    running: Option<&str>,
    narrowing: &Result<Narrowing, String>,
    raw: &str,
) -> Finding {
    let mut f = evaluate(listing, running, raw);
    let n = narrowing.as_ref().ok();
    f = f
        .fact("macos_deferral_days", n.and_then(|n| n.macos_deferral_days))
        .fact("other_deferral_days", n.and_then(|n| n.other_deferral_days))
        .fact("catalog_url_set", n.map(|n| n.catalog_url.is_some()));
    if f.status == CheckStatus::Pass
        && let Some(why) = narrowed(narrowing)
    {
        f.status = CheckStatus::Unknown;
        let listed = f.reason.take().unwrap_or_default();
        return f.with_reason(format!("{listed}, but {why}"));
    }
    f
}

/// Reads the deferrals and the catalog; an unreadable source is an error,
/// since it may hold either.
fn read_narrowing(host: &dyn Host, raw: &mut String) -> Result<Narrowing, String> {
    let restrictions = read_domain(host, RESTRICTIONS, raw)?.unwrap_or_default();
    let (macos_deferral_days, other_deferral_days) = deferrals(&restrictions);
    let mut catalog_url = None;
    // The managed value wins over the local one, as for every preference.
    for domain in [SU_MANAGED, SU_LOCAL] {
        if catalog_url.is_none()
            && let Some(d) = read_domain(host, domain, raw)?
        {
            catalog_url = d.get("CatalogURL").map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        }
    }
    Ok(Narrowing { macos_deferral_days, other_deferral_days, catalog_url })
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let out = match host.run("softwareupdate", &["--list"]) {
        Ok(out) => out,
        Err(e) => return Finding::unknown("softwareupdate", format!("softwareupdate --list: {e}")),
    };
    let text = format!("{}\n{}", out.stderr, out.stdout);
    let mut listing = parse_softwareupdate_list(&text);
    if !out.success()
        && let Listing::NoUpdates | Listing::Updates(_) = listing
    {
        listing = Listing::Failed(format!("softwareupdate --list exited with {:?}", out.code));
    }
    let running = host
        .run("sw_vers", &["-productVersion"])
        .ok()
        .filter(|o| o.success())
        .map(|o| o.stdout.trim().to_string())
        .filter(|v| major(v).is_some());
    let mut raw = text;
    let narrowing = read_narrowing(host, &mut raw);
    let url = narrowing.as_ref().ok().and_then(|n| n.catalog_url.clone());
    let f = evaluate_narrowed(&listing, running.as_deref(), &narrowing, &raw);
    // A catalog URL names a server: an address under the privacy settings.
    f.fact("catalog_url", url.and_then(|u| ctx.personal(Personal::Address, &u)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "Software Update found the following new or updated software:\n\
        * Label: Command Line Tools for Xcode-16.1\n\
        \tTitle: Command Line Tools for Xcode, Version: 16.1, Size: 1650016KiB, Recommended: YES, \n\
        * Label: macOS Sequoia 15.1.1-24B91\n\
        \tTitle: macOS Sequoia 15.1.1, Version: 15.1.1, Size: 7340032KiB, Recommended: YES, Action: restart, \n";

    #[test]
    fn updates_and_major_upgrades_are_told_apart() {
        let l = parse_softwareupdate_list(LIST);
        let Listing::Updates(u) = &l else { panic!("{l:?}") };
        assert_eq!(u[0].title, "Command Line Tools for Xcode");
        assert_eq!((u[1].version.as_str(), u[1].recommended, u[1].restart), ("15.1.1", Some(true), true));
        let f = evaluate(&l, Some("14.7.1"), LIST);
        assert_eq!(f.status, CheckStatus::Fail);
        assert_eq!(f.facts["pending_updates"], 1);
        assert_eq!(f.facts["major_upgrades"][0], "macOS Sequoia 15.1.1-24B91");
        // Without the running version the macOS update counts too.
        assert_eq!(evaluate(&l, None, LIST).facts["pending_updates"], 2);
    }

    #[test]
    fn a_comma_in_a_title_stays_in_the_title() {
        let f = fields("Title: Foo, Bar Tool, Version: 1.0, Size: 12KiB, Recommended: NO,");
        assert_eq!(f[0], ("Title".to_string(), "Foo, Bar Tool".to_string()));
        assert_eq!(f[3], ("Recommended".to_string(), "NO".to_string()));
    }

    #[test]
    fn a_deferral_or_another_catalog_keeps_an_empty_listing_from_passing() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(deferrals(&map(&[("forceDelayedSoftwareUpdates", "1")])), (Some(30), None));
        let r = map(&[
            ("forceDelayedSoftwareUpdates", "1"),
            ("enforcedSoftwareUpdateDelay", "14"),
            ("forceDelayedAppSoftwareUpdates", "1"),
            ("enforcedSoftwareUpdateNonOSDeferredInstallDelay", "7"),
        ]);
        assert_eq!(deferrals(&r), (Some(14), Some(7)));
        // The delay alone, without the switch, defers nothing.
        assert_eq!(deferrals(&map(&[("enforcedSoftwareUpdateDelay", "14")])), (None, None));

        let clean = Ok(Narrowing::default());
        assert_eq!(
            evaluate_narrowed(&Listing::NoUpdates, Some("15.1"), &clean, "").status,
            CheckStatus::Pass
        );
        let deferred = Ok(Narrowing { macos_deferral_days: Some(14), ..Narrowing::default() });
        let f = evaluate_narrowed(&Listing::NoUpdates, Some("15.1"), &deferred, "");
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("defers macOS updates by 14 days"));
        let catalog = Ok(Narrowing {
            catalog_url: Some("http://sus.example/index.sucatalog".into()),
            ..Narrowing::default()
        });
        assert_eq!(evaluate_narrowed(&Listing::NoUpdates, None, &catalog, "").status, CheckStatus::Unknown);
        let unread = Err("defaults: not found".to_string());
        assert_eq!(evaluate_narrowed(&Listing::NoUpdates, None, &unread, "").status, CheckStatus::Unknown);
        // What is listed as pending stays a failure.
        let l = parse_softwareupdate_list(LIST);
        assert_eq!(evaluate_narrowed(&l, Some("14.7.1"), &deferred, LIST).status, CheckStatus::Fail);
    }
}
