//! What a record says about the host it was collected on: OS, version,
//! kernel, architecture, display name and tags, read through the `Host`.

use custos_proto::evidence::HostInfo;

use crate::host::Host;

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// OS name, version and kernel, read through the host, with the configured tags.
pub fn describe_host(host: &dyn Host, display_name: Option<String>, tags: &[String]) -> HostInfo {
    let os_release = host.read_text("/etc/os-release").unwrap_or_default();
    let field = |key: &str| crate::collect::os_support::linux::os_release_field(&os_release, key);
    HostInfo {
        os: std::env::consts::OS.to_string(),
        os_version: field("PRETTY_NAME").or_else(|| field("NAME")).unwrap_or_default(),
        kernel: host
            .read_text("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        display_name,
        tags: tags.to_vec(),
    }
}

/// The host's name as the kernel knows it (used as the default display name).
pub fn hostname(host: &dyn Host) -> Option<String> {
    host.read_text("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}
