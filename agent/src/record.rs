//! Builds the signed record (in-toto Statement in a DSSE envelope) from the
//! check results of one collection, and describes the host it ran on.

use custos_proto::evidence::{CheckResult, Envelope, EvidencePredicate, HostInfo, Statement, sign_envelope};
use ed25519_dalek::SigningKey;

use crate::host::Host;
use crate::spool::ChainTip;

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

/// Signs one record for the chain position `tip`.
pub fn sign_record(
    key: &SigningKey,
    agent_id: &str,
    tip: &ChainTip,
    collected_at: &str,
    host: HostInfo,
    checks: Vec<CheckResult>,
) -> Envelope {
    let predicate = EvidencePredicate {
        agent_id: agent_id.to_string(),
        seq: tip.seq,
        prev: tip.prev.map(hex::encode),
        collected_at: collected_at.to_string(),
        agent_version: AGENT_VERSION.to_string(),
        host,
        gap: tip.gap.clone(),
        checks,
    };
    let statement = Statement::new(predicate, key.verifying_key().as_bytes());
    sign_envelope(statement.to_payload(), key)
}
