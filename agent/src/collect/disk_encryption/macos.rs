//! The macOS backend of the `disk_encryption` check.
//!
//! Reads `fdesetup status` (no root needed), which prints `FileVault is On.`
//! or `FileVault is Off.`, possibly followed by `Encryption in progress:
//! Percent completed = 42`, `Decryption in progress: Percent completed =
//! 80`, or a deferred enablement note (`FileVault is Off, but will be enabled
//! after the next restart.`). On Apple silicon and T2 Macs the internal SSD is
//! always encrypted in hardware, but without FileVault the key is not bound
//! to a user password, so the data opens on boot: only FileVault counts.
//!
//! Every line must be one of those, or the informational `FileVault master
//! keychain appears to be installed.`: a line the agent does not know (a
//! paused conversion, an `On` line with a qualification, a wording of a
//! later macOS) may say that the volume is not protected, so it keeps the
//! check from passing.
//!
//! `fdesetup status` speaks for the boot volume group only: other volumes
//! (a second internal APFS volume, external disks) are not covered, and
//! neither is a key stored for one unattended restart (`fdesetup
//! authrestart`), which no status command shows.
//!
//! Status rule: pass only when FileVault is On, neither encryption nor
//! decryption is in progress and every line is understood; fail when it is
//! Off (also when enablement is merely deferred to the next restart) or a
//! conversion is in progress; unknown when the output says neither or has
//! a line the agent does not know.

use crate::collect::{Context, Finding};
use crate::host::Host;
use crate::privacy::Personal;
use custos_proto::evidence::CheckStatus;

/// What `fdesetup status` says.
#[derive(Debug, Clone, PartialEq)]
pub struct FileVault {
    /// `Some(true)` On, `Some(false)` Off, `None` not stated.
    pub on: Option<bool>,
    /// `encrypting` or `decrypting` when a conversion runs.
    pub in_progress: Option<&'static str>,
    pub percent: Option<f64>,
    /// Enablement deferred to the next restart or login.
    pub deferred: bool,
    /// Lines that are none of the known ones.
    pub unrecognised: Vec<String>,
}

/// Parses `fdesetup status` output.
pub fn parse_fdesetup_status(text: &str) -> FileVault {
    let mut fv =
        FileVault { on: None, in_progress: None, percent: None, deferred: false, unrecognised: Vec::new() };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let conversion = if line.starts_with("Encryption in progress:") {
            Some("encrypting")
        } else if line.starts_with("Decryption in progress:") {
            Some("decrypting")
        } else {
            None
        };
        if let Some(kind) = conversion {
            fv.in_progress = Some(kind);
            fv.percent = line
                .rsplit('=')
                .next()
                .map(|v| v.trim().trim_end_matches('%'))
                .and_then(|v| v.parse::<f64>().ok());
        } else if matches!(line, "FileVault is On." | "FileVault is On") {
            fv.on = Some(true);
        } else if matches!(line, "FileVault is Off." | "FileVault is Off") {
            fv.on = Some(false);
        } else if line.starts_with("FileVault is Off, but will be enabled") {
            fv.on = Some(false);
            fv.deferred = true;
        } else if line.starts_with("Deferred enablement appears to be active") {
            fv.deferred = true;
        } else if line != "FileVault master keychain appears to be installed." {
            fv.unrecognised.push(line.to_string());
        }
    }
    fv
}

