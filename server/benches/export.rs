//! Export and offline verification at scale: seeds a fresh store with N
//! signed records through the real ingest path (`verify_record`, the
//! `RecordWriter`, key bindings from real enrolment, a checkpoint signed by
//! the store), then times `export` of the whole window and `verify_bundle`
//! of the result, and prints verify records/s next to the bare Ed25519
//! verification rate of the same signatures (batch, and one by one with
//! `verify_strict` as the verifier does) measured in the same run.
//!
//! The run stops rather than print figures when the bundle does not verify
//! or holds a different number of records than were seeded.
//!
//! Run: `cargo bench -p custos-server --bench export` (env:
//! CUSTOS_BENCH_RECORDS, default 1000000; CUSTOS_BENCH_AGENTS, default 1000).

use std::time::{Duration, Instant};

use custos_agent::spool::ChainTip;
use custos_proto::evidence::pae;
use custos_server::export::{ExportOptions, export};
use custos_server::store::records::{AppendOutcome, NewRecord};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use time::OffsetDateTime;

/// Signatures kept for the bare-verification ceiling (enough for a stable rate).
const MAX_KEPT: usize = 200_000;

#[path = "../tests/support/seeded.rs"]
mod seeded;
use seeded::{Seeded, firewall_checks, signed};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Agent {
    id: String,
    key: SigningKey,
    seq: u64,
    prev: Option<[u8; 32]>,
}

/// One signed record of `a`, verified by the server's own code.
fn record(a: &Agent, collected: OffsetDateTime, now: i64) -> NewRecord {
    let tip = ChainTip { seq: a.seq + 1, prev: a.prev, gap: None };
    signed(&a.key, &a.id, &tip, collected, firewall_checks(true), now)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[allow(clippy::too_many_lines, reason = "one measurement run, its figures printed in order")]
fn main() {
    let total = env_or("CUSTOS_BENCH_RECORDS", 1_000_000);
    let agents_n = env_or("CUSTOS_BENCH_AGENTS", 1000).clamp(1, total.max(1));
    let per_agent = total.div_ceil(agents_n);
    let fixture = Seeded::new(agents_n as u32);
    let (dir, data, store, now) = (fixture.dir.path(), &fixture.data, &fixture.store, fixture.now);
    let start = now - time::Duration::minutes(per_agent as i64 + 1);

    // Enrol (each agent's key binding is logged).
    let t = Instant::now();
    let mut agents: Vec<Agent> = (0..agents_n)
        .map(|i| {
            let id = format!("bench-{i:06}");
            let display = format!("host-{i:06}.corp.example");
            let key =
                fixture.enroll(&id, &display, &format!("custos-export-bench-{i}"), start.unix_timestamp());
            Agent { id, key, seq: 0, prev: None }
        })
        .collect();
    let enrol = t.elapsed();

    // Sign, verify and append, one round of every agent per transaction.
    let t = Instant::now();
    let mut writer = store.record_writer().expect("writer");
    let mut kept: Vec<(Vec<u8>, Signature, VerifyingKey)> = Vec::new();
    let mut seeded = 0usize;
    for round in 0..per_agent {
        let left = total - seeded;
        if left == 0 {
            break;
        }
        let collected = start + time::Duration::minutes(round as i64);
        let take = left.min(agents_n);
        let half = take.div_ceil(2);
        let (a, b) = agents[..take].split_at(half);
        let ts = now.unix_timestamp();
        let batch: Vec<NewRecord> = std::thread::scope(|s| {
            let h = s.spawn(|| b.iter().map(|x| record(x, collected, ts)).collect::<Vec<_>>());
            let mut first: Vec<NewRecord> = a.iter().map(|x| record(x, collected, ts)).collect();
            first.extend(h.join().expect("signing thread"));
            first
        });
        let outcomes = writer.append(&batch, ts).expect("append");
        assert!(outcomes.iter().all(|o| *o == AppendOutcome::Accepted), "every seeded record is accepted");
        for (agent, rec) in agents.iter_mut().zip(&batch) {
            agent.seq = rec.seq;
            agent.prev = Some(rec.digest);
            if kept.len() < MAX_KEPT {
                let sig: [u8; 64] = rec.sig.as_slice().try_into().expect("64-byte signature");
                kept.push((
                    pae(&rec.payload_type, &rec.payload),
                    Signature::from_bytes(&sig),
                    agent.key.verifying_key(),
                ));
            }
        }
        seeded += batch.len();
    }
    let seed_time = t.elapsed();
    fixture.sign_checkpoint();
    let log_key = fixture.log_key();

    // Export the whole window.
    let out = dir.join("bundle.tar.gz");
    let opts = ExportOptions {
        data_dir: data.clone(),
        from: start - time::Duration::minutes(1),
        to: now,
        controls: Vec::new(),
        hosts: Vec::new(),
        sample: None,
        by: "bench".into(),
        out: out.clone(),
        now,
        progress: false,
    };
    let t = Instant::now();
    let done = export(&opts).expect("export");
    let export_time = t.elapsed();
    assert_eq!(done.manifest.counts.records, seeded as u64, "the bundle holds every seeded record");

    // Verify it offline.
    let t = Instant::now();
    let report = custos_verify::verify_bundle(&out, Some(&log_key)).expect("verify");
    let verify_time = t.elapsed();
    assert!(report.ok(), "the bundle verifies against the pinned log key:\n{report}");
    assert_eq!(report.records_verified, seeded as u64);

    // The ceiling: the same signatures, bare.
    let msgs: Vec<&[u8]> = kept.iter().map(|(m, _, _)| m.as_slice()).collect();
    let sigs: Vec<Signature> = kept.iter().map(|(_, s, _)| *s).collect();
    let keys: Vec<VerifyingKey> = kept.iter().map(|(_, _, k)| *k).collect();
    let t = Instant::now();
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).expect("batch verifies");
    let batch_time = t.elapsed();
    let t = Instant::now();
    for (m, s, k) in &kept {
        k.verify_strict(m, s).expect("verifies");
    }
    let single_time = t.elapsed();

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "export/verify benchmark: {seeded} records of {agents_n} agents ({} key bindings)",
        done.manifest.counts.key_bindings
    );
    println!(
        "  seeding: enrol {:.1} s, sign + verify + append {:.1} s",
        enrol.as_secs_f64(),
        seed_time.as_secs_f64()
    );
    println!(
        "  export:  {:.2} s, {:.0} records/s, bundle {:.1} MB, {} CSV rows",
        export_time.as_secs_f64(),
        rate(seeded, export_time),
        done.bytes as f64 / 1e6,
        done.manifest.counts.csv_rows
    );
    println!(
        "  verify:  {:.2} s, {:.0} records/s on {threads} threads (reads the tar.gz twice; inclusion, DSSE signature, chain, CSV)",
        verify_time.as_secs_f64(),
        rate(seeded, verify_time)
    );
    println!(
        "  bare Ed25519 over the same signatures ({} of them): verify_batch {:.0} sig/s, verify_strict one by one {:.0} sig/s",
        kept.len(),
        rate(kept.len(), batch_time),
        rate(kept.len(), single_time)
    );
    println!(
        "  ratio:   verify is {:.2}× the bare batch rate and {:.2}× verify_strict on one core",
        rate(seeded, verify_time) / rate(kept.len(), batch_time),
        rate(seeded, verify_time) / rate(kept.len(), single_time)
    );
}
