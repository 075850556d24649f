//! Tests of the network lab itself against the kernel: each loads a ruleset
//! whose meaning is beyond doubt and asserts where the probes end up. If the
//! lab misreports here, every firewall verdict compared with it is worthless.
//! Needs root, `ip`, `nft` and `iptables-legacy`; outside CI it says why and
//! stops when they are missing, under `CI` it fails.

#[path = "support/netlab.rs"]
mod netlab;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use netlab::{Arrival, Lab, Probe, Proto, lab_or_skip};

/// TCP and UDP, both families, both outside interfaces, ports 22 and 80,
/// from a public source, to the host address of the arriving interface.
fn grid(lab: &Lab) -> Vec<Probe> {
    let (v4, v6) = lab.host_addrs();
    let mut out = Vec::new();
    for via in 0..lab.host_ifaces().len() {
        let pairs: [(IpAddr, IpAddr); 2] = [
            ("203.0.113.7".parse().expect("v4"), v4[via].into()),
            ("2001:db8::7".parse().expect("v6"), v6[via].into()),
        ];
        for (src, dst) in pairs {
            for proto in [Proto::Tcp, Proto::Udp] {
                for dport in [22, 80] {
                    out.push(Probe { proto, src, sport: 40000, dst, dport, via });
                }
            }
        }
    }
    out
}

fn arrivals(lab: &Lab, probes: &[Probe]) -> Vec<(Probe, Arrival)> {
    let got = lab.probe(probes).expect("probe");
    assert_eq!(got.len(), probes.len());
    probes.iter().copied().zip(got).collect()
}

fn all_are(results: &[(Probe, Arrival)], want: Arrival) {
    for (p, a) in results {
        assert_eq!(*a, want, "{p}");
    }
}

#[test]
fn empty_ruleset_lets_everything_in() {
    let Some(lab) = lab_or_skip("empty_ruleset_lets_everything_in") else { return };
    all_are(&arrivals(&lab, &grid(&lab)), Arrival::Host);
}

#[test]
fn input_policy_drop_lets_nothing_in() {
    let Some(lab) = lab_or_skip("input_policy_drop_lets_nothing_in") else { return };
    lab.load_nft("table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n }\n}\n")
        .expect("load");
    all_are(&arrivals(&lab, &grid(&lab)), Arrival::Nowhere);
    lab.reset().expect("reset");
    all_are(&arrivals(&lab, &grid(&lab)), Arrival::Host);
}

#[test]
fn only_the_accepted_port_gets_in() {
    let Some(lab) = lab_or_skip("only_the_accepted_port_gets_in") else { return };
    lab.load_nft(
        "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n tcp dport 22 accept\n }\n}\n",
    )
    .expect("load");
    for (p, a) in arrivals(&lab, &grid(&lab)) {
        let want = if p.proto == Proto::Tcp && p.dport == 22 { Arrival::Host } else { Arrival::Nowhere };
        assert_eq!(a, want, "{p}");
    }
}

#[test]
fn interface_rules_see_the_arriving_interface() {
    let Some(lab) = lab_or_skip("interface_rules_see_the_arriving_interface") else { return };
    let iface = &lab.host_ifaces()[0];
    lab.load_nft(&format!(
        "table inet f {{\n chain input {{\n type filter hook input priority 0; policy drop;\n iifname \"{iface}\" accept\n }}\n}}\n"
    ))
    .expect("load");
    for (p, a) in arrivals(&lab, &grid(&lab)) {
        assert_eq!(a, if p.via == 0 { Arrival::Host } else { Arrival::Nowhere }, "{p}");
    }
}

#[test]
fn an_accept_in_one_base_chain_does_not_stop_a_later_drop() {
    let Some(lab) = lab_or_skip("an_accept_in_one_base_chain_does_not_stop_a_later_drop") else { return };
    lab.load_nft(
        "table inet a {\n chain input {\n type filter hook input priority 0; policy accept;\n accept\n }\n}\n\
         table inet b {\n chain input {\n type filter hook input priority 10; policy drop;\n }\n}\n",
    )
    .expect("load");
    all_are(&arrivals(&lab, &grid(&lab)), Arrival::Nowhere);
}

