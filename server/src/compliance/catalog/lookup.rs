//! What callers ask of a loaded catalog: its frameworks, modules and
//! controls, the mapping rows and their indexes by check and by
//! requirement, and how much of a requirement its checks cover.

use super::{Catalog, CheckInfo, CheckMapping, Control, Coverage, Module, Relationship};

impl Catalog {
    /// The version of the check → control mapping set in use.
    pub fn mapping_version(&self) -> &str {
        &self.mapping_version
    }

    pub fn frameworks(&self) -> Vec<String> {
        self.frameworks.iter().map(|f| f.id.clone()).collect()
    }

    /// The requirements and controls that are evaluated (modules are not).
    pub fn controls(&self) -> &[Control] {
        &self.controls
    }

    /// The modules of frameworks organised in modules, in catalog order.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    pub fn module(&self, id: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.id == id)
    }

    /// The requirements filed under module `id`, in catalog order.
    pub fn requirements_of(&self, id: &str) -> Vec<&Control> {
        self.controls.iter().filter(|c| c.module.as_deref() == Some(id)).collect()
    }

    /// Every check → requirement row with its relationship, rationale and
    /// origin, in the order added.
    pub fn mappings(&self) -> &[CheckMapping] {
        &self.mappings
    }

    /// How much of `requirement` its checks measure; `None` when no check
    /// maps to it.
    pub fn coverage(&self, requirement: &str) -> Option<Coverage> {
        let checks = self.by_control.get(requirement)?;
        let full = checks.iter().any(|check| {
            self.controls_for_check(check).iter().any(|(r, rel)| r == requirement && rel.covers_fully())
        });
        Some(if full { Coverage::Full } else { Coverage::Partial })
    }

    /// Controls a check supports, with the relationship.
    pub fn controls_for_check(&self, check: &str) -> &[(String, Relationship)] {
        self.by_check.get(check).map_or(&[], Vec::as_slice)
    }

    /// Checks that provide evidence for a control.
    pub fn checks_for_control(&self, control: &str) -> &[String] {
        self.by_control.get(control).map_or(&[], Vec::as_slice)
    }

    pub fn check(&self, id: &str) -> Option<&CheckInfo> {
        self.checks.get(id)
    }

    /// The declared checks, by id.
    pub fn checks(&self) -> impl Iterator<Item = &CheckInfo> {
        self.checks.values()
    }

    /// Whether `prefix` is a control id or the start of one
    /// (`iso27001:2022/` for a framework, `iso27001:2022/A.8` for a theme).
    pub fn knows_prefix(&self, prefix: &str) -> bool {
        self.controls.iter().any(|c| c.id.starts_with(prefix))
    }

    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_full_only_through_an_equal_or_superset_mapping() {
        let cat = Catalog::builtin().unwrap();
        // firewall is equal to SYS.2.1.A31; only a subset of SYS.3.1.A3.
        assert_eq!(cat.coverage("bsi-grundschutz:2023/SYS.2.1.A31"), Some(Coverage::Full));
        assert_eq!(cat.coverage("bsi-grundschutz:2023/SYS.3.1.A3"), Some(Coverage::Partial));
        // disk_encryption is a superset of SYS.2.3.A19 (disk or file encryption).
        assert_eq!(cat.coverage("bsi-grundschutz:2023/SYS.2.3.A19"), Some(Coverage::Full));
        // A.8.1: firewall (intersect), disk_encryption and screen_lock (subset).
        assert_eq!(cat.coverage("iso27001:2022/A.8.1"), Some(Coverage::Partial));
        assert_eq!(cat.coverage("iso27001:2013/A.12.6.1"), Some(Coverage::Partial));
        assert_eq!(cat.coverage("iso27001:2022/A.6.3"), None);
        assert_eq!(cat.coverage("bsi-grundschutz:2023/NET.3.2"), None);
    }
}
