//! The lab's direct conversations with the kernel: entering a network
//! namespace from one thread, flushing conntrack over netlink and sending the
//! probe packets from real sockets.
//!
//! Why not scripts: a probe call must cost a few milliseconds so that a
//! property test can probe thousands of rulesets, and the packets must be
//! exactly the ones the kernel would see from a real client (a TCP SYN from
//! `connect`, a datagram from `send_to`), in a known order.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{Probe, Proto};

/// Runs `f` on a fresh thread that first joins the network namespace `ns`.
/// `setns(CLONE_NEWNET)` changes only the calling thread, so the rest of the
/// test process stays where it was and parallel labs cannot disturb each other.
pub fn in_netns<T: Send>(
    ns: &File,
    what: &str,
    f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: plain syscall on a descriptor we own for the scope's duration.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(format!("{what}: setns: {}", io::Error::last_os_error()));
            }
            f()
        })
        .join()
        .map_err(|_| format!("{what}: thread panicked"))?
    })
}

/// Keeps the calling thread on the CPU it runs on. A veth hands each packet to
/// the backlog queue of the sending CPU; one CPU means one FIFO queue, so the
/// sentinel sent last is processed after every probe sent before it.
pub fn pin_to_current_cpu() -> Result<(), String> {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is zeroed
    // before use and passed with its own size.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return Err(format!("sched_getcpu: {}", io::Error::last_os_error()));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("sched_setaffinity: {}", io::Error::last_os_error()));
        }
    }
    Ok(())
}

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

/// A connection as conntrack keeps it: protocol number, then
/// (src, sport, dst, dport) as the first packet had it before NAT
/// (`original`) and as a reply must look (`reply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    pub proto: u8,
    pub original: (IpAddr, u16, IpAddr, u16),
    pub reply: (IpAddr, u16, IpAddr, u16),
}

/// One ctnetlink request without payload on a fresh socket, waiting for the
/// kernel's acknowledgement.
fn ctnetlink(kind: u16, flags: u16) -> Result<(), String> {
    // SAFETY: a socket created and closed here; buffers outlive each call.
    let fd =
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(format!("ctnetlink: socket: {}", io::Error::last_os_error()));
    }
    // nlmsghdr (16 bytes) + nfgenmsg (family AF_UNSPEC = all, version 0, res_id 0).
    let mut msg = [0u8; 20];
    msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    msg[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg[16] = libc::AF_UNSPEC as u8;
    let result = (|| {
        // SAFETY: fd is open, msg is ours.
        if unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) } != msg.len() as isize {
            return Err(format!("ctnetlink: send: {}", io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: fd is open, buf is ours.
            let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got < 0 {
                return Err(format!("ctnetlink: recv: {}", io::Error::last_os_error()));
            }
            let mut rest = &buf[..got as usize];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                if len < 16 || len > rest.len() {
                    return Err("ctnetlink: truncated message".into());
                }
                if kind == libc::NLMSG_DONE as u16 {
                    return Ok(());
                }
                if kind == libc::NLMSG_ERROR as u16 {
                    if len < 20 {
                        return Err("ctnetlink: truncated error message".into());
                    }
                    let errno = i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]);
                    // ENOENT: nothing to delete on an empty table.
                    if errno == 0 || errno == -libc::ENOENT {
                        return Ok(());
                    }
                    return Err(format!("ctnetlink: {}", io::Error::from_raw_os_error(-errno)));
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
    })();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}

/// Deletes every conntrack entry of the calling thread's namespace (what
/// `conntrack -F` does). Without this a probe repeating an earlier 5-tuple
/// would be judged by the earlier connection's state and NAT binding, not by
/// the ruleset now loaded.
pub fn flush_conntrack() -> Result<(), String> {
    ctnetlink(IPCTNL_MSG_CT_DELETE, libc::NLM_F_ACK as u16)
}

/// Netlink multicast group of conntrack's "new connection" events.
const NF_NETLINK_CONNTRACK_NEW: u32 = 1;

/// Subscribes to the calling thread's namespace's new-connection events. The
/// kernel emits one when a connection's first packet has passed every hook
/// and is confirmed; it carries both tuples, and unlike the conntrack table it
/// survives the entry's death (a TCP connection answered only by RST is
/// removed at once).
pub fn watch_conntrack() -> Result<OwnedFd, String> {
    // SAFETY: socket/bind/setsockopt on a descriptor owned by the OwnedFd.
    unsafe {
        let raw = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            NETLINK_NETFILTER,
        );
        if raw < 0 {
            return Err(format!("conntrack events: socket: {}", io::Error::last_os_error()));
        }
        let fd = OwnedFd::from_raw_fd(raw);
        let size: libc::c_int = 4 << 20;
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = NF_NETLINK_CONNTRACK_NEW;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        if libc::bind(raw, (&addr as *const libc::sockaddr_nl).cast(), len) != 0 {
            return Err(format!("conntrack events: bind: {}", io::Error::last_os_error()));
        }
        Ok(fd)
    }
}

