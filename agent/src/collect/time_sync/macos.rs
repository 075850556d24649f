//! The macOS backend of the `time_sync` check.
//!
//! Reads `systemsetup -getusingnetworktime` (`Network Time: On` / `Off`) and
//! `systemsetup -getnetworktimeserver` (`Network Time Server:
//! time.apple.com`); systemsetup needs root and otherwise prints `You need
//! administrator access to run this tool... exiting!`. The clock offset is
//! measured against that server with `sntp -t 1 <server>`, which prints
//! `+0.012345 +/- 0.021054 time.apple.com 17.253.34.125` (offset and error
//! in seconds); it only queries, it does not set the clock.
//!
//! The offset is measured, not taken from timed: "Network Time: On" says
//! only that timed is asked to synchronise, not that it reaches a server.
//! sntp's error bound (`+/-`, half the round trip plus the server's
//! dispersion) counts: an offset is within the limit only when it is with
//! its error. The server is an address and enters the facts only as the
//! privacy settings allow.
//!
//! Status rule: pass when network time is on and the measured offset plus
//! its error is at most `super::MAX_OFFSET_MS`; fail when network time is
//! off or the offset alone is larger; unknown when systemsetup needs root
//! or cannot be read, when network time is on but the offset cannot be
//! measured (server unreachable), or when only the error bound crosses the
//! limit.

use super::MAX_OFFSET_MS;
use crate::collect::{Context, Finding};
use crate::host::Host;
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

/// `Network Time: On` → `Some(true)`.
pub fn parse_using_network_time(text: &str) -> Option<bool> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix("Network Time:"))?.trim();
    match value.to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// `Network Time Server: time.apple.com` → the server.
pub fn parse_network_time_server(text: &str) -> Option<String> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix("Network Time Server:"))?.trim();
    (!value.is_empty() && !value.contains(char::is_whitespace)).then(|| value.to_string())
}

/// Offset in milliseconds from `sntp` output (`+0.012345 +/- 0.021054 host addr`).
pub fn parse_sntp_offset_ms(text: &str) -> Option<f64> {
    parse_sntp(text).map(|(o, _)| o)
}

/// Offset and its error bound in milliseconds from `sntp` output.
pub fn parse_sntp(text: &str) -> Option<(f64, f64)> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let offset = words.next()?;
        (words.next() == Some("+/-")).then_some(())?;
        let error = words.next()?.parse::<f64>().ok()?;
        offset.trim_start_matches('+').parse::<f64>().ok().map(|s| (s * 1000.0, error * 1000.0))
    })
}

fn needs_admin(text: &str) -> bool {
    text.contains("administrator access")
}

/// Decides the check.
pub fn evaluate(
    using: Result<bool, String>,
    server: Option<&str>,
    measured: Result<(f64, f64), String>,
    raw: &str,
) -> Finding {
    let offset_ms = measured.as_ref().map(|(o, _)| *o);
    let error = measured.as_ref().map_or(0.0, |(_, e)| e.abs());
    let base = |status| {
        Finding::new(status, "systemsetup")
            .fact("network_time", using.as_ref().ok().copied())
            .fact("server", server)
            .fact("offset_ms", offset_ms.as_ref().ok().map(|o| (o * 1000.0).round() / 1000.0))
            .fact("offset_error_ms", measured.as_ref().ok().map(|(_, e)| (e * 1000.0).round() / 1000.0))
            .with_raw(raw)
    };
    match &using {
        Err(why) => base(CheckStatus::Unknown).with_reason(why),
        Ok(false) => {
            base(CheckStatus::Fail).with_reason("network time is off (Set time automatically is disabled)")
        }
        Ok(true) => match &offset_ms {
            Ok(o) if o.abs() <= MAX_OFFSET_MS && o.abs() + error > MAX_OFFSET_MS => {
                base(CheckStatus::Unknown).with_reason(format!(
                    "network time on, offset {o:.1} ms, but only to within {error:.1} ms, which may exceed the limit of {MAX_OFFSET_MS} ms"
                ))
            }
            Ok(o) if o.abs() <= MAX_OFFSET_MS => base(CheckStatus::Pass).with_reason(format!(
                "network time on ({}), offset {o:.1} ms",
                server.unwrap_or("server unknown")
            )),
            Ok(o) => base(CheckStatus::Fail).with_reason(format!(
                "network time on but the clock is off by {o:.1} ms (limit {MAX_OFFSET_MS} ms)"
            )),
            Err(why) => base(CheckStatus::Unknown)
                .with_reason(format!("network time on but the offset could not be measured: {why}")),
        },
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let mut raw = String::new();
    let mut ask = |arg: &str| -> Result<String, String> {
        match host.run("systemsetup", &[arg]) {
            Ok(out) => {
                let text = format!("{}{}", out.stdout, out.stderr);
                raw.push_str(&text);
                if needs_admin(&text) {
                    Err("systemsetup needs root (You need administrator access)".into())
                } else {
                    Ok(text)
                }
            }
            Err(e) => Err(format!("systemsetup: {e}")),
        }
    };
    let using = ask("-getusingnetworktime").and_then(|t| {
        parse_using_network_time(&t)
            .ok_or_else(|| format!("systemsetup printed no Network Time state: {}", t.trim()))
    });
    let server = if using == Ok(true) {
        ask("-getnetworktimeserver").ok().as_deref().and_then(parse_network_time_server)
    } else {
        None
    };
    let offset = match (&using, &server) {
        (Ok(true), Some(s)) => match host.run("sntp", &["-t", "1", s]) {
            Ok(out) => {
                raw.push_str(&out.stdout);
                parse_sntp(&out.stdout).ok_or_else(|| {
                    let msg =
                        if out.stderr.trim().is_empty() { out.stdout.trim() } else { out.stderr.trim() };
                    format!("sntp {s}: {msg}")
                })
            }
            Err(e) => Err(format!("sntp: {e}")),
        },
        (Ok(true), None) => Err("no network time server configured".into()),
        _ => Err("not measured".into()),
    };
    // The server is an address: as the privacy settings say, in the facts and the excerpt.
    let shown = server.as_deref().and_then(|s| ctx.personal(Personal::Address, s));
    evaluate(using, shown.as_deref(), offset, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sntp_offsets() {
        assert_eq!(
            parse_sntp_offset_ms("+0.012345 +/- 0.021054 time.apple.com 17.253.34.125\n"),
            Some(12.345)
        );
        assert_eq!(parse_sntp_offset_ms("-1.5 +/- 0.02 time.euro.apple.com 17.253.14.251\n"), Some(-1500.0));
        assert_eq!(parse_sntp_offset_ms("sntp: cannot resolve time.apple.com\n"), None);
        // Within the limit only with its error unknown: 0.9 s off, give or take 0.3 s.
        let f = evaluate(Ok(true), Some("time.apple.com"), Ok((900.0, 300.0)), "");
        assert_eq!(f.status, CheckStatus::Unknown);
        assert_eq!(evaluate(Ok(true), None, Ok((12.3, 21.0)), "").status, CheckStatus::Pass);
        assert_eq!(evaluate(Ok(true), None, Ok((-1500.0, 20.0)), "").status, CheckStatus::Fail);
    }
}
