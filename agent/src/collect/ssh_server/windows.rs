//! The Windows backend of the `ssh_server` check: the OpenSSH server
//! (Windows capability `OpenSSH.Server`, or the Win32-OpenSSH MSI).
//!
//! Reads the `sshd` service with `sc query sshd` (`STATE : 4 RUNNING`) and
//! `sc qc sshd` (`START_TYPE`, `BINARY_PATH_NAME`); the state and start
//! type numbers do not depend on the display language. When the server runs
//! or starts automatically, runs `<binary> -T` (by default
//! `C:\Windows\System32\OpenSSH\sshd.exe -T`, needs administrator rights to
//! read the host keys) and hands the effective configuration to
//! [`super::evaluate_sshd_t`].
//!
//! Status rule: not_applicable when the service is not installed (sc error
//! 1060) or is stopped and not set to start automatically; otherwise the
//! evaluator's verdict on `sshd -T`; unknown when `sc` or `sshd -T` cannot
//! answer, including a stopped service whose start type is unreadable.

use crate::collect::windows::host_error;
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "openssh";
const DEFAULT_SSHD: &str = "C:\\Windows\\System32\\OpenSSH\\sshd.exe";

/// A `KEY : number NAME` field of `sc query` / `sc qc` output.
pub fn parse_sc_number(text: &str, key: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// The program of `BINARY_PATH_NAME` in `sc qc` output, without quotes and arguments.
pub fn parse_sc_binary(text: &str) -> Option<String> {
    let value = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "BINARY_PATH_NAME").then(|| v.trim().to_string())
    })?;
    let path = match value.strip_prefix('"') {
        Some(rest) => rest.split('"').next().unwrap_or(rest).to_string(),
        None => {
            // Unquoted: up to and including `.exe`, spaces allowed before it.
            let lower = value.to_ascii_lowercase();
            lower.find(".exe").map_or(value.clone(), |i| value[..i + 4].to_string())
        }
    };
    (!path.is_empty()).then_some(path)
}

/// Decides the check from `sc query sshd`, `sc qc sshd` and the `sshd -T` result.
pub fn evaluate(query: &str, qc: Option<&str>, sshd_t: Option<Result<String, String>>) -> Finding {
    if query.contains("FAILED 1060") {
        return Finding::new(CheckStatus::NotApplicable, "none")
            .with_reason("no OpenSSH server installed (no sshd service)")
            .fact("service", "absent");
    }
    let Some(state) = parse_sc_number(query, "STATE") else {
        return Finding::unknown(BACKEND, "sc query sshd printed no STATE").with_raw(query);
    };
    let start = qc.and_then(|t| parse_sc_number(t, "START_TYPE"));
    let running = state == 4;
    let service = if running { "running" } else { "stopped" };
    if !running && start.is_none() {
        // Stopped, but whether it starts by itself is not known.
        return Finding::unknown(
            BACKEND,
            "sshd is stopped and its start type could not be read (sc qc sshd)",
        )
        .fact("service", service)
        .with_raw(query);
    }
    if !running && start != Some(2) {
        return Finding::new(CheckStatus::NotApplicable, BACKEND)
            .with_reason("the OpenSSH server is installed but neither running nor set to start automatically")
            .fact("service", service)
            .fact("start_type", serde_json::json!(start))
            .with_raw(query);
    }
    match sshd_t {
        Some(Ok(text)) => super::evaluate_sshd_t(&text, BACKEND).fact("service", service),
        Some(Err(why)) => Finding::unknown(BACKEND, why).fact("service", service),
        None => Finding::unknown(BACKEND, "sshd -T was not run").fact("service", service),
    }
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let query = match host.run("sc", &["query", "sshd"]) {
        Ok(out) => format!("{}{}", out.stdout, out.stderr),
        Err(e) => return host_error(&e).unknown(BACKEND, "sc query sshd"),
    };
    let qc = host.run("sc", &["qc", "sshd"]).ok().filter(|o| o.success()).map(|o| o.stdout);
    let state = parse_sc_number(&query, "STATE");
    let start = qc.as_deref().and_then(|t| parse_sc_number(t, "START_TYPE"));
    // Only run sshd when the evaluation will need it.
    let sshd_t = (!query.contains("FAILED 1060") && (state == Some(4) || start == Some(2))).then(|| {
        let binary = qc.as_deref().and_then(parse_sc_binary).unwrap_or_else(|| DEFAULT_SSHD.to_string());
        match host.run(&binary, &["-T"]) {
            Ok(out) if out.success() => Ok(out.stdout),
            Ok(out) => {
                let msg = format!("{}{}", out.stderr.trim(), out.stdout.trim());
                if msg.contains("hostkeys")
                    || msg.contains("Permission denied")
                    || msg.contains("Unable to load host key")
                {
                    Err(format!("sshd -T needs administrator rights to read the host keys: {msg}"))
                } else {
                    Err(format!("sshd -T exited with {:?}: {msg}", out.code))
                }
            }
            Err(e) => Err(format!("{binary} -T: {e}")),
        }
    });
    evaluate(&query, qc.as_deref(), sshd_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_paths() {
        let q = "        BINARY_PATH_NAME   : \"C:\\Program Files\\OpenSSH\\sshd.exe\" -f x\r\n";
        assert_eq!(parse_sc_binary(q).as_deref(), Some("C:\\Program Files\\OpenSSH\\sshd.exe"));
        let u = "        BINARY_PATH_NAME   : C:\\Windows\\System32\\OpenSSH\\sshd.exe\r\n";
        assert_eq!(parse_sc_binary(u).as_deref(), Some(DEFAULT_SSHD));
    }
}
