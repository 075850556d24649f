//! The Windows backend of the `disk_encryption` check: BitLocker.
//!
//! Reads `Get-BitLockerVolume` as JSON (`MountPoint`, `VolumeType` 0
//! OperatingSystem / 1 Data, `ProtectionStatus` 0 Off / 1 On / 2 Unknown,
//! `VolumeStatus`, `EncryptionPercentage`, `EncryptionMethod`, the types of
//! its `KeyProtector`s; enums print as numbers, names are accepted too), plus
//! whether the drive letter is a removable disk (`Win32_LogicalDisk`
//! `DriveType` 2), which the BitLocker module does not tell. When the cmdlet
//! is missing or fails for another reason than access, falls back to
//! `manage-bde -status` (English text).
//!
//! BitLocker lists only the volumes it can protect: a volume on a dynamic
//! disk, for one, is not among them ("BitLocker doesn't support dynamic
//! disks"), and a list without it is no evidence that it is encrypted. So
//! the fixed drive letters (`Win32_LogicalDisk` `DriveType` 3) are read as
//! well, and each must be one of BitLocker's volumes.
//!
//! Status rule: pass only when every OperatingSystem and fixed Data volume is
//! 100 % encrypted with ProtectionStatus On, in software. Encrypted but
//! protection Off (BitLocker suspended, key stored in the clear; manage-bde
//! `Protection Off (N reboots left)`) is fail, as is any unencrypted or
//! partly encrypted volume. Removable volumes are listed but out of scope.
//! Unknown: no operating-system volume in the list; a fixed drive letter
//! BitLocker does not list, or the fixed drives could not be listed;
//! protection status Unknown (volume locked); unreadable output; hardware
//! encryption (`EncryptionMethod` Hardware, eDrive), whose strength is the
//! drive firmware's and which Microsoft advises against (advisory
//! ADV180028: self-encrypting drives with weaknesses; BitLocker uses
//! software encryption by default since then); access denied (agent not
//! elevated) is unknown "needs administrator". The key protectors are facts:
//! a TPM-only protector unlocks without pre-boot authentication, which the
//! check accepts.

use serde_json::{Value, json};

use crate::collect::windows::{Unavailable, console, json_bool, json_i64, json_items, json_str, powershell};
use crate::collect::{Context, Finding, ParseError};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "bitlocker";
const BACKEND_MANAGE_BDE: &str = "manage-bde";

/// The BitLocker state of every volume; enums print as numbers. The BitLocker
/// module only knows OperatingSystem and Data volumes, so removable drives
/// (USB sticks, SD cards) are marked from `Win32_LogicalDisk` `DriveType` 2.
pub const VOLUME_SCRIPT: &str = "$ErrorActionPreference='Stop'; $removable = @(Get-CimInstance -ClassName Win32_LogicalDisk -Filter 'DriveType=2' | ForEach-Object { $_.DeviceID }); ConvertTo-Json -Depth 3 -InputObject @(Get-BitLockerVolume | Select-Object MountPoint,VolumeType,ProtectionStatus,VolumeStatus,EncryptionPercentage,EncryptionMethod,@{n='Removable';e={$removable -contains $_.MountPoint}},@{n='KeyProtectors';e={@($_.KeyProtector | ForEach-Object { [string]$_.KeyProtectorType })}})";

/// The drive letters of the local fixed disks (`DriveType` 3), whether or
/// not BitLocker can protect them.
pub const FIXED_DRIVES_SCRIPT: &str = "$ErrorActionPreference='Stop'; ConvertTo-Json -InputObject @(Get-CimInstance -ClassName Win32_LogicalDisk -Filter 'DriveType=3' | ForEach-Object { $_.DeviceID })";

/// One volume as BitLocker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub mount_point: String,
    /// `OperatingSystem`, `Data` (fixed), `Removable` or `unknown ...`.
    pub kind: String,
    /// `On`, `Off` or `Unknown`.
    pub protection: String,
    pub status: String,
    pub percent: Option<f64>,
    pub method: String,
    /// Key protector types (`Tpm`, `TpmPin`, `RecoveryPassword`, ...).
    pub key_protectors: Vec<String>,
}

impl Volume {
    fn in_scope(&self) -> bool {
        self.kind != "Removable"
    }
    fn to_json(&self) -> Value {
        json!({"mount_point": self.mount_point, "volume_type": self.kind, "protection": self.protection,
               "volume_status": self.status, "encryption_percentage": self.percent, "encryption_method": self.method,
               "key_protectors": self.key_protectors})
    }
}

