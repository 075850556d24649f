//! The Windows backend of the `time_sync` check: the Windows Time service.
//!
//! Runs `w32tm /query /status /verbose` (English labels): `Leap Indicator`,
//! `Stratum`, `Source`, `Last Successful Sync Time`, `Phase Offset`,
//! `Time since Last Good Sync Time`. When the service is stopped, w32tm
//! prints "The service has not been started. (0x80070426)".
//!
//! Status rule: fail when the service is not running, the source is the
//! local clock (`Local CMOS Clock`, `Free-running System Clock`), the leap
//! indicator is 3 (not synchronised), no sync ever succeeded, or the phase
//! offset exceeds [`MAX_OFFSET_MS`], or the last good sync is older than
//! [`MAX_SYNC_AGE_SECONDS`]; unknown when the phase offset or the time since
//! the last sync is not shown; pass otherwise (an NTP server, a domain
//! controller, or the Hyper-V time provider); unknown when w32tm cannot run
//! or prints no `Source` / `Leap Indicator` (other display language). The source host name is
//! personal data and goes through the privacy settings.

use serde_json::json;

use super::{MAX_OFFSET_MS, MAX_SYNC_AGE_SECONDS};
use crate::collect::windows::host_error;
use crate::collect::{Context, Finding};
use crate::host::Host;
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "w32time";

/// `w32tm /query /status /verbose` as read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    pub leap_indicator: Option<u32>,
    pub stratum: Option<u32>,
    /// Without the `,0x9` flags suffix.
    pub source: Option<String>,
    pub last_sync: Option<String>,
    pub offset_ms: Option<f64>,
    pub seconds_since_sync: Option<f64>,
}

/// `0.0012784s` / `-0.0012784s` as milliseconds or seconds.
fn seconds(value: &str) -> Option<f64> {
    value.trim().trim_end_matches('s').parse::<f64>().ok()
}

fn leading_number(value: &str) -> Option<u32> {
    value.trim().chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// Parses the output; `None` without the `Source:` and `Leap Indicator:` lines.
pub fn parse_w32tm_status(text: &str) -> Option<Status> {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((label, value)) = line.split_once(": ") else { continue };
        let value = value.trim();
        match label.trim() {
            "Leap Indicator" => s.leap_indicator = leading_number(value),
            "Stratum" => s.stratum = leading_number(value),
            "Source" => s.source = Some(value.split(',').next().unwrap_or(value).trim().to_string()),
            "Last Successful Sync Time" => s.last_sync = Some(value.to_string()),
            "Phase Offset" => s.offset_ms = seconds(value).map(|v| v * 1000.0),
            "Time since Last Good Sync Time" => s.seconds_since_sync = seconds(value),
            _ => {}
        }
    }
    // Both are needed: a partly translated output may keep the word "Source".
    (s.source.is_some() && s.leap_indicator.is_some()).then_some(s)
}

fn is_local_clock(source: &str) -> bool {
    matches!(source, "Local CMOS Clock" | "Free-running System Clock")
}

/// Decides the check from the command's exit code and output.
pub fn evaluate(code: Option<i32>, text: &str, ctx: &Context) -> Finding {
    if text.contains("0x80070426") {
        return Finding::fail(BACKEND, "the Windows Time service (w32time) is not running")
            .fact("service_running", false)
            .with_raw(text);
    }
    let Some(s) = parse_w32tm_status(text).filter(|_| code == Some(0)) else {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
        return Finding::unknown(BACKEND, format!("w32tm printed no time source (exit {code:?}): {line}"))
            .with_raw(text);
    };
    let source = s.source.clone().unwrap_or_default();
    let local = is_local_clock(&source);
    let source_fact = if local { Some(source.clone()) } else { ctx.personal(Personal::HostName, &source) };
    let mut problems = Vec::new();
    if local {
        problems.push(format!("the clock is not synchronised to a time source (source: {source})"));
    } else if s.leap_indicator == Some(3) {
        problems.push("the leap indicator says the clock is not synchronised".to_string());
    }
    if s.last_sync.as_deref() == Some("unspecified") && !local {
        problems.push("no synchronisation has succeeded yet".to_string());
    }
    if let Some(off) = s.offset_ms.filter(|o| o.abs() > MAX_OFFSET_MS) {
        problems.push(format!("clock offset {off:.1} ms exceeds {MAX_OFFSET_MS} ms"));
    }
    if let Some(age) = s.seconds_since_sync.filter(|a| *a > MAX_SYNC_AGE_SECONDS) {
        problems.push(format!(
            "last good synchronisation was {:.1} days ago (limit {:.0})",
            age / 86_400.0,
            MAX_SYNC_AGE_SECONDS / 86_400.0
        ));
    }
    // Synchronised by the flags but without a measured offset or sync age,
    // nothing says how far off the clock is.
    if problems.is_empty() && (s.offset_ms.is_none() || s.seconds_since_sync.is_none()) {
        return Finding::unknown(
            BACKEND,
            "w32tm shows a time source but no phase offset or time since the last sync",
        )
        .fact("source", json!(source_fact))
        .with_raw(text);
    }
    let status = if problems.is_empty() { CheckStatus::Pass } else { CheckStatus::Fail };
    let reason = if problems.is_empty() {
        format!("synchronised (stratum {})", s.stratum.map_or("?".into(), |n| n.to_string()))
    } else {
        problems.join("; ")
    };
    Finding::new(status, BACKEND)
        .with_reason(reason)
        .fact("service_running", true)
        .fact("source", json!(source_fact))
        .fact("local_clock", local)
        .fact("leap_indicator", json!(s.leap_indicator))
        .fact("stratum", json!(s.stratum))
        .fact("offset_ms", json!(s.offset_ms))
        .fact("seconds_since_sync", json!(s.seconds_since_sync.map(|v| v.round() as i64)))
        .with_raw(text)
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    match host.run("w32tm", &["/query", "/status", "/verbose"]) {
        Ok(out) => evaluate(out.code, &format!("{}{}", out.stdout, out.stderr), ctx),
        Err(e) => host_error(&e).unknown(BACKEND, "w32tm"),
    }
}
