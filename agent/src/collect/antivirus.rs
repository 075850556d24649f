//! The `antivirus` check: is an anti-malware or EDR product present, active
//! and current?
//!
//! ClamAV: the daemon runs (`systemctl is-active clamav-daemon` or `pidof
//! clamd`) and the signature database is fresh, read from the 512-byte
//! header of `daily.cvd` / `daily.cld` (`ClamAV-VDB:<date>:<version>:...:
//! <build time>`). Microsoft Defender for Endpoint: `mdatp health --output
//! json` (healthy, real-time protection, definitions). CrowdStrike Falcon:
//! `falconctl -g --rfm-state --version` and the sensor service. SentinelOne:
//! `sentinelctl version` and the agent service. Sophos Protection for Linux
//! and ESET Server Security / Endpoint Antivirus: the install directory and
//! the service (`sophos-spl`, `efs`, `eea`). AppArmor and SELinux are not
//! anti-malware and are never counted.
//!
//! Windows: Defender from `Get-MpComputerStatus` (real-time protection,
//! signature age) and other products from Security Center. macOS: XProtect
//! (version and last update) and Defender for Endpoint.

pub mod linux;
pub mod macos;
pub mod windows;

/// Signatures older than this are outdated.
pub const MAX_SIGNATURE_AGE_HOURS: i64 = 72;
