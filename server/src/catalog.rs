//! The control catalog and the check → control mappings, loaded from the
//! data files `server/data/catalog.toml` and `server/data/mappings.toml`
//! (embedded at build time) and validated.
//!
//! Invariants: every control id is edition-qualified (`framework/edition`
//! prefix of a known framework), unique, and every mapping resolves to a
//! catalog control and a declared check. Mapping is data, not code.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::risk::{Impact, Likelihood};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CatalogError {
    #[error("catalog data is not valid TOML: {0}")]
    Toml(String),
    #[error("control id {0:?} is not qualified with a known framework (e.g. iso27001:2022/A.8.24)")]
    Unqualified(String),
    #[error("control id {0:?} appears twice")]
    Duplicate(String),
    #[error("framework id {0:?} is not name:edition (lowercase name, e.g. bsi-gspp-kernel:2026-07-29)")]
    FrameworkId(String),
    #[error("framework {0:?} exists already")]
    FrameworkTaken(String),
    #[error("mapping of check {check:?} names unknown control {control:?}")]
    UnknownControl { check: String, control: String },
    #[error("mapping names undeclared check {0:?}")]
    UnknownCheck(String),
    #[error(
        "mapping {check:?} → {control:?} has relationship {found:?}; expected equal, subset, superset or intersect"
    )]
    Relationship { check: String, control: String, found: String },
    #[error(
        "check {check:?} names protection goal {goal:?}; expected confidentiality, integrity or availability"
    )]
    Goal { check: String, goal: String },
    #[error("predecessor id {0:?} must be qualified with iso27001:2013/")]
    Predecessor(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub group: Option<String>,
    /// BSI requirement level: B (Basis), S (Standard), H (erhöht).
    #[serde(default)]
    pub level: Option<String>,
    /// Ids of the same control in an earlier edition.
    #[serde(default)]
    pub predecessors: Vec<String>,
}

impl Control {
    /// The framework part of the id (`iso27001:2022`).
    pub fn framework(&self) -> &str {
        self.id.split_once('/').map_or("", |(f, _)| f)
    }
}

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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    Equal,
    Subset,
    Superset,
    Intersect,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub check: String,
    pub control: String,
    pub relationship: String,
    pub rationale: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    framework: Vec<Framework>,
    control: Vec<Control>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    /// The mapping set's version, named by every evaluation it produces.
    version: String,
    check: Vec<CheckInfo>,
    #[serde(default)]
    mapping: Vec<Mapping>,
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    mapping_version: String,
    frameworks: Vec<Framework>,
    controls: Vec<Control>,
    checks: BTreeMap<String, CheckInfo>,
    by_check: BTreeMap<String, Vec<(String, Relationship)>>,
    by_control: BTreeMap<String, Vec<String>>,
}

