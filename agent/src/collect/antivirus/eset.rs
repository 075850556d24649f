//! ESET Server Security and ESET Endpoint Antivirus for Linux, part of the
//! Linux `antivirus` backend: service, activation and detection engine,
//! read through ESET's own command-line tools.

use super::linux::{parse_compact_time, service_active};
use super::{MAX_SIGNATURE_AGE_HOURS, Product};
use crate::collect::ParseError;
use crate::host::Host;

/// Whether `lic -s` says the ESET product is activated (`Status: Activated`).
pub fn parse_eset_licence(text: &str) -> Result<bool, ParseError> {
    let status = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Status:"))
        .map(str::trim)
        .ok_or_else(|| ParseError::new("printed no Status line").in_command("lic -s"))?;
    Ok(status.eq_ignore_ascii_case("Activated"))
}

/// The detection engine in `upd --list-modules` output (`EM002\t 31832
/// (20250909)\tDetection engine`): its version and build date (Unix seconds,
/// midnight UTC of that day, so the age is never understated by more than the
/// time zone).
pub fn parse_eset_modules(text: &str) -> Result<(String, i64), ParseError> {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| {
            l.split('\t').nth(2).is_some_and(|n| n.trim().eq_ignore_ascii_case("Detection engine"))
        })
        .ok_or_else(|| {
            ParseError::new("lists no Detection engine module").in_command("upd --list-modules")
        })?;
    let middle = line.split('\t').nth(1).unwrap_or("").trim();
    let on_line = |why: String| ParseError::new(why).at_line(i + 1);
    let (version, date) = middle
        .split_once('(')
        .and_then(|(v, d)| Some((v.trim(), d.strip_suffix(')')?.trim())))
        .ok_or_else(|| on_line(format!("detection engine line {line:?} is not `version (YYYYMMDD)`")))?;
    let built = parse_compact_time(date)
        .ok_or_else(|| on_line(format!("detection engine date {date:?} is not YYYYMMDD")))?;
    Ok((version.to_string(), built))
}

/// Evaluates ESET Server Security or Endpoint Antivirus for Linux: the
/// service, activation (`lic -s`) and the detection engine's age (`upd
/// --list-modules`). ESET documents no command whose output states whether
/// real-time file system protection is on, so a running, activated and
/// current product is still `unknown`, never a pass; a stopped service, a
/// missing activation or an outdated engine fail.
pub fn eset(
    name: &'static str,
    running: Option<bool>,
    licence: Result<String, String>,
    modules: Result<String, String>,
    now: i64,
) -> Product {
    let mut p = Product::named(name);
    match running {
        Some(false) => {
            p.active = Some(false);
            p.problem = Some(format!("the {name} service is not running"));
            return p;
        }
        None => {
            p.problem = Some(format!("whether the {name} service runs could not be determined"));
            return p;
        }
        Some(true) => {}
    }
    let mut failures = Vec::new();
    let mut unread = Vec::new();
    match licence.and_then(|t| parse_eset_licence(&t).map_err(|e| e.to_string())) {
        Ok(true) => {}
        Ok(false) => failures.push("the product is not activated (no module updates)".to_string()),
        Err(e) => unread.push(format!("activation unreadable: {e}")),
    }
    match modules.and_then(|t| parse_eset_modules(&t).map_err(|e| e.to_string())) {
        Ok((version, built)) => {
            let age = (now - built).max(0) / 3600;
            p.version = Some(version.clone());
            p.signatures_age_hours = Some(age);
            if age > MAX_SIGNATURE_AGE_HOURS {
                failures.push(format!(
                    "detection engine {version} is {age} h old (limit {MAX_SIGNATURE_AGE_HOURS} h)"
                ));
            }
        }
        Err(e) => unread.push(format!("detection engine age unreadable: {e}")),
    }
    if !failures.is_empty() {
        // Off or outdated whatever real-time protection does: a failure.
        p.active = Some(true);
        p.problem = Some(failures.join("; "));
        return p;
    }
    unread.push(format!(
        "the {name} service runs, but whether real-time file system protection is on is not readable (no ESET command prints it)"
    ));
    p.problem = Some(unread.join("; "));
    p
}

/// ESET Server Security and ESET Endpoint Antivirus: service, activation
/// and detection engine, through ESET's own command-line tools.
pub(super) fn observe_eset(host: &dyn Host, now: i64, raw: &mut String) -> Vec<Product> {
    let mut out = Vec::new();
    for (name, dir, unit) in [
        ("ESET Server Security", "/opt/eset/efs", "efs"),
        ("ESET Endpoint Antivirus", "/opt/eset/eea", "eea"),
    ] {
        if !host.exists(dir) {
            continue;
        }
        let mut ask = |program: String, args: &[&str]| match host.run(&program, args) {
            Ok(o) if o.success() => {
                raw.push_str(&o.stdout);
                Ok(o.stdout)
            }
            Ok(o) => {
                Err(format!("{program} {} exited with {:?}: {}", args.join(" "), o.code, o.stderr.trim()))
            }
            Err(e) => Err(e.to_string()),
        };
        let running = service_active(host, unit);
        let (licence, modules) = if running == Some(true) {
            (ask(format!("{dir}/sbin/lic"), &["-s"]), ask(format!("{dir}/bin/upd"), &["--list-modules"]))
        } else {
            (Err("not asked".into()), Err("not asked".into()))
        };
        out.push(eset(name, running, licence, modules, now));
    }
    out
}
