//! Evaluation benchmark at fleet scale: seeds a fresh store with N hosts ×
//! 20 checks (the 14 real checks and 6 mapped nowhere) through the real
//! ingest path, then times what the API and the keeper do with it:
//! `evaluation_inputs::fleet_evidence` uncached (store read + policy decisions), the
//! fleet cache (first and unchanged refresh), the pure `evaluate`,
//! `views::controls` for one framework now, `Keeper::pass` (first, nothing
//! changed, 1 % of hosts with new records), and the as-of answers from the
//! change log: `views::effectiveness` for one control (1 and 30 points) and
//! `views::controls` as of a past time. Each figure is printed next to a
//! ceiling measured in the same run: one bare SELECT of the same rows plus
//! the pure evaluation of pre-built evidence.
//!
//! The seeded facts are the built-in policy's own examples
//! (`server/data/policy.toml`), so the CEL rules evaluate them and their
//! verdicts are known in advance; the benchmark checks that the policy
//! decided exactly the seeded mix and that the figures agree with each other
//! (it stops rather than print figures of a wrong evaluation).
//!
//! Run: `cargo bench -p custos-server --bench evaluation` (env:
//! CUSTOS_BENCH_HOSTS, default 100000; CUSTOS_BENCH_PACKAGES, packages in
//! each software inventory, default 100).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_agent::spool::ChainTip;
use custos_proto::checks::CHECK_IDS;
use custos_proto::evidence::statement::Facts;
use custos_proto::evidence::{CheckResult, CheckStatus, HostInfo, Observation, payload_digest};
use custos_server::api::views::{self, Sources};
use custos_server::compliance::catalog::Catalog;
use custos_server::compliance::evaluate::{HostEvidence, Standings, evaluate, standings};
use custos_server::compliance::policy::{HostFacts, Policy};
use custos_server::config::Config;
use custos_server::datadir::reload::Reloadable;
use custos_server::keeper::Keeper;
use custos_server::keeper::fleet::Fleet;
use custos_server::store::Store;
use custos_server::store::agents::AgentKey;
use custos_server::store::bulk::BulkAgent;
use custos_server::store::records::{AppendOutcome, NewRecord};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The server binary's allocator, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXTRA_CHECKS: [&str; 6] = ["extra_01", "extra_02", "extra_03", "extra_04", "extra_05", "extra_06"];
const FRAMEWORK: &str = "iso27001:2022";
/// The control asked for in the effectiveness query (firewall and SSH server).
const CONTROL: &str = "iso27001:2022/A.8.20";
/// Hosts enrolled, signed and ingested per transaction.
const CHUNK: usize = 10_000;
/// Every this many hosts one collected three days ago (stale).
const STALE_EVERY: usize = 100;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deterministic pseudo-random number per (host, check): splitmix64.
fn mix(host: usize, check: usize) -> u64 {
    let mut z = (host as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (check as u64).wrapping_add(0x632B_E59B);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// ~85 % pass, ~10 % fail, ~5 % unknown.
fn seeded_status(host: usize, check: usize) -> CheckStatus {
    match mix(host, check) % 1000 {
        0..850 => CheckStatus::Pass,
        850..950 => CheckStatus::Fail,
        _ => CheckStatus::Unknown,
    }
}

/// Facts the policy passes and facts it fails, per check.
#[derive(Default)]
struct Shapes {
    pass: Vec<Facts>,
    fail: Vec<Facts>,
}

/// The built-in policy's examples: `status` + `expect` both pass, or both
/// fail, so the rule's verdict equals the seeded status.
fn policy_examples() -> BTreeMap<String, Shapes> {
    let doc: toml::Table =
        toml::from_str(include_str!("../data/policy.toml")).expect("built-in policy parses");
    let mut out: BTreeMap<String, Shapes> = BTreeMap::new();
    for rule in doc.get("rule").and_then(|r| r.as_array()).expect("policy has [[rule]]") {
        let check = rule.get("check").and_then(|c| c.as_str()).expect("rule.check");
        let shapes = out.entry(check.to_string()).or_default();
        for ex in rule.get("example").and_then(|e| e.as_array()).into_iter().flatten() {
            let status = ex.get("status").and_then(|s| s.as_str()).unwrap_or("pass");
            let expect = ex.get("expect").and_then(|s| s.as_str()).expect("example.expect");
            let text = ex.get("facts").and_then(|f| f.as_str()).expect("example.facts");
            let facts: Facts = serde_json::from_str(text).expect("example facts are a JSON object");
            match (status, expect) {
                ("pass", "pass") => shapes.pass.push(facts),
                ("fail", "fail") => shapes.fail.push(facts),
                _ => {}
            }
        }
    }
    out
}

/// What every host reports for each check: facts by seeded status.
struct Catalogue {
    checks: Vec<String>,
    /// Per check: facts for a pass and for a fail (several shapes each).
    shapes: Vec<Shapes>,
}

fn facts_catalogue(packages: usize) -> Catalogue {
    let mut examples = policy_examples();
    let mut checks = Vec::new();
    let mut shapes = Vec::new();
    for check in CHECK_IDS {
        let s = match examples.remove(check) {
            Some(s) => {
                assert!(
                    !s.pass.is_empty() && !s.fail.is_empty(),
                    "policy.toml has no passing or no failing example for {check}"
                );
                s
            }
            None => {
                // No rule (software_inventory): the agent's status stands.
                assert_eq!(check, "software_inventory", "{check} has no rule in policy.toml");
                let list: Vec<_> = (0..packages)
                    .map(|k| {
                        serde_json::json!({"name": format!("lib-package-{k:04}"), "version": format!("{}.{}.{k}-1+deb12u1", k % 7, k % 13), "arch": "amd64"})
                    })
                    .collect();
                let facts = serde_json::json!({"package_manager": "dpkg", "package_count": packages, "packages": list});
                let facts = facts.as_object().cloned().expect("an object");
                Shapes { pass: vec![facts.clone()], fail: vec![facts] }
            }
        };
        checks.push(check.to_string());
        shapes.push(s);
    }
    for (n, check) in EXTRA_CHECKS.iter().enumerate() {
        let facts = serde_json::json!({"source": "site-script", "items_checked": 10 + n, "items_failing": 0, "version": "2.4.1"});
        let facts = facts.as_object().cloned().expect("an object");
        checks.push(check.to_string());
        shapes.push(Shapes { pass: vec![facts.clone()], fail: vec![facts] });
    }
    Catalogue { checks, shapes }
}

fn seed_of(label: &str, i: usize) -> [u8; 32] {
    Sha256::digest(format!("custos-bench-{label}-{i}")).into()
}

/// Host `i`: its id, key, tags and collection time.
struct Host {
    agent_id: String,
    key: SigningKey,
    display_name: String,
    tags: Vec<String>,
    os: &'static str,
    collected_at: OffsetDateTime,
}

fn host(i: usize, now: OffsetDateTime) -> Host {
    let agent_id = hex::encode(&seed_of("id", i)[..16]);
    let (os, role) = match i % 10 {
        0..7 => ("linux", if i.is_multiple_of(3) { "server" } else { "laptop" }),
        7 | 8 => ("windows", "laptop"),
        _ => ("macos", "laptop"),
    };
    let age = if i % STALE_EVERY == STALE_EVERY - 1 {
        time::Duration::days(3)
    } else {
        time::Duration::seconds((mix(i, 999) % 3000) as i64)
    };
    Host {
        agent_id,
        key: SigningKey::from_bytes(&seed_of("key", i)),
        display_name: format!("{role}-{i:06}.corp.example"),
        tags: vec![role.to_string()],
        os,
        collected_at: now - age,
    }
}

/// One signed record of host `i`, through the server's own verification.
fn record(i: usize, h: &Host, cat: &Catalogue, now: OffsetDateTime) -> NewRecord {
    let checks = cat
        .checks
        .iter()
        .enumerate()
        .map(|(c, id)| {
            let status = seeded_status(i, c);
            let pick = |v: &[Facts]| v[mix(i, c + 100) as usize % v.len()].clone();
            let (facts, reason) = match status {
                CheckStatus::Pass => (pick(&cat.shapes[c].pass), None),
                CheckStatus::Fail => (pick(&cat.shapes[c].fail), Some(format!("{id}: not compliant (see facts)"))),
                _ => (Facts::new(), Some(format!("{id}: could not be determined: the command timed out after 120 s"))),
            };
            CheckResult {
                id: id.clone(),
                status,
                backend: "bench".into(),
                facts,
                observation: Observation {
                    sha256: hex::encode(payload_digest(format!("{i}-{c}").as_bytes())),
                    excerpt: "Chain INPUT (policy DROP 0 packets, 0 bytes) target prot opt source destination ACCEPT all -- lo any".into(),
                },
                reason,
            }
        })
        .collect();
    signed(h, ChainTip { seq: 1, prev: None, gap: None }, h.collected_at, checks, now)
}

/// `checks` signed by host `h` as its record at `tip`, collected at
/// `collected`, through the server's own verification at `now`.
fn signed(
    h: &Host,
    tip: ChainTip,
    collected: OffsetDateTime,
    checks: Vec<CheckResult>,
    now: OffsetDateTime,
) -> NewRecord {
    let host_info = HostInfo {
        os: h.os.into(),
        os_version: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.1.0-27-amd64".into(),
        arch: "x86_64".into(),
        display_name: Some(h.display_name.clone()),
        tags: Vec::new(),
    };
    let collected_at = collected.format(&Rfc3339).expect("formats");
    let env = custos_agent::signing::sign_record(&h.key, &h.agent_id, &tip, &collected_at, host_info, checks);
    let key = AgentKey {
        agent_id: h.agent_id.clone(),
        evidence_key: h.key.verifying_key().to_bytes(),
        revoked: false,
    };
    custos_server::intake::ingest::verify_record(env, &key, now.unix_timestamp())
        .expect("seeded record verifies")
}

/// Host `i`'s second record, every check failing with the policy's failing
/// facts, chained to its first.
fn failing_record(store: &Store, i: usize, cat: &Catalogue, at: OffsetDateTime) -> NewRecord {
    let h = host(i, at);
    let first = store.record(&h.agent_id, 1).expect("read").expect("the seeded record");
    let prev: [u8; 32] = first.digest.as_slice().try_into().expect("a SHA-256 digest");
    let checks = cat
        .checks
        .iter()
        .enumerate()
        .map(|(c, id)| CheckResult {
            id: id.clone(),
            status: CheckStatus::Fail,
            backend: "bench".into(),
            facts: cat.shapes[c].fail[0].clone(),
            observation: Observation {
                sha256: hex::encode(payload_digest(id.as_bytes())),
                excerpt: String::new(),
            },
            reason: Some(format!("{id}: not compliant (see facts)")),
        })
        .collect();
    signed(&h, ChainTip { seq: 2, prev: Some(prev), gap: None }, at, checks, at)
}

/// Seeding times, seconds.
#[derive(Default)]
struct SeedTimes {
    enrol: f64,
    sign_verify: f64,
    ingest: f64,
    checkpoint: f64,
}

/// Enrols `n` hosts and ingests one record each, `CHUNK` hosts per
/// transaction: enrolment through `enroll_bulk`, the records signed,
/// verified by `verify_record` and appended by the real `RecordWriter`.
fn seed(store: &Store, n: usize, cat: &Catalogue, now: OffsetDateTime) -> SeedTimes {
    let mut times = SeedTimes::default();
    let mut writer = store.record_writer().expect("record writer");
    let checkpointer = store.checkpointer().expect("checkpointer");
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let t = Instant::now();
        let hosts: Vec<Host> = (start..end).map(|i| host(i, now)).collect();
        let agents: Vec<BulkAgent> = hosts
            .iter()
            .map(|h| BulkAgent {
                agent_id: h.agent_id.clone(),
                display_name: h.display_name.clone(),
                evidence_key: h.key.verifying_key().to_bytes(),
                cert_serial: h.agent_id[..16].to_string(),
                cert_not_after: now.unix_timestamp() + 86_400,
                agent_version: "0.1.0".into(),
                tags: h.tags.clone(),
            })
            .collect();
        store.enroll_bulk(&agents, now.unix_timestamp() - 30 * 86_400).expect("bulk enrolment");
        times.enrol += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let per_thread = hosts.len().div_ceil(threads);
        let records: Vec<NewRecord> = std::thread::scope(|s| {
            let parts: Vec<_> = hosts
                .chunks(per_thread)
                .enumerate()
                .map(|(k, part)| {
                    let first = start + k * per_thread;
                    s.spawn(move || {
                        part.iter()
                            .enumerate()
                            .map(|(j, h)| record(first + j, h, cat, now))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts.into_iter().flat_map(|p| p.join().expect("signing thread")).collect()
        });
        times.sign_verify += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let outcomes = writer.append(&records, now.unix_timestamp()).expect("append");
        assert!(outcomes.iter().all(|o| *o == AppendOutcome::Accepted), "every seeded record is accepted");
        times.ingest += t.elapsed().as_secs_f64();
        // What the server's checkpoint thread does off the ingest path: the
        // WAL is copied back and reused instead of growing by every chunk.
        let t = Instant::now();
        checkpointer.passive().expect("checkpoint");
        times.checkpoint += t.elapsed().as_secs_f64();
        eprint!("\rseeded {end}/{n} hosts");
    }
    eprintln!();
    times
}

/// Runs `f` `target` times, or fewer (at least `min`) once `budget` is
/// spent. Returns each run's time and the last run's result.
fn measure<T>(target: usize, min: usize, budget: Duration, mut f: impl FnMut() -> T) -> (Vec<Duration>, T) {
    let started = Instant::now();
    let mut times = Vec::new();
    loop {
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed());
        if times.len() >= target || (times.len() >= min && started.elapsed() >= budget) {
            return (times, out);
        }
        drop(out);
    }
}

/// Median and p99 (nearest rank) of run times.
fn stats(times: &[Duration]) -> (Duration, Duration) {
    let mut s = times.to_vec();
    s.sort();
    let p99 = s[(s.len() * 99).div_ceil(100).max(1) - 1];
    (s[s.len() / 2], p99)
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

fn rate(per_s: f64) -> String {
    if per_s >= 1e6 { format!("{:.2} M/s", per_s / 1e6) } else { format!("{:.0} k/s", per_s / 1e3) }
}

/// One line of the table.
struct Row {
    name: String,
    times: Vec<Duration>,
    /// (items, unit) for a rate column.
    items: Option<(usize, &'static str)>,
    /// Median ÷ this ceiling, with the ceiling's name.
    against: Option<(Duration, &'static str)>,
    note: String,
}

impl Row {
    fn new(name: &str, times: Vec<Duration>) -> Row {
        Row { name: name.into(), times, items: None, against: None, note: String::new() }
    }
    fn items(mut self, n: usize, unit: &'static str) -> Row {
        self.items = Some((n, unit));
        self
    }
    fn against(mut self, ceiling: Duration, name: &'static str) -> Row {
        self.against = Some((ceiling, name));
        self
    }
    fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
    fn print(&self) {
        let (median, p99) = stats(&self.times);
        let rate_col = self
            .items
            .map(|(n, unit)| format!("{} {unit}", rate(n as f64 / median.as_secs_f64())))
            .unwrap_or_default();
        let ratio = self
            .against
            .map(|(c, name)| format!("{:.1}× {name}", median.as_secs_f64() / c.as_secs_f64()))
            .unwrap_or_default();
        println!(
            "{:<52} {:>4} {:>9} {:>9}  {:<18} {:<18} {}",
            self.name,
            self.times.len(),
            secs(median),
            secs(p99),
            rate_col,
            ratio,
            self.note
        );
    }
}

/// Peak resident memory of this process, KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Counts of statuses over the fleet's evidence.
fn status_counts(hosts: &[HostEvidence]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for c in hosts.iter().flat_map(|h| &h.checks) {
        *out.entry(c.status.as_str()).or_default() += 1;
    }
    out
}

#[allow(clippy::too_many_lines, reason = "one measurement run, its figures printed in order")]
fn main() {
    let n = env_or("CUSTOS_BENCH_HOSTS", 100_000).max(1);
    let packages = env_or("CUSTOS_BENCH_PACKAGES", 100);
    let bench_started = Instant::now();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("whole second");
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("custos.db");
    let store = Store::open(&db).expect("store");
    let catalog = Catalog::builtin().expect("built-in catalog");
    let config = Config::default();
    let rules = Arc::new(Policy::builtin().expect("built-in policy"));
    let cat = facts_catalogue(packages);
    let checks = cat.checks.len();
    let results = n * checks;

    // The mix the policy must reproduce: stale hosts still carry their
    // statuses; staleness is the evaluation's business.
    let mut expected: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..n {
        for c in 0..checks {
            *expected.entry(seeded_status(i, c).as_str()).or_default() += 1;
        }
    }

    // ------------------------------------------------------------ seeding
    let t = Instant::now();
    let seeded = seed(&store, n, &cat, now);
    let seed_total = t.elapsed();
    // After the last checkpoint the database file holds everything.
    let db_mib = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64;

    let mut rows = Vec::new();

    // ------------------------------------------------------------ ceiling
    eprintln!("ceiling: bare SELECT");
    let raw = rusqlite::Connection::open(&db).expect("second connection");
    let (select_times, read) = measure(5, 3, Duration::from_secs(60), || {
        let mut stmt =
            raw.prepare_cached("SELECT agent_id, check_id, status, facts FROM check_state").expect("prepare");
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .expect("query");
        rows.collect::<Result<Vec<_>, _>>().expect("rows").len()
    });
    assert_eq!(read, results, "check_state holds one row per host and check");
    let (select, _) = stats(&select_times);
    rows.push(Row::new("ceiling: SELECT 4 cols FROM check_state", select_times).items(results, "rows"));

    // ---------------------------------------------------- fleet_evidence
    eprintln!("fleet_evidence (uncached)");
    let (times, states) =
        measure(3, 1, Duration::from_secs(30), || store.check_states().expect("check_states"));
    assert_eq!(states.len(), results);
    rows.push(
        Row::new("  of which Store::check_states (9 cols)", times)
            .items(results, "rows")
            .against(select, "SELECT"),
    );
    // The policy's share of fleet_evidence: facts parse + CEL, per result.
    let host_facts: BTreeMap<String, HostFacts> = store
        .hosts()
        .expect("hosts")
        .into_iter()
        .map(|h| (h.agent_id, HostFacts { os: h.os, tags: h.tags }))
        .collect();
    let (times, decided) = measure(1, 1, Duration::ZERO, || {
        let mut by_rule = 0usize;
        for row in &states {
            if rules.rule(&row.check_id).is_none() {
                continue;
            }
            let facts: Facts =
                row.facts.as_deref().and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
            let d = rules.decide(&row.check_id, row.status, &facts, &host_facts[&row.agent_id]);
            by_rule += usize::from(d.by_rule);
        }
        by_rule
    });
    rows.push(Row::new("  of which policy decide (JSON + CEL)", times).items(decided, "rules"));
    drop(states);

    let (times, hosts) = measure(3, 1, Duration::from_secs(30), || {
        custos_server::keeper::evaluation_inputs::fleet_evidence(&store, &rules).expect("fleet_evidence")
    });
    assert_eq!(hosts.len(), n, "every host is evaluated");
    let counts = status_counts(&hosts);
    assert_eq!(counts, expected, "the policy decided the seeded mix (seeded {expected:?})");
    rows.push(
        Row::new("evaluation_inputs::fleet_evidence (uncached)", times)
            .items(results, "results")
            .against(select, "SELECT")
            .note(format!(
                "pass {} fail {} unknown {}",
                counts.get("pass").unwrap_or(&0),
                counts.get("fail").unwrap_or(&0),
                counts.get("unknown").unwrap_or(&0)
            )),
    );

    // ------------------------------------------------------- fleet cache
    eprintln!("fleet cache");
    let fleet = Arc::new(Fleet::new());
    let t = Instant::now();
    let (cached, refresh) = fleet.refresh(&store, &rules).expect("first refresh");
    let first_refresh = t.elapsed();
    assert!(refresh.full);
    assert_eq!(*cached, hosts, "the cache decides what the uncached path decides");
    drop(cached);
    rows.push(
        Row::new("Fleet::refresh, first (reads + decides all)", vec![first_refresh])
            .items(results, "results"),
    );
    let (times, _) = measure(10, 3, Duration::from_secs(20), || {
        let (_, r) = fleet.refresh(&store, &rules).expect("refresh");
        assert_eq!(r.hosts_decided, 0);
    });
    rows.push(Row::new("Fleet::refresh, nothing new", times).note("hosts table + high-water mark"));

    // ----------------------------------------------------- evaluate (pure)
    eprintln!("evaluate");
    let eval_policy = custos_server::keeper::evaluation_inputs::settings_at(&config, &rules, &[], now);
    let (times, evaluation) = measure(3, 3, Duration::ZERO, || evaluate(&catalog, &hosts, now, &eval_policy));
    let (eval_median, _) = stats(&times);
    let a820 = evaluation.controls.iter().find(|c| c.control_id == CONTROL).expect("control evaluated");
    let stale_hosts = n / STALE_EVERY;
    assert_eq!(a820.stale.len(), stale_hosts, "stale hosts are stale");
    assert_eq!(a820.in_scope(), n);
    let a820_passing = a820.passing.clone();
    rows.push(
        Row::new("ceiling: evaluate (pure, pre-built evidence)", times)
            .items(n * catalog.controls().len(), "host×ctl")
            .note(format!("{} controls", catalog.controls().len())),
    );
    let ceiling = select + eval_median;
    rows.push(Row::new("ceiling: SELECT + evaluate", vec![ceiling]).note("sum of the two medians"));
    let (times, compact) = measure(3, 1, Duration::ZERO, || {
        let s = standings(&evaluation, &hosts);
        s.codes.iter().map(|h| h.iter().filter(|c| **c != Standings::NONE).count()).sum::<usize>()
    });
    let with_checks =
        catalog.controls().iter().filter(|c| !catalog.checks_for_control(&c.id).is_empty()).count();
    let pairs = n * with_checks;
    assert_eq!(compact, pairs, "one standing per host and supported requirement");
    rows.push(Row::new("  standings (pure, compact, every pair)", times).items(pairs, "pairs"));
    drop(evaluation);

    // ------------------------------------------------------------- controls
    eprintln!("views::controls");
    let sources = Sources { store: &store, fleet: &fleet, catalog: &catalog, config: &config, rules: &rules };
    let call = || {
        views::controls(sources, now, Some(FRAMEWORK), None, None)
            .expect("controls")
            .expect("known framework")
    };
    let (times, view) = measure(20, 5, Duration::from_secs(120), call);
    let view_a820 = view.evaluation.controls.iter().find(|c| c.control_id == CONTROL).expect("in the view");
    assert_eq!(view_a820.passing, a820_passing, "the API's view is the evaluation's");
    let json_started = Instant::now();
    let body = serde_json::to_vec(&view).expect("serialises");
    let json_time = json_started.elapsed();
    rows.push(Row::new(&format!("views::controls ({FRAMEWORK}), now"), times).against(ceiling, "ceiling"));
    rows.push(
        Row::new("  + JSON body as the API sends it", vec![json_time])
            .note(format!("{:.1} MiB", body.len() as f64 / (1 << 20) as f64)),
    );
    drop((view, body));

    // --------------------------------------------------------------- keeper
    eprintln!("keeper");
    let keeper = Keeper::new(
        Arc::new(Reloadable::new(catalog.clone(), Vec::new())),
        config.clone(),
        Arc::new(Reloadable::new((*rules).clone(), Vec::new())),
        tmp.path().to_path_buf(),
        Arc::clone(&fleet),
    );
    let t = Instant::now();
    let pass1 = keeper.pass(&store, now).expect("first pass");
    let pass1_time = t.elapsed();
    assert_eq!(pass1.requirement_changes, pairs, "the first pass logs every pair");
    rows.push(
        Row::new("Keeper::pass, first (logs every pair)", vec![pass1_time])
            .items(pass1.requirement_changes, "changes")
            .against(ceiling, "ceiling")
            .note(format!("{} register entries", pass1.transitions.len())),
    );
    let later = now + time::Duration::seconds(1);
    let (times, pass2) = measure(3, 1, Duration::from_secs(60), || keeper.pass(&store, later).expect("pass"));
    assert_eq!(pass2.requirement_changes, 0, "nothing changed");
    rows.push(Row::new("Keeper::pass, nothing changed", times).against(ceiling, "ceiling"));

    // One host in a hundred sends a new record in which every check fails.
    let movers: Vec<usize> = (0..n).step_by(100).collect();
    let moved_at = now + time::Duration::seconds(2);
    let mut writer = store.record_writer().expect("record writer");
    let fresh: Vec<NewRecord> = movers.iter().map(|&i| failing_record(&store, i, &cat, moved_at)).collect();
    writer.append(&fresh, moved_at.unix_timestamp()).expect("append");
    let after = moved_at + time::Duration::seconds(1);
    let t = Instant::now();
    let pass3 = keeper.pass(&store, after).expect("incremental pass");
    let pass3_time = t.elapsed();
    assert!(pass3.requirement_changes > 0);
    rows.push(
        Row::new(&format!("Keeper::pass, {} hosts with new records", movers.len()), vec![pass3_time])
            .items(pass3.requirement_changes, "changes")
            .against(ceiling, "ceiling"),
    );

    // ------------------------------------------ as of, from the change log
    eprintln!("effectiveness and as_of");
    let call =
        || views::effectiveness(sources, None, CONTROL, now, now, 1).expect("effectiveness").expect("known");
    let (times, series) = measure(20, 5, Duration::from_secs(120), call);
    let [point] = series.as_slice() else { panic!("one point asked, {} given", series.len()) };
    assert_eq!(point.in_scope, n);
    assert_eq!(point.passing, a820_passing.len(), "the log at `now` says what the evaluation said");
    rows.push(
        Row::new(&format!("views::effectiveness ({CONTROL}, 1 point)"), times)
            .against(ceiling, "ceiling")
            .note(format!("passing {:.1} %", point.effectiveness.unwrap_or(0.0) * 100.0)),
    );
    let call = || {
        views::effectiveness(sources, None, CONTROL, now, after, 30).expect("effectiveness").expect("known")
    };
    let (times, series) = measure(3, 1, Duration::from_secs(60), call);
    assert_eq!(series.len(), 30);
    let last = series.last().expect("a point");
    assert!(last.passing < point.passing, "the movers' failures show at the end of the series");
    rows.push(
        Row::new(&format!("views::effectiveness ({CONTROL}, 30 points)"), times).against(ceiling, "ceiling"),
    );
    let call = || {
        views::controls(sources, after, Some(FRAMEWORK), None, Some(now))
            .expect("controls")
            .expect("known framework")
    };
    let (times, view) = measure(5, 1, Duration::from_secs(60), call);
    let then = view.evaluation.controls.iter().find(|c| c.control_id == CONTROL).expect("in the view");
    assert_eq!(then.passing, a820_passing, "as of `now` the log says what the evaluation said then");
    rows.push(Row::new(&format!("views::controls ({FRAMEWORK}), as_of"), times).against(ceiling, "ceiling"));
    drop(view);

    // ---------------------------------------------------------------- table
    println!();
    println!(
        "custos evaluation benchmark: {n} hosts × {checks} checks = {results} results \
         ({} packages per inventory; {stale_hosts} stale hosts); database {db_mib:.0} MiB",
        packages
    );
    println!(
        "seeding {}: bulk enrolment {:.1} s, sign + verify_record {:.1} s ({} threads), \
         RecordWriter::append {:.1} s ({:.0} records/s), WAL checkpoints {:.1} s",
        secs(seed_total),
        seeded.enrol,
        seeded.sign_verify,
        std::thread::available_parallelism().map_or(1, |t| t.get()),
        seeded.ingest,
        n as f64 / seeded.ingest,
        seeded.checkpoint
    );
    println!(
        "{:<52} {:>4} {:>9} {:>9}  {:<18} {:<18} note",
        "measured", "runs", "median", "p99", "rate", "vs ceiling"
    );
    for r in &rows {
        r.print();
    }
    println!(
        "peak memory {:.0} MiB; total run {}",
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0,
        secs(bench_started.elapsed())
    );
}
