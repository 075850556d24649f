//! The names an OSCAL assessment-results document of a bundle is written
//! with and read back by: Custos's property namespace and property names,
//! and the name-based (v5) UUIDs of hosts and observations. The exporter
//! writes with them and the verifier recomputes them; neither decides
//! anything here.

use uuid::Uuid;

/// Namespace of Custos's own properties and of the risk facets.
pub const NS: &str = "https://custos.dev/ns/oscal";

/// Property names (in [`NS`]) the verifier reads back.
pub const PROP_REQUIREMENT: &str = "requirement";
pub const PROP_HOST_STANDING: &str = "host-standing";
pub const PROP_AGENT: &str = "agent-id";
pub const PROP_CHECK: &str = "check";
pub const PROP_STATUS: &str = "signed-status";
pub const PROP_SEQ: &str = "record-seq";
pub const PROP_DIGEST: &str = "record-digest";

/// The UUID namespace of every identifier in the document.
pub fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("{NS}/assessment-results").as_bytes())
}

/// The identifier of the `kind` (an OSCAL object type) called `name`.
pub fn named_uuid(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&namespace(), format!("{kind}:{name}").as_bytes())
}

/// The inventory item of a host: the same for the same agent in every bundle.
pub fn host_uuid(agent: &str) -> Uuid {
    named_uuid("inventory-item", agent)
}

/// The observation of `check` on `agent` as signed in record `seq`.
pub fn observation_uuid(agent: &str, check: &str, seq: u64) -> Uuid {
    named_uuid("observation", &format!("{agent}/{seq}/{check}"))
}

/// An OSCAL token (`[_\p{L}][\p{L}\p{N}._-]*`) for a control id such as
/// `iso27001:2022/A.8.20` (`iso27001_2022_A.8.20`); the exact id is in the
/// finding's `requirement` property.
pub fn control_token(control: &str) -> String {
    let mut out: String =
        control.chars().map(|c| if c.is_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}
