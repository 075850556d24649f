//! Network lab: the real Linux kernel as ground truth for firewall rulesets.
//!
//! A `Lab` is four network namespaces: the *host* under test, one *peer* per
//! outside interface (the senders, each joined to the host by a veth pair)
//! and an *inner* namespace behind the host on `cxin0`, playing a container
//! or VM that DNAT rules may forward to. A test loads a ruleset into the host
//! (`load_nft`, or any tool through `sh`/`sh_private`), then `probe`s: real
//! TCP SYNs and UDP datagrams are sent from real sockets in the peers, and
//! an observer chain that runs after every other base chain records which
//! ones the kernel let through (see `observe.rs` for why that is honest). The
//! firewall check's evaluator is judged against these answers.
//!
//! Include it with `#[path = "support/netlab.rs"] mod netlab;`. Needs root,
//! `ip` and `nft`; `Lab::new` says why it cannot run so a test can skip
//! outside CI (`lab_or_skip`). Every namespace is deleted on drop, also when
//! a test panics; namespaces of dead test processes are removed on the next
//! `Lab::new`.

// Each test binary uses a different part of the lab.
#![allow(dead_code)]

#[path = "netlab/kernel.rs"]
mod kernel;
#[path = "netlab/observe.rs"]
mod observe;
#[path = "netlab/plan.rs"]
mod plan;

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plan::{HOST_V4, HOST_V6, IFACES, INNER_IFACE, INNER_V4, INNER_V6};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One new inbound connection attempt: a TCP SYN or a UDP datagram from
/// `src:sport` to `dst:dport`, arriving on host interface number `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    pub proto: Proto,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub via: usize,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let src = std::net::SocketAddr::new(self.src, self.sport);
        let dst = std::net::SocketAddr::new(self.dst, self.dport);
        write!(f, "{proto} {src} -> {dst} via {}", self.via)
    }
}

/// Where the kernel delivered a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arrival {
    /// Passed every base chain of the host's input hook: a local socket
    /// listening there would get it.
    Host,
    /// Forwarded by the host (e.g. after DNAT) and arrived in the inner namespace.
    Inner,
    /// Dropped or rejected somewhere.
    Nowhere,
}

impl fmt::Display for Arrival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arrival::Host => "host",
            Arrival::Inner => "inner",
            Arrival::Nowhere => "nowhere",
        })
    }
}

static LABS: AtomicUsize = AtomicUsize::new(0);

pub struct Lab {
    /// Open handles of /run/netns/<name>, for `setns` without `ip netns exec`.
    /// Declared before `names` so they are closed before the namespaces go.
    host_fd: File,
    peer_fds: Vec<File>,
    inner_fd: File,
    /// Sources already assigned in each peer, and the inner observer's last
    /// counter value.
    state: Mutex<(HashSet<(usize, IpAddr)>, u64)>,
    ifaces: Vec<String>,
    names: Names,
}

/// The lab's namespace names; dropping it deletes the namespaces, so whatever
/// `Lab::new` made is removed even when it fails half-way or a test panics.
struct Names {
    host: String,
    peers: Vec<String>,
    inner: String,
}

impl Drop for Names {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.host).chain(&self.peers).chain(std::iter::once(&self.inner)) {
            if std::path::Path::new(&format!("/run/netns/{ns}")).exists() {
                let _ = run(Command::new("ip").args(["netns", "del", ns]), None);
            }
        }
    }
}

/// `Lab::new`, or `None` after saying why when the machine cannot host a lab
/// and `CI` is unset. Under `CI` a missing prerequisite fails the test.
pub fn lab_or_skip(test: &str) -> Option<Lab> {
    match Lab::new() {
        Ok(lab) => Some(lab),
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "{test}: the network lab cannot run in CI: {why}");
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Runs `cmd`, feeding `stdin`; stdout on success, otherwise an error naming
/// the command with its exit status and stderr.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| format!("{shown}: writing stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// A command that runs inside the namespace behind `ns` (joined between fork
/// and exec, which is cheaper than `ip netns exec`).
fn in_ns(ns: &File, program: &str) -> Command {
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    // SAFETY: setns is async-signal-safe; `fd` stays open (no CLOEXEC effect
    // before exec) while the Lab owning it is alive, which outlives spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Deletes namespaces left by test processes that no longer exist (killed
/// before their `Drop` ran).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("cxl") else { continue };
        let Some((pid, _)) = rest.split_once('n') else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(Command::new("ip").args(["netns", "del", &name]), None);
        }
    }
}

