//! The Windows backend of the `secure_boot` check.
//!
//! Runs `Confirm-SecureBootUEFI` in PowerShell (needs administrator rights),
//! which prints `True` or `False` on UEFI firmware and fails with "Cmdlet not
//! supported on this platform" when Windows booted through legacy BIOS.
//!
//! Status rule: pass on `True`; fail on `False` (UEFI, Secure Boot off) and
//! on "not supported" (legacy BIOS boot, which cannot verify signatures);
//! unknown on access denied ("needs administrator") or any other output.

use crate::collect::windows::{Unavailable, powershell};
use crate::collect::{Context, Finding};
use crate::host::Host;

const BACKEND: &str = "uefi";

/// The Secure Boot state; any error ends the script with exit code 1.
pub const SCRIPT: &str = "$ErrorActionPreference='Stop'; Confirm-SecureBootUEFI";

/// Decides the check from the script's output or its failure.
pub fn evaluate(result: Result<String, Unavailable>) -> Finding {
    match result {
        Ok(text) => match text.trim() {
            "True" => Finding::pass(BACKEND)
                .with_reason("UEFI Secure Boot is on")
                .fact("secure_boot", true)
                .with_raw(text),
            "False" => Finding::fail(BACKEND, "UEFI Secure Boot is off")
                .fact("secure_boot", false)
                .fact("uefi", true)
                .with_raw(text),
            other => Finding::unknown(
                BACKEND,
                format!("Confirm-SecureBootUEFI printed {:?}", other.chars().take(80).collect::<String>()),
            )
            .with_raw(text),
        },
        Err(e) if e.message().to_ascii_lowercase().contains("not supported on this platform") => {
            Finding::fail(BACKEND, "the machine boots through legacy BIOS, which has no Secure Boot")
                .fact("secure_boot", false)
                .fact("uefi", false)
                .with_raw(e.message())
        }
        Err(e) => e.unknown(BACKEND, "Confirm-SecureBootUEFI"),
    }
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    evaluate(powershell(host, SCRIPT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_proto::evidence::CheckStatus;

    #[test]
    fn crlf_true_passes() {
        assert_eq!(evaluate(Ok("True\r\n".into())).status, CheckStatus::Pass);
        assert_eq!(evaluate(Ok("".into())).status, CheckStatus::Unknown);
    }
}
