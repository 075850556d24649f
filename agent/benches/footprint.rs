//! Footprint benchmark: runs full collections of every check on this host
//! with the release agent (`custos-agent collect --json --footprint`) and
//! prints, per run and as the median, the agent's own CPU time, the CPU time
//! of the commands it ran (counted apart), wall time and peak resident
//! memory, next to the aims (100 ms of agent CPU, 15 MB peak RSS).
//!
//! `cargo bench -p custos-agent --bench footprint [-- RUNS]`

use std::process::Command;
use std::time::Instant;

use custos_agent::footprint::Footprint;

const AIM_CPU_MS: f64 = 100.0;
const AIM_RSS_MB: f64 = 15.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(7);
    let agent = env!("CARGO_BIN_EXE_custos-agent");
    println!("footprint of a full collection ({runs} runs, agent {agent})");
    println!(
        "{:>4} {:>12} {:>14} {:>10} {:>12} {:>13} {:>8}",
        "run", "agent CPU ms", "children CPU ms", "wall ms", "agent RSS MB", "child RSS MB", "checks"
    );
    let (mut cpu, mut child_cpu, mut wall, mut rss, mut child_rss) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        let started = Instant::now();
        let out = Command::new(agent)
            .args(["collect", "--json", "--footprint"])
            .env("CUSTOS_LOG", "warn")
            .output()
            .expect("the agent runs");
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        assert!(out.status.success(), "agent failed: {}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        let checks = doc["checks"].as_array().map_or(0, Vec::len);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.lines().rev().find(|l| l.starts_with('{')).expect("footprint line on stderr");
        let f: Footprint = serde_json::from_str(line).expect("footprint JSON");
        let mb = |kib: u64| kib as f64 / 1024.0;
        println!(
            "{run:>4} {:>12.1} {:>14.1} {:>10.1} {:>12.1} {:>13.1} {:>8}",
            f.agent_cpu_ms,
            f.children_cpu_ms,
            elapsed,
            mb(f.agent_peak_rss_kib),
            mb(f.children_peak_rss_kib),
            checks
        );
        cpu.push(f.agent_cpu_ms);
        child_cpu.push(f.children_cpu_ms);
        wall.push(elapsed);
        rss.push(mb(f.agent_peak_rss_kib));
        child_rss.push(mb(f.children_peak_rss_kib));
    }
    let (cpu, rss) = (median(cpu), median(rss));
    println!(
        "median: agent CPU {cpu:.1} ms ({:.2} of the {AIM_CPU_MS} ms aim), children CPU {:.1} ms, wall {:.1} ms, \
         agent peak RSS {rss:.1} MB ({:.2} of the {AIM_RSS_MB} MB aim), largest child {:.1} MB",
        cpu / AIM_CPU_MS,
        median(child_cpu),
        median(wall),
        rss / AIM_RSS_MB,
        median(child_rss)
    );
}
