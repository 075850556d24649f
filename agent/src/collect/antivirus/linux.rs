//! The Linux backends of the `antivirus` check.

use serde_json::Value;

use super::MAX_SIGNATURE_AGE_HOURS;
pub use super::Product;
use super::eset::observe_eset;
pub use super::eset::{eset, parse_eset_licence, parse_eset_modules};
use crate::collect::{Context, Finding, ParseError};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// Parses a ClamAV database header; returns (version, build time as Unix seconds).
pub fn parse_cvd_header(header: &[u8]) -> Result<(String, i64), ParseError> {
    let text = String::from_utf8_lossy(&header[..header.len().min(512)]);
    let fields: Vec<&str> = text.trim_end_matches(['\0', ' ']).split(':').collect();
    if fields.first() != Some(&"ClamAV-VDB") || fields.len() < 9 {
        return Err("not a ClamAV database header".into());
    }
    let stime = fields[8]
        .trim()
        .parse::<i64>()
        .map_err(|_| ParseError::new(format!("build time {:?} is not a number", fields[8])))?;
    Ok((fields[2].to_string(), stime))
}

/// Why no ClamAV signature database was read when none exists.
pub const NO_DATABASE: &str = "no signature database (daily.cvd or daily.cld) in /var/lib/clamav";

/// Evaluates ClamAV from the daemon state, the database header (or why it
/// was not read: [`NO_DATABASE`] when there is none) and on-access
/// scanning (`Some(true)`: configured in clamd.conf and clamonacc runs;
/// `None`: clamd.conf unreadable). clamd without on-access scanning only
/// scans what is handed to it: files are written and read unscanned.
pub fn clamav(
    daemon_active: Option<bool>,
    header: Result<Vec<u8>, String>,
    on_access: Option<bool>,
    now: i64,
) -> Product {
    let mut p = Product { active: daemon_active, ..Product::named("ClamAV") };
    let mut problems = Vec::new();
    match header.and_then(|h| parse_cvd_header(&h).map_err(|e| e.to_string())) {
        Ok((version, built)) => {
            p.version = Some(version);
            p.signatures_age_hours = Some((now - built).max(0) / 3600);
        }
        Err(e) if e == NO_DATABASE => problems.push(e),
        Err(e) => problems.push(format!("signature database unreadable: {e}")),
    }
    match p.active {
        Some(false) => problems.push("clamd is not running".into()),
        None => problems.push("whether clamd runs could not be determined".into()),
        Some(true) => {}
    }
    if let Some(age) = p.signatures_age_hours.filter(|a| *a > MAX_SIGNATURE_AGE_HOURS) {
        problems.push(format!("signatures are {age} h old (limit {MAX_SIGNATURE_AGE_HOURS} h)"));
    }
    match on_access {
        Some(false) => problems.push(
            "no on-access scanning (OnAccessIncludePath or OnAccessMountPath in clamd.conf, and clamonacc running): files are written and read unscanned"
                .into(),
        ),
        None => problems.push("clamd.conf unreadable, so whether on-access scanning is on is not known".into()),
        Some(true) => {}
    }
    p.problem = (!problems.is_empty()).then(|| problems.join("; "));
    p
}

/// Whether ClamAV scans on access: clamd.conf names what to watch and
/// clamonacc runs. `None` when clamd.conf cannot be read.
fn clamav_on_access(host: &dyn Host) -> Option<bool> {
    let conf = match host.read_text("/etc/clamav/clamd.conf") {
        Ok(t) => t,
        Err(HostError::NoFile { .. }) => return Some(false),
        Err(_) => return None,
    };
    let watched = conf.lines().map(str::trim).any(|l| {
        let key = l.split_whitespace().next().unwrap_or("");
        key == "OnAccessIncludePath" || key == "OnAccessMountPath"
    });
    let running = service_active(host, "clamav-clamonacc")
        .or_else(|| runs_as(host, "clamonacc", &["/usr/sbin/clamonacc", "/usr/bin/clamonacc"]))
        .unwrap_or(false);
    Some(watched && running)
}

