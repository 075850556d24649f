//! Helpers every Windows backend shares: running PowerShell scripts and
//! console programs through the [`Host`], classifying their errors (access
//! denied, cmdlet missing, service stopped), and reading `ConvertTo-Json` and
//! `reg query` output. Pure apart from the calls through the host.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::collect::{Finding, ParseError};
use crate::host::{Host, HostError};

/// Why a Windows command gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// The program or cmdlet does not exist on this host.
    Missing(String),
    /// The agent lacks the rights (not elevated, access denied).
    Denied(String),
    /// Anything else: error output, a timeout, an unexpected exit code.
    Failed(String),
}

impl Unavailable {
    /// The explanation, for a reason text.
    pub fn message(&self) -> &str {
        match self {
            Unavailable::Missing(m) | Unavailable::Denied(m) | Unavailable::Failed(m) => m,
        }
    }

    /// The `unknown` finding for a source that could not be read; access
    /// denied says that administrator rights are needed.
    pub fn unknown(&self, backend: &str, what: &str) -> Finding {
        match self {
            Unavailable::Denied(m) => {
                Finding::unknown(backend, format!("{what}: needs administrator rights ({m})"))
            }
            Unavailable::Missing(m) => Finding::unknown(backend, format!("{what}: not available ({m})")),
            Unavailable::Failed(m) => Finding::unknown(backend, format!("{what}: {m}")),
        }
    }
}

/// The first line of an error text that says something (PowerShell error
/// records start with `Cmdlet : message`), shortened for a reason.
pub fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

/// Classifies the error output of a Windows command or PowerShell script.
/// The markers are the error category names and HRESULTs, which are not
/// translated, plus the English messages.
pub fn classify_error(text: &str) -> Unavailable {
    let lower = text.to_ascii_lowercase();
    let denied = [
        "permissiondenied",
        "unauthorizedaccess",
        "access denied",
        "access is denied",
        "access was denied",
        "0x80070005",
        "0x80041003",
        "requires elevation",
        "run as administrator",
        "administrative rights",
        "administrator privilege",
        "privilege is not held",
    ];
    let missing =
        ["commandnotfoundexception", "is not recognized as the name of a cmdlet", "invalid namespace"];
    let line = first_line(text);
    if denied.iter().any(|m| lower.contains(m)) {
        Unavailable::Denied(line)
    } else if missing.iter().any(|m| lower.contains(m)) {
        Unavailable::Missing(line)
    } else {
        Unavailable::Failed(line)
    }
}

/// Classifies a host error (the program could not be run at all).
pub fn host_error(e: &HostError) -> Unavailable {
    match e {
        HostError::NotFound { .. } => Unavailable::Missing(e.to_string()),
        HostError::PermissionDenied { .. } => Unavailable::Denied(e.to_string()),
        _ => Unavailable::Failed(e.to_string()),
    }
}

/// The argument list every backend passes to `powershell` before the script.
pub const POWERSHELL_ARGS: [&str; 3] = ["-NoProfile", "-NonInteractive", "-Command"];

/// Runs a PowerShell script and returns its standard output. Scripts start
/// with `$ErrorActionPreference='Stop'`, so any error ends the script with
/// exit code 1 instead of printing partial (and possibly reassuring) output.
pub fn powershell(host: &dyn Host, script: &str) -> Result<String, Unavailable> {
    powershell_for(host, script, None)
}

/// [`powershell`] with a time limit of its own (`None`: the host's default).
pub fn powershell_for(
    host: &dyn Host,
    script: &str,
    limit: Option<std::time::Duration>,
) -> Result<String, Unavailable> {
    let mut args: Vec<&str> = POWERSHELL_ARGS.to_vec();
    args.push(script);
    let result = match limit {
        Some(l) => host.run_for("powershell", &args, l),
        None => host.run("powershell", &args),
    };
    match result {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => {
            let text = if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr };
            Err(classify_error(text))
        }
        Err(e) => Err(host_error(&e)),
    }
}

/// Runs a console program; exit code 0 gives its standard output.
pub fn console(host: &dyn Host, program: &str, args: &[&str]) -> Result<String, Unavailable> {
    match host.run(program, args) {
        Ok(out) if out.success() => Ok(out.stdout),
        Ok(out) => {
            let text = format!("{}\n{}", out.stderr, out.stdout);
            match classify_error(&text) {
                Unavailable::Failed(m) => {
                    Err(Unavailable::Failed(format!("{program} exited with {:?}: {m}", out.code)))
                }
                other => Err(other),
            }
        }
        Err(e) => Err(host_error(&e)),
    }
}

/// The items of `ConvertTo-Json` output: a single object prints as an
/// object, several as an array, none as nothing at all. `Err` says what
/// the text is instead; the caller names the script that printed it.
pub fn json_items(text: &str) -> Result<Vec<Value>, ParseError> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(v @ Value::Object(_)) => Ok(vec![v]),
        Ok(other) => Err(format!("expected a JSON object or array, got {other}").into()),
        Err(e) => Err(format!("output is not JSON: {e}").into()),
    }
}

/// A number as `ConvertTo-Json` prints it: enums and integers as numbers,
/// sometimes as numeric strings.
pub fn json_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean as PowerShell prints it (`true`, `"True"`, `1`).
pub fn json_bool(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A string field, `None` when null or absent.
pub fn json_str<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Value::as_str)
}

