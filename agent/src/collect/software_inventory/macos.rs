//! The macOS backend of the `software_inventory` check.
//!
//! Lists the applications Spotlight knows with `system_profiler
//! SPApplicationsDataType -json` (`_name`, `version`, `obtained_from`:
//! `apple`, `mac_app_store`, `identified_developer` or `unknown`, and `path`).
//! Paths are not reported, not even in the raw observation: under
//! `/Users/<name>` they carry a user name. The
//! same application at several paths is listed once per distinct version.
//!
//! Status rule: facts only. `pass` when the list was read (facts
//! `package_manager` = `system_profiler`, `package_count`, `packages` =
//! [{name, version, source}], sorted by name); `unknown` when system_profiler
//! fails or lists no application.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

/// One application: (name, version, source).
pub type App = (String, String, String);

/// Parses `system_profiler SPApplicationsDataType -json`.
pub fn parse_applications(json: &str) -> Result<Vec<App>, ParseError> {
    let printed = |what: String| ParseError::new(what).in_command("system_profiler");
    let doc: Value = serde_json::from_str(json).map_err(|e| printed(format!("output is not JSON: {e}")))?;
    let items = doc
        .get("SPApplicationsDataType")
        .and_then(Value::as_array)
        .ok_or_else(|| printed("output has no SPApplicationsDataType array".into()))?;
    let field = |item: &Value, key: &str| item.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let apps: BTreeSet<App> = items
        .iter()
        .filter_map(|item| {
            let name = field(item, "_name");
            (!name.is_empty()).then(|| (name, field(item, "version"), field(item, "obtained_from")))
        })
        .collect();
    Ok(apps.into_iter().collect())
}

/// Decides the check (facts only).
pub fn evaluate(apps: Result<Vec<App>, ParseError>, raw: &str) -> Finding {
    match apps {
        Err(why) => Finding::unknown("system_profiler", why.to_string()),
        Ok(apps) if apps.is_empty() => {
            Finding::unknown("system_profiler", "system_profiler listed no application")
        }
        Ok(apps) => {
            let list: Vec<Value> =
                apps.iter().map(|(n, v, s)| json!({"name": n, "version": v, "source": s})).collect();
            Finding::new(CheckStatus::Pass, "system_profiler")
                .with_reason(format!("{} applications listed", apps.len()))
                .fact("package_manager", "system_profiler")
                .fact("package_count", apps.len())
                .fact("packages", list)
                .with_raw(raw)
        }
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    match host.run("system_profiler", &["SPApplicationsDataType", "-json"]) {
        Ok(out) if out.success() => {
            let apps = parse_applications(&out.stdout);
            // The raw output holds paths under /Users/<name>: keep only what the facts show.
            let raw: String = apps
                .as_ref()
                .map(|a| a.iter().map(|(n, v, s)| format!("{n}\t{v}\t{s}\n")).collect())
                .unwrap_or_default();
            evaluate(apps, &raw)
        }
        Ok(out) => Finding::unknown(
            "system_profiler",
            format!("system_profiler exited with {:?}: {}", out.code, out.stderr.trim()),
        ),
        Err(e) => Finding::unknown("system_profiler", format!("system_profiler: {e}")),
    }
}