fn dnat_ruleset(lab: &Lab) -> String {
    let (i4, i6) = lab.inner_addrs();
    format!(
        "table inet nat {{\n chain pre {{\n type nat hook prerouting priority dstnat; policy accept;\n \
         tcp dport 8080 dnat ip to {i4}:80\n tcp dport 8080 dnat ip6 to [{i6}]:80\n }}\n}}\n"
    )
}

fn to_8080(lab: &Lab) -> Vec<Probe> {
    let (v4, v6) = lab.host_addrs();
    vec![
        Probe {
            proto: Proto::Tcp,
            src: "203.0.113.7".parse().expect("v4"),
            sport: 40001,
            dst: v4[0].into(),
            dport: 8080,
            via: 0,
        },
        Probe {
            proto: Proto::Tcp,
            src: "2001:db8::7".parse().expect("v6"),
            sport: 40001,
            dst: v6[0].into(),
            dport: 8080,
            via: 0,
        },
    ]
}

#[test]
fn dnat_reaches_the_inner_namespace_only_when_forwarding() {
    let Some(lab) = lab_or_skip("dnat_reaches_the_inner_namespace_only_when_forwarding") else { return };
    lab.load_nft(&dnat_ruleset(&lab)).expect("load");
    lab.set_forwarding(true).expect("forwarding on");
    all_are(&arrivals(&lab, &to_8080(&lab)), Arrival::Inner);
    lab.set_forwarding(false).expect("forwarding off");
    all_are(&arrivals(&lab, &to_8080(&lab)), Arrival::Nowhere);
}

#[test]
fn conntrack_state_does_not_leak_between_calls() {
    let Some(lab) = lab_or_skip("conntrack_state_does_not_leak_between_calls") else { return };
    let (v4, _) = lab.host_addrs();
    let (i4, _) = lab.inner_addrs();
    lab.load_nft(&format!(
        "table ip nat {{\n chain pre {{\n type nat hook prerouting priority dstnat; policy accept;\n \
         udp dport 5353 dnat to {i4}\n }}\n}}\n\
         table inet f {{\n chain input {{\n type filter hook input priority 0; policy accept;\n ct state invalid drop\n }}\n}}\n"
    ))
    .expect("load");
    lab.set_forwarding(true).expect("forwarding on");
    let probe = [Probe {
        proto: Proto::Udp,
        src: "203.0.113.7".parse().expect("v4"),
        sport: 40004,
        dst: v4[0].into(),
        dport: 5353,
        via: 0,
    }];
    assert_eq!(lab.probe(&probe).expect("probe"), [Arrival::Inner]);
    // The DNAT rule goes; the `ct state` rule keeps conntrack tracking (with
    // no rule needing it the kernel stops tracking and the old entry would
    // not matter). A stale entry for the same tuple would still carry the
    // DNAT binding and say Inner.
    lab.sh("nft flush chain ip nat pre").expect("flush chain");
    assert_eq!(lab.probe(&probe).expect("probe"), [Arrival::Host]);
}

#[test]
fn redirect_to_a_local_port_counts_as_arrival() {
    let Some(lab) = lab_or_skip("redirect_to_a_local_port_counts_as_arrival") else { return };
    lab.load_nft(
        "table inet nat {\n chain pre {\n type nat hook prerouting priority dstnat; policy accept;\n \
         tcp dport 8080 redirect to :80\n }\n}\n",
    )
    .expect("load");
    all_are(&arrivals(&lab, &to_8080(&lab)), Arrival::Host);
}

