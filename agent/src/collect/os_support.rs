//! The `os_support` check: does the operating system release still receive
//! security updates from its vendor?
//!
//! The OS backends read what release runs (Linux `/etc/os-release`, Windows
//! the build number and edition, macOS `sw_vers`); [`evaluate`] looks it up
//! in the end-of-support table shipped as data (`agent/data/os_support.toml`,
//! versioned, reviewed with each release). Pass while standard security
//! support lasts, or during free extended support every host receives (Debian
//! LTS); fail after it, including when only paid extended support remains
//! (the agent cannot see a subscription; an exception records one). A
//! release missing from the table is `unknown`, never supported.

pub mod linux;
pub mod macos;
pub mod windows;

use std::sync::OnceLock;

use serde::Deserialize;
use time::Date;
use time::macros::format_description;

use super::{Finding, Os};
use custos_proto::evidence::CheckStatus;

/// One release row of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub os: Os,
    pub id: String,
    pub version: String,
    pub name: String,
    pub security_until: String,
    pub enterprise_until: Option<String>,
    pub extended_until: Option<String>,
    pub extended: Option<Extended>,
    #[serde(default)]
    pub estimate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Extended {
    Free,
    Paid,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportTable {
    pub version: String,
    #[serde(rename = "release")]
    pub releases: Vec<Release>,
}

/// The table compiled into the agent.
pub fn table() -> &'static SupportTable {
    static TABLE: OnceLock<SupportTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        // Checked by a unit test; a broken file never ships.
        toml::from_str(include_str!("../../data/os_support.toml"))
            .unwrap_or(SupportTable { version: "unreadable".into(), releases: Vec::new() })
    })
}

/// What a backend found running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub os: Os,
    /// Linux os-release `ID`, `client` / `server` for Windows, `macos`.
    pub id: String,
    /// Linux `VERSION_ID`, Windows build number, macOS major version.
    pub version: String,
    /// Human-readable name as the OS reports it.
    pub pretty: String,
    /// Windows Enterprise / Education editions.
    pub enterprise: bool,
}

impl SupportTable {
    /// The row for a running release: equal version, or the row's version
    /// followed by `.` (RHEL `9` matches `9.4`); the longest match wins.
    pub fn lookup(&self, r: &Running) -> Option<&Release> {
        self.releases
            .iter()
            .filter(|row| row.os == r.os && row.id == r.id)
            .filter(|row| {
                r.version == row.version
                    || r.version.strip_prefix(row.version.as_str()).is_some_and(|rest| rest.starts_with('.'))
            })
            .max_by_key(|row| row.version.len())
    }
}

fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, format_description!("[year]-[month]-[day]")).ok()
}

/// Unix time of the end (23:59:59 UTC) of a table date.
fn end_of(date: &str) -> Option<i64> {
    parse_date(date).map(|d| d.midnight().assume_utc().unix_timestamp() + 86_399)
}

