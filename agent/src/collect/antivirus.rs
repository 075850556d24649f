//! The `antivirus` check: is an anti-malware or EDR product present, active
//! and current?
//!
//! ClamAV: the daemon runs (`systemctl is-active clamav-daemon`, or a
//! process named clamd whose executable is `/usr/sbin/clamd`), it scans on
//! access, and the signature database is fresh, read from the 512-byte
//! header of `daily.cvd` / `daily.cld` (`ClamAV-VDB:<date>:<version>:...:
//! <build time>`). Microsoft Defender for Endpoint: `mdatp health --output
//! json` (healthy, real-time protection, definitions). CrowdStrike Falcon:
//! `falconctl -g --rfm-state --version` and the sensor service. SentinelOne:
//! `sentinelctl version` and the agent service. Sophos Protection for Linux:
//! the `sophos-spl` service, on-access scanning from the status SPL reports
//! to Sophos Central (`base/mcs/status/SAV_status.xml`) and the time of its
//! last successful update (`ALC_status.xml`). ESET Server Security /
//! Endpoint Antivirus: the `efs` / `eea` service, activation (`lic -s`) and
//! the detection engine's date (`upd --list-modules`); ESET prints the
//! real-time protection state nowhere, so ESET is at best `unknown`.
//! AppArmor and SELinux are not anti-malware and are never counted.
//!
//! Windows: Defender from `Get-MpComputerStatus` (real-time protection,
//! signature age) and other products from Security Center. macOS: XProtect
//! (version and last update) and Defender for Endpoint.

use serde_json::{Value, json};

pub mod eset;
pub mod linux;
pub mod macos;
pub mod windows;

/// Signatures older than this are outdated.
pub const MAX_SIGNATURE_AGE_HOURS: i64 = 72;

/// One anti-malware or EDR product found on a host, on any OS.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub name: String,
    /// Where the state comes from when a product has several sources
    /// (Windows: `Get-MpComputerStatus` or `SecurityCenter2`).
    pub source: Option<&'static str>,
    pub version: Option<String>,
    /// `Some(true)` running / protecting, `Some(false)` off, `None` unknown.
    pub active: Option<bool>,
    pub signatures_age_hours: Option<i64>,
    /// Why the product is not counted as protecting, if it is not.
    pub problem: Option<String>,
}

impl Product {
    /// A product with only its name known yet.
    pub fn named(name: impl Into<String>) -> Product {
        Product {
            name: name.into(),
            source: None,
            version: None,
            active: None,
            signatures_age_hours: None,
            problem: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"name": self.name, "version": self.version, "active": self.active,
                           "signatures_age_hours": self.signatures_age_hours, "problem": self.problem});
        if let Some(source) = self.source {
            v["source"] = json!(source);
        }
        v
    }
}
