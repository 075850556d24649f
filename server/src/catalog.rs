//! The control catalog and the check → control mappings, loaded from the
//! data files `server/data/catalog.toml` and `server/data/mappings.toml`
//! (embedded at build time) and validated.
//!
//! Invariants: every control id is edition-qualified (`framework/edition`
//! prefix of a known framework), unique, and every mapping resolves to a
//! catalog control and a declared check. Mapping is data, not code.
//!
//! ISO/IEC 27001:2013 Annex A is kept as a framework of its own so that
//! auditors who still speak 2013 numbers get an answer: its controls carry
//! no check mappings; each is answered through its 2022 successors, the 2022
//! controls that name it in `predecessors` (ISO/IEC 27002:2022 Annex B).

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
    #[error("control {control:?} names predecessor {predecessor:?}, which is not a control of iso27001:2013")]
    UnknownPredecessor { control: String, predecessor: String },
    #[error(
        "control {control:?} names predecessor {predecessor:?}; only controls of a later ISO/IEC 27001 edition have 2013 predecessors"
    )]
    NotLaterEdition { control: String, predecessor: String },
}

/// The ISO/IEC 27001 edition that predecessor ids name.
pub const ISO_2013: &str = "iso27001:2013";

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
    /// Ids of the controls in the earlier edition (`iso27001:2013/...`) this
    /// control replaces, per the published correspondence.
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
    /// 2013 control id → the controls naming it as predecessor, in catalog order.
    successors: BTreeMap<String, Vec<String>>,
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

/// A mapping file that did not load: the file, the line where known, why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct MappingFileError {
    pub path: std::path::PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|at| text[..at].matches('\n').count() + 1)
}

const BUILTIN_CATALOG: &str = include_str!("../data/catalog.toml");
const BUILTIN_MAPPINGS: &str = include_str!("../data/mappings.toml");