/// Reads a field of `mdatp health --output json`; newer versions wrap values as `{"value": ...}`.
fn mdatp_field<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
    let v = doc.get(key)?;
    Some(v.get("value").unwrap_or(v))
}

/// Evaluates Microsoft Defender for Endpoint from `mdatp health --output json`.
pub fn parse_mdatp_health(text: &str) -> Product {
    let mut p = Product::named("Microsoft Defender for Endpoint");
    let doc: Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            p.problem = Some(format!("mdatp health output is not JSON: {e}"));
            return p;
        }
    };
    p.version = mdatp_field(&doc, "appVersion").and_then(Value::as_str).map(str::to_string);
    let healthy = mdatp_field(&doc, "healthy").and_then(Value::as_bool);
    let rtp = mdatp_field(&doc, "realTimeProtectionEnabled").and_then(Value::as_bool);
    let defs = mdatp_field(&doc, "definitionsStatus").and_then(|v| {
        v.as_str().map(str::to_string).or_else(|| v.get("$type").and_then(Value::as_str).map(str::to_string))
    });
    p.active = rtp;
    p.problem = match (healthy, rtp, defs.as_deref()) {
        (_, None, _) | (None, _, _) => {
            Some("mdatp health lacks the healthy / realTimeProtectionEnabled fields".into())
        }
        (Some(false), _, _) => Some("mdatp reports the product unhealthy".into()),
        (_, Some(false), _) => Some("real-time protection is off".into()),
        (_, _, Some(d)) if !d.contains("up_to_date") && !d.contains("upToDate") => {
            Some(format!("definitions status is {d}"))
        }
        _ => None,
    };
    p
}

/// Evaluates CrowdStrike Falcon from `falconctl -g --rfm-state --version`
/// (`rfm-state=false, version = 7.18.17106.0`) and whether the sensor runs.
pub fn parse_falconctl(text: &str, running: Option<bool>) -> Product {
    let version = text
        .split("version")
        .nth(1)
        .map(|v| v.trim_start_matches([' ', '=']).trim().trim_end_matches('.').to_string());
    let rfm = text.contains("rfm-state=true");
    let problem = match running {
        Some(false) => Some("falcon-sensor is not running".into()),
        None => Some("whether falcon-sensor runs could not be determined".into()),
        Some(true) if rfm => Some("sensor is in reduced functionality mode".into()),
        Some(true) => None,
    };
    Product { version, active: running, problem, ..Product::named("CrowdStrike Falcon") }
}

/// Evaluates SentinelOne from `sentinelctl version` output and whether the agent runs.
pub fn parse_sentinelctl(text: &str, running: Option<bool>) -> Product {
    let version = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string);
    let problem = match running {
        Some(true) => None,
        Some(false) => Some("sentinelone agent is not running".into()),
        None => Some("whether the sentinelone agent runs could not be determined".into()),
    };
    Product { version, active: running, problem, ..Product::named("SentinelOne") }
}

/// Decides the check from the products found (an empty list: none found).
pub fn evaluate(products: &[Product], raw: String) -> Finding {
    let base = |status, backend: &str| {
        Finding::new(status, backend)
            .fact("products", products.iter().map(Product::to_json).collect::<Vec<_>>())
            .with_raw(raw.clone())
    };
    if products.is_empty() {
        return base(CheckStatus::Fail, "none").with_reason(
            "no anti-malware or EDR product found (looked for ClamAV, Microsoft Defender for Endpoint, CrowdStrike Falcon, SentinelOne, Sophos, ESET)",
        );
    }
    if let Some(ok) = products.iter().find(|p| p.problem.is_none()) {
        return base(CheckStatus::Pass, &ok.name).with_reason(format!("{} is active", ok.name));
    }
    let problems: Vec<String> =
        products.iter().map(|p| format!("{}: {}", p.name, p.problem.as_deref().unwrap_or(""))).collect();
    // Found but state unreadable is unknown; found and off or outdated is fail.
    let unreadable = products.iter().all(|p| {
        p.active.is_none()
            || p.problem
                .as_deref()
                .is_some_and(|m| m.contains("unreadable") || m.contains("not JSON") || m.contains("lacks"))
    });
    let status = if unreadable { CheckStatus::Unknown } else { CheckStatus::Fail };
    base(status, &products[0].name).with_reason(problems.join("; "))
}

