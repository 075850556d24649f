//! A server address where something accepts the TCP connection and then
//! never says a word (a hung server, a stuck load balancer): `enroll` and
//! `run --once` end within their deadlines with a message naming the phase
//! that timed out, and `run --once` has collected and spooled its record
//! before it tried to deliver.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use custos_agent::spool::Spool;
use custos_agent::state::{
    AgentIdentity, StateDir, generate_evidence_key, new_tls_key_and_csr, write_private,
};

const AGENT: &str = env!("CARGO_BIN_EXE_custos-agent");

/// Accepts connections on a loopback port and holds them open, silent.
fn silent_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    addr
}

/// A CA certificate the agent will never get to check.
fn some_ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["custos-test-ca".into()]).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("self-signed").pem()
}

/// A state directory as enrollment leaves it, for an agent whose server is `server`.
fn enrolled_state(dir: &Path, server: &str) -> StateDir {
    let state = StateDir(dir.join("state"));
    state.create().unwrap();
    let evidence = generate_evidence_key();
    write_private(&state.evidence_key(), hex::encode(evidence.to_bytes()).as_bytes()).unwrap();
    let (tls_key, _) = new_tls_key_and_csr().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["agent".into()]).unwrap().self_signed(&tls_key).unwrap();
    write_private(&state.tls_key(), tls_key.serialize_pem().as_bytes()).unwrap();
    write_private(&state.client_cert(), cert.pem().as_bytes()).unwrap();
    write_private(&state.ca_cert(), some_ca_pem().as_bytes()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    state
        .save_identity(&AgentIdentity {
            agent_id: "0123456789abcdef".into(),
            server: server.into(),
            server_name: "127.0.0.1".into(),
            cert_not_before: now,
            cert_not_after: now + 86_400,
        })
        .unwrap();
    state
}

/// Runs the agent with `args`; returns its output and how long it took.
fn agent(args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new(AGENT).args(args).env("CUSTOS_LOG", "warn").output().expect("run custos-agent");
    (out, start.elapsed())
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn enroll_gives_up_at_the_handshake_deadline_and_says_so() {
    let server = silent_peer();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, some_ca_pem()).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[network]\nconnect_secs = 2\n").unwrap();
    let state = dir.path().join("state");
    let base = ["enroll", "--server", &server, "--token", "t0k3n", "--ca-cert"];
    let mut args: Vec<&str> = base.to_vec();
    args.extend([ca.to_str().unwrap(), "--state-dir", state.to_str().unwrap()]);

    // With the configured limit.
    let mut with_config = args.clone();
    with_config.extend(["--config", config.to_str().unwrap()]);
    let (out, took) = agent(&with_config);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(took < Duration::from_secs(15), "enroll took {took:?} against a 2 s deadline");
    assert!(took >= Duration::from_secs(2), "gave up before the deadline: {took:?}");
    let said = text(&out);
    assert!(
        said.contains("did not answer in time") && said.contains("TLS handshake") && said.contains(&server),
        "the message does not name the server and the phase: {said}"
    );
    assert!(!state.exists(), "a failed enrollment left its state directory behind");

    // Out of the box: the default connect deadline (10 s) bounds it too.
    let (out, took) = agent(&args);
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(30), "enroll took {took:?} with the default deadlines");
    assert!(text(&out).contains("exceeded 10 s"), "{}", text(&out));
}

#[test]
fn run_once_collects_spools_and_ends_at_the_deadline() {
    let server = silent_peer();
    let dir = tempfile::tempdir().unwrap();
    let state = enrolled_state(dir.path(), &server);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[network]\nconnect_secs = 2\ncall_secs = 2\n").unwrap();
    let state_dir = state.0.to_str().unwrap();
    let (out, took) =
        agent(&["run", "--once", "--state-dir", state_dir, "--config", config.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "not delivered is exit 2: {said}");
    assert!(took < Duration::from_secs(60), "run --once took {took:?}");
    // Collected first: every check printed its verdict.
    for check in ["firewall", "os_support", "disk_encryption"] {
        assert!(said.lines().any(|l| l.starts_with(check)), "{check} missing from: {said}");
    }
    assert!(said.contains("not delivered") && said.contains("TLS handshake"), "{said}");
    assert!(said.contains("1 records wait in the spool"), "{said}");
    assert_eq!(Spool::open(&state.spool(), 10).unwrap().len().unwrap(), 1, "the record is spooled");
}
