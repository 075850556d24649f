//! The built-in BSI IT-Grundschutz 2023, CIS Controls v8 and NIST SP 800-53
//! r5 entries against the project's controls reference
//! (`shared/reference/controls.md`), transcribed here so the test runs
//! wherever the repository does: every module and requirement the reference
//! names is in the catalog with its title, level and module, nothing else
//! is; CIS is ids only; NIST ids carry their titles; and the checks map to
//! the BSI requirements of the evidence rows the reference pairs them with.

use std::collections::BTreeSet;

use custos_server::compliance::catalog::{Catalog, Relationship};

const BSI: &str = "bsi-grundschutz:2023";

/// Module titles as the reference lists them ("Module titles: ..."); DER.1,
/// whose requirement DER.1.A5 the reference names, with the Kompendium's title.
const BSI_MODULES: [(&str, &str); 13] = [
    ("SYS.2.1", "Allgemeiner Client"),
    ("SYS.2.2.3", "Clients unter Windows"),
    ("SYS.2.3", "Clients unter Linux und Unix"),
    ("SYS.2.4", "Clients unter macOS"),
    ("SYS.3.1", "Laptops"),
    ("SYS.1.1", "Allgemeiner Server"),
    ("OPS.1.1.3", "Patch- und Änderungsmanagement"),
    ("OPS.1.1.4", "Schutz vor Schadprogrammen"),
    ("OPS.1.1.5", "Protokollierung"),
    ("OPS.1.2.6", "NTP-Zeitsynchronisation"),
    ("NET.3.2", "Firewall"),
    ("CON.1", "Kryptokonzept"),
    ("DER.1", "Detektion von sicherheitsrelevanten Ereignissen"),
];

