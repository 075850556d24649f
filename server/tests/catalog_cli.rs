//! The `custos-server catalog` commands run as the real binary: `init`, then
//! `catalog import` of OSCAL 1.0 and 1.2 catalogs and `catalog map` of an
//! OSCAL 1.2 mapping collection (all written for these tests, under
//! `tests/oscal/`), their exit codes and output, the result served by a
//! `custos-server run` on the same data dir afterwards, and malformed,
//! unsupported or repeated input refused with a non-zero exit, a message
//! naming the file, and nothing changed.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_custos-server");

fn oscal(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oscal").join(name)
}

fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(BIN).args(args).env("CUSTOS_LOG", "warn").output().expect("run custos-server")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn refused(out: &Output, wants: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "a refusal prints no success line: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for want in wants {
        assert!(err.contains(want), "stderr {err:?} lacks {want:?}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `custos-server run` killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over plain HTTP/1.1 (the API without TLS on loopback):
/// status and JSON body, or `None` while nothing listens.
fn get(port: u16, path: &str, token: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn catalogs_and_mappings_are_imported_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server");
    let d = dir.to_str().unwrap();

    let init = ok(&run(&["init", "--data-dir", d]));
    assert!(init.starts_with(&format!("initialised {d}\n")), "{init}");
    let token = init.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("cadm"), "{init}");

    let v1_0 = oscal("catalog-1.0.4.json");
    let out = ok(&run(&[
        "catalog",
        "import",
        "--data-dir",
        d,
        "--framework",
        "custos-baseline:2021.1",
        v1_0.to_str().unwrap(),
    ]));
    assert_eq!(
        out,
        "imported Custos endpoint baseline (4 controls) as framework custos-baseline:2021.1; restart the server to use it\n"
    );
    let v1_2 = oscal("catalog-1.2.2.json");
    let out = ok(&run(&[
        "catalog",
        "import",
        "--data-dir",
        d,
        "--framework",
        "custos-baseline:2026.2",
        v1_2.to_str().unwrap(),
    ]));
    assert!(
        out.starts_with(
            "imported Custos endpoint baseline (4 controls) as framework custos-baseline:2026.2;"
        ),
        "{out}"
    );

    let mapping = oscal("mapping-1.2.2.json");
    let map_args = [
        "catalog",
        "map",
        "--data-dir",
        d,
        "--source",
        "iso27001:2022",
        "--target",
        "custos-baseline:2021.1",
        "--target-href",
        "custos-endpoint-baseline.json",
        mapping.to_str().unwrap(),
    ];
    let out = ok(&run(&map_args));
    // A.8.20 → ep-net-1 gives firewall and ssh_server, A.8.24 → ep-data-1 gives
    // disk_encryption; ep-net-9 is not in the catalog and is said so.
    assert_eq!(
        out,
        "imported ISO/IEC 27001:2022 Annex A to the Custos endpoint baseline 1 (iso27001:2022 → custos-baseline:2021.1): 3 check mappings derived\n\
         targets not in custos-baseline:2021.1 (skipped): ep-net-9\n\
         restart the server to use it\n"
    );

    // Visible to the server started on the data dir afterwards.
    let (grpc, http) = (free_port(), free_port());
    let _server = Server(
        Command::new(BIN)
            .args(["run", "--data-dir", d])
            .args([
                "--grpc-listen",
                &format!("127.0.0.1:{grpc}"),
                "--http-listen",
                &format!("127.0.0.1:{http}"),
            ])
            .env("CUSTOS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start custos-server run"),
    );
    let mut controls = None;
    for _ in 0..150 {
        controls = get(http, "/api/v1/controls?framework=custos-baseline:2021.1", &token);
        if controls.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, controls) = controls.expect("custos-server run answered");
    assert_eq!(status, 200, "{controls}");
    let by_id = |id: &str| {
        controls["controls"].as_array().unwrap().iter().find(|c| c["control_id"] == id).cloned().unwrap()
    };
    assert_eq!(controls["controls"].as_array().unwrap().len(), 4);
    assert_eq!(
        by_id("custos-baseline:2021.1/ep-net-1")["checks"],
        serde_json::json!(["firewall", "ssh_server"])
    );
    assert_eq!(by_id("custos-baseline:2021.1/ep-data-1")["checks"], serde_json::json!(["disk_encryption"]));
    assert_eq!(by_id("custos-baseline:2021.1/gov-1")["checks"], serde_json::json!([]));
    assert!(
        controls["mapping_version"]
            .as_str()
            .unwrap()
            .ends_with(" + ISO/IEC 27001:2022 Annex A to the Custos endpoint baseline 1"),
        "{}",
        controls["mapping_version"]
    );
    let (status, later) = get(http, "/api/v1/controls?framework=custos-baseline:2026.2", &token).unwrap();
    assert_eq!((status, later["controls"].as_array().unwrap().len()), (200, 4));
    let (status, m) = get(http, "/api/v1/mappings?framework=custos-baseline:2021.1", &token).unwrap();
    assert_eq!(status, 200, "{m}");
    let rows: Vec<(&str, &str, &str, &str)> = m["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["check"].as_str().unwrap(),
                r["requirement"].as_str().unwrap(),
                r["relationship"].as_str().unwrap(),
                r["origin"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("firewall", "custos-baseline:2021.1/ep-net-1", "subset", "imported"),
            ("ssh_server", "custos-baseline:2021.1/ep-net-1", "intersect", "imported"),
            ("disk_encryption", "custos-baseline:2021.1/ep-data-1", "subset", "imported"),
        ]
    );
    let why = m["mappings"][0]["rationale"].as_str().unwrap();
    assert!(why.starts_with("via iso27001:2022/A.8.20: the check is subset of it"), "{why}");
    drop(_server);

    // Refusals: non-zero exit, the file named, nothing in the data dir changed.
    let catalogs = dir.join("catalogs");
    let before = files_in(&catalogs);
    refused(
        &run(&[
            "catalog",
            "import",
            "--data-dir",
            d,
            "--framework",
            "custos-baseline:2021.1",
            v1_0.to_str().unwrap(),
        ]),
        &["custos-baseline:2021.1", "exists already"],
    );
    refused(&run(&map_args), &["mapping-1.2.2.json", "imported already"]);

    let broken = tmp.path().join("broken-catalog.json");
    let text = std::fs::read_to_string(&v1_0).unwrap();
    std::fs::write(&broken, &text[..text.len() / 2]).unwrap();
    refused(
        &run(&["catalog", "import", "--data-dir", d, "--framework", "broken:1", broken.to_str().unwrap()]),
        &["broken-catalog.json", "not OSCAL JSON"],
    );
    let future = tmp.path().join("future-catalog.json");
    std::fs::write(&future, text.replace("\"oscal-version\": \"1.0.4\"", "\"oscal-version\": \"2.0.0\""))
        .unwrap();
    refused(
        &run(&["catalog", "import", "--data-dir", d, "--framework", "future:1", future.to_str().unwrap()]),
        &["future-catalog.json", "OSCAL version \"2.0.0\" is not supported"],
    );
    let missing = tmp.path().join("no-such-catalog.json");
    refused(
        &run(&["catalog", "import", "--data-dir", d, "--framework", "missing:1", missing.to_str().unwrap()]),
        &["no-such-catalog.json"],
    );
    let broken_map = tmp.path().join("broken-mapping.json");
    std::fs::write(&broken_map, "{\"mapping-collection\": {\"uuid\": 1}}").unwrap();
    let mut args = map_args;
    args[10] = broken_map.to_str().unwrap();
    refused(&run(&args), &["broken-mapping.json", "not OSCAL JSON"]);
    let old_map = tmp.path().join("old-mapping.json");
    let m = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(&old_map, m.replace("\"oscal-version\": \"1.2.2\"", "\"oscal-version\": \"1.1.2\""))
        .unwrap();
    args[10] = old_map.to_str().unwrap();
    refused(&run(&args), &["old-mapping.json", "no mapping-collection model"]);
    assert_eq!(files_in(&catalogs), before, "a refused import changed the data dir");
}
