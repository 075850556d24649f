//! `GET /api/v1/mappings` on a running server: the mapping set in force with
//! every row's relationship and rationale, requirements' coverage, modules
//! with their requirements, the filters, refusals, and an organisation's
//! own mapping file taken up (and a broken one refused) at run time.

use custos_server::compliance::catalog::Catalog;
use custos_server::datadir::DataDir;
use custos_tests::TestServer;
use serde_json::{Value, json};

fn row<'a>(answer: &'a Value, check: &str, requirement: &str) -> &'a Value {
    answer["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check && r["requirement"] == requirement)
        .unwrap_or_else(|| panic!("no mapping {check} → {requirement}"))
}

fn requirement<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["requirements"].as_array().unwrap().iter().find(|r| r["requirement"] == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mappings_in_force_are_served_with_relationship_and_rationale() {
    let server = TestServer::start().await;
    let builtin = Catalog::builtin().unwrap();
    assert_eq!(server.api_with("/api/v1/mappings", None).await.0, 401);

    // Any reader may review them.
    let viewer = server.read_token();
    let (status, all) = server.api_with("/api/v1/mappings", Some(&viewer)).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["version"], builtin.mapping_version());
    let rows = all["mappings"].as_array().unwrap();
    assert_eq!(rows.len(), builtin.mappings().len());
    for r in rows {
        let rationale = r["rationale"].as_str().unwrap();
        assert!(!rationale.trim().is_empty() && !rationale.contains('\n'), "{r}");
        assert!(
            ["equal", "subset", "superset", "intersect"].contains(&r["relationship"].as_str().unwrap()),
            "{r}"
        );
    }
    let fw = row(&all, "firewall", "bsi-grundschutz:2023/SYS.2.1.A31");
    assert_eq!(
        (&fw["relationship"], &fw["rationale"], &fw["origin"]),
        (
            &json!("equal"),
            &json!("Asks for a local packet filter on clients that limits incoming connections."),
            &json!("mapping_set")
        )
    );
    // A 2013 control answered through its 2022 successor says so.
    let old = row(&all, "os_patches", "iso27001:2013/A.12.6.1");
    assert_eq!((&old["relationship"], &old["origin"]), (&json!("intersect"), &json!("crosswalk")));
    assert!(old["rationale"].as_str().unwrap().contains("iso27001:2022/A.8.8"), "{old}");

    // One check in one framework: its rows, the requirements' coverage and modules.
    let (status, bsi) = server.api("/api/v1/mappings?check=firewall&framework=bsi-grundschutz:2023").await;
    assert_eq!(status, 200, "{bsi}");
    let rows = bsi["mappings"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{bsi:#}");
    assert!(rows.iter().all(|r| r["check"] == "firewall"
        && r["requirement"].as_str().unwrap().starts_with("bsi-grundschutz:2023/")));
    // Equal: a passing check shows the requirement met; subset: only the part measured.
    assert_eq!(requirement(&bsi, "bsi-grundschutz:2023/SYS.2.1.A31")["coverage"], "full");
    let laptop = requirement(&bsi, "bsi-grundschutz:2023/SYS.3.1.A3");
    assert_eq!(
        (&laptop["coverage"], &laptop["module"], &laptop["title"]),
        (&json!("partial"), &json!("bsi-grundschutz:2023/SYS.3.1"), &json!("Einsatz von Personal Firewalls"))
    );
    let modules: Vec<&str> =
        bsi["modules"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(modules.len(), 4, "{modules:?}");

    // The framework's modules, each with its requirements; NET.3.2 without any.
    let (_, bsi) = server.api("/api/v1/mappings?framework=bsi-grundschutz:2023").await;
    let modules = bsi["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 13);
    let net = modules.iter().find(|m| m["id"] == "bsi-grundschutz:2023/NET.3.2").unwrap();
    assert_eq!((&net["title"], &net["requirements"]), (&json!("Firewall"), &json!([])));
    let client = modules.iter().find(|m| m["id"] == "bsi-grundschutz:2023/SYS.2.1").unwrap();
    assert_eq!(client["title"], "Allgemeiner Client");
    let a31 = client["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "bsi-grundschutz:2023/SYS.2.1.A31");
    let a31 = a31.expect("SYS.2.1.A31 under SYS.2.1");
    assert_eq!(
        (&a31["level"], &a31["checks"], &a31["coverage"]),
        (&json!("H"), &json!(["firewall"]), &json!("full"))
    );
    // Removable media: in the catalog, no check measures it yet.
    let a24 = client["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "bsi-grundschutz:2023/SYS.2.1.A24");
    assert_eq!((&a24.unwrap()["checks"], &a24.unwrap()["coverage"]), (&json!([]), &Value::Null));

    for (path, why) in [
        ("/api/v1/mappings?check=dns", "unknown check \"dns\""),
        ("/api/v1/mappings?framework=iso27001:2099", "unknown framework"),
        ("/api/v1/mappings?colour=blue", "allowed: check, framework"),
    ] {
        let (status, e) = server.api(path).await;
        assert_eq!(status, 400, "{path}");
        assert!(e["error"].as_str().unwrap().contains(why), "{path}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisations_mapping_file_is_served_once_taken_up() {
    let server = TestServer::start().await;
    let builtin = include_str!("../../server/data/mappings.toml");
    let path = DataDir(server.dir.clone()).mappings();
    let own = format!(
        "{}\n[[mapping]]\ncheck = \"antivirus\"\ncontrol = \"iso27001:2022/A.5.10\"\nrelationship = \"intersect\"\nrationale = \"Malware protection is part of acceptable use here.\"\n",
        builtin.replacen("version = \"custos-mappings-", "version = \"acme-mappings-", 1)
    );
    std::fs::write(&path, &own).unwrap();
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(status, 200, "{r}");
    let (_, m) = server.api("/api/v1/mappings?check=antivirus&framework=iso27001:2022").await;
    assert!(m["version"].as_str().unwrap().starts_with("acme-mappings-"), "{m}");
    let ours = row(&m, "antivirus", "iso27001:2022/A.5.10");
    assert_eq!(ours["rationale"], "Malware protection is part of acceptable use here.");
    assert_eq!(requirement(&m, "iso27001:2022/A.5.10")["coverage"], "partial");

    // A rationale over two lines is refused by file and line; the last good set stays.
    let bad = own.replace(
        "rationale = \"Malware protection is part of acceptable use here.\"",
        "rationale = \"Malware protection\\nis part of acceptable use here.\"",
    );
    assert_ne!(bad, own);
    std::fs::write(&path, &bad).unwrap();
    let line = bad[..bad.find("Malware protection\\n").unwrap()].matches('\n').count() + 1;
    let (status, r) = server.send("POST", "/api/v1/policy/reload", json!({})).await;
    assert_eq!(status, 422, "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains(&format!("mappings.toml:{line}:")) && error.contains("more than one line"), "{r}");
    let (_, m) = server.api("/api/v1/mappings?check=antivirus").await;
    assert!(m["version"].as_str().unwrap().starts_with("acme-mappings-"), "{m}");
    assert_eq!(row(&m, "antivirus", "iso27001:2022/A.5.10")["origin"], "mapping_set");
}
