//! The offline verifier stands alone: `custos-verify` builds without the
//! server's stack (database, TLS, gRPC, HTTP server, policy engine), and
//! its binary judges a real bundle exactly as `custos-server verify` does.

use std::process::{Command, Output};
use std::sync::Arc;

use custos_agent::host::{Host, SystemHost};
use custos_proto::evidence::CheckStatus;
use custos_tests::units::workspace_binary as binary;
use custos_tests::{TestAgent, TestServer, core_results, rfc3339};

/// Crates of the server's stack that must never reach an auditor's build.
const FORBIDDEN: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "rustls",
    "aws-lc-rs",
    "aws-lc-sys",
    "ring",
    "tonic",
    "prost",
    "h2",
    "hyper",
    "axum",
    "reqwest",
    "cel",
    "tokio",
];

#[test]
fn the_verifier_builds_without_the_server_stack() {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "-p", "custos-verify", "-e", "normal,build", "--prefix", "none"])
        .args(["--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"custos-verify") && names.contains(&"ed25519-dalek"), "{tree}");
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| names.contains(f)).collect();
    assert!(found.is_empty(), "custos-verify pulls in {found:?}:\n{tree}");
}

/// The body of a GET with the admin token, which must answer 200.
async fn get(server: &TestServer, path: &str) -> Vec<u8> {
    let (status, body) = server.get_bytes(path).await;
    assert_eq!(status, 200, "GET {path}");
    body
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(binary(program)).args(args).output().expect("binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custos_verify_judges_a_bundle_as_the_server_does() {
    let server = TestServer::start().await;
    let before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let host: Arc<dyn Host> = Arc::new(SystemHost::default());
    let mut a = TestAgent::enroll(&server, "audited", host).await;
    for status in [CheckStatus::Fail, CheckStatus::Pass] {
        a.agent.sign_into_spool(core_results(CheckStatus::Pass, &[("firewall", status)])).unwrap();
    }
    a.agent.deliver().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.tar.gz");
    let now = time::OffsetDateTime::now_utc();
    let query = format!("/api/v1/export?from={}&to={}", rfc3339(before), rfc3339(now));
    std::fs::write(&bundle, get(&server, &query).await).unwrap();
    let key_file = dir.path().join("log.key");
    std::fs::write(&key_file, get(&server, "/api/v1/log/key").await).unwrap();

    let file = bundle.to_str().unwrap();
    let pinned = ["--log-key", key_file.to_str().unwrap()];
    for (args, code) in [(vec![file], 3), ([vec![file], pinned.to_vec()].concat(), 0)] {
        let alone = run("custos-verify", &args);
        let server_verify = run("custos-server", &[vec!["verify"], args.clone()].concat());
        assert_eq!(alone.status.code(), Some(code), "{}", String::from_utf8_lossy(&alone.stdout));
        assert_eq!(alone.status.code(), server_verify.status.code());
        assert_eq!(alone.stdout, server_verify.stdout, "the two names print the same report");
    }
    // A bundle changed in its middle fails under both names.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&bundle, bytes).unwrap();
    let alone = run("custos-verify", &[file, pinned[0], pinned[1]]);
    assert_ne!(alone.status.code(), Some(0), "{}", String::from_utf8_lossy(&alone.stdout));
    let server_verify = run("custos-server", &["verify", file, pinned[0], pinned[1]]);
    assert_eq!(alone.status.code(), server_verify.status.code());
}