#[test]
fn legacy_iptables_drop_closes_ipv4_only() {
    let Some(lab) = lab_or_skip("legacy_iptables_drop_closes_ipv4_only") else { return };
    if let Err(why) = lab.sh("iptables-legacy -P INPUT DROP") {
        assert!(std::env::var_os("CI").is_none(), "iptables-legacy: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    for (p, a) in arrivals(&lab, &grid(&lab)) {
        assert_eq!(a, if p.src.is_ipv4() { Arrival::Nowhere } else { Arrival::Host }, "{p}");
    }
    lab.reset().expect("reset");
    all_are(&arrivals(&lab, &grid(&lab)), Arrival::Host);
}

/// The observer must agree with a real socket: a datagram it reports at the
/// host is received by a UDP socket bound there, one it reports dropped is not.
#[test]
fn observer_agrees_with_a_real_socket() {
    let Some(lab) = lab_or_skip("observer_agrees_with_a_real_socket") else { return };
    lab.load_nft(
        "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n udp dport 5353 accept\n }\n}\n",
    )
    .expect("load");
    let (v4, _) = lab.host_addrs();
    let host_ns = std::fs::File::open(format!("/run/netns/{}", lab.host_ns())).expect("host netns");
    // Sockets are made inside the host namespace by a thread that joined it;
    // once made they keep that namespace wherever they are used.
    let sockets: Vec<UdpSocket> = std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a descriptor open for the closure's duration.
            assert_eq!(unsafe { libc::setns(host_ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            [5353, 5354]
                .into_iter()
                .map(|port| UdpSocket::bind((v4[0], port)).expect("bind in host ns"))
                .collect()
        })
        .join()
        .expect("thread")
    });
    let probes: Vec<Probe> = [5353, 5354]
        .map(|dport| Probe {
            proto: Proto::Udp,
            src: "203.0.113.7".parse().expect("v4"),
            sport: 40002,
            dst: v4[0].into(),
            dport,
            via: 0,
        })
        .to_vec();
    let got = lab.probe(&probes).expect("probe");
    assert_eq!(got, vec![Arrival::Host, Arrival::Nowhere]);
    let mut buf = [0u8; 64];
    for (socket, arrival) in sockets.iter().zip(&got) {
        socket.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let received = socket.recv_from(&mut buf).is_ok();
        assert_eq!(received, *arrival == Arrival::Host, "socket {:?}", socket.local_addr());
    }
}

#[test]
fn probing_leaves_the_ruleset_as_loaded() {
    let Some(lab) = lab_or_skip("probing_leaves_the_ruleset_as_loaded") else { return };
    lab.load_nft(
        "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n tcp dport 22 accept\n }\n}\n",
    )
    .expect("load");
    let before = lab.sh("nft list ruleset").expect("list");
    arrivals(&lab, &grid(&lab));
    assert_eq!(lab.sh("nft list ruleset").expect("list"), before);
}

#[test]
fn bad_probe_sets_are_refused() {
    let Some(lab) = lab_or_skip("bad_probe_sets_are_refused") else { return };
    let p = grid(&lab)[0];
    assert!(lab.probe(&[p, p]).is_err(), "duplicate tuple accepted");
    assert!(lab.probe(&[Probe { via: 9, ..p }]).is_err(), "unknown interface accepted");
    let v6: IpAddr = "2001:db8::7".parse().expect("v6");
    assert!(lab.probe(&[Probe { src: v6, ..p }]).is_err(), "mixed families accepted");
    let (v4, _) = lab.host_addrs();
    assert!(lab.probe(&[Probe { src: v4[1].into(), ..p }]).is_err(), "a lab address as source accepted");
    let other: IpAddr = "198.51.100.1".parse().expect("v4");
    let q = Probe { src: other, dst: p.src, ..p };
    assert!(lab.probe(&[p, q]).is_err(), "a destination local to the sending peer accepted");
}

/// A test that panics still leaves nothing behind: unwinding drops the lab.
#[test]
fn a_panicking_test_leaves_no_namespace() {
    let Some(probe_lab) = lab_or_skip("a_panicking_test_leaves_no_namespace") else { return };
    drop(probe_lab);
    let name = std::sync::Mutex::new(String::new());
    let outcome = std::panic::catch_unwind(|| {
        let lab = Lab::new().expect("lab");
        *name.lock().expect("lock") = lab.host_ns().to_string();
        panic!("deliberate");
    });
    assert!(outcome.is_err());
    let host = name.into_inner().expect("lock");
    assert!(!host.is_empty());
    assert!(!std::path::Path::new(&format!("/run/netns/{host}")).exists(), "{host} outlived the panic");
}