/// Reads `PRODUCT_VERSION = x.y.z` from a Sophos `VERSION.ini`.
pub fn parse_sophos_version(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "PRODUCT_VERSION").then(|| v.trim().to_string()).filter(|v| !v.is_empty())
    })
}

/// Text of the first `<name>` element (attributes allowed) in a small XML
/// status file; `None` when absent. Enough for the flat status files SPL
/// writes; entities are not expected in the values read here.
fn xml_element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(i) = text[from..].find(&open) {
        let at = from + i + open.len();
        let rest = &text[at..];
        // `<on-access>` must not match `<on-accessible>`.
        match rest.chars().next() {
            Some('>') | Some(' ') | Some('\t') | Some('\n') | Some('\r') => {}
            Some('/') => return Some(""),
            _ => {
                from = at;
                continue;
            }
        }
        let body_at = rest.find('>')? + 1;
        if rest[..body_at].ends_with("/>") {
            return Some("");
        }
        let body = &rest[body_at..];
        let end = body.find(&format!("</{name}>"))?;
        return Some(body[..end].trim());
    }
    None
}

/// Unix seconds of a calendar date and time of day, taken as UTC.
fn utc_seconds(y: i32, m: u8, d: u8, hh: u8, mm: u8, ss: u8) -> Option<i64> {
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    let clock = time::Time::from_hms(hh, mm, ss).ok()?;
    Some(date.with_time(clock).assume_utc().unix_timestamp())
}

/// `YYYYMMDD` (at midnight) or `YYYYMMDD HHMMSS` / `YYYYMMDD HH:MM:SS`, the
/// forms SPL and ESET print. Both write local time without a zone; it is
/// taken as UTC, at most a few hours off a 72-hour limit.
pub fn parse_compact_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, clock) = text.split_once(' ').unwrap_or((text, "000000"));
    let clock: String = clock.trim().chars().filter(|c| *c != ':').collect();
    if date.len() != 8 || clock.len() != 6 || !date.bytes().chain(clock.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |s: &str| s.parse::<u32>().ok();
    utc_seconds(
        i32::try_from(n(&date[..4])?).ok()?,
        u8::try_from(n(&date[4..6])?).ok()?,
        u8::try_from(n(&date[6..])?).ok()?,
        u8::try_from(n(&clock[..2])?).ok()?,
        u8::try_from(n(&clock[2..4])?).ok()?,
        u8::try_from(n(&clock[4..])?).ok()?,
    )
}

/// Whether on-access scanning is on, from SPL's anti-virus status
/// (`base/mcs/status/SAV_status.xml`, `<on-access>true|false</on-access>`),
/// the state SPL reports to Sophos Central. `Err` names that file.
pub fn parse_sav_status(text: &str) -> Result<bool, ParseError> {
    let bad = |why: String| ParseError::new(why).in_file(SPL_SAV_STATUS);
    if !text.contains("EESavStatus") {
        return Err(bad("not an SPL anti-virus status (no EESavStatus namespace)".into()));
    }
    match xml_element(text, "on-access") {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(bad(format!("unexpected <on-access> value {other:?}"))),
        None => Err(bad("no <on-access> element".into())),
    }
}

/// What SPL's update status (`base/mcs/status/ALC_status.xml`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplUpdate {
    /// Time of the last successful update (`<lastSyncTime>`), Unix seconds.
    pub last_success: Option<i64>,
    /// Result code of the last attempt (`<lastResult>`, 0 = success).
    pub last_result: Option<i64>,
}

/// Parses `ALC_status.xml`: `<lastSyncTime>` is when SPL last completed an
/// update of its components and threat data; `<lastResult>` the code of the
/// last attempt. `Err` names that file.
pub fn parse_alc_status(text: &str) -> Result<SplUpdate, ParseError> {
    let bad = |why: String| ParseError::new(why).in_file(SPL_ALC_STATUS);
    if !text.contains("<autoUpdate") {
        return Err(bad("not an SPL update status (no <autoUpdate> element)".into()));
    }
    let last_result = match xml_element(text, "lastResult") {
        Some(r) => Some(r.parse::<i64>().map_err(|_| bad(format!("<lastResult> {r:?} is not a number")))?),
        None => None,
    };
    let last_success = match xml_element(text, "lastSyncTime").filter(|t| !t.is_empty()) {
        Some(t) => {
            Some(parse_compact_time(t).ok_or_else(|| bad(format!("<lastSyncTime> {t:?} is not a time")))?)
        }
        None => None,
    };
    Ok(SplUpdate { last_success, last_result })
}

