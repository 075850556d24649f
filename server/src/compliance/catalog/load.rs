//! Loading the catalog from its two data files: `catalog.toml` (the
//! entries) and `mappings.toml` (the versioned mapping set: checks and
//! rows), the built-in ones or an organisation's mapping file.
//!
//! Invariants: a file that does not load is refused whole; an error in a
//! mapping file names the line of the offending value, not the first place
//! its text occurs.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::entries::CatalogFile;
use super::mapping::RowField;
use super::{Catalog, CatalogError, CheckInfo, MappingFileError, Origin};

/// `mappings.toml` with the places of the values, so that errors name the
/// line of the offending value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    /// The mapping set's version, named by every evaluation it produces.
    version: Spanned<String>,
    check: Vec<Spanned<CheckInfo>>,
    #[serde(default)]
    mapping: Vec<MappingRow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingRow {
    check: Spanned<String>,
    control: Spanned<String>,
    relationship: Spanned<String>,
    rationale: Spanned<String>,
}

/// An error with the byte range of the mapping file it is about, if known.
type Located = (CatalogError, Option<Range<usize>>);

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

pub(super) const BUILTIN_CATALOG: &str = include_str!("../../../data/catalog.toml");
pub(super) const BUILTIN_MAPPINGS: &str = include_str!("../../../data/mappings.toml");

