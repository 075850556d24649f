//! The Linux backends of the `time_sync` check.
//!
//! Asks the time daemons themselves, in this order, and judges by the first
//! one that answers:
//! 1. chrony: `chronyc -n tracking` (`System time : X seconds slow|fast of NTP
//!    time`, `Leap status : Normal | Not synchronised`, `Reference ID`) and
//!    `chronyc -n sources`: tracking keeps its last state when every source
//!    has become unreachable, so synchronised also needs a selected source
//!    (`*`) that still answers (reach not 0);
//! 2. ntpd: `ntpq -pn` (the peer marked `*` or `o` is the selected source, its
//!    `offset` column is in ms); when `ntpq` is missing, `ntpstat` (exit 0
//!    synchronised with "time correct to within N ms", 1 unsynchronised);
//! 3. systemd: `timedatectl show` (`NTP=`, `NTPSynchronized=`) and, for
//!    systemd-timesyncd, `timedatectl timesync-status` (`Offset: -1.234ms`).
//!
//! Status rule: `pass` when the answering daemon is synchronised, the
//! measured |offset| (for ntpstat: its stated error bound, which is never
//! smaller than the offset) is at most [`super::MAX_OFFSET_MS`], and the
//! kernel confirms that something steers the clock ([`super::kernel`]); `fail` when it
//! is not synchronised, the offset is larger, the kernel reports the clock
//! unsynchronised, or systemd reports that no network time synchronisation
//! is enabled (`NTP=no`) and no daemon answered;
//! `unknown` when synchronised but no offset can be measured, or when neither
//! systemd nor any daemon tool can be asked (no way to tell).

use serde_json::json;

use super::MAX_OFFSET_MS;
use super::kernel::{self, Reading};
use crate::collect::{Context, Finding};
use crate::host::{CommandOutput, Host, HostError};
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

/// What one time source said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncState {
    pub synchronised: bool,
    /// Offset from the time source in milliseconds (sign as reported), if measured.
    pub offset_ms: Option<f64>,
    /// Address or name of the selected server, if reported.
    pub server: Option<String>,
    pub stratum: Option<u32>,
}

/// Parses `chronyc -n tracking`. `None` when the output is not a tracking report
/// (e.g. `506 Cannot talk to daemon`).
pub fn parse_chrony_tracking(text: &str) -> Option<SyncState> {
    let mut st = SyncState::default();
    let (mut leap, mut refid, mut seen) = (None, None, false);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "Reference ID" => {
                seen = true;
                let mut words = value.split_whitespace();
                refid = words.next().map(str::to_string);
                st.server =
                    words.next().map(|s| s.trim_matches(['(', ')']).to_string()).filter(|s| !s.is_empty());
            }
            "Stratum" => st.stratum = value.parse().ok(),
            "System time" => {
                // "0.000012345 seconds slow of NTP time": slow means the clock is behind.
                let mut words = value.split_whitespace();
                let secs: Option<f64> = words.next().and_then(|n| n.parse().ok());
                let slow = value.contains(" slow ");
                st.offset_ms = secs.map(|s| if slow { -s * 1000.0 } else { s * 1000.0 });
            }
            "Leap status" => leap = Some(value.to_string()),
            _ => {}
        }
    }
    if !seen {
        return None;
    }
    // chronyd reports Reference ID 00000000 and "Not synchronised" until a source is selected.
    st.synchronised = leap.as_deref().is_some_and(|l| l != "Not synchronised")
        && refid.as_deref().is_some_and(|r| r != "00000000" && r != "7F7F0101");
    Some(st)
}

/// One source of `chronyc -n sources`: its state mark (`*` selected, `+`
/// combined, `?` unreachable ...) and its reach register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChronySource {
    pub state: char,
    pub reach: u32,
}

/// Parses `chronyc -n sources` (the lines after the `====` rule: mode,
/// state, name, stratum, poll, reach in octal, ...).
pub fn parse_chrony_sources(text: &str) -> Vec<ChronySource> {
    text.lines()
        .skip_while(|l| !l.starts_with("===="))
        .skip(1)
        .filter_map(|l| {
            let state = l.chars().nth(1)?;
            let reach = l.split_whitespace().nth(4).and_then(|r| u32::from_str_radix(r, 8).ok())?;
            Some(ChronySource { state, reach })
        })
        .collect()
}

