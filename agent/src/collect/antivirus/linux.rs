//! The Linux backends of the `antivirus` check.

use serde_json::Value;

use super::MAX_SIGNATURE_AGE_HOURS;
pub use super::Product;
use crate::collect::{Context, Finding};
use crate::host::{Host, HostError};
use custos_proto::evidence::CheckStatus;

/// Parses a ClamAV database header; returns (version, build time as Unix seconds).
pub fn parse_cvd_header(header: &[u8]) -> Result<(String, i64), String> {
    let text = String::from_utf8_lossy(&header[..header.len().min(512)]);
    let fields: Vec<&str> = text.trim_end_matches(['\0', ' ']).split(':').collect();
    if fields.first() != Some(&"ClamAV-VDB") || fields.len() < 9 {
        return Err("not a ClamAV database header".into());
    }
    let stime =
        fields[8].trim().parse::<i64>().map_err(|_| format!("build time {:?} is not a number", fields[8]))?;
    Ok((fields[2].to_string(), stime))
}

/// Evaluates ClamAV from the daemon state and the database header.
pub fn clamav(daemon_active: Option<bool>, header: Result<Vec<u8>, String>, now: i64) -> Product {
    let mut p = Product { active: daemon_active, ..Product::named("ClamAV") };
    match header.and_then(|h| parse_cvd_header(&h)) {
        Ok((version, built)) => {
            p.version = Some(version);
            p.signatures_age_hours = Some((now - built).max(0) / 3600);
        }
        Err(e) => p.problem = Some(format!("signature database unreadable: {e}")),
    }
    if p.problem.is_none() {
        p.problem = match (p.active, p.signatures_age_hours) {
            (Some(false), _) => Some("clamd is not running".into()),
            (None, _) => Some("whether clamd runs could not be determined".into()),
            (_, Some(age)) if age > MAX_SIGNATURE_AGE_HOURS => {
                Some(format!("signatures are {age} h old (limit {MAX_SIGNATURE_AGE_HOURS} h)"))
            }
            _ => None,
        };
    }
    p
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

/// A product known by its install directory and service. A stopped service
/// fails; a running one is not counted as protecting either, because its
/// real-time protection and signature age are not read yet: `unknown`, never
/// a pass on the service alone.
pub fn installed_product(name: &'static str, version: Option<String>, running: Option<bool>) -> Product {
    let (active, problem) = match running {
        Some(true) => (
            None,
            format!(
                "the {name} service runs, but its real-time protection and signature age are not read by this agent version"
            ),
        ),
        Some(false) => (Some(false), format!("the {name} service is not running")),
        None => (None, format!("whether the {name} service runs could not be determined")),
    };
    Product { version, active, problem: Some(problem), ..Product::named(name) }
}

fn service_active(host: &dyn Host, unit: &str) -> Option<bool> {
    match host.run("systemctl", &["is-active", unit]) {
        Ok(out) => match out.stdout.trim() {
            "active" => Some(true),
            "inactive" | "failed" | "dead" => Some(false),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Looks for each product through the host.
pub fn observe(host: &dyn Host, now: i64) -> (Vec<Product>, String) {
    let mut products = Vec::new();
    let mut raw = String::new();
    let db = ["/var/lib/clamav/daily.cld", "/var/lib/clamav/daily.cvd"]
        .iter()
        .map(|p| host.read_file(p))
        .find(|r| !matches!(r, Err(HostError::NoFile { .. })));
    let clamd = host.exists("/usr/sbin/clamd");
    if clamd || db.is_some() {
        let active = service_active(host, "clamav-daemon")
            .or_else(|| host.run("pidof", &["clamd"]).ok().map(|o| o.success()));
        let header = match db {
            Some(Ok(bytes)) => Ok(bytes[..bytes.len().min(512)].to_vec()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("no daily.cvd or daily.cld in /var/lib/clamav".into()),
        };
        if let Ok(h) = &header {
            raw.push_str(&String::from_utf8_lossy(h));
        }
        products.push(clamav(active, header, now));
    }
    // Products read through a command: (name, program, args, parser).
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
    // Products found by their install directory: Sophos Protection for
    // Linux, ESET Server Security and ESET Endpoint Antivirus.
    let installs: [(&'static str, &str, Option<&str>, &str); 3] = [
        (
            "Sophos Protection for Linux",
            "/opt/sophos-spl",
            Some("/opt/sophos-spl/base/VERSION.ini"),
            "sophos-spl",
        ),
        ("ESET Server Security", "/opt/eset/efs", None, "efs"),
        ("ESET Endpoint Antivirus", "/opt/eset/eea", None, "eea"),
    ];
    for (name, dir, version_file, unit) in installs {
        if host.exists(dir) {
            let version = version_file.and_then(|f| host.read_text(f).ok());
            if let Some(v) = &version {
                raw.push_str(v);
            }
            products.push(installed_product(
                name,
                version.as_deref().and_then(parse_sophos_version),
                service_active(host, unit),
            ));
        }
    }
    for (name, program, args, parse) in probes {
        match host.run(program, args) {
            Ok(out) => {
                raw.push_str(&out.stdout);
                products.push(parse(&out.stdout));
            }
            Err(HostError::NotFound { .. }) => {}
            Err(e) => {
                products.push(Product { problem: Some(format!("unreadable: {e}")), ..Product::named(name) })
            }
        }
    }
    (products, raw)
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    let (products, raw) = observe(host, ctx.now);
    evaluate(&products, raw)
}