/// The new connections announced on `fd` so far.
pub fn new_connections(fd: &OwnedFd) -> Result<Vec<Conn>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: fd is open, buf is ours.
        let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(out);
            }
            // ENOBUFS: events were lost, the mapping would be incomplete.
            return Err(format!("conntrack events: recv: {e}"));
        }
        let mut rest = &buf[..got as usize];
        while rest.len() >= 20 {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len < 20 || len > rest.len() {
                return Err("conntrack events: truncated message".into());
            }
            let (mut original, mut reply, mut proto) = (None, None, 0);
            for (kind, value) in nla(&rest[20..len]) {
                match kind {
                    1 => original = tuple(value, &mut proto),
                    2 => reply = tuple(value, &mut proto),
                    _ => {}
                }
            }
            if let (Some(original), Some(reply)) = (original, reply) {
                out.push(Conn { proto, original, reply });
            }
            rest = &rest[((len + 3) & !3).min(rest.len())..];
        }
    }
}

/// Netlink attributes as (type without flags, payload).
fn nla(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    out
}

/// CTA_TUPLE_*: CTA_TUPLE_IP { V4/V6 SRC, DST }, CTA_TUPLE_PROTO { NUM,
/// SRC_PORT, DST_PORT } (ports in network order).
fn tuple(data: &[u8], proto: &mut u8) -> Option<(IpAddr, u16, IpAddr, u16)> {
    let (mut src, mut dst, mut sport, mut dport) = (None, None, 0, 0);
    for (kind, value) in nla(data) {
        match kind {
            1 => {
                for (k, v) in nla(value) {
                    let addr = match v.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(v).ok()?),
                        16 => IpAddr::from(<[u8; 16]>::try_from(v).ok()?),
                        _ => continue,
                    };
                    if k == 1 || k == 3 {
                        src = Some(addr);
                    } else if k == 2 || k == 4 {
                        dst = Some(addr);
                    }
                }
            }
            2 => {
                for (k, v) in nla(value) {
                    match (k, v) {
                        (1, [n, ..]) => *proto = *n,
                        (2, [a, b, ..]) => sport = u16::from_be_bytes([*a, *b]),
                        (3, [a, b, ..]) => dport = u16::from_be_bytes([*a, *b]),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((src?, sport, dst?, dport))
}

/// Sends one probe from the calling thread's namespace (a peer).
pub fn send(probe: &Probe) -> Result<(), String> {
    let what = || format!("{probe}");
    let local = SockAddr::from(SocketAddr::new(probe.src, probe.sport));
    let remote = SockAddr::from(SocketAddr::new(probe.dst, probe.dport));
    let domain = match probe.src {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    match probe.proto {
        Proto::Udp => {
            let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
                .map_err(|e| format!("{}: socket: {e}", what()))?;
            // The same (src, sport) is reused across calls and tests.
            socket.set_reuse_address(true).map_err(|e| format!("{}: SO_REUSEADDR: {e}", what()))?;
            socket.bind(&local).map_err(|e| format!("{}: bind: {e}", what()))?;
            socket.send_to(b"custos-lab", &remote).map_err(|e| format!("{}: send: {e}", what()))?;
        }
        Proto::Tcp => {
            let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
                .map_err(|e| format!("{}: socket: {e}", what()))?;
            socket.set_reuse_address(true).map_err(|e| format!("{}: SO_REUSEADDR: {e}", what()))?;
            // Linger 0: closing sends RST instead of FIN when a handshake did
            // complete, so no TIME_WAIT blocks the same tuple next time.
            socket.set_linger(Some(Duration::ZERO)).map_err(|e| format!("{}: SO_LINGER: {e}", what()))?;
            socket.bind(&local).map_err(|e| format!("{}: bind: {e}", what()))?;
            socket.set_nonblocking(true).map_err(|e| format!("{}: O_NONBLOCK: {e}", what()))?;
            // The SYN leaves inside connect(); closing right after keeps the
            // kernel from retransmitting it.
            match socket.connect(&remote) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(format!("{}: connect: {e}", what())),
            }
        }
    }
    Ok(())
}
