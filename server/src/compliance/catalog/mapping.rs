//! Checks and check → requirement rows: what a check is (its deviation,
//! threats, rating and protection goals), how a check relates to a
//! requirement, and the rows the catalog holds, from the mapping set or an
//! imported collection.
//!
//! Invariants: a row names a declared check and a requirement (never a
//! module), a known relationship and a one-line rationale; a pair is mapped
//! once; every row added is indexed by check and by requirement.

use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError};
use super::{Impact, Likelihood};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckInfo {
    pub id: String,
    pub title: String,
    /// What a failure of the check means, used as the risk title.
    pub deviation: String,
    /// BSI 200-3 elementary threats a failure of this check exposes.
    pub threats: Vec<String>,
    pub likelihood: Likelihood,
    pub impact: Impact,
    /// Protection goals a failure threatens (confidentiality, integrity, availability).
    pub goals: Vec<String>,
}

/// What the check measures compared with what the control asks for, read
/// as "the check is a ___ of the control".
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    Equal,
    Subset,
    Superset,
    Intersect,
}

impl Relationship {
    pub fn parse(name: &str) -> Option<Relationship> {
        Some(match name {
            "equal" => Relationship::Equal,
            "subset" => Relationship::Subset,
            "superset" => Relationship::Superset,
            "intersect" => Relationship::Intersect,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Equal => "equal",
            Relationship::Subset => "subset",
            Relationship::Superset => "superset",
            Relationship::Intersect => "intersect",
        }
    }

    /// A passing check shows the whole control met (equal, superset); a
    /// subset or intersect shows only the part the check measures.
    pub fn covers_fully(self) -> bool {
        matches!(self, Relationship::Equal | Relationship::Superset)
    }
}

/// How much of a requirement its mapped checks measure. Evaluation does not
/// use it (a requirement is satisfied when its checks pass); it tells the
/// reader what "satisfied" rests on.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Some check is equal to or a superset of the requirement.
    Full,
    /// Every check measures only part of it (subset or intersect).
    Partial,
}

/// Where a mapping row comes from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A row of the mapping set (`mappings.toml`).
    MappingSet,
    /// A 2013 control answered through its successors (ISO/IEC 27002:2022 Annex B).
    Crosswalk,
    /// Derived from an imported OSCAL mapping collection.
    Imported,
}

/// One check → requirement row as the catalog holds and serves it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckMapping {
    pub check: String,
    pub requirement: String,
    pub relationship: Relationship,
    pub rationale: String,
    pub origin: Origin,
}

/// A mapping row as written (in `mappings.toml`, or derived from an
/// imported collection) before it is validated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub check: String,
    pub control: String,
    pub relationship: String,
    pub rationale: String,
}

/// The field of a mapping row an error is about.
#[derive(Debug, Clone, Copy)]
pub(super) enum RowField {
    Check,
    Control,
    Relationship,
    Rationale,
}

/// Why a rationale is unfit, if it is: the API and the reports show it as
/// one line of its own.
fn rationale_fault(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("is empty; say why the check supports the control")
    } else if text.contains(['\n', '\r']) {
        Some("spans more than one line; keep it to one")
    } else {
        None
    }
}

impl Catalog {
    /// A mapping row checked against the catalog: a declared check, a
    /// requirement (not a module), a known relationship and a one-line
    /// rationale. The error says which field is at fault.
    pub(super) fn checked_row(
        &self,
        check: String,
        control: String,
        relationship: &str,
        rationale: String,
        origin: Origin,
    ) -> Result<CheckMapping, (CatalogError, RowField)> {
        if !self.checks.contains_key(&check) {
            return Err((CatalogError::UnknownCheck(check), RowField::Check));
        }
        if self.module(&control).is_some() {
            return Err((CatalogError::MappedModule { check, module: control }, RowField::Control));
        }
        if self.control(&control).is_none() {
            return Err((CatalogError::UnknownControl { check, control }, RowField::Control));
        }
        let Some(relationship) = Relationship::parse(relationship) else {
            let found = relationship.to_string();
            return Err((CatalogError::Relationship { check, control, found }, RowField::Relationship));
        };
        if let Some(why) = rationale_fault(&rationale) {
            return Err((CatalogError::Rationale { check, control, why }, RowField::Rationale));
        }
        Ok(CheckMapping { check, requirement: control, relationship, rationale, origin })
    }