/// `name:edition`: lowercase letters, digits and `-`, a colon, then an
/// edition of letters, digits, `.` and `-`.
pub fn is_framework_id(id: &str) -> bool {
    let Some((name, edition)) = id.split_once(':') else { return false };
    !name.is_empty()
        && !edition.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && edition.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

const BUILTIN_CATALOG: &str = include_str!("../data/catalog.toml");
const BUILTIN_MAPPINGS: &str = include_str!("../data/mappings.toml");

impl Catalog {
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Self::from_toml(BUILTIN_CATALOG, BUILTIN_MAPPINGS)
    }

    pub fn from_toml(catalog: &str, mappings: &str) -> Result<Catalog, CatalogError> {
        let c: CatalogFile = toml::from_str(catalog).map_err(|e| CatalogError::Toml(e.to_string()))?;
        let m: MappingFile = toml::from_str(mappings).map_err(|e| CatalogError::Toml(e.to_string()))?;
        let known: BTreeSet<&str> = c.framework.iter().map(|f| f.id.as_str()).collect();
        let mut ids = BTreeSet::new();
        for control in &c.control {
            let qualified =
                control.id.split_once('/').is_some_and(|(fw, rest)| known.contains(fw) && !rest.is_empty());
            if !qualified {
                return Err(CatalogError::Unqualified(control.id.clone()));
            }
            if !ids.insert(control.id.clone()) {
                return Err(CatalogError::Duplicate(control.id.clone()));
            }
            if let Some(p) = control.predecessors.iter().find(|p| !p.starts_with("iso27001:2013/")) {
                return Err(CatalogError::Predecessor(p.clone()));
            }
        }
        for c in &m.check {
            if let Some(g) = c.goals.iter().find(|g| !crate::risk::GOALS.contains(&g.as_str())) {
                return Err(CatalogError::Goal { check: c.id.clone(), goal: g.clone() });
            }
        }
        let checks: BTreeMap<String, CheckInfo> = m.check.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut by_check: BTreeMap<String, Vec<(String, Relationship)>> = BTreeMap::new();
        let mut by_control: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for map in m.mapping {
            if !checks.contains_key(&map.check) {
                return Err(CatalogError::UnknownCheck(map.check));
            }
            if !ids.contains(&map.control) {
                return Err(CatalogError::UnknownControl { check: map.check, control: map.control });
            }
            let rel = match map.relationship.as_str() {
                "equal" => Relationship::Equal,
                "subset" => Relationship::Subset,
                "superset" => Relationship::Superset,
                "intersect" => Relationship::Intersect,
                _ => {
                    return Err(CatalogError::Relationship {
                        check: map.check,
                        control: map.control,
                        found: map.relationship,
                    });
                }
            };
            by_control.entry(map.control.clone()).or_default().push(map.check.clone());
            by_check.entry(map.check).or_default().push((map.control, rel));
        }
        if m.version.trim().is_empty() {
            return Err(CatalogError::Toml("mappings: version must not be empty".into()));
        }
        Ok(Catalog {
            mapping_version: m.version,
            frameworks: c.framework,
            controls: c.control,
            checks,
            by_check,
            by_control,
        })
    }

    /// Adds an imported OSCAL catalog as framework `framework` (an
    /// edition-qualified id such as `bsi-gspp-kernel:2026-07-29`); its
    /// controls become `<framework>/<OSCAL id>`. No check maps to them yet, so
    /// they show as not assessed, visible next to the built-in ones.
    pub fn with_oscal(
        mut self,
        framework: &str,
        name: &str,
        oscal: &crate::oscal::OscalCatalog,
    ) -> Result<Catalog, CatalogError> {
        if !is_framework_id(framework) {
            return Err(CatalogError::FrameworkId(framework.to_string()));
        }
        if self.frameworks.iter().any(|f| f.id == framework) {
            return Err(CatalogError::FrameworkTaken(framework.to_string()));
        }
        self.frameworks.push(Framework { id: framework.to_string(), name: name.to_string() });
        for c in &oscal.controls {
            self.controls.push(Control {
                id: format!("{framework}/{}", c.id),
                title: c.title.clone(),
                group: c.groups.first().cloned(),
                level: None,
                predecessors: Vec::new(),
            });
        }
        Ok(self)
    }

    /// The version of the check → control mapping set in use.
    pub fn mapping_version(&self) -> &str {
        &self.mapping_version
    }

    pub fn frameworks(&self) -> Vec<String> {
        self.frameworks.iter().map(|f| f.id.clone()).collect()
    }

    pub fn controls(&self) -> &[Control] {
        &self.controls
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

    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_all_annex_a_controls_and_resolving_mappings() {
        let cat = Catalog::builtin().unwrap();
        let iso: Vec<&Control> = cat.controls().iter().filter(|c| c.framework() == "iso27001:2022").collect();
        assert_eq!(iso.len(), 93);
        for (theme, n) in [("A.5.", 37), ("A.6.", 8), ("A.7.", 14), ("A.8.", 34)] {
            let count =
                iso.iter().filter(|c| c.id.split('/').nth(1).is_some_and(|i| i.starts_with(theme))).count();
            assert_eq!(count, n, "{theme}");
        }
        assert_eq!(cat.control("iso27001:2022/A.8.24").unwrap().title, "Use of cryptography");
        assert_eq!(
            cat.control("iso27001:2022/A.8.24").unwrap().predecessors,
            vec!["iso27001:2013/A.10.1.1", "iso27001:2013/A.10.1.2"]
        );
        for check in ["firewall", "disk_encryption", "os_patches", "antivirus"] {
            let fws: BTreeSet<&str> = cat
                .controls_for_check(check)
                .iter()
                .map(|(c, _)| c.split('/').next().unwrap_or(""))
                .collect();
            assert_eq!(fws.len(), 4, "{check} maps to every framework: {fws:?}");
            assert!(!cat.check(check).unwrap().threats.is_empty());
        }
        for check in cat.checks.keys() {
            assert!(
                cat.controls_for_check(check).iter().any(|(c, _)| c.starts_with("iso27001:2022/")),
                "{check} supports no ISO/IEC 27001:2022 control"
            );
        }
        assert_eq!(
            cat.checks_for_control("iso27001:2022/A.8.1"),
            ["firewall", "disk_encryption", "screen_lock"]
        );
        assert!(cat.checks_for_control("iso27001:2022/A.6.3").is_empty());
    }

    const CAT: &str = r#"
[[framework]]
id = "iso27001:2022"
name = "ISO"
[[control]]
id = "iso27001:2022/A.8.20"
title = "Networks security"
"#;
    const CHECK: &str = r#"
version = "test-1"
[[check]]
id = "firewall"
title = "fw"
deviation = "fw off"
threats = []
likelihood = "mittel"
impact = "begrenzt"
goals = ["integrity"]
"#;

    fn mapping(check: &str, control: &str, rel: &str) -> String {
        format!(
            "{CHECK}\n[[mapping]]\ncheck = \"{check}\"\ncontrol = \"{control}\"\nrelationship = \"{rel}\"\nrationale = \"r\"\n"
        )
    }

    #[test]
    fn bad_data_is_refused_naming_the_offending_id() {
        assert!(Catalog::from_toml(CAT, &mapping("firewall", "iso27001:2022/A.8.20", "subset")).is_ok());
        assert_eq!(
            Catalog::from_toml(CAT, &mapping("firewall", "iso27001:2022/A.9.9", "subset")).unwrap_err(),
            CatalogError::UnknownControl { check: "firewall".into(), control: "iso27001:2022/A.9.9".into() }
        );
        assert_eq!(
            Catalog::from_toml(CAT, &mapping("dns", "iso27001:2022/A.8.20", "subset")).unwrap_err(),
            CatalogError::UnknownCheck("dns".into())
        );
        assert!(matches!(
            Catalog::from_toml(CAT, &mapping("firewall", "iso27001:2022/A.8.20", "related")).unwrap_err(),
            CatalogError::Relationship { .. }
        ));
        let unqualified = CAT.replace("iso27001:2022/A.8.20", "A.8.20");
        assert_eq!(
            Catalog::from_toml(&unqualified, CHECK).unwrap_err(),
            CatalogError::Unqualified("A.8.20".into())
        );
        let other_edition = CAT.replace("iso27001:2022/A.8.20", "iso27001:2013/A.13.1.1");
        assert_eq!(
            Catalog::from_toml(&other_edition, CHECK).unwrap_err(),
            CatalogError::Unqualified("iso27001:2013/A.13.1.1".into())
        );
        let dup = format!("{CAT}\n[[control]]\nid = \"iso27001:2022/A.8.20\"\ntitle = \"again\"\n");
        assert_eq!(
            Catalog::from_toml(&dup, CHECK).unwrap_err(),
            CatalogError::Duplicate("iso27001:2022/A.8.20".into())
        );
        assert!(matches!(Catalog::from_toml("not toml [", CHECK), Err(CatalogError::Toml(_))));
        assert_eq!(
            Catalog::from_toml(CAT, &CHECK.replace("\"integrity\"", "\"secrecy\"")).unwrap_err(),
            CatalogError::Goal { check: "firewall".into(), goal: "secrecy".into() }
        );
    }
}