impl Catalog {
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Self::from_toml(BUILTIN_CATALOG, BUILTIN_MAPPINGS)
    }

    /// The built-in catalog with an organisation's mapping file (which
    /// replaces the built-in mappings); errors name the file and the line.
    pub fn with_mapping_file(path: &std::path::Path, text: &str) -> Result<Catalog, MappingFileError> {
        let fail = |line: Option<usize>, message: String| MappingFileError {
            path: path.to_path_buf(),
            line,
            message,
        };
        if let Err(e) = toml::from_str::<MappingFile>(text) {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            return Err(fail(line, e.message().to_string()));
        }
        Self::from_toml(BUILTIN_CATALOG, text).map_err(|e| {
            let needle = match &e {
                CatalogError::UnknownControl { control, .. } => format!("\"{control}\""),
                CatalogError::UnknownCheck(check) => format!("check = \"{check}\""),
                CatalogError::Relationship { found, .. } => format!("\"{found}\""),
                CatalogError::Goal { goal, .. } => format!("\"{goal}\""),
                CatalogError::Toml(_) => "version".to_string(),
                other => format!("{other}"),
            };
            fail(line_of(text, &needle), e.to_string())
        })
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
            if let Some(p) = control.predecessors.iter().find(|p| !is_iso_2013(p)) {
                return Err(CatalogError::Predecessor(p.clone()));
            }
            // Only a later ISO edition replaces 2013 controls, so `successors`
            // never answers with a BSI, CIS or NIST id, nor a 2013 id itself.
            let later_iso = control.framework().starts_with("iso27001:") && control.framework() != ISO_2013;
            if !later_iso && let Some(p) = control.predecessors.first() {
                return Err(CatalogError::NotLaterEdition {
                    control: control.id.clone(),
                    predecessor: p.clone(),
                });
            }
        }
        // Predecessor ids are resolved only when the 2013 edition is loaded: a
        // catalog without it keeps them as plain references.
        let mut successors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if known.contains(ISO_2013) {
            for control in &c.control {
                for p in &control.predecessors {
                    if !ids.contains(p) {
                        return Err(CatalogError::UnknownPredecessor {
                            control: control.id.clone(),
                            predecessor: p.clone(),
                        });
                    }
                    let list = successors.entry(p.clone()).or_default();
                    if !list.contains(&control.id) {
                        list.push(control.id.clone());
                    }
                }
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
        // A 2013 control is assessed through its 2022 successors: the checks
        // that support them support it, as an intersection (the editions
        // regrouped the controls). No mapping row names a 2013 id directly.
        for (old, new) in &successors {
            let mut derived: Vec<String> = Vec::new();
            for check in new.iter().flat_map(|n| by_control.get(n).into_iter().flatten()) {
                if !derived.contains(check) {
                    derived.push(check.clone());
                }
            }
            for check in &derived {
                by_check.entry(check.clone()).or_default().push((old.clone(), Relationship::Intersect));
            }
            if !derived.is_empty() {
                by_control.insert(old.clone(), derived);
            }
        }
        Ok(Catalog {
            mapping_version: m.version,
            frameworks: c.framework,
            controls: c.control,
            checks,
            by_check,
            by_control,
            successors,
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

    /// Adds check → control rows derived from an imported mapping
    /// collection (see [`crate::mapping_import`]); `label` names the
    /// collection in the mapping version results carry.
    pub fn with_mappings(mut self, rows: Vec<Mapping>, label: &str) -> Result<Catalog, CatalogError> {
        for map in rows {
            if !self.checks.contains_key(&map.check) {
                return Err(CatalogError::UnknownCheck(map.check));
            }
            if self.control(&map.control).is_none() {
                return Err(CatalogError::UnknownControl { check: map.check, control: map.control });
            }
            let rel = match map.relationship.as_str() {
                "equal" => Relationship::Equal,
                "subset" => Relationship::Subset,
                "superset" => Relationship::Superset,
                _ => Relationship::Intersect,
            };
            let checks = self.by_control.entry(map.control.clone()).or_default();
            if !checks.contains(&map.check) {
                checks.push(map.check.clone());
                self.by_check.entry(map.check).or_default().push((map.control, rel));
            }
        }
        self.mapping_version = format!("{} + {label}", self.mapping_version);
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

    /// The controls that replace the 2013 control `id_2013` (qualified, e.g.
    /// `iso27001:2013/A.12.6.1` → `iso27001:2022/A.8.8`). Empty when the id is
    /// not a 2013 control of this catalog, or the 2013 edition is not loaded.
    pub fn successors(&self, id_2013: &str) -> Vec<&str> {
        self.successors.get(id_2013).map_or_else(Vec::new, |s| s.iter().map(String::as_str).collect())
    }

    /// Every 2013 control, in catalog order, with the controls that replace
    /// it: the whole 2013 → 2022 crosswalk.
    pub fn crosswalk(&self) -> Vec<(String, Vec<String>)> {
        self.controls
            .iter()
            .filter(|c| c.framework() == ISO_2013)
            .map(|c| (c.id.clone(), self.successors.get(&c.id).cloned().unwrap_or_default()))
            .collect()
    }
}

fn is_iso_2013(id: &str) -> bool {
    id.split_once('/').is_some_and(|(fw, rest)| fw == ISO_2013 && !rest.is_empty())
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
            assert_eq!(fws.len(), 5, "{check} maps to every framework (2013 through the crosswalk): {fws:?}");
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

    /// A 2022 control replacing two 2013 controls, a 2013 control nothing
    /// replaces yet, and the 2013 edition declared.
    const CAT_2013: &str = r#"
[[framework]]
id = "iso27001:2022"
name = "ISO 2022"
[[framework]]
id = "iso27001:2013"
name = "ISO 2013"
[[framework]]
id = "bsi-grundschutz:2023"
name = "BSI"
[[control]]
id = "iso27001:2022/A.8.24"
title = "Use of cryptography"
predecessors = ["iso27001:2013/A.10.1.1", "iso27001:2013/A.10.1.2"]
[[control]]
id = "iso27001:2022/A.5.1"
title = "Policies for information security"
predecessors = ["iso27001:2013/A.10.1.1"]
[[control]]
id = "iso27001:2013/A.10.1.1"
title = "Policy on the use of cryptographic controls"
[[control]]
id = "iso27001:2013/A.10.1.2"
title = "Key management"
[[control]]
id = "iso27001:2013/A.12.6.1"
title = "Management of technical vulnerabilities"
[[control]]
id = "bsi-grundschutz:2023/CON.1.A1"
title = "Auswahl geeigneter kryptografischer Verfahren"
"#;

    #[test]
    fn predecessors_resolve_to_successors_both_ways() {
        let cat = Catalog::from_toml(CAT_2013, CHECK).unwrap();
        assert_eq!(cat.successors("iso27001:2013/A.10.1.1"), ["iso27001:2022/A.8.24", "iso27001:2022/A.5.1"]);
        assert_eq!(cat.successors("iso27001:2013/A.10.1.2"), ["iso27001:2022/A.8.24"]);
        // Known but not (yet) replaced, unknown, unqualified and 2022 ids have none.
        assert!(cat.successors("iso27001:2013/A.12.6.1").is_empty());
        assert!(cat.successors("iso27001:2013/A.99.1.1").is_empty());
        assert!(cat.successors("A.10.1.1").is_empty());
        assert!(cat.successors("iso27001:2022/A.8.24").is_empty());
        assert_eq!(
            cat.crosswalk(),
            vec![
                (
                    "iso27001:2013/A.10.1.1".to_string(),
                    vec!["iso27001:2022/A.8.24".to_string(), "iso27001:2022/A.5.1".to_string()]
                ),
                ("iso27001:2013/A.10.1.2".to_string(), vec!["iso27001:2022/A.8.24".to_string()]),
                ("iso27001:2013/A.12.6.1".to_string(), vec![]),
            ]
        );
        // A repeated predecessor does not list its successor twice.
        let twice = CAT_2013.replace(
            r#"["iso27001:2013/A.10.1.1", "iso27001:2013/A.10.1.2"]"#,
            r#"["iso27001:2013/A.10.1.2", "iso27001:2013/A.10.1.2"]"#,
        );
        let cat = Catalog::from_toml(&twice, CHECK).unwrap();
        assert_eq!(cat.successors("iso27001:2013/A.10.1.2"), ["iso27001:2022/A.8.24"]);
    }

    #[test]
    fn bad_predecessors_are_refused_naming_control_and_predecessor() {
        let unknown = CAT_2013.replace(r#""iso27001:2013/A.10.1.2"]"#, r#""iso27001:2013/A.10.1.9"]"#);
        let err = Catalog::from_toml(&unknown, CHECK).unwrap_err();
        assert_eq!(
            err,
            CatalogError::UnknownPredecessor {
                control: "iso27001:2022/A.8.24".into(),
                predecessor: "iso27001:2013/A.10.1.9".into()
            }
        );
        assert!(err.to_string().contains("\"iso27001:2013/A.10.1.9\""), "{err}");
        // A 2022 id named as predecessor is not a 2013 control.
        let wrong_edition = CAT_2013.replace(r#"["iso27001:2013/A.10.1.1"]"#, r#"["iso27001:2022/A.8.24"]"#);
        assert_eq!(
            Catalog::from_toml(&wrong_edition, CHECK).unwrap_err(),
            CatalogError::Predecessor("iso27001:2022/A.8.24".into())
        );
        for bad in ["A.10.1.1", "iso27001:2013/", "iso27001:2013"] {
            let text = CAT_2013.replace(r#"["iso27001:2013/A.10.1.1"]"#, &format!("[{bad:?}]"));
            assert_eq!(Catalog::from_toml(&text, CHECK).unwrap_err(), CatalogError::Predecessor(bad.into()));
        }
        // Only a later ISO edition replaces 2013 controls.
        for (control, title) in [
            ("iso27001:2013/A.12.6.1", "Management of technical vulnerabilities"),
            ("bsi-grundschutz:2023/CON.1.A1", "Auswahl geeigneter kryptografischer Verfahren"),
        ] {
            let text = CAT_2013.replace(
                &format!("title = {title:?}\n"),
                &format!("title = {title:?}\npredecessors = [\"iso27001:2013/A.10.1.2\"]\n"),
            );
            assert_eq!(
                Catalog::from_toml(&text, CHECK).unwrap_err(),
                CatalogError::NotLaterEdition {
                    control: control.into(),
                    predecessor: "iso27001:2013/A.10.1.2".into()
                }
            );
        }
    }

    #[test]
    fn without_the_2013_edition_predecessors_stay_unresolved_references() {
        let cat = format!("{CAT}predecessors = [\"iso27001:2013/A.13.1.1\"]\n");
        let cat = Catalog::from_toml(&cat, CHECK).unwrap();
        assert_eq!(cat.control("iso27001:2022/A.8.20").unwrap().predecessors, ["iso27001:2013/A.13.1.1"]);
        assert!(cat.successors("iso27001:2013/A.13.1.1").is_empty());
        assert!(cat.crosswalk().is_empty());
    }

    #[test]
    fn a_bad_mapping_file_names_file_and_line() {
        let path = std::path::Path::new("mappings.toml");
        assert!(Catalog::with_mapping_file(path, BUILTIN_MAPPINGS).is_ok());
        let bad = BUILTIN_MAPPINGS.replacen(
            "control = \"iso27001:2022/A.8.20\"",
            "control = \"iso27001:2022/A.8.99\"",
            1,
        );
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert_eq!(e.line, line_of(&bad, "A.8.99"));
        assert!(e.to_string().starts_with("mappings.toml:") && e.to_string().contains("A.8.99"), "{e}");
        let bad = BUILTIN_MAPPINGS.replacen("relationship = \"subset\"", "relationship = \"related\"", 1);
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert_eq!(e.line, line_of(&bad, "\"related\""));
        let bad = format!("{BUILTIN_MAPPINGS}\n[[mapping]]\ncheck = \"firewall\"\ncolour = 1\n");
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert!(e.line.is_some_and(|l| l > 100), "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn builtin_2013_and_2022_ids_of_the_same_number_are_different_controls() {
        let cat = Catalog::builtin().unwrap();
        let old = cat.control("iso27001:2013/A.8.1.1").unwrap();
        let new = cat.control("iso27001:2022/A.8.1").unwrap();
        assert_eq!((old.title.as_str(), old.framework()), ("Inventory of assets", ISO_2013));
        assert_eq!((new.title.as_str(), new.framework()), ("User endpoint devices", "iso27001:2022"));
        assert!(cat.control("iso27001:2013/A.8.1").is_none(), "2013 A.8.1 is an objective, not a control");
        assert_eq!(cat.successors("iso27001:2013/A.8.1.1"), ["iso27001:2022/A.5.9"]);
        // 2013 controls are assessed through their successors' checks.
        let succ = cat.successors("iso27001:2013/A.12.6.1");
        let mut via: Vec<&String> = succ.iter().flat_map(|s| cat.checks_for_control(s)).collect();
        via.sort();
        via.dedup();
        let mut direct: Vec<&String> = cat.checks_for_control("iso27001:2013/A.12.6.1").iter().collect();
        direct.sort();
        assert_eq!(direct, via);
        assert!(direct.iter().any(|c| *c == "os_patches"));
        assert!(
            cat.controls_for_check("os_patches")
                .contains(&("iso27001:2013/A.12.6.1".to_string(), Relationship::Intersect))
        );
    }
}
