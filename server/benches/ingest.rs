//! Ingest benchmark: streams pre-signed records of realistic size (20
//! checks each) over mutual TLS into a running `custos-server` process and
//! prints records/s next to the ceiling measured in the same run: the rate
//! at which the same records can merely be signature-verified
//! (`verify_strict`, all cores). Also prints the server's peak memory.
//!
//! Run: `cargo bench -p custos-server --bench ingest` (env: BENCH_RECORDS,
//! BENCH_AGENTS).

use std::time::Instant;

use custos_agent::spool::ChainTip;
use custos_proto::evidence::{
    CheckResult, CheckStatus, Envelope, HostInfo, Observation, payload_digest, verify_envelope,
};
use custos_proto::v1;

#[path = "../tests/support/process.rs"]
mod process;
use ed25519_dalek::SigningKey;
use process::ServerProcess;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Twenty checks with facts and excerpts of realistic size.
fn checks(i: u64) -> Vec<CheckResult> {
    (0..20)
        .map(|c| {
            let mut facts = serde_json::Map::new();
            facts.insert("backend_version".into(), format!("1.{c}.{i}").into());
            facts.insert("rule_count".into(), (c * 7 + 3).into());
            facts.insert("input_policy".into(), "drop".into());
            facts.insert("devices".into(), serde_json::json!(["nvme0n1p3", "dm-0", "dm-1"]));
            let status = if c % 7 == 3 { CheckStatus::Fail } else { CheckStatus::Pass };
            CheckResult {
                id: format!("check_{c:02}"),
                status,
                backend: "bench".into(),
                facts,
                observation: Observation {
                    sha256: hex::encode(payload_digest(format!("{i}-{c}").as_bytes())),
                    excerpt: "table inet filter { chain input { type filter hook input priority filter; policy drop; ct state established,related accept; iif lo accept } }".into(),
                },
                reason: (status != CheckStatus::Pass).then(|| "pending security updates: 3 (openssl, libc6, linux-image-amd64)".into()),
            }
        })
        .collect()
}

fn presign(key: &SigningKey, agent_id: &str, n: usize) -> Vec<Envelope> {
    let mut prev = None;
    (1..=n as u64)
        .map(|seq| {
            let tip = ChainTip { seq, prev, gap: None };
            let host = HostInfo {
                os: "linux".into(),
                os_version: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "6.1.0-27-amd64".into(),
                arch: "x86_64".into(),
                display_name: Some(format!("bench-{agent_id}")),
                tags: Vec::new(),
            };
            let env = custos_agent::signing::sign_record(
                key,
                agent_id,
                &tip,
                "2026-11-23T10:00:00Z",
                host,
                checks(seq),
            );
            prev = Some(payload_digest(&env.payload));
            env
        })
        .collect()
}

/// Signature-verification ceiling: all records, all cores.
fn verify_ceiling(work: &[(ed25519_dalek::VerifyingKey, Vec<Envelope>)]) -> f64 {
    let all: Vec<(ed25519_dalek::VerifyingKey, &Envelope)> =
        work.iter().flat_map(|(k, es)| es.iter().map(move |e| (*k, e))).collect();
    per_second_on_all_cores(&all, |(k, e)| verify_envelope(e, k).expect("pre-signed record verifies"))
}

/// Runs `f` over `items` split across all cores; returns items per second.
fn per_second_on_all_cores<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    std::thread::scope(|s| {
        for chunk in items.chunks(items.len().div_ceil(threads).max(1)) {
            let f = &f;
            s.spawn(move || chunk.iter().for_each(f));
        }
    });
    items.len() as f64 / started.elapsed().as_secs_f64()
}