/// Parses `ntpq -pn`. `None` when there is no peer table (ntpd not answering).
pub fn parse_ntpq_peers(text: &str) -> Option<SyncState> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("====="));
    lines.next()?;
    let mut st = SyncState::default();
    for line in lines {
        // The first column carries the tally code: '*' system peer, 'o' PPS peer.
        let Some(tally) = line.chars().next() else { continue };
        if tally != '*' && tally != 'o' {
            continue;
        }
        let cols: Vec<&str> = line[1..].split_whitespace().collect();
        // remote refid st t when poll reach delay offset jitter
        if cols.len() < 10 {
            continue;
        }
        st.synchronised = true;
        st.server = Some(cols[0].to_string());
        st.stratum = cols[2].parse().ok();
        st.offset_ms = cols[8].parse().ok();
        break;
    }
    Some(st)
}

/// Parses `ntpstat` (exit code and text). `None` when ntpd could not be reached (exit 2).
pub fn parse_ntpstat(code: Option<i32>, text: &str) -> Option<SyncState> {
    match code {
        Some(0) => {
            // "time correct to within 45 ms": an error bound, used as the worst-case offset.
            let bound = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("time correct to within "))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok());
            let server = text
                .lines()
                .next()
                .and_then(|l| l.split_once('(').and_then(|(_, r)| r.split_once(')')))
                .map(|(s, _)| s.to_string());
            let stratum = text
                .lines()
                .next()
                .and_then(|l| l.split_once("at stratum "))
                .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok());
            Some(SyncState { synchronised: true, offset_ms: bound, server, stratum })
        }
        Some(1) => Some(SyncState::default()),
        _ => None,
    }
}

/// Parses the `key=value` lines of `timedatectl show`.
pub fn parse_timedatectl_show(text: &str) -> Option<(bool, bool)> {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.trim_end_matches('\r').strip_prefix(key)?.strip_prefix('='))
            .map(|v| v == "yes")
    };
    Some((get("NTP")?, get("NTPSynchronized")?))
}

/// Parses a systemd time span as printed by timedatectl (`-1.234ms`, `+523us`,
/// `1min 2.5s`) into milliseconds.
pub fn parse_timespan_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (sign, rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    let mut total = 0.0;
    let mut any = false;
    for word in rest.split_whitespace() {
        let split = word.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, unit) = word.split_at(split);
        let n: f64 = num.parse().ok()?;
        let factor = match unit {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return None,
        };
        total += n * factor;
        any = true;
    }
    any.then_some(sign * total)
}

/// Parses `timedatectl timesync-status` (systemd-timesyncd).
pub fn parse_timesync_status(text: &str) -> Option<SyncState> {
    let mut st = SyncState::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "Server" => {
                seen = true;
                st.server = value.split_whitespace().next().filter(|s| *s != "n/a").map(str::to_string);
            }
            "Stratum" => st.stratum = value.parse().ok(),
            "Offset" => st.offset_ms = parse_timespan_ms(value),
            _ => {}
        }
    }
    // An offset is only printed once a server has answered.
    st.synchronised = st.offset_ms.is_some();
    seen.then_some(st)
}

/// What was read from the host, for [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `chronyc -n tracking` output, when chronyd answered.
    pub chrony: Option<String>,
    /// `chronyc -n sources` output, when chronyd answered.
    pub chrony_sources: Option<String>,
    /// `ntpq -pn` output, when ntpd answered.
    pub ntpq: Option<String>,
    /// `ntpstat` exit code and output, when ntpq is missing.
    pub ntpstat: Option<(Option<i32>, String)>,
    /// `timedatectl show` output, when systemd answered.
    pub timedatectl: Option<String>,
    /// `timedatectl timesync-status` output, when timesyncd answered.
    pub timesync: Option<String>,
    /// Notes on the sources that could not be asked.
    pub notes: Vec<String>,
    /// The kernel's clock state (`adjtimex`), or why it could not be read.
    pub kernel: Option<Reading>,
}