#[test]
fn drop_removes_every_namespace() {
    let Some(lab) = lab_or_skip("drop_removes_every_namespace") else { return };
    let host = lab.host_ns().to_string();
    let prefix = host.trim_end_matches('h').to_string();
    assert!(std::path::Path::new(&format!("/run/netns/{host}")).exists());
    drop(lab);
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.starts_with(&prefix)), "left behind: {left:?}");
}

/// The property test will probe thousands of rulesets: one probe call with
/// about 100 probes, and one load+reset, must stay far below 100 ms.
#[test]
fn probing_is_fast() {
    let started = Instant::now();
    let Some(lab) = lab_or_skip("probing_is_fast") else { return };
    eprintln!("Lab::new: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    let (v4, v6) = lab.host_addrs();
    let mut probes = Vec::new();
    for (n, dport) in
        [22u16, 53, 80, 443, 8080, 1, 65535, 25, 3306, 5432, 6379, 9200, 11211].iter().enumerate()
    {
        for proto in [Proto::Tcp, Proto::Udp] {
            for (src, dst) in [("203.0.113.7", IpAddr::from(v4[0])), ("10.1.2.3", v4[1].into())]
                .into_iter()
                .chain([("2001:db8::7", IpAddr::from(v6[0])), ("fd00::3", v6[1].into())])
            {
                probes.push(Probe {
                    proto,
                    src: src.parse().expect("src"),
                    sport: 41000 + n as u16,
                    dst,
                    dport: *dport,
                    via: 0,
                });
            }
        }
    }
    assert!(probes.len() >= 100);
    let ruleset = "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n tcp dport 22 accept\n }\n}\n";
    lab.probe(&probes).expect("warm-up");
    let (mut probe_ms, mut cycle_ms, mut replace_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = Instant::now();
        lab.load_nft(ruleset).expect("load");
        lab.reset().expect("reset");
        cycle_ms.push(t.elapsed().as_secs_f64() * 1e3);
        lab.load_nft(ruleset).expect("load");
        let t = Instant::now();
        lab.probe(&probes).expect("probe");
        probe_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // A property test's cycle: the previous ruleset replaced, then probed.
    for _ in 0..10 {
        let t = Instant::now();
        lab.replace_nft(ruleset).expect("replace");
        lab.probe(&probes).expect("probe");
        replace_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for v in [&mut probe_ms, &mut cycle_ms, &mut replace_ms] {
        v.sort_by(f64::total_cmp);
    }
    eprintln!(
        "{} probes per call: median {:.1} ms, max {:.1} ms; load_nft+reset: median {:.1} ms, max {:.1} ms; \
         replace_nft+probe: median {:.1} ms",
        probes.len(),
        probe_ms[5],
        probe_ms[9],
        cycle_ms[5],
        cycle_ms[9],
        replace_ms[5]
    );
    assert!(probe_ms[5] < 100.0, "a probe call takes {:.1} ms", probe_ms[5]);
}

/// UDP sockets bound to `addr` on `ports` inside namespace `ns`: made by a
/// thread that joined it; a socket keeps its namespace wherever it is used.
fn udp_sockets_in(ns: &str, addr: IpAddr, ports: &[u16]) -> Vec<UdpSocket> {
    let handle = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns handle");
    std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a descriptor open for the closure's duration.
            assert_eq!(unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            ports.iter().map(|port| UdpSocket::bind((addr, *port)).expect("bind")).collect()
        })
        .join()
        .expect("thread")
    })
}

fn received(socket: &UdpSocket) -> bool {
    socket.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    socket.recv_from(&mut [0u8; 64]).is_ok()
}

