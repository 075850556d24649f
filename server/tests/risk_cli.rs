//! The `custos-server risk` commands on a real data dir: record, list,
//! update, accept, show and export, and clear refusals with a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};

fn risk(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos-server"))
        .arg("risk")
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run custos-server")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn refused(out: &Output, want: &str) {
    assert!(!out.status.success(), "expected a refusal: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(want), "stderr {err:?} lacks {want:?}");
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn the_register_is_worked_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    custos_server::app::init(&dir, &[], None).unwrap();

    let added: serde_json::Value = serde_json::from_str(&ok(&risk(
        &dir,
        &[
            "add",
            "--actor",
            "ciso",
            "--title",
            "Backups are not tested",
            "--likelihood",
            "likely",
            "--impact",
            "4",
            "--goal",
            "availability",
            "--requirement",
            "iso27001:2022/A.8.13",
        ],
    )))
    .unwrap();
    let id = added["id"].as_i64().unwrap().to_string();
    assert_eq!(added["current"]["level"], "high");
    assert_eq!(added["origin"], "manual");

    refused(
        &risk(&dir, &["add", "--actor", "ciso", "--title", "x", "--likelihood", "often", "--impact", "1"]),
        "almost certain",
    );
    refused(
        &risk(
            &dir,
            &[
                "add",
                "--actor",
                "ciso",
                "--title",
                "x",
                "--likelihood",
                "1",
                "--impact",
                "1",
                "--requirement",
                "iso27001:2022/A.99",
            ],
        ),
        "not in the catalog",
    );

    let table = ok(&risk(&dir, &["list"]));
    assert!(table.contains("Backups are not tested") && table.contains("high"), "{table}");

    ok(&risk(
        &dir,
        &["update", &id, "--actor", "ciso", "--owner", "backup-team", "--residual", "rare,major"],
    ));
    refused(&risk(&dir, &["update", &id, "--actor", "ciso", "--residual", "1"]), "likelihood,impact");
    refused(&risk(&dir, &["update", "999", "--actor", "ciso", "--owner", "x"]), "no risk with id 999");

    refused(
        &risk(&dir, &["accept", &id, "--approver", "ciso", "--justification", "j", "--expires", "soon"]),
        "YYYY-MM-DD",
    );
    refused(
        &risk(
            &dir,
            &["accept", &id, "--approver", "ciso", "--justification", "j", "--expires", "2020-01-01"],
        ),
        "future",
    );
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(60)).date().to_string();
    let accepted: serde_json::Value = serde_json::from_str(&ok(&risk(
        &dir,
        &[
            "accept",
            &id,
            "--approver",
            "board",
            "--justification",
            "restore drill booked",
            "--expires",
            &later,
        ],
    )))
    .unwrap();
    assert_eq!(accepted["status"], "accepted");

    let shown: serde_json::Value = serde_json::from_str(&ok(&risk(&dir, &["show", &id]))).unwrap();
    let changes: Vec<&str> =
        shown["history"].as_array().unwrap().iter().map(|h| h["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["created", "updated", "accepted"]);

    let csv = ok(&risk(&dir, &["export", "--status", "all", "--out", "-"]));
    let mut lines = csv.split("\r\n");
    assert!(lines.next().unwrap().starts_with("id,origin,requirement,scope,title,status"));
    let row = lines.next().unwrap();
    assert!(
        row.contains("Backups are not tested") && row.contains("accepted") && row.contains("backup-team"),
        "{row}"
    );
    refused(&risk(&dir, &["list", "--status", "opened"]), "in_treatment");
    // The command line reads filters as the API does.
    refused(&risk(&dir, &["list", "--owner", " "]), "owner is empty");
    refused(
        &risk(&dir, &["list", "--requirement", "iso27001:2099/"]),
        "neither a requirement of the catalog",
    );
    ok(&risk(&dir, &["list", "--requirement", "iso27001:2022/A.8"]));
}