/// An enum printed as a number or as its name.
fn enum_name(v: Option<&Value>, names: &[&str]) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|i| names.get(usize::try_from(i).ok()?))
            .map_or_else(|| format!("unknown ({n})"), |s| s.to_string()),
        _ => "unknown".into(),
    }
}

/// The key protector types as printed (names, or numbers of the
/// `KeyProtectorType` enumeration).
fn key_protectors(v: Option<&Value>) -> Vec<String> {
    let names = [
        "Unknown",
        "Tpm",
        "ExternalKey",
        "RecoveryPassword",
        "TpmPin",
        "TpmStartupKey",
        "TpmPinStartupKey",
        "PublicKey",
        "Password",
        "TpmNetworkKey",
        "AdAccountOrGroup",
    ];
    let one = |x: &Value| match x {
        Value::Number(_) => enum_name(Some(x), &names),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match v {
        Some(Value::Array(items)) => items.iter().map(one).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(x) => vec![one(x)],
    }
}

/// Parses the JSON of [`FIXED_DRIVES_SCRIPT`]: drive letters such as `C:`.
pub fn parse_fixed_drives(text: &str) -> Result<Vec<String>, ParseError> {
    json_items(text)?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("not a drive letter: {v}").into()))
        .collect()
}

/// Parses the JSON of [`VOLUME_SCRIPT`].
pub fn parse_bitlocker_volumes(text: &str) -> Result<Vec<Volume>, ParseError> {
    let items = json_items(text)?;
    Ok(items
        .iter()
        .map(|v| {
            // 2 is Win32_EncryptableVolume's number for portable volumes.
            let mut kind = match enum_name(v.get("VolumeType"), &["OperatingSystem", "Data", "Removable"]) {
                k if k == "FixedData" => "Data".to_string(),
                k => k,
            };
            if json_bool(v.get("Removable")) == Some(true) {
                kind = "Removable".into();
            }
            Volume {
                mount_point: json_str(v, "MountPoint").unwrap_or("").to_string(),
                kind,
                protection: enum_name(v.get("ProtectionStatus"), &["Off", "On", "Unknown"]),
                status: enum_name(
                    v.get("VolumeStatus"),
                    &[
                        "FullyDecrypted",
                        "FullyEncrypted",
                        "EncryptionInProgress",
                        "DecryptionInProgress",
                        "EncryptionPaused",
                        "DecryptionPaused",
                    ],
                ),
                percent: v
                    .get("EncryptionPercentage")
                    .and_then(Value::as_f64)
                    .or_else(|| json_i64(v.get("EncryptionPercentage")).map(|i| i as f64)),
                method: enum_name(
                    v.get("EncryptionMethod"),
                    &[
                        "None",
                        "Aes128Diffuser",
                        "Aes256Diffuser",
                        "Aes128",
                        "Aes256",
                        "Hardware",
                        "XtsAes128",
                        "XtsAes256",
                    ],
                ),
                key_protectors: key_protectors(v.get("KeyProtectors")),
            }
        })
        .collect())
}

/// Parses `manage-bde -status` (English): one `Volume X: [label]` block per
/// volume with `[OS Volume]` / `[Data Volume]`, `Conversion Status`,
/// `Percentage Encrypted`, `Encryption Method`, `Protection Status` and the
/// `Key Protectors` list.
pub fn parse_manage_bde(text: &str) -> Result<Vec<Volume>, ParseError> {
    let mut vols: Vec<Volume> = Vec::new();
    let mut in_protectors = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Volume ") {
            let mount = rest.split_whitespace().next().unwrap_or("").to_string();
            vols.push(Volume {
                mount_point: mount,
                kind: "unknown".into(),
                protection: "Unknown".into(),
                status: "unknown".into(),
                percent: None,
                method: "unknown".into(),
                key_protectors: Vec::new(),
            });
            in_protectors = false;
            continue;
        }
        let Some(v) = vols.last_mut() else { continue };
        // The protector types follow `Key Protectors:`, one per line.
        if in_protectors && !line.is_empty() && !line.contains(':') {
            v.key_protectors.push(line.to_string());
            continue;
        }
        in_protectors = line == "Key Protectors:";
        match line {
            "[OS Volume]" => v.kind = "OperatingSystem".into(),
            // manage-bde does not tell fixed from removable data volumes; both stay in scope.
            "[Data Volume]" => v.kind = "Data".into(),
            _ => {}
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim() {
            "Conversion Status" => v.status = value.to_string(),
            "Percentage Encrypted" => v.percent = value.trim_end_matches('%').trim().parse().ok(),
            "Encryption Method" => v.method = value.to_string(),
            "Protection Status" => {
                // Suspended for some restarts prints `Protection Off (1 reboots left)`.
                v.protection = match value {
                    "Protection On" => "On".into(),
                    v if v.starts_with("Protection Off") => "Off".into(),
                    _ => "Unknown".into(),
                }
            }
            _ => {}
        }
    }
    if vols.is_empty() {
        return Err(ParseError::new("listed no volume (non-English output?)").in_command("manage-bde"));
    }
    Ok(vols)
}

