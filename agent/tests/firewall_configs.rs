//! Real-world firewall configurations loaded into the network lab, and what
//! the kernel lets in for each: the ground truth the firewall check is judged
//! against.
//!
//! Each directory under `tests/firewall_configs/` holds a `setup.sh` (what a
//! person or a program runs on a real host to reach that state, run here in
//! the lab's host namespace through `Lab::sh_private`), a `needs` file (the
//! programs it runs) and `kernel.txt`, the kernel's verdict for a fixed probe
//! set. `UPDATE_EXPECT=1` rewrites `kernel.txt`; otherwise a difference fails.
//! Independently of the recorded file, each configuration's meaning is also
//! asserted here, so a wrong state cannot be blessed silently.
//!
//! Then the agent itself runs in the lab's host namespace and its firewall
//! finding is held against the kernel: the expected status, every probe
//! the kernel let in covered by an exposure the agent lists, and every
//! certain, unqualified exposure the agent lists let in by the kernel for
//! each probe it covers. Blessing also records the agent's view as the case
//! `tests/cases/linux-firewall-NAME` for `cases.rs`.
//! Needs root and the programs named in `needs`; outside CI it says why and
//! stops when they are missing, under `CI` it fails.

#[path = "support/exposed.rs"]
mod exposed;
#[path = "support/netlab.rs"]
mod netlab;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netlab::{Arrival, Lab, Probe, Proto, lab_or_skip};

const PORTS: [u16; 7] = [22, 53, 80, 443, 8080, 1, 65535];
const SOURCES: [&str; 4] = ["203.0.113.7", "10.1.2.3", "2001:db8::7", "fd00::3"];

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/firewall_configs").join(name)
}

/// TCP and UDP to each of `PORTS`, from a public and an internal source of
/// each family, to the host's address on interface 0.
fn probe_set(lab: &Lab) -> Vec<Probe> {
    let (v4, v6) = lab.host_addrs();
    let mut out = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        for src in SOURCES {
            let src: IpAddr = src.parse().expect("source address");
            let dst = if src.is_ipv4() { IpAddr::from(v4[0]) } else { IpAddr::from(v6[0]) };
            for dport in PORTS {
                out.push(Probe { proto, src, sport: 40000, dst, dport, via: 0 });
            }
        }
    }
    out
}

fn line(lab: &Lab, p: &Probe, a: Arrival) -> String {
    let proto = if p.proto == Proto::Tcp { "tcp" } else { "udp" };
    let src = std::net::SocketAddr::new(p.src, p.sport);
    let dst = std::net::SocketAddr::new(p.dst, p.dport);
    format!("{proto} {src} -> {dst} via {}: {a}\n", lab.host_ifaces()[p.via])
}