impl Lab {
    /// Builds the namespaces. `Err` says why this machine cannot (not root,
    /// a tool missing, namespaces not permitted).
    pub fn new() -> Result<Lab, String> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        for tool in ["ip", "nft", "bash", "unshare"] {
            if !on_path(tool) {
                return Err(format!("{tool} is not installed"));
            }
        }
        remove_stale();
        let prefix = format!("cxl{}n{}", std::process::id(), LABS.fetch_add(1, Ordering::Relaxed));
        let names = Names {
            host: format!("{prefix}h"),
            peers: (0..IFACES.len()).map(|i| format!("{prefix}p{i}")).collect(),
            inner: format!("{prefix}i"),
        };
        let ifaces: Vec<String> = IFACES.iter().map(|s| s.to_string()).collect();
        run(
            Command::new("bash")
                .args(["-c", &plan::create_script(&names.host, &names.peers, &names.inner, &ifaces)]),
            None,
        )?;
        let open = |name: &str| {
            File::open(format!("/run/netns/{name}")).map_err(|e| format!("/run/netns/{name}: {e}"))
        };
        let lab = Lab {
            host_fd: open(&names.host)?,
            peer_fds: names.peers.iter().map(|p| open(p)).collect::<Result<_, _>>()?,
            inner_fd: open(&names.inner)?,
            state: Mutex::new((HashSet::new(), 0)),
            ifaces,
            names,
        };
        run(in_ns(lab.inner_fd(), "nft").args(["-f", "-"]), Some(&observe::inner_script()))?;
        Ok(lab)
    }

    fn host_fd(&self) -> &File {
        &self.host_fd
    }

    fn inner_fd(&self) -> &File {
        &self.inner_fd
    }

    /// Name of the namespace under test, for `ip netns exec`.
    pub fn host_ns(&self) -> &str {
        &self.names.host
    }

    /// Name of the inner namespace (the container behind the host).
    pub fn inner_ns(&self) -> &str {
        &self.names.inner
    }

    /// The host's outside interfaces; the index is `Probe::via`.
    pub fn host_ifaces(&self) -> &[String] {
        &self.ifaces
    }

    /// The host interface towards the inner namespace.
    pub fn inner_iface(&self) -> &str {
        INNER_IFACE
    }

    /// The host's own addresses, one of each family per outside interface (in
    /// interface order).
    pub fn host_addrs(&self) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
        (HOST_V4.to_vec(), HOST_V6.to_vec())
    }

    /// The inner namespace's addresses (behind `inner_iface`).
    pub fn inner_addrs(&self) -> (Ipv4Addr, Ipv6Addr) {
        (INNER_V4, INNER_V6)
    }

    /// The variables `sh` and `sh_private` scripts see, so configurations can
    /// adapt names and addresses to the lab.
    fn env(&self, cmd: &mut Command) {
        let join = |v: Vec<String>| v.join(" ");
        cmd.env("LAB_IFACES", self.ifaces.join(" "))
            .env("LAB_INNER_IFACE", INNER_IFACE)
            .env("LAB_HOST_V4", join(HOST_V4.iter().map(|a| a.to_string()).collect()))
            .env("LAB_HOST_V6", join(HOST_V6.iter().map(|a| a.to_string()).collect()))
            .env("LAB_INNER_V4", INNER_V4.to_string())
            .env("LAB_INNER_V6", INNER_V6.to_string());
    }

    /// Runs a bash script in the host namespace (`ip netns exec`, so /sys
    /// shows the namespace too). Stdout, or the error with stderr. The
    /// script sees LAB_IFACES, LAB_INNER_IFACE, LAB_HOST_V4, LAB_HOST_V6,
    /// LAB_INNER_V4 and LAB_INNER_V6.
    pub fn sh(&self, script: &str) -> Result<String, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names.host, "bash", "-c", script]);
        self.env(&mut cmd);
        run(&mut cmd, None)
    }

    /// Runs a bash script in the host namespace inside a new mount and PID
    /// namespace, for real firewall programs that write /etc, /run or /var:
    /// /run is an empty tmpfs, and the shell function `lab_private DIR...`
    /// replaces each DIR by a writable private copy, so nothing the script
    /// writes there reaches this machine. Daemons it leaves running are
    /// killed when it ends (they die with the PID namespace).
    pub fn sh_private(&self, script: &str) -> Result<String, String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.names.host, "unshare", "--mount", "--propagation", "private"])
            .args(["--pid", "--fork", "--mount-proc", "bash", "-c"])
            .arg(format!("{}\n{script}", plan::PRIVATE_PRELUDE));
        self.env(&mut cmd);
        // The error names the script, not the prelude every call shares.
        run(&mut cmd, None).map_err(|e| match e.split_once(" failed (") {
            Some((_, why)) => format!("sh_private in {}: {script:?} failed ({why}", self.names.host),
            None => e,
        })
    }

    /// Loads an nftables ruleset (`nft -f -`) into the host namespace.
    pub fn load_nft(&self, ruleset: &str) -> Result<(), String> {
        run(in_ns(self.host_fd(), "nft").args(["-f", "-"]), Some(ruleset)).map(drop)
    }

    /// Replaces the whole nftables ruleset with `ruleset` in one transaction
    /// (`flush ruleset` + `ruleset`): cheaper than `reset` + `load_nft` when
    /// only nftables changes, as in a property test. Legacy x_tables,
    /// sysctls and interfaces are left alone.
    pub fn replace_nft(&self, ruleset: &str) -> Result<(), String> {
        self.load_nft(&format!("flush ruleset\n{ruleset}"))
    }

    /// Back to the lab's initial state: empty nftables ruleset, every legacy
    /// x_tables table empty with ACCEPT policies, forwarding off, rp_filter
    /// off, no interfaces but the lab's own.
    pub fn reset(&self) -> Result<(), String> {
        let keep = format!("lo {} {INNER_IFACE}", self.ifaces.join(" "));
        let script = plan::reset_script(&keep);
        run(in_ns(self.host_fd(), "bash").args(["-c", &script]), None).map(drop)
    }

    /// Routing in the host namespace (`net.ipv4.ip_forward`,
    /// `net.ipv6.conf.all.forwarding`). The lab starts with it off.
    pub fn set_forwarding(&self, on: bool) -> Result<(), String> {
        let value = if on { "1\n" } else { "0\n" };
        kernel::in_netns(self.host_fd(), "set_forwarding", || {
            for path in ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"] {
                std::fs::write(path, value).map_err(|e| format!("writing {path}: {e}"))?;
            }
            Ok(())
        })
    }

    /// Sends every probe and reports where the kernel delivered each one.
    /// Probes in one call must differ in (proto, src, sport, dst, dport): the
    /// kernel's conntrack would treat two equal tuples as one connection.
    /// Conntrack is flushed first, so every probe is a new connection.
    pub fn probe(&self, probes: &[Probe]) -> Result<Vec<Arrival>, String> {
        if probes.is_empty() {
            return Ok(Vec::new());
        }
        self.check(probes)?;
        self.assign_sources(probes)?;
        let mut used: Vec<usize> = probes.iter().map(|p| p.via).collect();
        used.sort_unstable();
        used.dedup();
        let script = observe::script(&self.ifaces, &used, INNER_IFACE);
        self.load_nft(&script).map_err(|e| format!("adding the observer: {e}"))?;
        let watch = kernel::in_netns(self.host_fd(), "conntrack events", kernel::watch_conntrack)?;
        let seen = self.send_and_observe(probes, &used);
        // Removed whatever happened: the host must hold only the caller's rules.
        let removed =
            run(in_ns(self.host_fd(), "nft").args(["delete", "table", "inet", observe::TABLE]), None);
        let seen = seen?;
        removed.map_err(|e| format!("removing the observer: {e}"))?;
        let mut out = vec![Arrival::Nowhere; probes.len()];
        // Conntrack first: a NAT-rewritten probe may carry another probe's
        // exact tuple (`redirect to :53` of a probe to port 443 looks like
        // the probe to port 53), and conntrack knows which one it was.
        let conns = kernel::new_connections(&watch)?;
        for (s, arrival) in seen
            .host
            .iter()
            .map(|s| (s, Arrival::Host))
            .chain(seen.forwarded.iter().map(|s| (s, Arrival::Inner)))
        {
            let i = observe::through_nat(probes, s, &conns)
                .or_else(|| observe::exact(probes, s))
                .ok_or_else(|| format!("{arrival} received a packet that is no probe: {s:?}"))?;
            if let Some(iif) = &s.iif
                && *iif != self.ifaces[probes[i].via]
            {
                return Err(format!("{}: arrived on {iif}", probes[i]));
            }
            if out[i] != Arrival::Nowhere && out[i] != arrival {
                return Err(format!("{}: seen both at the host and on the way to the inner", probes[i]));
            }
            out[i] = arrival;
        }
        let forwarded = out.iter().filter(|a| **a == Arrival::Inner).count() as u64;
        if forwarded > 0 {
            self.await_inner(forwarded)?;
        }
        Ok(out)
    }

    /// Refuses probe sets the lab cannot send faithfully: a source that is a
    /// lab address would be local in the peer, and so would a destination
    /// that some probe uses as source on the same interface.
    fn check(&self, probes: &[Probe]) -> Result<(), String> {
        let lab = plan::lab_addrs();
        let assigned = self.state.lock().map_err(|_| "lab state poisoned")?.0.clone();
        let mut seen = HashSet::new();
        for p in probes {
            if p.via >= self.ifaces.len() {
                return Err(format!("{p}: the lab has {} outside interfaces", self.ifaces.len()));
            }
            if p.src.is_ipv4() != p.dst.is_ipv4() {
                return Err(format!("{p}: source and destination of different families"));
            }
            if p.src.is_unspecified() || p.src.is_loopback() || p.src.is_multicast() || lab.contains(&p.src) {
                return Err(format!("{p}: the source cannot be sent from a peer (lab or special address)"));
            }
            let local_in_peer = |a: IpAddr| {
                assigned.contains(&(p.via, a)) || probes.iter().any(|q| q.via == p.via && q.src == a)
            };
            if local_in_peer(p.dst) || plan::peer_addrs(p.via).contains(&p.dst) {
                return Err(format!("{p}: the destination is an address of the sending peer"));
            }
            if !seen.insert((p.proto, p.src, p.sport, p.dst, p.dport)) {
                return Err(format!("{p}: the same 5-tuple twice in one probe call"));
            }
        }
        Ok(())
    }

    /// Makes every probe source a local address of its peer, so a real socket
    /// can send from it.
    fn assign_sources(&self, probes: &[Probe]) -> Result<(), String> {
        let mut state = self.state.lock().map_err(|_| "lab state poisoned")?;
        for (via, peer) in self.peer_fds.iter().enumerate() {
            let mut new: Vec<IpAddr> = probes
                .iter()
                .filter(|p| p.via == via && !state.0.contains(&(via, p.src)))
                .map(|p| p.src)
                .collect();
            new.sort_unstable();
            new.dedup();
            if new.is_empty() {
                continue;
            }
            let batch: String = new
                .iter()
                .map(|a| match a {
                    IpAddr::V4(a) => format!("address replace {a}/32 dev eth0\n"),
                    IpAddr::V6(a) => format!("address replace {a}/128 dev eth0 nodad\n"),
                })
                .collect();
            run(in_ns(peer, "ip").args(["-batch", "-"]), Some(&batch))?;
            state.0.extend(new.into_iter().map(|a| (via, a)));
        }
        Ok(())
    }

    /// Sends the probes and a sentinel per interface, then reads the
    /// observer once every sentinel has been counted.
    fn send_and_observe(&self, probes: &[Probe], used: &[usize]) -> Result<observe::Observed, String> {
        kernel::in_netns(self.host_fd(), "host conntrack", kernel::flush_conntrack)?;
        kernel::in_netns(self.inner_fd(), "inner conntrack", kernel::flush_conntrack)?;
        for &via in used {
            let sentinel = Probe {
                proto: Proto::Udp,
                src: observe::SENTINEL_V4.parse().map_err(|e| format!("sentinel: {e}"))?,
                sport: observe::SENTINEL_PORT,
                dst: IpAddr::V4(HOST_V4[via]),
                dport: observe::SENTINEL_PORT,
                via,
            };
            kernel::in_netns(&self.peer_fds[via], "sending", || {
                kernel::pin_to_current_cpu()?;
                for p in probes.iter().filter(|p| p.via == via) {
                    kernel::send(p)?;
                }
                kernel::send(&sentinel)
            })?;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let json = run(
                in_ns(self.host_fd(), "nft").args(["-j", "list", "table", "inet", observe::TABLE]),
                None,
            )?;
            let seen = observe::observed(&json)?;
            if used.iter().all(|v| seen.sync.get(v).copied().unwrap_or(0) > 0) {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                return Err("the sentinel packets were not seen within 2 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the inner namespace has received the `forwarded` packets
    /// the host sent towards it: the host's postrouting counter is not
    /// arrival yet.
    fn await_inner(&self, forwarded: u64) -> Result<(), String> {
        let mut state = self.state.lock().map_err(|_| "lab state poisoned")?;
        let want = state.1 + forwarded;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let json = run(
                in_ns(self.inner_fd(), "nft").args(["-j", "list", "table", "inet", observe::INNER_TABLE]),
                None,
            )?;
            let got = observe::counters(&json)?.get("arrived").copied().unwrap_or(0);
            if got == want {
                state.1 = got;
                return Ok(());
            }
            if got > want || Instant::now() > deadline {
                state.1 = got;
                return Err(format!(
                    "the host forwarded {forwarded} probes but the inner namespace received {}",
                    got.saturating_sub(want - forwarded)
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