impl Catalog {
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Self::from_toml(BUILTIN_CATALOG, BUILTIN_MAPPINGS)
    }

    /// The built-in catalog with an organisation's mapping file (which
    /// replaces the built-in mappings); errors name the file and the line.
    pub fn with_mapping_file(path: &std::path::Path, text: &str) -> Result<Catalog, MappingFileError> {
        Self::load(BUILTIN_CATALOG, text).map_err(|(e, span)| MappingFileError {
            path: path.to_path_buf(),
            line: span.map(|s| line_at(text, s.start)),
            message: match e {
                CatalogError::Toml(m) => m,
                other => other.to_string(),
            },
        })
    }

    pub fn from_toml(catalog: &str, mappings: &str) -> Result<Catalog, CatalogError> {
        Self::load(catalog, mappings).map_err(|(e, _)| e)
    }

    fn load(catalog: &str, mappings: &str) -> Result<Catalog, Located> {
        let c: CatalogFile =
            toml::from_str(catalog).map_err(|e| (CatalogError::Toml(e.to_string()), None))?;
        let m: MappingFile =
            toml::from_str(mappings).map_err(|e| (CatalogError::Toml(e.message().to_string()), e.span()))?;
        let mut cat = Self::validate_catalog(c).map_err(|e| (e, None))?;
        cat.add_mapping_set(m, mappings)?;
        Ok(cat)
    }

    /// Adds the mapping set (checks and rows) and the rows the 2013
    /// crosswalk derives from it. `text` is the file, to place errors.
    fn add_mapping_set(&mut self, m: MappingFile, text: &str) -> Result<(), Located> {
        if m.version.get_ref().trim().is_empty() {
            return Err((CatalogError::EmptyVersion, Some(m.version.span())));
        }
        self.mapping_version = m.version.into_inner();
        for c in m.check {
            let span = c.span();
            let c = c.into_inner();
            if !custos_proto::checks::is_check(&c.id) {
                return Err((CatalogError::NotAgentCheck(c.id.clone()), Some(span)));
            }
            if let Some(g) = c.goals.iter().find(|g| !super::GOALS.contains(&g.as_str())) {
                // The goal's own line inside the check's table.
                let table = text.get(span.clone()).unwrap_or("");
                let place = table
                    .find(&format!("\"{g}\""))
                    .map_or(span.clone(), |o| span.start + o..span.start + o + g.len() + 2);
                return Err((CatalogError::Goal { check: c.id.clone(), goal: g.clone() }, Some(place)));
            }
            self.checks.insert(c.id.clone(), c);
        }
        for row in m.mapping {
            let span = |field| match field {
                RowField::Check => row.check.span(),
                RowField::Control => row.control.span(),
                RowField::Relationship => row.relationship.span(),
                RowField::Rationale => row.rationale.span(),
            };
            let mapping = self
                .checked_row(
                    row.check.get_ref().clone(),
                    row.control.get_ref().clone(),
                    row.relationship.get_ref(),
                    row.rationale.get_ref().clone(),
                    Origin::MappingSet,
                )
                .map_err(|(e, field)| (e, Some(span(field))))?;
            if self.maps(&mapping.check, &mapping.requirement) {
                let (check, control) = (mapping.check, mapping.requirement);
                return Err((
                    CatalogError::DuplicateMapping { check, control },
                    Some(span(RowField::Control)),
                ));
            }
            self.add_row(mapping);
        }
        self.add_crosswalk_rows();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::compliance::catalog::test_support::{CAT, CHECK, line_of, mapping};
    use crate::compliance::catalog::{Control, Mapping, Relationship};

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
        let declared: Vec<&str> = cat.checks.keys().map(String::as_str).collect();
        let mut every: Vec<&str> = custos_proto::checks::CHECK_IDS.to_vec();
        every.sort_unstable();
        assert_eq!(declared, every, "mappings.toml declares exactly the agent's checks");
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
        // A declared check the agent does not run is refused where it is declared.
        let dns = CHECK.replace("id = \"firewall\"", "id = \"dns\"");
        assert_eq!(Catalog::from_toml(CAT, &dns).unwrap_err(), CatalogError::NotAgentCheck("dns".into()));
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
        // A goal is placed on its own line inside its check's table, not at
        // the first place the word occurs.
        let bad = BUILTIN_MAPPINGS.replacen(
            "goals = [\"confidentiality\", \"integrity\", \"availability\"]",
            "goals = [\"confidentiality\", \"secrecy\", \"availability\"]",
            1,
        );
        assert_ne!(bad, BUILTIN_MAPPINGS);
        let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
        assert_eq!(e.line, line_of(&bad, "\"secrecy\""), "{e}");
    }

    #[test]
    fn an_empty_version_is_placed_on_the_version_line() {
        let path = std::path::Path::new("mappings.toml");
        // The built-in file mentions "version" in a comment above the key.
        let comment = BUILTIN_MAPPINGS.find("version").unwrap();
        let key = BUILTIN_MAPPINGS.find("\nversion = ").unwrap() + 1;
        assert!(comment < key, "the comment precedes the key, which is what made the line wrong");
        for empty in ["\"\"", "\"   \""] {
            let bad = BUILTIN_MAPPINGS.replacen(
                "version = \"custos-mappings-2026.11.2\"",
                &format!("version = {empty}"),
                1,
            );
            assert_ne!(bad, BUILTIN_MAPPINGS, "the built-in version line changed; update this test");
            let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
            assert_eq!(e.line, Some(line_at(&bad, key)), "{e}");
            assert!(bad.lines().nth(e.line.unwrap() - 1).unwrap().starts_with("version = "), "{e}");
            assert!(e.message.contains("version must not be empty"), "{e}");
            assert_eq!(Catalog::from_toml(BUILTIN_CATALOG, &bad).unwrap_err(), CatalogError::EmptyVersion);
        }
    }

    #[test]
    fn a_rationale_must_be_one_nonempty_line_and_is_placed_by_line() {
        let path = std::path::Path::new("mappings.toml");
        let first = "rationale = \"A host packet filter that drops unsolicited inbound traffic is one technical part of securing networks and the systems on them.\"";
        assert!(BUILTIN_MAPPINGS.contains(first));
        for (replacement, why) in [
            ("rationale = \"\"", "is empty"),
            ("rationale = \"  \"", "is empty"),
            ("rationale = \"first line\\nsecond line\"", "more than one line"),
            ("rationale = \"\"\"\nfirst line\nsecond line\"\"\"", "more than one line"),
        ] {
            let bad = BUILTIN_MAPPINGS.replacen(first, replacement, 1);
            let e = Catalog::with_mapping_file(path, &bad).unwrap_err();
            assert_eq!(e.line, line_of(&bad, replacement), "{replacement}: {e}");
            assert!(e.message.contains(why) && e.message.contains("iso27001:2022/A.8.20"), "{e}");
            assert!(matches!(
                Catalog::from_toml(BUILTIN_CATALOG, &bad).unwrap_err(),
                CatalogError::Rationale { ref check, ref control, .. }
                    if check == "firewall" && control == "iso27001:2022/A.8.20"
            ));
        }
        // Derived rows are held to the same rule.
        let cat = Catalog::builtin().unwrap();
        let row = |rationale: &str| Mapping {
            check: "firewall".into(),
            control: "iso27001:2022/A.5.10".into(),
            relationship: "intersect".into(),
            rationale: rationale.into(),
        };
        assert!(matches!(
            cat.clone().with_mappings(vec![row("two\nlines")], "x").unwrap_err(),
            CatalogError::Rationale { .. }
        ));
        assert!(matches!(
            cat.clone()
                .with_mappings(vec![Mapping { relationship: "related".into(), ..row("r") }], "x")
                .unwrap_err(),
            CatalogError::Relationship { .. }
        ));
        let added = cat.with_mappings(vec![row("via a collection")], "test collection 1").unwrap();
        let m = added.mappings().last().unwrap();
        assert_eq!(
            (m.requirement.as_str(), m.relationship, m.rationale.as_str(), m.origin),
            ("iso27001:2022/A.5.10", Relationship::Intersect, "via a collection", Origin::Imported)
        );
        assert!(added.mapping_version().ends_with(" + test collection 1"));
    }
}