/// Why each in-scope volume does not count as protected: certain problems
/// and what cannot be told.
fn volume_problems(scoped: &[&Volume]) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut unclear = Vec::new();
    for v in scoped {
        let name = if v.mount_point.is_empty() { "a volume without mount point" } else { &v.mount_point };
        let percent = v.percent.map_or("?".to_string(), |p| format!("{p}"));
        match (v.protection.as_str(), v.percent) {
            ("On", Some(p)) if p >= 100.0 => {}
            ("Off", Some(p)) if p >= 100.0 => {
                problems.push(format!("{name} is encrypted but BitLocker protection is suspended (off)"))
            }
            (_, Some(p)) if p < 100.0 => problems
                .push(format!("{name} is {percent} % encrypted ({}, protection {})", v.status, v.protection)),
            ("Off", _) => problems.push(format!("{name} is not protected (protection off)")),
            _ => unclear.push(format!("{name}: protection status {}, {percent} % encrypted", v.protection)),
        }
        if v.kind.starts_with("unknown") {
            unclear.push(format!("{name}: volume type {}", v.kind));
        }
        if v.method.starts_with("Hardware") {
            unclear.push(format!(
                "{name} uses hardware encryption (eDrive), whose strength is the drive firmware's \
                 (Microsoft advisory ADV180028)"
            ));
        }
    }
    (problems, unclear)
}

/// The fixed drive letters BitLocker does not list (`fixed` is the list of
/// local fixed disks, or why it could not be read).
fn unlisted_fixed(vols: &[Volume], fixed: &Result<Vec<String>, String>) -> Vec<String> {
    match fixed {
        Err(e) => vec![format!("the fixed drives could not be listed ({e}), so some may be missing")],
        Ok(letters) => letters
            .iter()
            .filter(|d| !vols.iter().any(|v| v.mount_point.trim_end_matches('\\').eq_ignore_ascii_case(d)))
            .map(|d| {
                format!(
                    "fixed drive {d} is not among BitLocker's volumes (a dynamic disk, or a volume \
                     BitLocker cannot protect): its encryption is not known"
                )
            })
            .collect(),
    }
}

/// Decides the check from the volumes read by `backend` and the local fixed
/// drive letters (or why they could not be read).
pub fn evaluate(vols: &[Volume], fixed: &Result<Vec<String>, String>, backend: &str, raw: &str) -> Finding {
    let scoped: Vec<&Volume> = vols.iter().filter(|v| v.in_scope()).collect();
    let protected =
        scoped.iter().filter(|v| v.protection == "On" && v.percent.is_some_and(|p| p >= 100.0)).count();
    let base = |status| {
        Finding::new(status, backend)
            .fact("volumes_in_scope", scoped.len())
            .fact("volumes_protected", protected)
            .fact("volumes", vols.iter().map(Volume::to_json).collect::<Vec<_>>())
            .fact("fixed_drives", fixed.as_ref().ok().cloned())
            .with_raw(raw)
    };
    let (mut problems, mut unclear) = volume_problems(&scoped);
    unclear.extend(unlisted_fixed(vols, fixed));
    if !problems.is_empty() {
        problems.extend(unclear);
        return base(CheckStatus::Fail).with_reason(problems.join("; "));
    }
    if !scoped.iter().any(|v| v.kind == "OperatingSystem") {
        unclear.push("no operating-system volume is listed".into());
    }
    if !unclear.is_empty() {
        return base(CheckStatus::Unknown).with_reason(unclear.join("; "));
    }
    base(CheckStatus::Pass).with_reason(format!(
        "all {} fixed volumes are fully encrypted with BitLocker protection on",
        scoped.len()
    ))
}