const SPL_NAME: &str = "Sophos Protection for Linux";
const SPL_SAV_STATUS: &str = "/opt/sophos-spl/base/mcs/status/SAV_status.xml";
const SPL_ALC_STATUS: &str = "/opt/sophos-spl/base/mcs/status/ALC_status.xml";

/// Evaluates Sophos Protection for Linux: the `sophos-spl` service, on-access
/// scanning from `SAV_status.xml` and the age of the last successful update
/// (threat data included) from `ALC_status.xml`. Never a pass on the running
/// service alone: a status that cannot be read leaves the product unknown.
pub fn sophos_spl(
    version: Option<String>,
    running: Option<bool>,
    sav: Result<String, String>,
    alc: Result<String, String>,
    now: i64,
) -> Product {
    let mut p = Product { version, ..Product::named(SPL_NAME) };
    match running {
        Some(false) => {
            p.active = Some(false);
            p.problem = Some(format!("the {SPL_NAME} service is not running"));
            return p;
        }
        None => {
            p.problem = Some(format!("whether the {SPL_NAME} service runs could not be determined"));
            return p;
        }
        Some(true) => {}
    }
    // Kept for the reason: the service runs, but without these nothing is known.
    let unreadable = |why: String| {
        format!(
            "the {SPL_NAME} service runs, but its real-time protection and signature age are not readable: {why}"
        )
    };
    match sav.and_then(|t| parse_sav_status(&t).map_err(|e| e.to_string())) {
        Err(e) => {
            p.problem = Some(unreadable(e));
            return p;
        }
        Ok(false) => {
            p.active = Some(false);
            p.problem = Some("on-access scanning is off".into());
            return p;
        }
        Ok(true) => p.active = Some(true),
    }
    let update = match alc.and_then(|t| parse_alc_status(&t).map_err(|e| e.to_string())) {
        Ok(u) => u,
        Err(e) => {
            p.problem = Some(format!("on-access scanning is on, but the threat data age is unreadable: {e}"));
            return p;
        }
    };
    p.problem = match update.last_success {
        Some(t) => {
            let age = (now - t).max(0) / 3600;
            p.signatures_age_hours = Some(age);
            (age > MAX_SIGNATURE_AGE_HOURS).then(|| {
                let failing = match update.last_result {
                    Some(code) if code != 0 => format!("; the last update attempt failed with code {code}"),
                    _ => String::new(),
                };
                format!("threat data last updated {age} h ago (limit {MAX_SIGNATURE_AGE_HOURS} h){failing}")
            })
        }
        None => Some(match update.last_result {
            Some(code) if code != 0 => format!("no update has succeeded yet (last result code {code})"),
            _ => "no successful update is recorded".to_string(),
        }),
    };
    p
}

/// Whether a process named `name` runs *the* program: its executable
/// (`/proc/PID/exe`) is one of `paths`, so any process that merely calls
/// itself clamd does not count. `None` when processes cannot be listed.
pub fn runs_as(host: &dyn Host, name: &str, paths: &[&str]) -> Option<bool> {
    let Ok(out) = host.run("pgrep", &["-x", name]) else {
        // Without pgrep, pidof can still say that nothing of that name runs.
        let none = host.run("pidof", &[name]).ok().is_some_and(|o| !o.success());
        return none.then_some(false);
    };
    let pids: Vec<&str> = out.stdout.split_whitespace().collect();
    Some(pids.iter().any(|pid| {
        host.run("readlink", &[&format!("/proc/{pid}/exe")])
            .is_ok_and(|o| o.success() && paths.contains(&o.stdout.trim()))
    }))
}