/// A date as Windows PowerShell 5.1 serialises `DateTime` (`/Date(ms)/`,
/// possibly wrapped as `{"value": ..., "DateTime": ...}`), or an ISO 8601 /
/// RFC 3339 string as PowerShell 7 prints it. Unix seconds.
pub fn json_date(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    let v = v.get("value").unwrap_or(v);
    let s = v.as_str()?.trim();
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        // `/Date(1700000000000+0100)/`: the offset only says how to display it.
        let digits: String = inner
            .chars()
            .enumerate()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
            .map(|(_, c)| c)
            .collect();
        return digits.parse::<i64>().ok().map(|ms| ms.div_euclid(1000));
    }
    parse_iso_date(s)
}

/// `2026-11-20`, `2026-11-20T08:15:00`, `...Z`, `...+01:00`, with optional
/// fractions. A time without offset is taken as UTC (at most a few hours off,
/// which no threshold here depends on).
pub fn parse_iso_date(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let (date, rest) = s.split_at(s.find('T').unwrap_or(s.len()));
    let mut parts = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let day = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
    let mut secs = 0;
    if let Some(clock) = rest.strip_prefix('T') {
        let clock = clock.split(['.', 'Z', '+']).next().unwrap_or("");
        let hms: Vec<i64> = clock.split(':').filter_map(|p| p.parse().ok()).collect();
        secs = hms.first().copied().unwrap_or(0) * 3600
            + hms.get(1).copied().unwrap_or(0) * 60
            + hms.get(2).copied().unwrap_or(0);
    }
    Some(day.midnight().assume_utc().unix_timestamp() + secs)
}

/// One value printed by `reg query`: its type (`REG_DWORD`, `REG_SZ`, ...)
/// and data as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegValue {
    pub kind: String,
    pub data: String,
}

impl RegValue {
    /// A `REG_DWORD` / `REG_QWORD` printed as `0x384`, or a decimal `REG_SZ`.
    pub fn number(&self) -> Option<u64> {
        let d = self.data.trim();
        match d.strip_prefix("0x").or_else(|| d.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => d.parse().ok(),
        }
    }
}

/// Parses `reg query KEY [/v NAME]` output (the values of the key itself,
/// names matched case-insensitively, so they are stored lowercase):
/// ```text
/// HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU
///     NoAutoUpdate    REG_DWORD    0x0
/// ```
pub fn parse_reg_query(text: &str) -> BTreeMap<String, RegValue> {
    let mut out = BTreeMap::new();
    let mut in_first_key = false;
    for line in text.lines() {
        if line.starts_with("HKEY_") {
            // Subkeys follow the key's own values; only the first key counts.
            if in_first_key {
                break;
            }
            in_first_key = true;
            continue;
        }
        let Some(body) = line.strip_prefix("    ") else { continue };
        // Columns are separated by four spaces; names may contain single spaces.
        let cols: Vec<&str> = body.split("    ").collect();
        let Some(kind_at) = cols.iter().position(|c| c.trim().starts_with("REG_")) else { continue };
        let name = cols[..kind_at].join("    ").trim().to_string();
        let data = cols[kind_at + 1..].join("    ").trim_end_matches('\r').to_string();
        out.insert(name.to_ascii_lowercase(), RegValue { kind: cols[kind_at].trim().to_string(), data });
    }
    out
}

/// Runs `reg query` with `args`: the key's values, `Ok(None)` when the key or
/// value does not exist (reg exits 1 with "unable to find"), or why it could
/// not be read.
pub fn reg_query(host: &dyn Host, args: &[&str]) -> Result<Option<BTreeMap<String, RegValue>>, Unavailable> {
    let mut full = vec!["query"];
    full.extend_from_slice(args);
    match host.run("reg", &full) {
        Ok(out) if out.success() => Ok(Some(parse_reg_query(&out.stdout))),
        Ok(out) if format!("{}{}", out.stderr, out.stdout).contains("unable to find") => Ok(None),
        Ok(out) => {
            let text = format!("{}\n{}", out.stderr, out.stdout);
            Err(match classify_error(&text) {
                Unavailable::Failed(m) => {
                    Unavailable::Failed(format!("reg query exited with {:?}: {m}", out.code))
                }
                other => other,
            })
        }
        Err(e) => Err(host_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reg_query_values_and_subkeys() {
        let text = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU\r\n    NoAutoUpdate    REG_DWORD    0x0\r\n    AUOptions    REG_DWORD    0x4\r\n    Some Name    REG_SZ    a  b\r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\X\\Sub\r\n    Other    REG_DWORD    0x1\r\n";
        let v = parse_reg_query(text);
        assert_eq!(v["noautoupdate"].number(), Some(0));
        assert_eq!(v["auoptions"].number(), Some(4));
        assert_eq!(v["some name"].data, "a  b");
        assert!(!v.contains_key("other"));
    }

    #[test]
    fn dates_in_both_powershell_forms() {
        assert_eq!(json_date(Some(&json!("/Date(1795428000000)/"))), Some(1_795_428_000));
        assert_eq!(
            json_date(Some(&json!({"value": "/Date(1795428000000)/", "DisplayHint": 2}))),
            Some(1_795_428_000)
        );
        assert_eq!(json_date(Some(&json!("2026-11-23T10:00:00Z"))), Some(1_795_428_000));
        assert_eq!(json_date(Some(&json!("2026-11-23"))), Some(1_795_392_000));
        assert_eq!(json_date(Some(&json!(null))), None);
    }

    #[test]
    fn access_denied_is_classified() {
        let e = classify_error(
            "Get-X : Access denied \r\n    + CategoryInfo          : PermissionDenied: (:) [], CimException\r\n",
        );
        assert!(matches!(e, Unavailable::Denied(m) if m == "Get-X : Access denied"));
    }
}
