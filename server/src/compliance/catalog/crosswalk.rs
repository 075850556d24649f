//! The ISO/IEC 27001:2013 → 2022 crosswalk (ISO/IEC 27002:2022 Annex B): a
//! later-edition control names the 2013 controls it replaces in
//! `predecessors`; a 2013 control is answered through those successors, by
//! rows derived from theirs.
//!
//! Invariants: predecessors are 2013 ids and only controls of a later ISO
//! edition name them; with the 2013 edition loaded each resolves to a 2013
//! control (without it they stay plain references); no mapping row names a
//! 2013 id directly, the crosswalk derives them.

use std::collections::{BTreeMap, BTreeSet};

use super::{Catalog, CatalogError, CheckMapping, Control, Origin, Relationship};

/// The ISO/IEC 27001 edition that predecessor ids name.
pub const ISO_2013: &str = "iso27001:2013";

fn is_iso_2013(id: &str) -> bool {
    id.split_once('/').is_some_and(|(fw, rest)| fw == ISO_2013 && !rest.is_empty())
}

/// A control's predecessors are 2013 ids, and only a later ISO edition has
/// any.
pub(super) fn check_predecessors(control: &Control) -> Result<(), CatalogError> {
    if let Some(p) = control.predecessors.iter().find(|p| !is_iso_2013(p)) {
        return Err(CatalogError::Predecessor(p.clone()));
    }
    // Only a later ISO edition replaces 2013 controls, so `successors`
    // never answers with a BSI, CIS or NIST id, nor a 2013 id itself.
    let later_iso = control.framework().starts_with("iso27001:") && control.framework() != ISO_2013;
    if !later_iso && let Some(p) = control.predecessors.first() {
        return Err(CatalogError::NotLaterEdition { control: control.id.clone(), predecessor: p.clone() });
    }
    Ok(())
}

/// 2013 control id → the controls naming it as predecessor, in catalog
/// order. `ids` are the catalog's entries, `modules` those of them that
/// are modules.
pub(super) fn resolve_successors(
    controls: &[Control],
    known: &BTreeSet<&str>,
    ids: &BTreeSet<String>,
    modules: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<String>>, CatalogError> {
    // Predecessor ids are resolved only when the 2013 edition is loaded: a
    // catalog without it keeps them as plain references.
    let mut successors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if !known.contains(ISO_2013) {
        return Ok(successors);
    }
    for control in controls {
        for p in &control.predecessors {
            if !ids.contains(p) || modules.contains(p) {
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
    Ok(successors)
}

impl Catalog {
    /// A 2013 control is assessed through its successors: the checks that
    /// support them support it, as an intersection (the editions regrouped
    /// the controls). No mapping row names a 2013 id directly.
    pub(super) fn add_crosswalk_rows(&mut self) {
        let mut rows = Vec::new();
        for (old, new) in &self.successors {
            let mut derived: Vec<(&String, Vec<&str>)> = Vec::new();
            for n in new {
                for check in self.by_control.get(n).into_iter().flatten() {
                    match derived.iter_mut().find(|(c, _)| *c == check) {
                        Some((_, via)) => via.push(n),
                        None => derived.push((check, vec![n])),
                    }
                }
            }
            for (check, via) in derived {
                rows.push(CheckMapping {
                    check: check.clone(),
                    requirement: old.clone(),
                    relationship: Relationship::Intersect,
                    rationale: format!(
                        "assessed through {}, which replace{} it per ISO/IEC 27002:2022 Annex B",
                        via.join(" and "),
                        if via.len() == 1 { "s" } else { "" }
                    ),
                    origin: Origin::Crosswalk,
                });
            }
        }
        for row in rows {
            self.add_row(row);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::catalog::test_support::{CAT, CHECK};

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
