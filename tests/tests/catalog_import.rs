//! Importing OSCAL catalogs into a server's data dir: a catalog of our own and
//! the real BSI Grundschutz++ kernel become frameworks whose controls the API
//! lists (not assessed until checks map to them); bad input changes nothing.

use std::path::Path;

use custos_server::app::{import_catalog, import_mapping};
use custos_tests::TestServer;

const OWN: &str = r#"{"catalog": {
    "uuid": "0b7f3f55-8d0e-4c59-a4f5-2c1d9e6b7a10",
    "metadata": {"title": "Custos house rules", "version": "3", "oscal-version": "1.1.2",
                 "last-modified": "2026-11-23T00:00:00Z"},
    "groups": [{"id": "ep", "title": "Endpoints", "controls": [
        {"id": "ep-1", "title": "Laptops lock within five minutes"},
        {"id": "ep-2", "title": "No local admin rights for staff"}]}]
}}"#;

/// Check → kernel requirement rows the BSI's ISO → GS++ mapping gives
/// through the built-in ISO/IEC 27001:2022 mappings, and the kernel
/// requirements that gain a check.
const BSI_KERNEL_ROWS: usize = 123;
const BSI_KERNEL_WITH_CHECKS: usize = 77;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_catalogs_are_listed_and_bad_ones_change_nothing() {
    let mut server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let own = tmp.path().join("house-rules.json");
    std::fs::write(&own, OWN).unwrap();

    let imported = import_catalog(&server.dir, &own, "house-rules:3").unwrap();
    assert_eq!((imported.name.as_str(), imported.controls), ("Custos house rules", 2));

    // Refused, each with its reason, and nothing stored.
    let e = import_catalog(&server.dir, &own, "house-rules:3").unwrap_err().to_string();
    assert!(e.contains("exists already"), "{e}");
    let e = import_catalog(&server.dir, &own, "House Rules").unwrap_err().to_string();
    assert!(e.contains("not name:edition"), "{e}");
    let broken = tmp.path().join("broken.json");
    std::fs::write(&broken, &OWN[..OWN.len() / 2]).unwrap();
    let e = import_catalog(&server.dir, &broken, "broken:1").unwrap_err().to_string();
    assert!(e.contains("broken.json") && e.contains("not OSCAL JSON"), "{e}");

    let bsi = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/BSI-Stand-der-Technik-Kernel-catalog.json");
    let mapping = bsi.with_file_name("ISO27001-AnnexA-to-GS++-mapping_collection.json");
    // shared/ is beside the repository on the project's machines; a CI
    // runner without it still runs everything else, and says what it left out.
    let with_bsi = bsi.exists() && mapping.exists();
    if !with_bsi {
        let absent = if bsi.exists() { &mapping } else { &bsi };
        eprintln!("skipping the BSI Grundschutz++ import: {} not found", absent.display());
    }
    let mut derived = 0;
    if with_bsi {
        let k = import_catalog(&server.dir, &bsi, "bsi-gspp-kernel:2026-07-29").unwrap();
        assert_eq!(k.controls, 901);
        // The BSI's own ISO → GS++ mapping: the checks behind ISO controls now
        // support the kernel's requirements; targets the catalog lacks are reported.
        let kernel = "BSI-Stand-der-Technik-Kernel-catalog.json";
        let e = import_mapping(&server.dir, &mapping, "iso27001:2022", "bsi-gspp-kernel:2099", kernel)
            .unwrap_err();
        assert!(e.to_string().contains("not loaded"), "{e}");
        let e = import_mapping(
            &server.dir,
            &mapping,
            "iso27001:2022",
            "bsi-gspp-kernel:2026-07-29",
            "other.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no mapping with target"), "{e}");
        let m = import_mapping(&server.dir, &mapping, "iso27001:2022", "bsi-gspp-kernel:2026-07-29", kernel)
            .unwrap();
        // Rows follow from the built-in mappings: a change there shows here.
        assert_eq!(m.rows, BSI_KERNEL_ROWS, "{m:?}");
        assert_eq!(m.dangling, ["BER.5.1.2", "BER.6.8", "DET.3.1.13", "GEB.5.4"]);
        derived = m.rows;
    }

    server.restart().await;
    let (status, c) = server.api("/api/v1/controls?framework=house-rules:3").await;
    assert_eq!(status, 200, "{c}");
    let controls = c["controls"].as_array().unwrap();
    assert_eq!(controls.len(), 2);
    assert_eq!(controls[0]["control_id"], "house-rules:3/ep-1");
    assert_eq!(controls[0]["state"], "not_assessed");
    assert_eq!(server.api("/api/v1/controls?framework=broken:1").await.0, 400);
    if with_bsi {
        let (_, k) = server.api("/api/v1/controls?framework=bsi-gspp-kernel:2026-07-29").await;
        let ks = k["controls"].as_array().unwrap();
        assert_eq!(ks.len(), 901);
        assert!(ks.iter().any(|c| c["control_id"] == "bsi-gspp-kernel:2026-07-29/KONF.7.15"));
        // Mapped kernel requirements now carry checks, and results name the collection.
        let with_checks = ks.iter().filter(|c| !c["checks"].as_array().unwrap().is_empty()).count();
        assert_eq!(with_checks, BSI_KERNEL_WITH_CHECKS, "kernel requirements with checks");
        assert!(k["mapping_version"].as_str().unwrap().contains("GS++"), "{}", k["mapping_version"]);
        // Every derived row is served with its route as rationale.
        let (_, m) = server.api("/api/v1/mappings?framework=bsi-gspp-kernel:2026-07-29").await;
        let rows = m["mappings"].as_array().unwrap();
        assert_eq!(rows.len(), derived);
        for r in rows {
            assert_eq!(r["origin"], "imported", "{r}");
            assert!(r["rationale"].as_str().unwrap().starts_with("via iso27001:2022/A."), "{r}");
        }
        // A.8.20 is a subset of ARCH.4.1 per the BSI; the firewall check a
        // subset of A.8.20: so a subset of ARCH.4.1.
        let fw = rows
            .iter()
            .find(|r| r["check"] == "firewall" && r["requirement"] == "bsi-gspp-kernel:2026-07-29/ARCH.4.1")
            .expect("firewall → ARCH.4.1 through A.8.20");
        assert_eq!(fw["relationship"], "subset");
        assert!(fw["rationale"].as_str().unwrap().starts_with("via iso27001:2022/A.8.20:"), "{fw}");
    }
    // The built-in frameworks are all still there.
    let (_, iso) = server.api("/api/v1/controls?framework=iso27001:2022").await;
    assert_eq!(iso["controls"].as_array().unwrap().len(), 93);
}
