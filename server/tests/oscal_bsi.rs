//! The real OSCAL input published by the BSI (shared/data beside the
//! repository): the Grundschutz++ "Stand der Technik" kernel catalog and the
//! ISO/IEC 27001:2022 Annex A → Grundschutz++ mapping collection read
//! cleanly, completely and consistently.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use custos_server::compliance::oscal::{dangling_targets, parse_catalog, parse_mapping_collection};

/// The BSI file `name` from `shared/data` beside the repository, or `None`
/// (said on stderr, naming the test and the path) where it is absent: a
/// clone elsewhere, or a CI runner without the folder, has no data to read.
fn data(test: &str, name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(name);
    if p.exists() {
        return Some(p);
    }
    eprintln!("skipping {test}: {} not found", p.display());
    None
}

#[test]
fn the_bsi_kernel_catalog_and_the_iso_mapping_read_cleanly() {
    let test = "the_bsi_kernel_catalog_and_the_iso_mapping_read_cleanly";
    let (Some(cat), Some(map)) = (
        data(test, "BSI-Stand-der-Technik-Kernel-catalog.json"),
        data(test, "ISO27001-AnnexA-to-GS++-mapping_collection.json"),
    ) else {
        return;
    };
    let catalog = parse_catalog(&cat, &std::fs::read(&cat).unwrap()).unwrap();
    assert_eq!(catalog.title, "BSI Stand der Technik Kernel");
    assert_eq!(catalog.oscal_version, "1.1.3");
    assert_eq!(catalog.controls.len(), 901);
    let firewall = catalog.controls.iter().find(|c| c.id == "KONF.7.15").expect("KONF.7.15 Lokale Firewall");
    assert!(firewall.title.contains("Firewall"), "{}", firewall.title);
    assert!(catalog.controls.iter().all(|c| !c.title.is_empty() && !c.groups.is_empty()));

    let m = parse_mapping_collection(&map, &std::fs::read(&map).unwrap()).unwrap();
    assert_eq!(m.oscal_version, "1.2.2");
    assert_eq!(m.mappings.len(), 2);
    let kernel = m.mappings.iter().find(|x| x.target.contains("Kernel")).expect("mapping to the kernel");
    assert_eq!(kernel.maps.len(), 83);
    // The mapping was made against another version of the kernel catalog:
    // four of its targets do not exist in this one, and are reported.
    assert_eq!(dangling_targets(kernel, &catalog), ["BER.5.1.2", "BER.6.8", "DET.3.1.13", "GEB.5.4"]);
    let targets: HashSet<&str> =
        kernel.maps.iter().flat_map(|x| x.targets.iter().map(String::as_str)).collect();
    assert!(targets.len() > 100, "{}", targets.len());
    // Sources are Annex A numbers such as 5.1 or 8.24.
    for x in &kernel.maps {
        assert!(x.sources.iter().all(|s| s.split('.').all(|p| p.parse::<u32>().is_ok())), "{:?}", x.sources);
    }
}