/// Decides the check from what `fdesetup status` said.
pub fn evaluate(fv: &FileVault, raw: &str) -> Finding {
    let base = |status| {
        Finding::new(status, "fdesetup")
            .fact("filevault_on", fv.on)
            .fact("conversion", fv.in_progress)
            .fact("percent_completed", fv.percent)
            .fact("deferred_enablement", fv.deferred)
            .with_raw(raw)
    };
    let progress = |kind: &str| match fv.percent {
        Some(p) => format!("{kind} in progress ({p}% completed)"),
        None => format!("{kind} in progress"),
    };
    match (fv.on, fv.in_progress) {
        (Some(true), None) if !fv.unrecognised.is_empty() => base(CheckStatus::Unknown).with_reason(format!(
            "FileVault is on, but fdesetup status also said what the agent does not know: {}",
            fv.unrecognised.join(" / ")
        )),
        (Some(true), None) => base(CheckStatus::Pass).with_reason("FileVault is on"),
        (Some(true), Some(kind)) => {
            base(CheckStatus::Fail).with_reason(format!("FileVault is on but {}", progress(kind)))
        }
        (Some(false), conversion) => {
            let mut why = "FileVault is off".to_string();
            if fv.deferred {
                why.push_str(" (enablement deferred to the next restart or login)");
            }
            if let Some(kind) = conversion {
                why.push_str(&format!("; {}", progress(kind)));
            }
            base(CheckStatus::Fail).with_reason(why)
        }
        (None, Some(kind)) => base(CheckStatus::Fail).with_reason(format!("FileVault {}", progress(kind))),
        (None, None) if !fv.unrecognised.is_empty() => base(CheckStatus::Unknown).with_reason(format!(
            "fdesetup status printed no known FileVault state: {}",
            fv.unrecognised.join(" / ")
        )),
        (None, None) => base(CheckStatus::Unknown).with_reason("fdesetup status printed no FileVault state"),
    }
}

/// Gathers and evaluates on a macOS host.
pub fn gather(host: &dyn Host, ctx: &Context) -> Finding {
    match host.run("fdesetup", &["status"]) {
        Ok(out) if out.success() => {
            // `... active for user 'alice'.` names a user: scrubbed from the excerpt.
            for name in
                out.stdout.lines().filter(|l| l.contains("for user '")).filter_map(|l| l.split('\'').nth(1))
            {
                ctx.register(Personal::UserName, name);
            }
            evaluate(&parse_fdesetup_status(&out.stdout), &out.stdout)
        }
        Ok(out) => Finding::unknown(
            "fdesetup",
            format!("fdesetup status exited with {:?}: {}", out.code, out.stderr.trim()),
        )
        .with_raw(out.stdout),
        Err(e) => Finding::unknown("fdesetup", format!("fdesetup status: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_and_deferral_are_read() {
        let f = parse_fdesetup_status("FileVault is On.\nEncryption in progress: Percent completed = 42\n");
        assert_eq!((f.on, f.in_progress, f.percent), (Some(true), Some("encrypting"), Some(42.0)));
        let f =
            parse_fdesetup_status("FileVault is Off.\nDecryption in progress: Percent completed = 80.5\n");
        assert_eq!((f.on, f.in_progress, f.percent), (Some(false), Some("decrypting"), Some(80.5)));
        let f = parse_fdesetup_status("FileVault is Off, but will be enabled after the next restart.\n");
        assert_eq!((f.on, f.deferred), (Some(false), true));
        assert_eq!(evaluate(&f, "").status, CheckStatus::Fail);
        let f =
            parse_fdesetup_status("FileVault is On.\nFileVault master keychain appears to be installed.\n");
        assert_eq!(evaluate(&f, "").status, CheckStatus::Pass);
        assert_eq!(evaluate(&parse_fdesetup_status("Error: blah"), "").status, CheckStatus::Unknown);
        // A qualified or unknown line keeps "On" from passing.
        let f = parse_fdesetup_status("FileVault is On, but will be disabled after the next restart.\n");
        assert_eq!(evaluate(&f, "").status, CheckStatus::Unknown);
        let f = parse_fdesetup_status("FileVault is On.\nEncryption paused: Percent completed = 12\n");
        assert_eq!(evaluate(&f, "").status, CheckStatus::Unknown);
        let f = parse_fdesetup_status(
            "FileVault is Off.\nDeferred enablement appears to be active for user 'alice'.\n",
        );
        assert_eq!((f.on, f.deferred, evaluate(&f, "").status), (Some(false), true, CheckStatus::Fail));
    }
}
