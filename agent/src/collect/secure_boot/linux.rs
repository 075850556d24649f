//! The Linux backends of the `secure_boot` check.
//!
//! Reads, in order:
//! 1. container markers (`/.dockerenv`, `/run/.containerenv`,
//!    `/run/systemd/container`, `container=` in `/proc/1/environ`): a
//!    container sees no firmware of its own;
//! 2. `/sys/firmware`: without `/sys/firmware/efi` the machine booted through
//!    legacy BIOS (only concluded when `/sys/firmware` itself is readable);
//! 3. the EFI variable
//!    `/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e0a0be5c4b7a`:
//!    4 attribute bytes, then one value byte (1 enabled, 0 disabled);
//! 4. when the variable cannot be read, `mokutil --sb-state`
//!    (`SecureBoot enabled` / `SecureBoot disabled`);
//! 5. shim's own switch: `mokutil --disable-validation` makes shim boot
//!    loaders and kernels nobody signed while the firmware still says
//!    Secure Boot is on. shim mirrors the setting into the runtime variable
//!    `MokSBStateRT` (value 1: validation disabled; absent: enabled), and
//!    mokutil prints "SecureBoot validation is disabled in shim".
//!
//! Status rule: `pass` when the firmware reports Secure Boot enabled and
//! shim validates what it boots; `fail` when it reports it disabled, shim's
//! validation is off, or the machine boots through legacy BIOS;
//! `unknown` inside a container or when neither the variable nor mokutil can
//! be read.

use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

/// The path of the SecureBoot EFI variable (EFI global variable GUID).
pub const SECURE_BOOT_VAR: &str = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e0a0be5c4b7a";

/// Parses the efivarfs contents of the SecureBoot variable: `Some(enabled)`.
pub fn parse_efivar(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [_, _, _, _, 1, ..] => Some(true),
        [_, _, _, _, 0, ..] => Some(false),
        _ => None,
    }
}

/// shim's runtime copy of its validation setting (shim's GUID).
pub const MOK_SB_STATE_VAR: &str =
    "/sys/firmware/efi/efivars/MokSBStateRT-605dab50-e046-4300-abb6-3dd810dd8b23";

/// What mokutil prints when shim's validation is off.
const SHIM_VALIDATION_OFF: &str = "SecureBoot validation is disabled in shim";

/// Why a firmware-enabled Secure Boot does not hold, when shim's
/// validation is off (`Ok(Some(why))`), holds (`Ok(None)`) or cannot be
/// read (`Err`).
fn shim_validation_off(host: &dyn Host) -> Result<Option<String>, String> {
    match host.read_file(MOK_SB_STATE_VAR) {
        Ok(bytes) => match parse_efivar(&bytes) {
            Some(true) => Ok(Some(
                "the firmware reports Secure Boot enabled, but shim's validation is disabled \
                 (MokSBStateRT = 1, set with `mokutil --disable-validation`): shim boots loaders and \
                 kernels nobody signed"
                    .to_string(),
            )),
            Some(false) => Ok(None),
            None => Err("the MokSBStateRT variable is malformed".to_string()),
        },
        Err(crate::host::HostError::NoFile { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `mokutil --sb-state` output: `Some(enabled)`.
pub fn parse_mokutil(text: &str) -> Option<bool> {
    text.lines().find_map(|l| match l.trim() {
        "SecureBoot enabled" => Some(true),
        "SecureBoot disabled" => Some(false),
        _ => None,
    })
}

/// The container marker found, if any.
pub fn container_marker(host: &dyn Host) -> Option<String> {
    for path in ["/.dockerenv", "/run/.containerenv"] {
        if host.exists(path) {
            return Some(path.to_string());
        }
    }
    if let Ok(kind) = host.read_text("/run/systemd/container")
        && !kind.trim().is_empty()
    {
        return Some(format!("/run/systemd/container ({})", kind.trim()));
    }
    // environ is NUL-separated; needs root, so an unreadable one says nothing.
    if let Ok(env) = host.read_file("/proc/1/environ")
        && let Some(v) = env.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(b"container="))
    {
        return Some(format!("container={} in /proc/1/environ", String::from_utf8_lossy(v)));
    }
    None
}

/// Gathers and evaluates on a Linux host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    if let Some(marker) = container_marker(host) {
        return Finding::unknown(
            "efivars",
            format!("running inside a container ({marker}): the firmware's Secure Boot state is not visible"),
        )
        .fact("container", true);
    }
    let Ok(firmware) = host.read_dir("/sys/firmware") else {
        return Finding::unknown("efivars", "/sys/firmware is not readable; the boot mode is not known");
    };
    if !firmware.iter().any(|e| e == "efi") {
        return Finding::fail(
            "efivars",
            "the machine booted through legacy BIOS (no /sys/firmware/efi): no Secure Boot",
        )
        .fact("uefi", false)
        .fact("secure_boot", false)
        .with_raw(firmware.join("\n"));
    }
    let f = |status, backend: &str, enabled: bool, raw: String| {
        Finding::new(status, backend).fact("uefi", true).fact("secure_boot", enabled).with_raw(raw)
    };
    let var = host.read_file(SECURE_BOOT_VAR);
    if let Ok(bytes) = &var
        && let Some(enabled) = parse_efivar(bytes)
    {
        let raw = bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
        return if enabled {
            match shim_validation_off(host) {
                Ok(None) => f(CheckStatus::Pass, "efivars", true, raw)
                    .fact("shim_validation", true)
                    .with_reason("the firmware reports Secure Boot enabled"),
                Ok(Some(why)) => {
                    f(CheckStatus::Fail, "efivars", true, raw).fact("shim_validation", false).with_reason(why)
                }
                Err(e) => f(CheckStatus::Unknown, "efivars", true, raw).with_reason(format!(
                    "the firmware reports Secure Boot enabled, but whether shim validates what it boots \
                     could not be read: {e}"
                )),
            }
        } else {
            f(CheckStatus::Fail, "efivars", false, raw).with_reason("Secure Boot is disabled in the firmware")
        };
    }
    let var_problem = match var {
        Ok(_) => "the SecureBoot variable is malformed".to_string(),
        Err(e) => e.to_string(),
    };
    match host.run("mokutil", &["--sb-state"]) {
        Ok(out) => {
            let text = format!("{}{}", out.stdout, out.stderr);
            match parse_mokutil(&text) {
                Some(true) if text.contains(SHIM_VALIDATION_OFF) => {
                    f(CheckStatus::Fail, "mokutil", true, text)
                        .fact("shim_validation", false)
                        .with_reason("mokutil reports Secure Boot enabled, but validation disabled in shim")
                }
                Some(true) => f(CheckStatus::Pass, "mokutil", true, text)
                    .fact("shim_validation", true)
                    .with_reason("mokutil reports Secure Boot enabled"),
                Some(false) => f(CheckStatus::Fail, "mokutil", false, text)
                    .with_reason("mokutil reports Secure Boot disabled"),
                None => Finding::unknown(
                    "mokutil",
                    format!("mokutil did not report the Secure Boot state: {}", text.trim()),
                )
                .with_raw(text),
            }
        }
        Err(e) => Finding::unknown(
            "efivars",
            format!("the Secure Boot state could not be read ({var_problem}; mokutil: {e})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efivar_bytes() {
        assert_eq!(parse_efivar(&[0x06, 0, 0, 0, 1]), Some(true));
        assert_eq!(parse_efivar(&[0x06, 0, 0, 0, 0]), Some(false));
        assert_eq!(parse_efivar(&[0x06, 0, 0]), None);
    }
}