fn judge(backend: &str, st: &SyncState, raw: &str, ctx: &Context) -> Finding {
    let base = |status| {
        let mut f = Finding::new(status, backend)
            .fact("source", backend)
            .fact("synchronised", st.synchronised)
            .fact("offset_ms", st.offset_ms.map_or(json!(null), |o| json!(o)))
            .fact("stratum", st.stratum.map_or(json!(null), |s| json!(s)))
            .with_raw(raw.to_string());
        if let Some(server) = st.server.as_deref().and_then(|s| ctx.personal(Personal::Address, s)) {
            f = f.fact("server", server);
        }
        f
    };
    if !st.synchronised {
        return base(CheckStatus::Fail)
            .with_reason(format!("{backend} runs but the clock is not synchronised"));
    }
    match st.offset_ms {
        None => base(CheckStatus::Unknown)
            .with_reason(format!("{backend} reports synchronised but the offset could not be measured")),
        Some(o) if o.abs() > MAX_OFFSET_MS => base(CheckStatus::Fail)
            .with_reason(format!("clock is off by {:.1} ms (limit {MAX_OFFSET_MS} ms)", o.abs())),
        Some(o) => {
            base(CheckStatus::Pass).with_reason(format!("synchronised by {backend}, offset {o:.3} ms"))
        }
    }
}

/// Decides the check from what was observed: the daemon that answers, then
/// the kernel's word on whether the clock is steered at all.
pub fn evaluate(o: &Observed, ctx: &Context) -> Finding {
    let reading = o.kernel.clone().unwrap_or_else(|| Err("not read".to_string()));
    let f = daemons(o, ctx);
    if f.backend == "none"
        && let Some(unsteered) = kernel::unsteered(&reading, &o.notes.join("; "))
    {
        return unsteered;
    }
    let backend = f.backend.clone();
    kernel::confirm(f, &reading, &backend)
}

/// The verdict of the first time daemon (or systemd) that answers.
fn daemons(o: &Observed, ctx: &Context) -> Finding {
    if let Some(text) = &o.chrony
        && let Some(mut st) = parse_chrony_tracking(text)
    {
        let Some(sources) = &o.chrony_sources else { return judge("chrony", &st, text, ctx) };
        let raw = format!("{text}\n{sources}");
        let live = parse_chrony_sources(sources).iter().any(|s| s.state == '*' && s.reach != 0);
        if st.synchronised && !live {
            st.synchronised = false;
            return judge("chrony", &st, &raw, ctx).with_reason(
                "chrony reports its last synchronisation, but no selected source answers any more \
                 (no `*` source with a non-zero reach in `chronyc sources`)",
            );
        }
        return judge("chrony", &st, &raw, ctx);
    }
    if let Some(text) = &o.ntpq
        && let Some(st) = parse_ntpq_peers(text)
    {
        return judge("ntpd", &st, text, ctx);
    }
    if let Some((code, text)) = &o.ntpstat
        && let Some(st) = parse_ntpstat(*code, text)
    {
        return judge("ntpd", &st, text, ctx);
    }
    let notes = o.notes.join("; ");
    if let Some(show) = &o.timedatectl {
        let mut raw = show.clone();
        if let Some(ts) = &o.timesync {
            raw.push('\n');
            raw.push_str(ts);
        }
        let Some((ntp, synced)) = parse_timedatectl_show(show) else {
            return Finding::unknown("systemd", "timedatectl show printed no NTP state").with_raw(raw);
        };
        if let Some(st) = o.timesync.as_deref().and_then(parse_timesync_status) {
            return judge("systemd-timesyncd", &st, &raw, ctx);
        }
        let f = |status| {
            Finding::new(status, "systemd")
                .fact("ntp_enabled", ntp)
                .fact("synchronised", synced)
                .with_raw(raw.clone())
        };
        return match (ntp, synced) {
            (false, false) => f(CheckStatus::Fail)
                .with_reason(format!("no time synchronisation daemon is enabled (NTP=no; {notes})")),
            (true, false) => f(CheckStatus::Fail)
                .with_reason("network time synchronisation is enabled but not synchronised"),
            // The kernel's synchronised flag allows errors up to 16 s: not enough to vouch for the offset.
            (_, true) => f(CheckStatus::Unknown).with_reason(format!(
                "the kernel reports the clock synchronised but no daemon reported its offset ({notes})"
            )),
        };
    }
    Finding::unknown("none", format!("no time daemon could be asked ({notes})"))
}

