//! The built-in ISO/IEC 27001:2013 Annex A catalog and its crosswalk to the
//! 2022 edition (ISO/IEC 27002:2022 Annex B): complete, both directions
//! consistent, the well-known pairs present, and bad predecessor data refused.

use std::collections::BTreeSet;

use custos_server::compliance::catalog::{Catalog, CatalogError, Control, ISO_2013, Origin, Relationship};

const CATALOG: &str = include_str!("../data/catalog.toml");
const MAPPINGS: &str = include_str!("../data/mappings.toml");

/// The 2022 controls Annex B lists as new: they replace nothing.
const NEW_IN_2022: [&str; 11] = [
    "A.5.7", "A.5.23", "A.5.30", "A.7.4", "A.8.9", "A.8.10", "A.8.11", "A.8.12", "A.8.16", "A.8.23", "A.8.28",
];

fn number(c: &Control) -> &str {
    c.id.split_once('/').map_or("", |(_, n)| n)
}

fn edition<'a>(cat: &'a Catalog, framework: &str) -> Vec<&'a Control> {
    cat.controls().iter().filter(|c| c.framework() == framework).collect()
}

#[test]
fn the_2013_edition_has_all_114_controls_in_14_clauses() {
    let cat = Catalog::builtin().unwrap();
    assert!(cat.frameworks().iter().any(|f| f == ISO_2013));
    let old = edition(&cat, ISO_2013);
    assert_eq!(old.len(), 114);
    let expected = [
        ("A.5", "Information security policies", 2),
        ("A.6", "Organization of information security", 7),
        ("A.7", "Human resource security", 6),
        ("A.8", "Asset management", 10),
        ("A.9", "Access control", 14),
        ("A.10", "Cryptography", 2),
        ("A.11", "Physical and environmental security", 15),
        ("A.12", "Operations security", 14),
        ("A.13", "Communications security", 7),
        ("A.14", "System acquisition, development and maintenance", 13),
        ("A.15", "Supplier relationships", 5),
        ("A.16", "Information security incident management", 7),
        ("A.17", "Information security aspects of business continuity management", 4),
        ("A.18", "Compliance", 8),
    ];
    for (clause, name, n) in expected {
        let group = format!("{clause} {name}");
        let members: Vec<&&Control> =
            old.iter().filter(|c| number(c).starts_with(&format!("{clause}."))).collect();
        assert_eq!(members.len(), n, "{clause}");
        for c in members {
            assert_eq!(c.group.as_deref(), Some(group.as_str()), "{}", c.id);
            // A.<clause>.<objective>.<control>, every part a number.
            let parts: Vec<&str> = number(c).split('.').collect();
            assert_eq!(parts.len(), 4, "{}", c.id);
            assert!(parts[1..].iter().all(|p| p.parse::<u8>().is_ok()), "{}", c.id);
            assert!(!c.title.trim().is_empty() && c.predecessors.is_empty(), "{}", c.id);
        }
    }
    let objectives: BTreeSet<&str> =
        old.iter().map(|c| number(c).rsplit_once('.').map_or("", |(o, _)| o)).collect();
    assert_eq!(objectives.len(), 35);
    assert_eq!(
        cat.control("iso27001:2013/A.12.6.1").unwrap().title,
        "Management of technical vulnerabilities"
    );
    assert_eq!(cat.control("iso27001:2013/A.9.4.2").unwrap().title, "Secure log-on procedures");
}

#[test]
fn every_2013_control_has_a_2022_successor() {
    let cat = Catalog::builtin().unwrap();
    let crosswalk = cat.crosswalk();
    assert_eq!(crosswalk.len(), 114);
    for (old, new) in &crosswalk {
        assert!(!new.is_empty(), "{old} has no 2022 successor");
        assert!(new.iter().all(|n| n.starts_with("iso27001:2022/")), "{old} → {new:?}");
        assert_eq!(cat.successors(old), new.iter().map(String::as_str).collect::<Vec<_>>(), "{old}");
        // The inverse holds: each successor names the 2013 control.
        for n in new {
            assert!(cat.control(n).unwrap().predecessors.contains(old), "{n} does not name {old}");
        }
    }
    // The technical compliance review was split between two 2022 controls.
    assert_eq!(cat.successors("iso27001:2013/A.18.2.3"), ["iso27001:2022/A.5.36", "iso27001:2022/A.8.8"]);
}

#[test]
fn only_the_11_new_2022_controls_have_no_predecessor() {
    let cat = Catalog::builtin().unwrap();
    let new = edition(&cat, "iso27001:2022");
    assert_eq!(new.len(), 93);
    let without: BTreeSet<&str> =
        new.iter().filter(|c| c.predecessors.is_empty()).map(|c| number(c)).collect();
    assert_eq!(without, NEW_IN_2022.into_iter().collect());
    let with = new.iter().filter(|c| !c.predecessors.is_empty()).count();
    assert_eq!(with, 82);
    // Every predecessor is a 2013 control of the catalog (validated at load, checked here end to end).
    for c in &new {
        for p in &c.predecessors {
            assert_eq!(cat.control(p).map(Control::framework), Some(ISO_2013), "{} → {p}", c.id);
        }
    }
}