/// Decides the check for what runs, at `now` (Unix seconds).
pub fn evaluate(table: &SupportTable, running: &Running, backend: &str, raw: &str, now: i64) -> Finding {
    let base = |status| {
        Finding::new(status, backend)
            .fact("release", running.pretty.clone())
            .fact("release_id", running.id.clone())
            .fact("release_version", running.version.clone())
            .fact("table_version", table.version.clone())
            .with_raw(raw)
    };
    let Some(row) = table.lookup(running) else {
        return base(CheckStatus::Unknown).with_reason(format!(
            "{} ({} {}) is not in the support table {}",
            running.pretty, running.id, running.version, table.version
        ));
    };
    let standard =
        if running.enterprise { row.enterprise_until.as_ref() } else { None }.unwrap_or(&row.security_until);
    let (Some(standard_end), extended_end) =
        (end_of(standard), row.extended_until.as_deref().and_then(end_of))
    else {
        return base(CheckStatus::Unknown)
            .with_reason(format!("the table has no valid date for {}", row.name));
    };
    let days_left = |end: i64| (end - now).div_euclid(86_400);
    let estimate = if row.estimate { " (estimated)" } else { "" };
    let f =
        base(CheckStatus::Pass).fact("support_name", row.name.clone()).fact("date_estimated", row.estimate);
    if now <= standard_end {
        return f
            .fact("support_phase", "standard")
            .fact("security_until", standard.clone())
            .fact("days_left", days_left(standard_end))
            .with_reason(format!("{} receives security updates until {standard}{estimate}", row.name));
    }
    match (row.extended, extended_end) {
        (Some(Extended::Free), Some(end)) if now <= end => {
            let until = row.extended_until.clone().unwrap_or_default();
            f.fact("support_phase", "extended_free")
                .fact("security_until", until.clone())
                .fact("days_left", days_left(end))
                .with_reason(format!(
                    "{}: standard support ended {standard}; free long-term security support until {until}{estimate}",
                    row.name
                ))
        }
        (Some(Extended::Paid), Some(end)) if now <= end => {
            let until = row.extended_until.clone().unwrap_or_default();
            let mut f = f
                .fact("support_phase", "extended_paid")
                .fact("security_until", until.clone())
                .fact("days_left", days_left(end))
                .with_reason(format!(
                    "{}: standard security support ended {standard}; only paid extended support remains (until {until}), which the agent cannot see",
                    row.name
                ));
            f.status = CheckStatus::Fail;
            f
        }
        _ => {
            let until = row.extended_until.clone().unwrap_or_else(|| standard.clone());
            let mut f = f
                .fact("support_phase", "ended")
                .fact("security_until", until.clone())
                .fact("days_left", days_left(end_of(&until).unwrap_or(standard_end)))
                .with_reason(format!(
                    "{} no longer receives security updates (since {until}{estimate})",
                    row.name
                ));
            f.status = CheckStatus::Fail;
            f
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_every_date_is_valid() {
        let t: SupportTable = toml::from_str(include_str!("../../data/os_support.toml")).unwrap();
        assert!(t.releases.len() > 30);
        for r in &t.releases {
            for d in [Some(&r.security_until), r.enterprise_until.as_ref(), r.extended_until.as_ref()]
                .into_iter()
                .flatten()
            {
                assert!(parse_date(d).is_some(), "{}: bad date {d}", r.name);
            }
            assert_eq!(r.extended.is_some(), r.extended_until.is_some(), "{}", r.name);
        }
    }

    #[test]
    fn phases_follow_the_dates() {
        let t = table();
        let at = |d: &str| end_of(d).unwrap() - 86_399;
        let deb = |v: &str| Running {
            os: Os::Linux,
            id: "debian".into(),
            version: v.into(),
            pretty: format!("Debian {v}"),
            enterprise: false,
        };
        let s = |r: &Running, now: i64| evaluate(t, r, "os-release", "", now).status;
        assert_eq!(s(&deb("12"), at("2026-06-10")), CheckStatus::Pass);
        let lts = evaluate(t, &deb("12"), "os-release", "", at("2026-11-23"));
        assert_eq!(lts.status, CheckStatus::Pass);
        assert_eq!(lts.facts["support_phase"], "extended_free");
        assert_eq!(s(&deb("12"), at("2028-07-01")), CheckStatus::Fail);
        assert_eq!(s(&deb("7"), at("2020-01-01")), CheckStatus::Unknown);
        let rhel = Running {
            os: Os::Linux,
            id: "rhel".into(),
            version: "9.4".into(),
            pretty: "RHEL 9.4".into(),
            enterprise: false,
        };
        assert_eq!(t.lookup(&rhel).map(|r| r.name.as_str()), Some("Red Hat Enterprise Linux 9"));
        let not_prefix = Running { version: "94".into(), ..rhel };
        assert!(t.lookup(&not_prefix).is_none());
    }
}