fn missing_program(name: &str) -> Option<String> {
    let needs = std::fs::read_to_string(dir(name).join("needs")).expect("needs file");
    let path = std::env::var_os("PATH").unwrap_or_default();
    needs
        .split_whitespace()
        .find(|tool| !std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
        .map(|tool| format!("{tool} is not installed"))
}

/// The agent's firewall finding, run in the lab's host namespace.
fn agent_view(lab: &Lab) -> serde_json::Value {
    let out = lab
        .sh(&format!("'{}' collect --json --check firewall", env!("CARGO_BIN_EXE_custos-agent")))
        .unwrap_or_else(|e| panic!("the agent failed in the lab: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&out).expect("the agent prints JSON");
    doc["checks"][0].clone()
}

/// Holds the agent's finding against the kernel's verdict on each probe.
fn agent_agrees(lab: &Lab, name: &str, status: &str, probes: &[Probe], got: &[Arrival]) {
    let finding = agent_view(lab);
    assert_eq!(finding["status"], status, "{name}: the agent's finding: {finding:#}");
    let listed = exposed::read(&finding).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (p, a) in probes.iter().zip(got) {
        let proto = if p.proto == Proto::Tcp { "tcp" } else { "udp" };
        let iface = &lab.host_ifaces()[p.via];
        let covering: Vec<_> = listed.iter().filter(|e| e.covers(proto, p.src, p.dport, iface)).collect();
        if *a != Arrival::Nowhere {
            assert!(
                !covering.is_empty(),
                "{name}: the kernel lets in {p} ({a}), the agent lists {listed:#?}"
            );
        } else if let Some(e) = covering.iter().find(|e| e.certain && e.unqualified) {
            panic!("{name}: the agent says {} is open, the kernel drops {p}", e.text);
        }
    }
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        record_case(lab, name);
    }
}

/// Records the agent's view of the lab as `tests/cases/linux-firewall-NAME`.
fn record_case(lab: &Lab, name: &str) {
    let case =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(format!("linux-firewall-{name}"));
    let _ = std::fs::remove_dir_all(&case);
    let description = format!(
        "The network lab after tests/firewall_configs/{name}/setup.sh, recorded by firewall_configs.rs"
    );
    lab.sh(&format!(
        "'{}' record '{}' --check firewall --description '{description}'",
        env!("CARGO_BIN_EXE_custos-agent"),
        case.display()
    ))
    .unwrap_or_else(|e| panic!("{name}: recording the case failed: {e}"));
}

/// Loads configuration `name`, probes it, asserts `expected` for every probe
/// and compares (or, blessing, writes) `kernel.txt`; then asks the agent,
/// which must say `status`.
fn check(name: &str, status: &str, expected: impl Fn(&Probe) -> Arrival) {
    if let Some(why) = missing_program(name) {
        assert!(std::env::var_os("CI").is_none(), "{name}: cannot run in CI: {why}");
        eprintln!("skipping {name}: {why}");
        return;
    }
    let Some(lab) = lab_or_skip(name) else { return };
    let setup = dir(name);
    lab.sh_private(&format!("cd '{}' && bash ./setup.sh", setup.display()))
        .unwrap_or_else(|e| panic!("{name}: setup.sh failed: {e}"));
    let probes = probe_set(&lab);
    let got = lab.probe(&probes).unwrap_or_else(|e| panic!("{name}: probing failed: {e}"));
    let mut text = format!(
        "# What the kernel lets in after {name}/setup.sh: one line per probe.\n\
         # Written by agent/tests/firewall_configs.rs with UPDATE_EXPECT=1.\n"
    );
    let mut wrong = Vec::new();
    for (p, a) in probes.iter().zip(&got) {
        text += &line(&lab, p, *a);
        if *a != expected(p) {
            wrong.push(format!("{} (expected {})", line(&lab, p, *a).trim_end(), expected(p)));
        }
    }
    assert!(
        wrong.is_empty(),
        "{name}: the kernel's verdicts differ from the configuration's meaning:\n{}",
        wrong.join("\n")
    );
    let file = setup.join("kernel.txt");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&file, &text).expect("write kernel.txt");
    } else {
        let recorded = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECT=1 to record it)", file.display()));
        assert_eq!(text, recorded, "{name}: the kernel's verdicts changed (UPDATE_EXPECT=1 records them)");
    }
    agent_agrees(&lab, name, status, &probes, &got);
}

fn all(a: Arrival) -> impl Fn(&Probe) -> Arrival {
    move |_| a
}

fn only_ssh(p: &Probe) -> Arrival {
    if p.proto == Proto::Tcp && p.dport == 22 { Arrival::Host } else { Arrival::Nowhere }
}

#[test]
fn hostile_jump_allowall() {
    check("hostile-jump-allowall", "fail", all(Arrival::Host));
}

#[test]
fn hostile_port_ranges() {
    check("hostile-port-ranges", "fail", all(Arrival::Host));
}

#[test]
fn hostile_ct_state_new() {
    check("hostile-ct-state-new", "fail", all(Arrival::Host));
}

#[test]
fn hostile_iptables_nft_jump() {
    check("hostile-iptables-nft-jump", "fail", |p| {
        if p.src.is_ipv4() { Arrival::Host } else { Arrival::Nowhere }
    });
}

#[test]
fn legacy_drop() {
    check("legacy-drop", "pass", all(Arrival::Nowhere));
}

#[test]
fn legacy_drop_ssh() {
    check("legacy-drop-ssh", "pass", only_ssh);
}

#[test]
fn iptables_nft_drop() {
    check("iptables-nft-drop", "pass", all(Arrival::Nowhere));
}

#[test]
fn ufw_default() {
    check("ufw-default", "pass", all(Arrival::Nowhere));
}

#[test]
fn ufw_allow_ssh() {
    check("ufw-allow-ssh", "pass", only_ssh);
}

#[test]
fn firewalld_public() {
    check("firewalld-public", "pass", only_ssh);
}

#[test]
fn docker_published_8080() {
    check("docker-published-8080", "pass", |p| {
        if p.proto == Proto::Tcp && p.dport == 8080 && p.src.is_ipv4() { Arrival::Inner } else { only_ssh(p) }
    });
}

#[test]
fn libvirt_default_nat() {
    check("libvirt-default-nat", "pass", only_ssh);
}

#[test]
fn sound_server() {
    check("sound-server", "pass", |p| {
        if p.proto == Proto::Udp && p.dport == 53 && p.src.to_string() == "10.1.2.3" {
            Arrival::Host
        } else {
            only_ssh(p)
        }
    });
}

/// Every configuration directory is checked by a test above.
#[test]
fn every_configuration_is_tested() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/firewall_configs.rs"))
            .expect("own source");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/firewall_configs");
    for entry in std::fs::read_dir(&root).expect("firewall_configs directory").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(entry.path().join("setup.sh").is_file(), "{name} has no setup.sh");
        assert!(source.contains(&format!("check(\"{name}\", ")), "{name} has no test");
    }
}
