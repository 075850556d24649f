//! `custos-server verify` on bundles a stranger could send (issue 13): a
//! real bundle is exported from a real store, then rebuilt with files
//! swapped for decompression bombs (written through a streaming compressor,
//! so this test never holds the expanded bytes) or an endless CSV line.
//! Each must be refused naming the entry and the limit, with an answer of a
//! few lines and a verifier whose peak memory stays small; the untouched
//! bundle must still verify. Time is not measured (a timeout is only a
//! safety net): what matters is that nothing grows with the expanded size.
//!
//! Peak memory is the verifier's own: each run goes through a probe (this
//! test binary run again, as the ignored test `probe`) whose only child is
//! the verifier, so `getrusage(RUSAGE_CHILDREN)` in the probe measures that
//! one process, whatever else the tests run at the same time.

#[allow(dead_code)]
#[path = "support/bundle.rs"]
mod bundle;

#[allow(dead_code)]
#[path = "support/seeded.rs"]
mod seeded;

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use custos_agent::spool::ChainTip;
use custos_server::export::{ExportOptions, export};
use custos_server::store::records::AppendOutcome;
use custos_verify::bundle::{self as format, FileEntry};
use seeded::{Seeded, firewall_checks, signed};

const BIN: &str = env!("CARGO_BIN_EXE_custos-server");
const GIB: u64 = 1 << 30;
/// The verifier's peak resident memory allowed on any of these bundles.
const MAX_PEAK_KIB: u64 = 200 * 1024;
/// What a refusal may print, all told.
const MAX_ANSWER_BYTES: u64 = 4096;
/// A safety net only: a verifier still running after this is killed.
const TIMEOUT: Duration = Duration::from_secs(600);

/// The probe's instructions and where it leaves its results.
const PROBE_DIR: &str = "CUSTOS_BOMB_PROBE_DIR";
const PROBE_ARGS: &str = "CUSTOS_BOMB_PROBE_ARGS";

/// A real bundle: `CUSTOS_BOMB_AGENTS` agents (default 3) with
/// `CUSTOS_BOMB_RECORDS` records each (default 3), exported by the real
/// export from a store fed through the real ingest path. (Larger fleets
/// show how a real bundle's files grow; the defaults keep the tests quick.)
struct Real {
    seeded: Seeded,
    bundle: PathBuf,
    key: String,
    default_size: bool,
}

fn real_bundle() -> Real {
    let env =
        |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (agents, records) = (env("CUSTOS_BOMB_AGENTS", 3), env("CUSTOS_BOMB_RECORDS", 3));
    let seeded = Seeded::new(agents as u32);
    let now = seeded.now.unix_timestamp();
    let mut writer = seeded.store.record_writer().unwrap();
    for i in 0..agents {
        let id = format!("agent-{i}");
        let key = seeded.enroll(&id, &format!("host-{i}.example"), &format!("bomb-test-{i}"), now - 86_400);
        let mut prev = None;
        for seq in 1..=records {
            let collected = seeded.now - time::Duration::minutes((records - seq) as i64 + 1);
            let tip = ChainTip { seq, prev, gap: None };
            let rec = signed(&key, &id, &tip, collected, firewall_checks(i != 1), now);
            prev = Some(rec.digest);
            assert_eq!(writer.append(&[rec], now).unwrap(), [AppendOutcome::Accepted]);
        }
    }
    seeded.sign_checkpoint();
    let bundle = seeded.dir.path().join("real.tar.gz");
    export(&ExportOptions {
        data_dir: seeded.data.clone(),
        from: seeded.now - time::Duration::days(1),
        to: seeded.now + time::Duration::hours(1),
        controls: Vec::new(),
        hosts: Vec::new(),
        sample: None,
        by: "test auditor".into(),
        out: bundle.clone(),
        now: seeded.now,
        progress: false,
    })
    .unwrap();
    let key = seeded.log_key().to_string();
    Real { seeded, bundle, key, default_size: (agents, records) == (3, 3) }
}

/// A file of a rebuilt bundle: as it was, or generated as it is written.
enum Content {
    Bytes(Vec<u8>),
    Zeros(u64),
    /// `evidence.csv`'s header, then one row of this many random hex digits.
    EndlessRow(u64),
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Zeros(n) => *n,
            Content::EndlessRow(n) => csv_header().len() as u64 + n + 1,
        }
    }

    fn reader(&self) -> Box<dyn Read + '_> {
        match self {
            Content::Bytes(b) => Box::new(b.as_slice()),
            Content::Zeros(n) => Box::new(std::io::repeat(0).take(*n)),
            Content::EndlessRow(n) => Box::new(
                std::io::Cursor::new(csv_header())
                    .chain(RandomHex(0x9e37_79b9_7f4a_7c15).take(*n))
                    .chain(&b"\n"[..]),
            ),
        }
    }
}

