//! How apt and unattended-upgrades read their settings: `APT::Periodic`
//! intervals as `apt.systemd.daily` reads them, the package black- and
//! whitelists as unattended-upgrades matches them, and what runs the daily
//! job at all. Pure.

use super::apt::AptPeriodic;
use crate::collect::ParseError;

/// Interval value of an `APT::Periodic` option in whole days (a shorter
/// interval counts as one, since the daily job runs it at most daily):
/// `always`, a number of days, or a number with the suffix `d`, `h`, `m`
/// or `s`, as `apt.systemd.daily` reads it; 0 or unreadable: off.
pub fn periodic_days(value: &str) -> u32 {
    let value = value.trim();
    if value.eq_ignore_ascii_case("always") {
        return 1;
    }
    let (number, unit) = match value.char_indices().last() {
        Some((i, c @ ('s' | 'm' | 'h' | 'd'))) => (&value[..i], c),
        _ => (value, 'd'),
    };
    let Ok(n) = number.parse::<u64>() else { return 0 };
    let seconds = n.saturating_mul(match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => 86_400,
    });
    u32::try_from(seconds.div_ceil(86_400)).unwrap_or(u32::MAX)
}

/// Packages whose security updates any automatic update must reach: a
/// blacklist that holds back all of them (or a whitelist that names none)
/// leaves unattended-upgrades installing nothing that matters.
pub const ESSENTIAL_PACKAGES: [&str; 8] =
    ["libc6", "openssl", "libssl3", "openssh-server", "sudo", "systemd", "apt", "linux-image-amd64"];

/// The essential packages unattended-upgrades would never upgrade under
/// these lists, as it matches them (`re.match`: at the start of the name):
/// any blacklist pattern holds a package back; a whitelist does only when
/// `Package-Whitelist-Strict` is on (a plain whitelist just raises the
/// priority of what it names). `Err` names a pattern that is not a valid
/// regular expression.
pub fn held_back(p: &AptPeriodic) -> Result<Vec<&'static str>, ParseError> {
    let compile = |list: &[String]| -> Result<Vec<regex::Regex>, ParseError> {
        list.iter()
            .filter(|x| !x.is_empty())
            .map(|x| {
                regex::Regex::new(&format!("^(?:{x})"))
                    .map_err(|e| ParseError::new(format!("pattern {x:?}: {e}")))
            })
            .collect()
    };
    let (black, white) = (compile(&p.blacklist)?, compile(&p.whitelist)?);
    Ok(ESSENTIAL_PACKAGES
        .into_iter()
        .filter(|pkg| {
            black.iter().any(|r| r.is_match(pkg))
                || (p.whitelist_strict && !white.is_empty() && !white.iter().any(|r| r.is_match(pkg)))
        })
        .collect())
}

/// What runs `apt.systemd.daily`: systemd's timers only run under systemd
/// as PID 1; without it Debian's cron job does, if a cron daemon runs.
pub fn apt_runner(
    pid1: Option<&str>,
    cron_running: Option<bool>,
    cron_job: bool,
) -> Option<Result<&'static str, String>> {
    let pid1 = pid1?.trim();
    if pid1 == "systemd" {
        return Some(Ok("systemd"));
    }
    match (cron_running, cron_job) {
        (Some(true), true) => Some(Ok("cron")),
        (None, true) => None,
        (_, false) => Some(Err(format!(
            "PID 1 is {pid1}, not systemd, so the timer never fires, and there is no /etc/cron.daily/apt-compat"
        ))),
        (Some(false), true) => Some(Err(format!(
            "PID 1 is {pid1}, not systemd, so the timer never fires, and no cron daemon runs"
        ))),
    }
}
