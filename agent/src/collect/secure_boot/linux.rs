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
//!    (`SecureBoot enabled` / `SecureBoot disabled`).
//!
//! Status rule: `pass` when the firmware reports Secure Boot enabled; `fail`
//! when it reports it disabled or the machine boots through legacy BIOS;
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
            f(CheckStatus::Pass, "efivars", true, raw).with_reason("the firmware reports Secure Boot enabled")
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
                Some(true) => f(CheckStatus::Pass, "mokutil", true, text)
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