pub(super) fn service_active(host: &dyn Host, unit: &str) -> Option<bool> {
    match host.run("systemctl", &["is-active", unit]) {
        Ok(out) => match out.stdout.trim() {
            "active" => Some(true),
            "inactive" | "failed" | "dead" => Some(false),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Looks for each product through the host: ClamAV, Sophos, ESET, then
/// the products read through one command each.
pub fn observe(host: &dyn Host, now: i64) -> (Vec<Product>, String) {
    let mut raw = String::new();
    let mut products: Vec<Product> = observe_clamav(host, now, &mut raw).into_iter().collect();
    products.extend(observe_sophos(host, now, &mut raw));
    products.extend(observe_eset(host, now, &mut raw));
    products.extend(observe_commands(host, &mut raw));
    (products, raw)
}

/// ClamAV, when clamd or a database is installed.
fn observe_clamav(host: &dyn Host, now: i64, raw: &mut String) -> Option<Product> {
    // clamd loads the signed forms and the unsigned `.cud` alike.
    let db = ["/var/lib/clamav/daily.cld", "/var/lib/clamav/daily.cvd", "/var/lib/clamav/daily.cud"]
        .iter()
        .map(|p| host.read_file(p))
        .find(|r| !matches!(r, Err(HostError::NoFile { .. })));
    if !host.exists("/usr/sbin/clamd") && db.is_none() {
        return None;
    }
    let active =
        service_active(host, "clamav-daemon").or_else(|| runs_as(host, "clamd", &["/usr/sbin/clamd"]));
    let header = match db {
        Some(Ok(bytes)) => Ok(bytes[..bytes.len().min(512)].to_vec()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err(NO_DATABASE.to_string()),
    };
    if let Ok(h) = &header {
        raw.push_str(&String::from_utf8_lossy(h));
    }
    Some(clamav(active, header, clamav_on_access(host), now))
}

/// Sophos Protection for Linux: its service and the status files SPL keeps
/// for Sophos Central.
fn observe_sophos(host: &dyn Host, now: i64, raw: &mut String) -> Option<Product> {
    if !host.exists("/opt/sophos-spl") {
        return None;
    }
    let version = host.read_text("/opt/sophos-spl/base/VERSION.ini").ok();
    let mut read = |path: &str| {
        let t = host.read_text(path).map_err(|e| e.to_string())?;
        raw.push_str(&t);
        Ok(t)
    };
    let (sav, alc) = (read(SPL_SAV_STATUS), read(SPL_ALC_STATUS));
    raw.push_str(version.as_deref().unwrap_or_default());
    let running = service_active(host, "sophos-spl");
    Some(sophos_spl(version.as_deref().and_then(parse_sophos_version), running, sav, alc, now))
}

/// Products read through one command each: (name, program, args, parser).
fn observe_commands(host: &dyn Host, raw: &mut String) -> Vec<Product> {
    type Parse<'a> = Box<dyn Fn(&str) -> Product + 'a>;
    let probes: [(&'static str, &str, &[&str], Parse); 3] = [
        (
            "Microsoft Defender for Endpoint",
            "mdatp",
            &["health", "--output", "json"],
            Box::new(parse_mdatp_health),
        ),
        (
            "CrowdStrike Falcon",
            "/opt/CrowdStrike/falconctl",
            &["-g", "--rfm-state", "--version"],
            Box::new(|out| parse_falconctl(out, service_active(host, "falcon-sensor"))),
        ),
        (
            "SentinelOne",
            "/opt/sentinelone/bin/sentinelctl",
            &["version"],
            Box::new(|out| parse_sentinelctl(out, service_active(host, "sentinelone"))),
        ),
    ];
    let mut out = Vec::new();
    for (name, program, args, parse) in probes {
        match host.run(program, args) {
            Ok(o) => {
                raw.push_str(&o.stdout);
                out.push(parse(&o.stdout));
            }
            Err(HostError::NotFound { .. }) => {}
            Err(e) => out.push(Product { problem: Some(format!("unreadable: {e}")), ..Product::named(name) }),
        }
    }
    out
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let (products, raw) = observe(host, ctx.now);
    evaluate(&products, raw)
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
