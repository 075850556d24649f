//! The catalog's entries: frameworks, the modules of frameworks organised
//! in modules, and the controls (requirements) that are evaluated; the
//! catalog file's rules for them; and frameworks added from imported OSCAL
//! catalogs.
//!
//! Invariants: every entry id is qualified with a known framework, unique
//! across modules and controls, and titled; a requirement of a framework
//! organised in modules is filed under one of its modules, whose id its own
//! extends.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError, crosswalk};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
}

/// A module of a framework organised in modules (a BSI Baustein such as
/// `bsi-grundschutz:2023/NET.3.2` "Firewall"): the requirements naming it
/// are its children. Not evaluated itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub id: String,
    pub title: String,
}

impl Module {
    pub fn framework(&self) -> &str {
        framework_of(&self.id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub group: Option<String>,
    /// The module (catalog entry) this requirement belongs to.
    #[serde(default)]
    pub module: Option<String>,
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
        framework_of(&self.id)
    }
}

fn framework_of(id: &str) -> &str {
    id.split_once('/').map_or("", |(f, _)| f)
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

/// `catalog.toml`: frameworks, modules and controls as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CatalogFile {
    framework: Vec<Framework>,
    #[serde(default)]
    module: Vec<Module>,
    control: Vec<Control>,
}

impl Catalog {
    /// The catalog file's frameworks, modules and controls, checked in file
    /// order (modules first, then each control whole); no mappings yet.
    pub(super) fn validate_catalog(c: CatalogFile) -> Result<Catalog, CatalogError> {
        let known: BTreeSet<&str> = c.framework.iter().map(|f| f.id.as_str()).collect();
        let mut ids = BTreeSet::new();
        for module in &c.module {
            check_entry(&known, &mut ids, &module.id, &module.title)?;
        }
        let modules: BTreeSet<String> = ids.clone();
        let organised: BTreeSet<&str> = c.module.iter().map(Module::framework).collect();
        for control in &c.control {
            check_entry(&known, &mut ids, &control.id, &control.title)?;
            check_filing(control, &modules, &organised)?;
            crosswalk::check_predecessors(control)?;
        }
        let successors = crosswalk::resolve_successors(&c.control, &known, &ids, &modules)?;
        Ok(Catalog {
            mapping_version: String::new(),
            frameworks: c.framework,
            modules: c.module,
            controls: c.control,
            checks: BTreeMap::new(),
            mappings: Vec::new(),
            by_check: BTreeMap::new(),
            by_control: BTreeMap::new(),
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
        oscal: &crate::compliance::oscal::OscalCatalog,
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
                module: None,
                level: None,
                predecessors: Vec::new(),
            });
        }
        Ok(self)
    }
}

/// One module or control: qualified with a known framework, not seen
/// before (`ids` takes it), titled.
fn check_entry(
    known: &BTreeSet<&str>,
    ids: &mut BTreeSet<String>,
    id: &str,
    title: &str,
) -> Result<(), CatalogError> {
    let qualified = id.split_once('/').is_some_and(|(fw, rest)| known.contains(fw) && !rest.is_empty());
    if !qualified {
        return Err(CatalogError::Unqualified(id.to_string()));
    }
    if !ids.insert(id.to_string()) {
        return Err(CatalogError::Duplicate(id.to_string()));
    }
    if title.trim().is_empty() {
        return Err(CatalogError::EmptyTitle(id.to_string()));
    }
    Ok(())
}