fn answered(host: &dyn Host, prog: &str, args: &[&str], notes: &mut Vec<String>) -> Option<CommandOutput> {
    match host.run(prog, args) {
        Ok(out) => Some(out),
        Err(HostError::NotFound { .. }) => {
            notes.push(format!("{prog} not installed"));
            None
        }
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    }
}

/// Reads the time daemons' state through the host. Changes nothing.
pub fn observe(host: &dyn Host) -> Observed {
    let mut o = Observed::default();
    let mut notes = Vec::new();
    if let Some(out) = answered(host, "chronyc", &["-n", "tracking"], &mut notes) {
        if out.success() {
            o.chrony = Some(out.stdout);
            o.chrony_sources = answered(host, "chronyc", &["-n", "sources"], &mut notes)
                .filter(CommandOutput::success)
                .map(|out| out.stdout);
        } else {
            notes.push(format!("chronyc: {}", out.stdout.trim().lines().next().unwrap_or(out.stderr.trim())));
        }
    }
    match answered(host, "ntpq", &["-pn"], &mut notes) {
        Some(out) if out.stdout.contains("=====") => o.ntpq = Some(out.stdout),
        Some(out) => notes.push(format!("ntpq: {}", format!("{} {}", out.stdout, out.stderr).trim())),
        None => {
            if let Some(out) = answered(host, "ntpstat", &[], &mut notes) {
                o.ntpstat = Some((out.code, out.stdout));
            }
        }
    }
    if let Some(out) = answered(host, "timedatectl", &["show"], &mut notes) {
        if out.success() {
            o.timedatectl = Some(out.stdout);
            if let Some(ts) = answered(host, "timedatectl", &["timesync-status"], &mut notes)
                && ts.success()
            {
                o.timesync = Some(ts.stdout);
            }
        } else {
            notes.push(format!("timedatectl: {}", out.stderr.trim().lines().next().unwrap_or("failed")));
        }
    }
    o.notes = notes;
    o.kernel = Some(host.kernel_clock().map_err(|e| e.to_string()));
    o
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    evaluate(&observe(host), ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan_ms("-1.234ms"), Some(-1.234));
        assert_eq!(parse_timespan_ms("+523us"), Some(0.523));
        assert_eq!(parse_timespan_ms("+1min 2.5s"), Some(62_500.0));
        assert_eq!(parse_timespan_ms("n/a"), None);
    }

    #[test]
    fn ntpstat_bound_and_ntpq_without_system_peer() {
        let st = parse_ntpstat(
            Some(0),
            "synchronised to NTP server (192.0.2.10) at stratum 2\n   time correct to within 45 ms\n   polling server every 64 s\n",
        )
        .unwrap();
        assert_eq!((st.synchronised, st.offset_ms, st.stratum), (true, Some(45.0), Some(2)));
        assert_eq!(parse_ntpstat(Some(2), "Unable to talk to NTP daemon. Is it running?\n"), None);
        let t = "     remote           refid      st t when poll reach   delay   offset  jitter\n==============================================================================\n 192.0.2.10      .INIT.          16 u    -   64    0    0.000    0.000   0.000\n";
        assert!(!parse_ntpq_peers(t).unwrap().synchronised);
    }

    #[test]
    fn chrony_unsynchronised_and_slow() {
        let t = "Reference ID    : 00000000 ()\nStratum         : 0\nSystem time     : 0.000000000 seconds fast of NTP time\nLeap status     : Not synchronised\n";
        assert!(!parse_chrony_tracking(t).unwrap().synchronised);
        let t = "Reference ID    : C0A80101 (192.168.1.1)\nSystem time     : 1.500000000 seconds slow of NTP time\nLeap status     : Normal\n";
        let st = parse_chrony_tracking(t).unwrap();
        assert!(st.synchronised);
        assert_eq!(st.offset_ms, Some(-1500.0));
        assert_eq!(parse_chrony_tracking("506 Cannot talk to daemon\n"), None);
    }
}