/// The server's own per-record verification (`verify_record`), all cores.
fn full_verify_rate(work: &[(ed25519_dalek::VerifyingKey, Vec<Envelope>)], ids: &[String]) -> f64 {
    let all: Vec<(custos_server::store::agents::AgentKey, &Envelope)> = work
        .iter()
        .zip(ids)
        .flat_map(|((k, es), id)| {
            let key = custos_server::store::agents::AgentKey {
                agent_id: id.clone(),
                evidence_key: k.to_bytes(),
                revoked: false,
            };
            es.iter().map(move |e| (key.clone(), e))
        })
        .collect();
    per_second_on_all_cores(&all, |(k, e)| {
        custos_server::intake::ingest::verify_record((*e).clone(), k, 0).expect("record verifies");
    })
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // rest starts at field 3 (state is not numeric and is skipped).
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / 100.0
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[allow(clippy::too_many_lines, reason = "one measurement run, its figures printed in order")]
fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let total = env_or("BENCH_RECORDS", 20_000);
    let agents = env_or("BENCH_AGENTS", 4).max(1);
    let per_agent = total / agents;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut server = ServerProcess::init(&tmp.path().join("server"));
    server.start();
    let pid = server.pid();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");

    // Enroll the agents (real enrollment) and pre-sign their records.
    let mut work = Vec::new();
    let mut agent_ids = Vec::new();
    let mut channels = Vec::new();
    for i in 0..agents {
        let state = custos_agent::state::StateDir(tmp.path().join(format!("agent{i}")));
        let id = rt.block_on(server.enroll(&state, &format!("bench-{i}")));
        let key = state.load_evidence_key().expect("key");
        work.push((key.verifying_key(), presign(&key, &id.agent_id, per_agent)));
        agent_ids.push(id.agent_id.clone());
        channels.push(rt.block_on(server.channel(&state)));
    }
    let n: usize = work.iter().map(|(_, e)| e.len()).sum();
    let avg_payload =
        work.iter().flat_map(|(_, e)| e.iter().map(|x| x.payload.len())).sum::<usize>() / n.max(1);
    let ceiling = verify_ceiling(&work);
    let base_rss = peak_rss_kib(pid).unwrap_or(0);

    // Full server-side verification (signature + strict statement parsing), all cores.
    let full = full_verify_rate(&work, &agent_ids);
    // Wire messages are built before the clock starts: the client's own cost is not the server's.
    let wire: Vec<Vec<v1::EvidenceRecord>> = work
        .iter()
        .map(|(_, envs)| {
            envs.iter()
                .enumerate()
                .map(|(j, e)| v1::EvidenceRecord {
                    envelope: Some(custos_agent::transport::to_wire(e.clone())),
                    client_ref: j as u64,
                })
                .collect()
        })
        .collect();
    // Stream everything, one stream per agent, concurrently.
    let mut wire = wire.into_iter();
    let (server_cpu0, client_cpu0) = (cpu_secs(&pid.to_string()), cpu_secs("self"));
    let started = Instant::now();
    let accepted: usize = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, ch) in channels.into_iter().enumerate() {
            let _ = i;
            let msgs = wire.next().unwrap_or_default();
            tasks.push(tokio::spawn(async move {
                let count = msgs.len();
                let (tx, rx) = tokio::sync::mpsc::channel(1024);
                tokio::spawn(async move {
                    for rec in msgs {
                        if tx.send(rec).await.is_err() {
                            return;
                        }
                    }
                });
                let mut client = v1::agent_service_client::AgentServiceClient::new(ch);
                let mut acks = client
                    .submit_evidence(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .expect("stream")
                    .into_inner();
                let mut ok = 0;
                for _ in 0..count {
                    match acks.message().await.expect("ack") {
                        Some(a) if a.status == v1::AckStatus::Accepted as i32 => ok += 1,
                        Some(a) => panic!("record refused: {a:?}"),
                        None => break,
                    }
                }
                ok
            }));
        }
        let mut sum = 0;
        for t in tasks {
            sum += t.await.expect("task");
        }
        sum
    });
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = cpu_secs(&pid.to_string()) - server_cpu0;
    let client_cpu = cpu_secs("self") - client_cpu0;
    assert_eq!(accepted, n, "every record accepted");
    let rate = n as f64 / elapsed;
    let peak = peak_rss_kib(pid).unwrap_or(0);
    println!("ingest benchmark: {n} records from {agents} agents, {avg_payload} B payload, 20 checks each");
    println!(
        "  verification ceiling (verify_strict, {} threads): {ceiling:>10.0} records/s",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  full verification (signature + statement parsing, all cores): {full:>10.0} records/s");
    println!("  ingest over mTLS into SQLite (acked after commit): {rate:>10.0} records/s");
    println!("  ratio ingest / ceiling: {:.2} (aim: >= 0.33)", rate / ceiling);
    println!(
        "  CPU during streaming: server {:.2} cores ({:.0} µs/record), benchmark client {:.2} cores",
        server_cpu / elapsed,
        server_cpu / n as f64 * 1e6,
        client_cpu / elapsed
    );
    println!(
        "  server peak RSS: {:.1} MiB (before streaming: {:.1} MiB)",
        peak as f64 / 1024.0,
        base_rss as f64 / 1024.0
    );
    drop(server);
}