/// A control names a known module its id extends, or none when its
/// framework is not organised in modules.
fn check_filing(
    control: &Control,
    modules: &BTreeSet<String>,
    organised: &BTreeSet<&str>,
) -> Result<(), CatalogError> {
    match &control.module {
        Some(module) if !modules.contains(module) => {
            Err(CatalogError::UnknownModule { control: control.id.clone(), module: module.clone() })
        }
        // `SYS.2.1.A28` belongs in `SYS.2.1`: a requirement filed
        // under the wrong module is a data error, not a choice.
        Some(module) if !control.id.starts_with(&format!("{module}.")) => {
            Err(CatalogError::ModuleMismatch { control: control.id.clone(), module: module.clone() })
        }
        None if organised.contains(control.framework()) => Err(CatalogError::Unfiled(control.id.clone())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::catalog::test_support::{BUILTIN_MAPPINGS, CHECK, line_of};

    #[test]
    fn bsi_requirements_are_children_of_their_modules() {
        let cat = Catalog::builtin().unwrap();
        let bsi: Vec<&Module> =
            cat.modules().iter().filter(|m| m.framework() == "bsi-grundschutz:2023").collect();
        assert_eq!(bsi.len(), 13);
        assert_eq!(cat.module("bsi-grundschutz:2023/NET.3.2").map(|m| m.title.as_str()), Some("Firewall"));
        // Modules are entries, not evaluated controls.
        assert!(cat.control("bsi-grundschutz:2023/NET.3.2").is_none());
        assert!(cat.requirements_of("bsi-grundschutz:2023/NET.3.2").is_empty());
        let sys21: Vec<&str> =
            cat.requirements_of("bsi-grundschutz:2023/SYS.2.1").iter().map(|c| c.id.as_str()).collect();
        assert_eq!(sys21.len(), 9, "{sys21:?}");
        assert!(sys21.contains(&"bsi-grundschutz:2023/SYS.2.1.A31"));
        for c in cat.controls().iter().filter(|c| c.framework() == "bsi-grundschutz:2023") {
            let m = c.module.as_deref().unwrap_or_else(|| panic!("{} names no module", c.id));
            assert!(c.id.starts_with(&format!("{m}.A")), "{} under {m}", c.id);
        }
        let filed: usize = bsi.iter().map(|m| cat.requirements_of(&m.id).len()).sum();
        assert_eq!(filed, cat.controls().iter().filter(|c| c.framework() == "bsi-grundschutz:2023").count());
        // A check maps to requirements, never to a module.
        let to_module = BUILTIN_MAPPINGS.replacen(
            "control = \"bsi-grundschutz:2023/SYS.2.1.A31\"",
            "control = \"bsi-grundschutz:2023/SYS.2.1\"",
            1,
        );
        let e = Catalog::with_mapping_file(std::path::Path::new("m.toml"), &to_module).unwrap_err();
        assert!(e.message.contains("names module") && e.message.contains("SYS.2.1\""), "{e}");
        assert_eq!(e.line, line_of(&to_module, "\"bsi-grundschutz:2023/SYS.2.1\""));
    }

    #[test]
    fn module_data_errors_are_refused_by_name() {
        let modules = r#"
[[framework]]
id = "bsi-grundschutz:2023"
name = "BSI"
[[module]]
id = "bsi-grundschutz:2023/SYS.2.1"
title = "Allgemeiner Client"
[[module]]
id = "bsi-grundschutz:2023/NET.3.2"
title = "Firewall"
[[control]]
id = "bsi-grundschutz:2023/SYS.2.1.A31"
title = "Einrichtung lokaler Paketfilter"
module = "bsi-grundschutz:2023/SYS.2.1"
"#;
        let checks = CHECK;
        let ok = Catalog::from_toml(modules, checks).unwrap();
        assert_eq!(ok.requirements_of("bsi-grundschutz:2023/SYS.2.1").len(), 1);
        let cases: [(String, CatalogError); 6] = [
            (
                modules.replace(
                    "module = \"bsi-grundschutz:2023/SYS.2.1\"",
                    "module = \"bsi-grundschutz:2023/SYS.9\"",
                ),
                CatalogError::UnknownModule {
                    control: "bsi-grundschutz:2023/SYS.2.1.A31".into(),
                    module: "bsi-grundschutz:2023/SYS.9".into(),
                },
            ),
            (
                modules.replace(
                    "module = \"bsi-grundschutz:2023/SYS.2.1\"",
                    "module = \"bsi-grundschutz:2023/NET.3.2\"",
                ),
                CatalogError::ModuleMismatch {
                    control: "bsi-grundschutz:2023/SYS.2.1.A31".into(),
                    module: "bsi-grundschutz:2023/NET.3.2".into(),
                },
            ),
            (
                modules.replace("module = \"bsi-grundschutz:2023/SYS.2.1\"\n", ""),
                CatalogError::Unfiled("bsi-grundschutz:2023/SYS.2.1.A31".into()),
            ),
            (
                modules.replace(
                    "id = \"bsi-grundschutz:2023/NET.3.2\"",
                    "id = \"bsi-grundschutz:2023/SYS.2.1\"",
                ),
                CatalogError::Duplicate("bsi-grundschutz:2023/SYS.2.1".into()),
            ),
            (
                modules.replace("id = \"bsi-grundschutz:2023/NET.3.2\"", "id = \"NET.3.2\""),
                CatalogError::Unqualified("NET.3.2".into()),
            ),
            (
                modules.replace("title = \"Firewall\"", "title = \" \""),
                CatalogError::EmptyTitle("bsi-grundschutz:2023/NET.3.2".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_ne!(text, modules);
            assert_eq!(Catalog::from_toml(&text, checks).unwrap_err(), expected);
        }
        // A module's id prefix alone does not make a requirement its child:
        // SYS.2.10.A1 is not in SYS.2.1.
        let sibling = modules.replace("SYS.2.1.A31", "SYS.2.10.A1");
        assert!(matches!(
            Catalog::from_toml(&sibling, checks).unwrap_err(),
            CatalogError::ModuleMismatch { .. }
        ));
    }
}