/// A BSI requirement: id, level, title.
type Requirement = (&'static str, &'static str, &'static str);

/// The reference's BSI table: evidence row, then each requirement with its
/// level and title, in the reference's order.
const BSI_REQUIREMENTS: [(&str, &[Requirement]); 9] = [
    (
        "Disk encryption",
        &[
            ("SYS.2.1.A28", "H", "Verschlüsselung der Clients"),
            ("SYS.3.1.A13", "S", "Verschlüsselung von Laptops"),
            ("SYS.2.4.A4", "S", "Verwendung einer Festplattenverschlüsselung"),
            ("SYS.2.3.A19", "H", "Festplatten- oder Dateiverschlüsselung"),
            ("SYS.1.1.A34", "H", "Festplattenverschlüsselung"),
            ("CON.1.A1", "B", "Auswahl geeigneter kryptografischer Verfahren"),
        ],
    ),
    (
        "Anti-malware",
        &[
            ("SYS.2.1.A6", "B", "Einsatz von Schutzprogrammen gegen Schadsoftware"),
            ("SYS.2.2.3.A5", "B", "Schutz vor Schadsoftware unter Windows"),
            ("SYS.1.1.A9", "B", "Einsatz von Virenschutz-Programmen auf Servern"),
            ("OPS.1.1.4.A5", "B", "Betrieb und Konfiguration von Virenschutzprogrammen"),
            ("OPS.1.1.4.A6", "B", "Regelmäßige Aktualisierung der eingesetzten Virenschutzprogramme"),
        ],
    ),
    (
        "Patch level",
        &[
            ("SYS.2.1.A3", "B", "Aktivieren von Autoupdate-Mechanismen"),
            ("OPS.1.1.3.A3", "B", "Konfiguration von Autoupdate-Mechanismen"),
            ("OPS.1.1.3.A15", "B", "Regelmäßige Aktualisierung von IT-Systemen und Software"),
            ("SYS.2.3.A4", "B", "Kernel-Aktualisierungen auf unixartigen Systemen"),
        ],
    ),
    (
        "Host firewall",
        &[
            ("SYS.2.1.A31", "H", "Einrichtung lokaler Paketfilter"),
            ("SYS.1.1.A19", "S", "Einrichtung lokaler Paketfilter"),
            ("SYS.3.1.A3", "B", "Einsatz von Personal Firewalls"),
            ("SYS.2.4.A10", "S", "Aktivierung der Personal Firewall unter macOS"),
        ],
    ),
    (
        "Time sync",
        &[
            ("OPS.1.1.5.A4", "B", "Zeitsynchronisation der IT-Systeme"),
            ("OPS.1.2.6.A7", "S", "Sichere Konfiguration von NTP-Clients"),
        ],
    ),
    (
        "Logging",
        &[
            ("OPS.1.1.5.A3", "B", "Konfiguration der Protokollierung auf System- und Netzebene"),
            ("SYS.1.1.A10", "B", "Protokollierung"),
            ("DER.1.A5", "B", "Einsatz von mitgelieferten Systemfunktionen zur Detektion"),
        ],
    ),
    (
        "Screen lock, authentication",
        &[
            ("SYS.2.1.A1", "B", "Sichere Authentisierung von Benutzenden"),
            ("SYS.2.1.A37", "H", "Verwendung von Mehr-Faktor-Authentisierung"),
        ],
    ),
    (
        "Secure boot",
        &[
            ("SYS.2.1.A8", "B", "Absicherung des Bootvorgangs"),
            ("SYS.2.1.A36", "H", "Selbstverwalteter Einsatz von SecureBoot und TPM"),
        ],
    ),
    (
        "Removable media",
        &[
            ("SYS.2.1.A24", "S", "Umgang mit externen Medien und Wechseldatenträgern"),
            ("SYS.2.3.A6", "S", "Kein automatisches Einbinden von Wechsellaufwerken"),
        ],
    ),
];

/// The agent's check for each evidence row the reference pairs with BSI
/// requirements, and the requirements of the row it supports. Rows without
/// a check (removable media) and requirements no check measures (SYS.2.1.A37,
/// multi-factor authentication) are absent on purpose.
const CHECKS_TO_BSI: [(&str, &[&str]); 8] = [
    (
        "disk_encryption",
        &["SYS.2.1.A28", "SYS.3.1.A13", "SYS.2.4.A4", "SYS.2.3.A19", "SYS.1.1.A34", "CON.1.A1"],
    ),
    ("antivirus", &["SYS.2.1.A6", "SYS.2.2.3.A5", "SYS.1.1.A9", "OPS.1.1.4.A5", "OPS.1.1.4.A6"]),
    ("os_patches", &["SYS.2.1.A3", "OPS.1.1.3.A3", "OPS.1.1.3.A15", "SYS.2.3.A4"]),
    ("firewall", &["SYS.2.1.A31", "SYS.1.1.A19", "SYS.3.1.A3", "SYS.2.4.A10"]),
    ("time_sync", &["OPS.1.1.5.A4", "OPS.1.2.6.A7"]),
    ("audit_logging", &["OPS.1.1.5.A3", "SYS.1.1.A10", "DER.1.A5"]),
    ("secure_boot", &["SYS.2.1.A8", "SYS.2.1.A36"]),
    ("screen_lock", &["SYS.2.1.A1"]),
];

/// The reference's CIS v8 column.
const CIS: [&str; 15] = [
    "3.6", "10.1", "10.2", "7.3", "7.4", "4.4", "4.5", "8.4", "8.2", "4.3", "5.4", "5.2", "6.3", "4.1", "2.1",
];

/// The reference's NIST SP 800-53r5 column as OSCAL ids (`SC-28(1)` is
/// `sc-28.1`), with the control titles of the public-domain catalog.
const NIST: [(&str, &str); 24] = [
    ("sc-28", "Protection of Information at Rest"),
    ("sc-28.1", "Protection of Information at Rest | Cryptographic Protection"),
    ("si-3", "Malicious Code Protection"),
    ("si-4", "System Monitoring"),
    ("si-2", "Flaw Remediation"),
    ("si-2.2", "Flaw Remediation | Automated Flaw Remediation Status"),
    ("ra-5", "Vulnerability Monitoring and Scanning"),
    ("sc-7", "Boundary Protection"),
    ("sc-7.12", "Boundary Protection | Host-based Protection"),
    ("au-8", "Time Stamps"),
    ("sc-45", "System Time Synchronization"),
    ("au-2", "Event Logging"),
    ("au-12", "Audit Record Generation"),
    ("ac-11", "Device Lock"),
    ("ac-11.1", "Device Lock | Pattern-hiding Displays"),
    ("ac-6", "Least Privilege"),
    ("ac-6.5", "Least Privilege | Privileged Accounts"),
    ("ia-2", "Identification and Authentication (Organizational Users)"),
    ("ac-7", "Unsuccessful Logon Attempts"),
    ("ia-5", "Authenticator Management"),
    ("cm-6", "Configuration Settings"),
    ("cm-7", "Least Functionality"),
    ("cm-8", "System Component Inventory"),
    ("si-7.9", "Software, Firmware, and Information Integrity | Verify Boot Process"),
];

fn ids_of<'a>(cat: &'a Catalog, framework: &str) -> BTreeSet<&'a str> {
    cat.controls().iter().filter(|c| c.framework() == framework).map(|c| c.id.as_str()).collect()
}