/// Forwarded probes too: what the lab reports at the inner namespace a socket
/// there receives, what it reports dropped on the way does not arrive.
#[test]
fn inner_arrivals_agree_with_a_real_socket() {
    let Some(lab) = lab_or_skip("inner_arrivals_agree_with_a_real_socket") else { return };
    let (v4, _) = lab.host_addrs();
    let (i4, _) = lab.inner_addrs();
    lab.load_nft(&format!(
        "table ip nat {{\n chain pre {{\n type nat hook prerouting priority dstnat; policy accept;\n \
         udp dport {{ 5353, 5354 }} dnat to {i4}\n }}\n}}\n\
         table ip f {{\n chain forward {{\n type filter hook forward priority 0; policy accept;\n udp dport 5354 drop\n }}\n}}\n"
    ))
    .expect("load");
    lab.set_forwarding(true).expect("forwarding");
    let sockets = udp_sockets_in(lab.inner_ns(), i4.into(), &[5353, 5354]);
    let probes: Vec<Probe> = [5353, 5354]
        .map(|dport| Probe {
            proto: Proto::Udp,
            src: "203.0.113.7".parse().expect("v4"),
            sport: 40003,
            dst: v4[0].into(),
            dport,
            via: 0,
        })
        .to_vec();
    let got = lab.probe(&probes).expect("probe");
    assert_eq!(got, vec![Arrival::Inner, Arrival::Nowhere]);
    for (socket, arrival) in sockets.iter().zip(&got) {
        assert_eq!(received(socket), *arrival == Arrival::Inner, "socket {:?}", socket.local_addr());
    }
}

#[test]
fn reset_restores_the_initial_state() {
    let Some(lab) = lab_or_skip("reset_restores_the_initial_state") else { return };
    lab.sh("iptables-legacy -N X && iptables-legacy -A INPUT -j X && iptables-legacy -P INPUT DROP && \
         ip6tables-legacy -t mangle -P PREROUTING DROP && iptables-nft -P INPUT DROP && \
         ip link add zz0 type bridge")
        .expect("hostile state");
    lab.load_nft("table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n }\n}\n")
        .expect("load");
    lab.set_forwarding(true).expect("forwarding");
    all_are(&arrivals(&lab, &grid(&lab)), Arrival::Nowhere);
    lab.reset().expect("reset");
    all_are(&arrivals(&lab, &grid(&lab)), Arrival::Host);
    assert_eq!(lab.sh("nft list ruleset").expect("nft"), "");
    assert_eq!(
        lab.sh("iptables-legacy -S").expect("legacy"),
        "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
    );
    assert_eq!(
        lab.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding").expect("sysctl"),
        "0\n0\n"
    );
    assert!(!lab.sh("ip -o link show").expect("links").contains("zz0"), "foreign interface left");
}

/// `sh_private` writes only private copies and leaves no process behind.
#[test]
fn sh_private_touches_nothing_outside() {
    let Some(lab) = lab_or_skip("sh_private_touches_nothing_outside") else { return };
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("etc-like");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(dir.join("conf"), "original\n").expect("write");
    let marker = format!("1000.{}", std::process::id());
    let out = lab
        .sh_private(&format!(
            "lab_private '{d}' && echo changed > '{d}/conf' && (sleep {marker} > /dev/null 2>&1 &) && cat '{d}/conf' && ls /run",
            d = dir.display()
        ))
        .expect("sh_private");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("changed"), "the script sees its own write");
    let run: Vec<&str> = lines.collect();
    // The real /run holds /run/netns (the lab's namespaces); the private one
    // only what the prelude and mount(8) put there.
    assert!(run.contains(&"custos-lab") && !run.contains(&"netns"), "/run is not private: {run:?}");
    assert_eq!(std::fs::read_to_string(dir.join("conf")).expect("read"), "original\n");
    let left = std::fs::read_dir("/proc").expect("/proc").flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| c == format!("sleep\0{marker}\0").as_bytes())
            .unwrap_or(false)
    });
    assert!(!left, "a process started by the script outlived it");
}