#[test]
fn known_pairs_hold() {
    let cat = Catalog::builtin().unwrap();
    for (old, new) in [
        ("A.12.6.1", "A.8.8"),
        ("A.10.1.1", "A.8.24"),
        ("A.10.1.2", "A.8.24"),
        ("A.9.4.2", "A.8.5"),
        ("A.12.4.4", "A.8.17"),
        ("A.13.1.1", "A.8.20"),
        ("A.11.2.9", "A.7.7"),
        ("A.12.2.1", "A.8.7"),
        ("A.6.2.1", "A.8.1"),
        ("A.11.2.8", "A.8.1"),
        ("A.8.1.1", "A.5.9"),
        ("A.6.2.2", "A.6.7"),
        ("A.14.1.1", "A.5.8"),
        ("A.12.7.1", "A.8.34"),
    ] {
        let (old, new) = (format!("iso27001:2013/{old}"), format!("iso27001:2022/{new}"));
        assert_eq!(cat.successors(&old), [new.as_str()], "{old}");
    }
    assert_eq!(
        cat.control("iso27001:2022/A.8.1").unwrap().predecessors,
        ["iso27001:2013/A.6.2.1", "iso27001:2013/A.11.2.8"]
    );
}

#[test]
fn the_same_number_in_two_editions_is_two_controls() {
    let cat = Catalog::builtin().unwrap();
    let old = cat.control("iso27001:2013/A.8.1.1").unwrap();
    let new = cat.control("iso27001:2022/A.8.1").unwrap();
    assert_ne!(old.id, new.id);
    assert_eq!(old.title, "Inventory of assets");
    assert_eq!(new.title, "User endpoint devices");
    assert!(cat.successors("iso27001:2013/A.8.1.1").iter().all(|s| *s != new.id));
    // Unqualified or wrong-edition ids answer nothing rather than guessing an edition.
    assert!(cat.successors("A.8.1.1").is_empty());
    assert!(cat.successors("iso27001:2022/A.8.1").is_empty());
    assert!(cat.control("A.8.1").is_none());
}

#[test]
fn controls_of_2013_are_assessed_only_through_their_successors() {
    let cat = Catalog::builtin().unwrap();
    for (old, new) in cat.crosswalk() {
        let mut via: Vec<&String> = new.iter().flat_map(|n| cat.checks_for_control(n)).collect();
        via.sort();
        via.dedup();
        let mut direct: Vec<&String> = cat.checks_for_control(&old).iter().collect();
        direct.sort();
        assert_eq!(direct, via, "{old} has checks other than its successors'");
    }
    assert!(!MAPPINGS.contains("iso27001:2013/"), "mappings.toml maps a 2013 control");
    // Evidence for A.12.6.1 is read through its successor.
    assert!(!cat.checks_for_control(cat.successors("iso27001:2013/A.12.6.1")[0]).is_empty());
}

#[test]
fn an_unknown_predecessor_in_the_real_data_is_refused_by_name() {
    let real = r#"predecessors = ["iso27001:2013/A.12.6.1", "iso27001:2013/A.18.2.3"]"#;
    assert_eq!(CATALOG.matches(real).count(), 1);
    let broken =
        CATALOG.replace(real, r#"predecessors = ["iso27001:2013/A.12.6.1", "iso27001:2013/A.12.6.3"]"#);
    let err = Catalog::from_toml(&broken, MAPPINGS).unwrap_err();
    assert_eq!(
        err,
        CatalogError::UnknownPredecessor {
            control: "iso27001:2022/A.8.8".into(),
            predecessor: "iso27001:2013/A.12.6.3".into()
        }
    );
    assert!(err.to_string().contains("iso27001:2013/A.12.6.3"), "{err}");
    // Removing a 2013 control its successors name is caught the same way.
    let removed = CATALOG.replace(
        "[[control]]\nid = \"iso27001:2013/A.9.4.2\"\ntitle = \"Secure log-on procedures\"\ngroup = \"A.9 Access control\"\n",
        "",
    );
    assert_ne!(removed, CATALOG);
    assert_eq!(
        Catalog::from_toml(&removed, MAPPINGS).unwrap_err(),
        CatalogError::UnknownPredecessor {
            control: "iso27001:2022/A.8.5".into(),
            predecessor: "iso27001:2013/A.9.4.2".into()
        }
    );
}

#[test]
fn every_2013_row_names_the_successors_it_is_assessed_through() {
    let cat = Catalog::builtin().unwrap();
    let rows: Vec<_> =
        cat.mappings().iter().filter(|m| m.requirement.starts_with("iso27001:2013/")).collect();
    assert!(!rows.is_empty());
    for m in &rows {
        assert_eq!((m.origin, m.relationship), (Origin::Crosswalk, Relationship::Intersect), "{m:?}");
        // Named: exactly the successors this check supports, nothing else.
        let via: Vec<&str> = cat
            .successors(&m.requirement)
            .into_iter()
            .filter(|s| cat.checks_for_control(s).contains(&m.check))
            .collect();
        assert!(!via.is_empty(), "{m:?}");
        for s in cat.successors(&m.requirement) {
            assert_eq!(
                m.rationale.contains(&format!("{s},")) || m.rationale.contains(&format!("{s} ")),
                via.contains(&s),
                "{m:?}"
            );
        }
    }
    // One row per 2013 control and check its successors support.
    let expected: usize = cat
        .crosswalk()
        .iter()
        .map(|(_, new)| {
            let mut checks: Vec<&String> = new.iter().flat_map(|n| cat.checks_for_control(n)).collect();
            checks.sort();
            checks.dedup();
            checks.len()
        })
        .sum();
    assert_eq!(rows.len(), expected);
}