    /// Whether a row maps `check` to `requirement` already.
    pub(super) fn maps(&self, check: &str, requirement: &str) -> bool {
        self.by_control.get(requirement).is_some_and(|c| c.iter().any(|x| x == check))
    }

    pub(super) fn add_row(&mut self, row: CheckMapping) {
        self.by_control.entry(row.requirement.clone()).or_default().push(row.check.clone());
        self.by_check.entry(row.check.clone()).or_default().push((row.requirement.clone(), row.relationship));
        self.mappings.push(row);
    }

    /// Adds check → control rows derived from an imported mapping
    /// collection (see [`crate::compliance::mapping_import`]); `label` names the
    /// collection in the mapping version results carry. A pair the catalog
    /// maps already keeps its row.
    pub fn with_mappings(mut self, rows: Vec<Mapping>, label: &str) -> Result<Catalog, CatalogError> {
        for map in rows {
            let mapping = self
                .checked_row(map.check, map.control, &map.relationship, map.rationale, Origin::Imported)
                .map_err(|(e, _)| e)?;
            if !self.maps(&mapping.check, &mapping.requirement) {
                self.add_row(mapping);
            }
        }
        self.mapping_version = format!("{} + {label}", self.mapping_version);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::catalog::test_support::{BUILTIN_CATALOG, BUILTIN_MAPPINGS, CAT, mapping};

    #[test]
    fn a_pair_mapped_twice_is_refused() {
        let twice = format!(
            "{}\n[[mapping]]\ncheck = \"firewall\"\ncontrol = \"iso27001:2022/A.8.20\"\nrelationship = \"equal\"\nrationale = \"again\"\n",
            mapping("firewall", "iso27001:2022/A.8.20", "subset")
        );
        assert_eq!(
            Catalog::from_toml(CAT, &twice).unwrap_err(),
            CatalogError::DuplicateMapping {
                check: "firewall".into(),
                control: "iso27001:2022/A.8.20".into()
            }
        );
        let path = std::path::Path::new("m.toml");
        let e = Catalog::from_toml(BUILTIN_CATALOG, &twice).map(|_| ()).unwrap_err();
        assert!(matches!(e, CatalogError::DuplicateMapping { .. }), "{e}");
        let builtin_twice = format!(
            "{BUILTIN_MAPPINGS}\n[[mapping]]\ncheck = \"firewall\"\ncontrol = \"iso27001:2022/A.8.20\"\nrelationship = \"equal\"\nrationale = \"again\"\n"
        );
        let e = Catalog::with_mapping_file(path, &builtin_twice).unwrap_err();
        assert_eq!(e.line, Some(builtin_twice.lines().count() - 2), "{e}");
    }

    #[test]
    fn every_mapping_keeps_its_relationship_and_rationale() {
        let cat = Catalog::builtin().unwrap();
        let own: Vec<&CheckMapping> =
            cat.mappings().iter().filter(|m| m.origin == Origin::MappingSet).collect();
        assert_eq!(own.len(), BUILTIN_MAPPINGS.matches("[[mapping]]").count());
        let fw = own
            .iter()
            .find(|m| m.check == "firewall" && m.requirement == "bsi-grundschutz:2023/SYS.2.1.A31")
            .unwrap();
        assert_eq!(fw.relationship, Relationship::Equal);
        assert_eq!(
            fw.rationale,
            "Asks for a local packet filter on clients that limits incoming connections."
        );
        for m in cat.mappings() {
            assert!(rationale_fault(&m.rationale).is_none(), "{m:?}");
            assert!(cat.control(&m.requirement).is_some(), "{m:?}");
            assert!(cat.controls_for_check(&m.check).contains(&(m.requirement.clone(), m.relationship)));
        }
        // Rows and the per-check and per-control indexes agree exactly.
        let rows: usize = cat.checks.keys().map(|c| cat.controls_for_check(c).len()).sum();
        assert_eq!(rows, cat.mappings().len());
        // 2013 controls are answered through the crosswalk, saying through which 2022 control.
        let old = cat
            .mappings()
            .iter()
            .find(|m| m.check == "os_patches" && m.requirement == "iso27001:2013/A.12.6.1")
            .unwrap();
        assert_eq!((old.origin, old.relationship), (Origin::Crosswalk, Relationship::Intersect));
        assert!(old.rationale.contains("iso27001:2022/A.8.8"), "{}", old.rationale);
    }
}