#[test]
fn every_bsi_module_and_requirement_of_the_reference_is_an_entry_with_its_title() {
    let cat = Catalog::builtin().unwrap();
    let modules: BTreeSet<String> =
        cat.modules().iter().filter(|m| m.framework() == BSI).map(|m| m.id.clone()).collect();
    let expected: BTreeSet<String> = BSI_MODULES.iter().map(|(id, _)| format!("{BSI}/{id}")).collect();
    assert_eq!(modules, expected);
    for (id, title) in BSI_MODULES {
        let m = cat.module(&format!("{BSI}/{id}")).unwrap();
        assert_eq!(m.title, title, "{id}");
    }
    let mut listed = BTreeSet::new();
    for (_, requirements) in BSI_REQUIREMENTS {
        for (id, level, title) in requirements {
            let qualified = format!("{BSI}/{id}");
            let c = cat.control(&qualified).unwrap_or_else(|| panic!("{qualified} is missing"));
            assert_eq!((c.title.as_str(), c.level.as_deref()), (*title, Some(*level)), "{qualified}");
            // Its module is the longest module id the requirement id extends.
            let module = BSI_MODULES
                .iter()
                .map(|(m, _)| *m)
                .filter(|m| id.starts_with(&format!("{m}.A")))
                .max_by_key(|m| m.len())
                .unwrap();
            assert_eq!(c.module.as_deref(), Some(format!("{BSI}/{module}").as_str()), "{qualified}");
            assert!(cat.requirements_of(&format!("{BSI}/{module}")).iter().any(|r| r.id == qualified));
            listed.insert(qualified);
        }
    }
    let catalog: BTreeSet<String> = ids_of(&cat, BSI).into_iter().map(String::from).collect();
    assert_eq!(catalog, listed, "the catalog holds exactly the reference's BSI requirements");
    assert_eq!(listed.len(), 30);
    // NET.3.2 is named as a module; the reference lists no requirement of it.
    assert!(cat.requirements_of(&format!("{BSI}/NET.3.2")).is_empty());
}

#[test]
fn checks_support_the_bsi_requirements_of_their_evidence_row() {
    let cat = Catalog::builtin().unwrap();
    for (check, requirements) in CHECKS_TO_BSI {
        let mapped: BTreeSet<&str> = cat
            .controls_for_check(check)
            .iter()
            .filter_map(|(c, _)| c.strip_prefix(&format!("{BSI}/")))
            .collect();
        let expected: BTreeSet<&str> = requirements.iter().copied().collect();
        assert!(expected.is_subset(&mapped), "{check}: {mapped:?} lacks some of {expected:?}");
        for r in requirements {
            let row = cat
                .mappings()
                .iter()
                .find(|m| m.check == check && m.requirement == format!("{BSI}/{r}"))
                .unwrap();
            assert!(!row.rationale.trim().is_empty(), "{check} → {r}");
        }
    }
    // The host-firewall check is equal to the local packet filter requirements.
    for r in ["SYS.2.1.A31", "SYS.1.1.A19"] {
        assert!(cat.controls_for_check("firewall").contains(&(format!("{BSI}/{r}"), Relationship::Equal)));
    }
}

#[test]
fn cis_v8_is_ids_only_exactly_as_the_reference_lists() {
    let cat = Catalog::builtin().unwrap();
    let expected: BTreeSet<String> = CIS.iter().map(|n| format!("cis:v8/{n}")).collect();
    let catalog: BTreeSet<String> = ids_of(&cat, "cis:v8").into_iter().map(String::from).collect();
    assert_eq!(catalog, expected);
    for n in CIS {
        // No CIS wording (its licence allows no derivatives): our label only.
        assert_eq!(cat.control(&format!("cis:v8/{n}")).unwrap().title, format!("CIS Safeguard {n}"));
    }
}

#[test]
fn nist_800_53_ids_carry_their_titles() {
    let cat = Catalog::builtin().unwrap();
    let expected: BTreeSet<String> = NIST.iter().map(|(id, _)| format!("nist-800-53:r5/{id}")).collect();
    let catalog: BTreeSet<String> = ids_of(&cat, "nist-800-53:r5").into_iter().map(String::from).collect();
    assert_eq!(catalog, expected);
    for (id, title) in NIST {
        assert_eq!(cat.control(&format!("nist-800-53:r5/{id}")).unwrap().title, title, "{id}");
        // An enhancement's title begins with its base control's.
        if let Some((base, _)) = id.split_once('.')
            && let Some((_, base_title)) = NIST.iter().find(|(b, _)| *b == base)
        {
            assert!(title.starts_with(&format!("{base_title} | ")), "{id}: {title}");
        }
    }
}