/// The local fixed drive letters, or why they could not be read.
fn fixed_drives(host: &dyn Host) -> Result<Vec<String>, String> {
    powershell(host, FIXED_DRIVES_SCRIPT)
        .map_err(|e| e.message().to_string())
        .and_then(|t| parse_fixed_drives(&t).map_err(|e| e.to_string()))
}

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let ps_problem = match powershell(host, VOLUME_SCRIPT) {
        Ok(text) => match parse_bitlocker_volumes(&text) {
            Ok(vols) if !vols.is_empty() => return evaluate(&vols, &fixed_drives(host), BACKEND, &text),
            Ok(_) => Unavailable::Failed("Get-BitLockerVolume listed no volume".into()),
            Err(e) => Unavailable::Failed(e.to_string()),
        },
        // manage-bde needs the same rights: no point asking it.
        Err(e @ Unavailable::Denied(_)) => return e.unknown(BACKEND, "Get-BitLockerVolume"),
        Err(e) => e,
    };
    match console(host, "manage-bde", &["-status"]) {
        Ok(text) => match parse_manage_bde(&text) {
            Ok(vols) => evaluate(&vols, &fixed_drives(host), BACKEND_MANAGE_BDE, &text),
            Err(e) => Finding::unknown(
                BACKEND_MANAGE_BDE,
                format!("{e}; Get-BitLockerVolume: {}", ps_problem.message()),
            )
            .with_raw(text),
        },
        Err(e) => e.unknown(
            BACKEND_MANAGE_BDE,
            &format!("BitLocker state could not be read (Get-BitLockerVolume: {})", ps_problem.message()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_and_single_object() {
        let one = r#"{"MountPoint":"C:","VolumeType":"OperatingSystem","ProtectionStatus":"On","VolumeStatus":"FullyEncrypted","EncryptionPercentage":100,"EncryptionMethod":"XtsAes256"}"#;
        let v = parse_bitlocker_volumes(one).unwrap();
        assert_eq!(v[0].kind, "OperatingSystem");
        assert_eq!(v[0].percent, Some(100.0));
        assert_eq!(evaluate(&v, &Ok(vec!["C:".into()]), BACKEND, one).status, CheckStatus::Pass);
        // A fixed drive BitLocker does not list may be unencrypted.
        let f = evaluate(&v, &Ok(vec!["C:".into(), "D:".into()]), BACKEND, one);
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("fixed drive D: is not among BitLocker's volumes"));
        assert_eq!(evaluate(&v, &Err("timeout".into()), BACKEND, one).status, CheckStatus::Unknown);
    }

    #[test]
    fn hardware_encryption_is_not_vouched_for() {
        let one = r#"{"MountPoint":"C:","VolumeType":0,"ProtectionStatus":1,"VolumeStatus":1,"EncryptionPercentage":100,"EncryptionMethod":5,"KeyProtectors":[3,1]}"#;
        let v = parse_bitlocker_volumes(one).unwrap();
        assert_eq!(
            (v[0].method.as_str(), v[0].key_protectors.clone()),
            ("Hardware", vec!["RecoveryPassword".to_string(), "Tpm".to_string()])
        );
        let f = evaluate(&v, &Ok(vec!["C:".into()]), BACKEND, one);
        assert_eq!(f.status, CheckStatus::Unknown);
        assert!(f.reason.unwrap().contains("hardware encryption"));
    }

    #[test]
    fn manage_bde_suspension_for_some_restarts_is_off() {
        let text = "Volume C: [OS]\n[OS Volume]\n\n    Conversion Status:    Fully Encrypted\n    Percentage Encrypted: 100.0%\n    Encryption Method:    XTS-AES 128\n    Protection Status:    Protection Off (1 reboots left)\n    Lock Status:          Unlocked\n    Key Protectors:\n        TPM\n        Numerical Password\n";
        let v = parse_manage_bde(text).unwrap();
        assert_eq!(v[0].protection, "Off");
        assert_eq!(v[0].key_protectors, vec!["TPM", "Numerical Password"]);
        let f = evaluate(&v, &Ok(vec!["C:".into()]), BACKEND_MANAGE_BDE, text);
        assert_eq!(f.status, CheckStatus::Fail);
    }

    #[test]
    fn locked_data_volume_is_unknown_not_pass() {
        let vols = r#"[{"MountPoint":"C:","VolumeType":0,"ProtectionStatus":1,"VolumeStatus":1,"EncryptionPercentage":100,"EncryptionMethod":6},
                       {"MountPoint":"D:","VolumeType":1,"ProtectionStatus":2,"VolumeStatus":1,"EncryptionPercentage":null,"EncryptionMethod":6}]"#;
        let v = parse_bitlocker_volumes(vols).unwrap();
        assert_eq!(
            evaluate(&v, &Ok(vec!["C:".into(), "D:".into()]), BACKEND, vols).status,
            CheckStatus::Unknown
        );
    }
}