fn csv_header() -> Vec<u8> {
    format!("{}\n", format::CSV_HEADER.join(",")).into_bytes()
}

/// Hex digits from xorshift64: incompressible enough (about 2:1) that no
/// ratio limit stops them, only the row limit.
struct RandomHex(u64);

impl Read for RandomHex {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for b in buf.iter_mut() {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = b"0123456789abcdef"[(self.0 & 15) as usize];
        }
        Ok(buf.len())
    }
}

/// Writes `files` as a tar.gz, streaming each through the compressor.
fn write_streaming(out: &Path, files: &[(String, Content)]) {
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(out).unwrap(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len());
        h.set_mode(0o644);
        tar.append_data(&mut h, name, content.reader()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// The real bundle's files, with `edit` applied, written to `name`.
fn rebuilt(real: &Real, name: &str, edit: impl FnOnce(&mut Vec<(String, Content)>)) -> PathBuf {
    let mut files: Vec<(String, Content)> =
        bundle::read_bundle(&real.bundle).into_iter().map(|(n, b)| (n, Content::Bytes(b))).collect();
    edit(&mut files);
    let out = real.seeded.dir.path().join(name);
    write_streaming(&out, &files);
    out
}

fn replace(files: &mut [(String, Content)], name: &str, content: Content) {
    files.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} not in the bundle")).1 =
        content;
}

/// The first record of the bundle, by name.
fn first_record(files: &[(String, Content)]) -> String {
    files.iter().map(|(n, _)| n.clone()).find(|n| n.starts_with("records/")).unwrap()
}

/// One verifier run as the probe saw it.
#[derive(Debug)]
struct Run {
    status: Option<i32>,
    /// What it printed (stdout, then stderr), the first 64 KiB of each.
    answer: String,
    answer_bytes: u64,
    peak_kib: u64,
    secs: f64,
}

/// Runs `custos-server verify args` (with `env`) through the probe.
fn verify(args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut probe = Command::new(exe);
    probe.args(["probe", "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
    probe.env(PROBE_DIR, dir.path()).env(PROBE_ARGS, args.join("\u{1f}"));
    for (k, v) in env {
        probe.env(k, v);
    }
    let out = probe.stdout(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "probe failed: {}", String::from_utf8_lossy(&out.stderr));
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let head = |f: &str| {
        let mut text = Vec::new();
        let file = std::fs::File::open(dir.path().join(f)).unwrap();
        file.take(64 * 1024).read_to_end(&mut text).unwrap();
        String::from_utf8_lossy(&text).into_owned()
    };
    let size = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().len();
    Run {
        status: read("status").trim().parse().ok(),
        answer: head("stdout") + &head("stderr"),
        answer_bytes: size("stdout") + size("stderr"),
        peak_kib: read("peak").trim().parse().unwrap(),
        secs: read("secs").trim().parse().unwrap(),
    }
}

/// The probe: runs the verifier as its only child, its output into files,
/// and leaves exit status, peak memory and time next to them.
#[test]
#[ignore = "run by the other tests, as a process of its own"]
fn probe() {
    let (Some(dir), Some(args)) = (std::env::var_os(PROBE_DIR), std::env::var(PROBE_ARGS).ok()) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let file = |f: &str| std::fs::File::create(dir.join(f)).unwrap();
    let start = Instant::now();
    // As an auditor runs it: no backtrace captured (and symbolised) on error.
    let mut child = Command::new(BIN)
        .args(args.split('\u{1f}'))
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().map_or("killed".to_string(), |c| c.to_string());
        }
        if start.elapsed() > TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            break "timeout".to_string();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let peak = custos_agent::footprint::Footprint::now().children_peak_rss_kib;
    std::fs::write(dir.join("status"), status).unwrap();
    std::fs::write(dir.join("peak"), peak.to_string()).unwrap();
    std::fs::write(dir.join("secs"), start.elapsed().as_secs_f64().to_string()).unwrap();
}

/// A refusal: exit 1, every `wanted` piece in a short answer, small memory.
#[track_caller]
fn assert_refused(run: &Run, wanted: &[&str]) {
    eprintln!(
        "refused: {:.2} s, peak {:.1} MiB, {} bytes printed: {}",
        run.secs,
        run.peak_kib as f64 / 1024.0,
        run.answer_bytes,
        run.answer.trim()
    );
    assert_eq!(run.status, Some(1), "{run:?}");
    for w in wanted {
        assert!(run.answer.contains(w), "{w:?} not in {:?}", run.answer);
    }
    assert!(run.answer_bytes < MAX_ANSWER_BYTES, "{} bytes printed", run.answer_bytes);
    assert!(run.peak_kib < MAX_PEAK_KIB, "peak {} KiB", run.peak_kib);
}

#[test]
fn the_real_bundle_verifies_and_its_entries_are_far_below_the_limits() {
    let real = real_bundle();
    let bundle = real.bundle.to_str().unwrap();
    let run = verify(&["verify", bundle, "--log-key", &real.key], &[]);
    assert_eq!(run.status, Some(0), "{run:?}");
    assert!(run.answer.contains("Result: VERIFIED"), "{}", run.answer);
    eprintln!("verified: {:.2} s, peak {:.1} MiB", run.secs, run.peak_kib as f64 / 1024.0);
    // (A larger fleet, from the environment, may take more: it is real.)
    if real.default_size {
        assert!(run.peak_kib < MAX_PEAK_KIB, "peak {} KiB", run.peak_kib);
    }
    // What a real bundle's files weigh, per record, and how well it
    // compresses: the limits' defaults are many times these.
    let files = bundle::read_bundle(&real.bundle);
    let manifest = bundle::manifest_of(&files);
    let records = manifest.counts.records;
    let expanded: u64 = files.iter().map(|(_, b)| 512 + b.len().div_ceil(512) as u64 * 512).sum();
    let compressed = std::fs::metadata(&real.bundle).unwrap().len();
    let size = |f: &FileEntry| f.size;
    let of =
        |prefix: &str| manifest.files.iter().filter(|f| f.path.starts_with(prefix)).map(size).sum::<u64>();
    // Each document on its own compresses best of all the files.
    let ratio = |name: &str| {
        let bytes = bundle::get(&files, name);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        bytes.len() as f64 / gz.finish().unwrap().len() as f64
    };
    let (csv_ratio, oscal_ratio) = (ratio(format::EVIDENCE_CSV), ratio(format::ASSESSMENT_RESULTS));
    eprintln!(
        "real bundle: {records} records of {} agents, {expanded} bytes expanded from {compressed} ({:.1}:1); per record: record {} B, proof {} B; evidence.csv {} B ({csv_ratio:.1}:1), assessment-results.json {} B ({oscal_ratio:.1}:1), manifest.json {} B",
        manifest.counts.agents,
        expanded as f64 / compressed as f64,
        of("records/") / records,
        of("proofs/records/") / records,
        of(format::EVIDENCE_CSV),
        of(format::ASSESSMENT_RESULTS),
        bundle::get(&files, format::MANIFEST).len(),
    );
    let limits = custos_verify::Limits::default();
    assert!(
        expanded * 5 < limits.max_ratio * compressed,
        "a real bundle expands {expanded} from {compressed}"
    );
    assert!(csv_ratio.max(oscal_ratio) * 3.0 < limits.max_ratio as f64, "{csv_ratio} {oscal_ratio}");
    assert!(of("records/") / records < custos_verify::limits::MAX_RECORD_BYTES / 20);
}

#[test]
fn a_document_as_a_gib_of_zeros_is_refused_within_its_first_mb() {
    let real = real_bundle();
    // The CSV is parsed as it streams: its first "row" has no end.
    let bomb = rebuilt(&real, "csv-zeros.tar.gz", |f| replace(f, format::EVIDENCE_CSV, Content::Zeros(GIB)));
    assert!(std::fs::metadata(&bomb).unwrap().len() < 3 << 20, "the bomb is small");
    let run = verify(&["verify", bomb.to_str().unwrap(), "--log-key", &real.key], &[]);
    assert_refused(&run, &["entry evidence.csv: the row on line 1 is longer than 65536 bytes"]);
    // The OSCAL document is no JSON from its first byte; the rest is only
    // hashed, until the ratio stops it.
    let bomb =
        rebuilt(&real, "oscal-zeros.tar.gz", |f| replace(f, format::ASSESSMENT_RESULTS, Content::Zeros(GIB)));
    let run = verify(&["verify", bomb.to_str().unwrap(), "--log-key", &real.key], &[]);
    assert_refused(
        &run,
        &["entry assessment-results.json expands to more than 100 times its compressed size"],
    );
}

#[test]
fn three_gib_entries_are_refused_at_the_first() {
    let real = real_bundle();
    let bomb = rebuilt(&real, "three.tar.gz", |f| {
        replace(f, format::EVIDENCE_CSV, Content::Zeros(GIB));
        replace(f, format::ASSESSMENT_RESULTS, Content::Zeros(GIB));
        f.insert(0, ("extra.bin".into(), Content::Zeros(GIB)));
    });
    assert!(std::fs::metadata(&bomb).unwrap().len() < 6 << 20, "the bomb is small");
    let run = verify(&["verify", bomb.to_str().unwrap()], &[]);
    assert_refused(&run, &["entry extra.bin expands to more than 100 times its compressed size"]);
}

#[test]
fn many_small_bombs_trip_the_bundle_ratio() {
    // Each file under the slack its own ratio is allowed, together a GiB.
    let real = real_bundle();
    let bomb = rebuilt(&real, "many.tar.gz", |f| {
        for i in 0..2048 {
            f.insert(0, (format!("pad/{i}"), Content::Zeros(512 << 10)));
        }
    });
    let run = verify(&["verify", bomb.to_str().unwrap()], &[]);
    assert_refused(
        &run,
        &["the bundle expands to more than 100 times its compressed size", "reached in entry pad/"],
    );
}

#[test]
fn an_endless_csv_line_is_refused_at_the_row_limit() {
    let real = real_bundle();
    let bomb =
        rebuilt(&real, "line.tar.gz", |f| replace(f, format::EVIDENCE_CSV, Content::EndlessRow(16 << 20)));
    let run = verify(&["verify", bomb.to_str().unwrap()], &[]);
    assert_refused(&run, &["entry evidence.csv: the row on line 2 is longer than 65536 bytes"]);
}

#[test]
fn an_entry_larger_than_the_manifest_declares_is_not_read() {
    let real = real_bundle();
    let mut record = String::new();
    let bomb = rebuilt(&real, "declared.tar.gz", |f| {
        record = first_record(f);
        replace(f, &record, Content::Zeros(100 << 10));
    });
    let run = verify(&["verify", bomb.to_str().unwrap()], &[]);
    assert_refused(
        &run,
        &[&format!("entry {record} is 102400 bytes, more than the "), "manifest.json declares"],
    );
    // Past a record's own cap, it is refused in the first reading already.
    let bomb = rebuilt(&real, "record.tar.gz", |f| replace(f, &record, Content::Zeros(1 << 20)));
    let run = verify(&["verify", bomb.to_str().unwrap()], &[]);
    assert_refused(&run, &[&format!("entry {record} is 1048576 bytes, more than the 524288 bytes accepted")]);
}

#[test]
fn the_total_is_capped_and_the_cap_can_be_raised() {
    let real = real_bundle();
    let bundle = real.bundle.to_str().unwrap();
    let run = verify(&["verify", bundle], &[("CUSTOS_VERIFY_MAX_TOTAL", "20000")]);
    assert_refused(&run, &["the bundle expands to more than 20000 bytes", "CUSTOS_VERIFY_MAX_TOTAL"]);
    let run =
        verify(&["verify", bundle, "--log-key", &real.key], &[("CUSTOS_VERIFY_MAX_TOTAL", "100000000")]);
    assert_eq!(run.status, Some(0), "{run:?}");
    let run = verify(&["verify", bundle], &[("CUSTOS_VERIFY_MAX_RATIO", "lots")]);
    assert_refused(&run, &["CUSTOS_VERIFY_MAX_RATIO=\"lots\": not a positive whole number"]);
}

#[test]
fn the_report_quotes_input_as_excerpts_and_counts_what_it_does_not_list() {
    let real = real_bundle();
    let mut files = bundle::read_bundle(&real.bundle);
    // A long value under the row limit, then thousands of rows that fail;
    // the forger reseals the manifest, so every file is read and checked.
    let mut csv = csv_header();
    let cells = |status: &str| {
        let mut row = vec![""; format::CSV_HEADER.len()];
        (row[1], row[3], row[5]) = ("iso27001:2022/A.8.20", "agent-0", status);
        row.join(",") + "\n"
    };
    csv.extend(cells(&"s".repeat(60_000)).bytes());
    for _ in 0..5000 {
        csv.extend(cells("bad").bytes());
    }
    files.iter_mut().find(|(n, _)| n == format::EVIDENCE_CSV).unwrap().1 = csv;
    bundle::reseal(&mut files);
    let out = real.seeded.dir.path().join("long-values.tar.gz");
    bundle::write_bundle(&out, &files);
    let run = verify(&["verify", out.to_str().unwrap()], &[]);
    eprintln!(
        "long values: {} bytes printed, peak {:.1} MiB",
        run.answer_bytes,
        run.peak_kib as f64 / 1024.0
    );
    assert_eq!(run.status, Some(1), "{run:?}");
    assert!(run.answer.contains("evidence.csv line 2: status \"sssss"), "{}", run.answer);
    assert!(run.answer.contains("\"… (60000 bytes) is not a standing"), "{}", run.answer);
    assert!(run.answer.contains("more failures not listed"), "{}", run.answer);
    assert!(run.answer_bytes < 64 * 1024, "{} bytes printed", run.answer_bytes);
    assert!(run.peak_kib < MAX_PEAK_KIB, "peak {} KiB", run.peak_kib);
}
