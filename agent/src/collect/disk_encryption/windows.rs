//! The Windows backend of the `disk_encryption` check: BitLocker.
//!
//! Reads `Get-BitLockerVolume` as JSON (`MountPoint`, `VolumeType` 0
//! OperatingSystem / 1 Data, `ProtectionStatus` 0 Off / 1 On / 2 Unknown,
//! `VolumeStatus`, `EncryptionPercentage`, `EncryptionMethod`; enums print as
//! numbers, names are accepted too), plus whether the drive letter is a
//! removable disk (`Win32_LogicalDisk` `DriveType` 2), which the BitLocker
//! module does not tell. When the cmdlet is missing or fails for another
//! reason than access, falls back to `manage-bde -status` (English text).
//!
//! Status rule: pass only when every OperatingSystem and fixed Data volume is
//! 100 % encrypted with ProtectionStatus On. Encrypted but protection Off
//! (BitLocker suspended, key stored in the clear) is fail, as is any
//! unencrypted or partly encrypted volume. Removable volumes are listed but
//! out of scope. No operating-system volume in the list, protection status
//! Unknown (volume locked) or unreadable output is unknown; access denied
//! (agent not elevated) is unknown "needs administrator".

use serde_json::{Value, json};

use crate::collect::windows::{Unavailable, console, json_bool, json_i64, json_items, json_str, powershell};
use crate::collect::{Context, Finding};
use crate::host::Host;
use custos_proto::evidence::CheckStatus;

const BACKEND: &str = "bitlocker";
const BACKEND_MANAGE_BDE: &str = "manage-bde";

/// The BitLocker state of every volume; enums print as numbers. The BitLocker
/// module only knows OperatingSystem and Data volumes, so removable drives
/// (USB sticks, SD cards) are marked from `Win32_LogicalDisk` `DriveType` 2.
pub const VOLUME_SCRIPT: &str = "$ErrorActionPreference='Stop'; $removable = @(Get-CimInstance -ClassName Win32_LogicalDisk -Filter 'DriveType=2' | ForEach-Object { $_.DeviceID }); ConvertTo-Json -InputObject @(Get-BitLockerVolume | Select-Object MountPoint,VolumeType,ProtectionStatus,VolumeStatus,EncryptionPercentage,EncryptionMethod,@{n='Removable';e={$removable -contains $_.MountPoint}})";

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
}

impl Volume {
    fn in_scope(&self) -> bool {
        self.kind != "Removable"
    }
    fn to_json(&self) -> Value {
        json!({"mount_point": self.mount_point, "volume_type": self.kind, "protection": self.protection,
               "volume_status": self.status, "encryption_percentage": self.percent, "encryption_method": self.method})
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

/// Parses the JSON of [`VOLUME_SCRIPT`].
pub fn parse_bitlocker_volumes(text: &str) -> Result<Vec<Volume>, String> {
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
            }
        })
        .collect())
}

/// Parses `manage-bde -status` (English): one `Volume X: [label]` block per
/// volume with `[OS Volume]` / `[Data Volume]`, `Conversion Status`,
/// `Percentage Encrypted`, `Encryption Method` and `Protection Status`.
pub fn parse_manage_bde(text: &str) -> Result<Vec<Volume>, String> {
    let mut vols: Vec<Volume> = Vec::new();
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
            });
            continue;
        }
        let Some(v) = vols.last_mut() else { continue };
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
                v.protection = match value {
                    "Protection On" => "On".into(),
                    "Protection Off" => "Off".into(),
                    _ => "Unknown".into(),
                }
            }
            _ => {}
        }
    }
    if vols.is_empty() {
        return Err("manage-bde listed no volume (non-English output?)".into());
    }
    Ok(vols)
}

/// Decides the check from the volumes read by `backend`.
pub fn evaluate(vols: &[Volume], backend: &str, raw: &str) -> Finding {
    let scoped: Vec<&Volume> = vols.iter().filter(|v| v.in_scope()).collect();
    let protected =
        scoped.iter().filter(|v| v.protection == "On" && v.percent.is_some_and(|p| p >= 100.0)).count();
    let base = |status| {
        Finding::new(status, backend)
            .fact("volumes_in_scope", scoped.len())
            .fact("volumes_protected", protected)
            .fact("volumes", vols.iter().map(Volume::to_json).collect::<Vec<_>>())
            .with_raw(raw)
    };
    let mut problems = Vec::new();
    let mut unclear = Vec::new();
    for v in &scoped {
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
    }
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

/// Gathers and evaluates on a Windows host.
pub fn gather(host: &dyn Host, _ctx: &Context) -> Finding {
    let ps_problem = match powershell(host, VOLUME_SCRIPT) {
        Ok(text) => match parse_bitlocker_volumes(&text) {
            Ok(vols) if !vols.is_empty() => return evaluate(&vols, BACKEND, &text),
            Ok(_) => Unavailable::Failed("Get-BitLockerVolume listed no volume".into()),
            Err(e) => Unavailable::Failed(e),
        },
        // manage-bde needs the same rights: no point asking it.
        Err(e @ Unavailable::Denied(_)) => return e.unknown(BACKEND, "Get-BitLockerVolume"),
        Err(e) => e,
    };
    match console(host, "manage-bde", &["-status"]) {
        Ok(text) => match parse_manage_bde(&text) {
            Ok(vols) => evaluate(&vols, BACKEND_MANAGE_BDE, &text),
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
        assert_eq!(evaluate(&v, BACKEND, one).status, CheckStatus::Pass);
    }

    #[test]
    fn locked_data_volume_is_unknown_not_pass() {
        let vols = r#"[{"MountPoint":"C:","VolumeType":0,"ProtectionStatus":1,"VolumeStatus":1,"EncryptionPercentage":100,"EncryptionMethod":6},
                       {"MountPoint":"D:","VolumeType":1,"ProtectionStatus":2,"VolumeStatus":1,"EncryptionPercentage":null,"EncryptionMethod":6}]"#;
        let v = parse_bitlocker_volumes(vols).unwrap();
        assert_eq!(evaluate(&v, BACKEND, vols).status, CheckStatus::Unknown);
    }
}
