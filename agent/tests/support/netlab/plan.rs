//! The lab's layout: namespace and interface names, the address plan, and
//! the shell scripts that build the namespaces, put the host back to its
//! initial state and open a private mount namespace.
//!
//! The addresses are fixed: each lab's namespaces are separate networks, so
//! parallel labs never clash, and fixed addresses make recorded verdicts
//! (`kernel.txt`) comparable across runs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const IFACES: [&str; 2] = ["cxa0", "cxb0"];
pub const INNER_IFACE: &str = "cxin0";
pub const HOST_V4: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 1, 1)];
pub const HOST_V6: [Ipv6Addr; 2] =
    [Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 1), Ipv6Addr::new(0xfd00, 0xb, 0, 0, 0, 0, 0, 1)];
/// Docker's default bridge addresses, so Docker's own rules need no rewriting.
pub const INNER_V4: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
pub const INNER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2);

/// The addresses of peer `n` on its link to the host (the host's next hop).
pub fn peer_addrs(n: usize) -> [IpAddr; 2] {
    [Ipv4Addr::from(u32::from(HOST_V4[n]) + 1).into(), Ipv6Addr::from(u128::from(HOST_V6[n]) + 1).into()]
}

/// The host's side of the link to the inner namespace.
pub fn gateway_addrs() -> (Ipv4Addr, Ipv6Addr) {
    (Ipv4Addr::from(u32::from(INNER_V4) - 1), Ipv6Addr::from(u128::from(INNER_V6) - 1))
}

/// Every address the lab itself uses: none may be a probe's source.
pub fn lab_addrs() -> Vec<IpAddr> {
    let (g4, g6) = gateway_addrs();
    let mut out: Vec<IpAddr> = vec![INNER_V4.into(), INNER_V6.into(), g4.into(), g6.into()];
    out.extend(HOST_V4.iter().map(|a| IpAddr::from(*a)));
    out.extend(HOST_V6.iter().map(|a| IpAddr::from(*a)));
    out.extend((0..IFACES.len()).flat_map(peer_addrs));
    out.extend(super::observe::SENTINEL_V4.parse::<IpAddr>());
    out
}

/// The bash script (run in the initial namespace) that creates host `h`, one
/// peer per outside interface and the inner namespace `i`, links and
/// addresses them.
pub fn create_script(h: &str, peers: &[String], i: &str, ifaces: &[String]) -> String {
    // No DAD, router solicitations or autoconfiguration: addresses are
    // usable at once and the links stay quiet. rp_filter off so any
    // source may arrive on any interface.
    let quiet = "net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 \
                 net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.router_solicitations=0 \
                 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0";
    let mut s = String::from("set -e\n");
    for ns in [h, i].into_iter().chain(peers.iter().map(String::as_str)) {
        s +=
            &format!("ip netns add {ns}\nip netns exec {ns} sysctl -qw {quiet}\nip -n {ns} link set lo up\n");
    }
    s += &format!("ip netns exec {h} sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0\n");
    // NAT'd probes are mapped back through conntrack's new-connection events;
    // the kernel's default (2) sends them only while someone listens, which
    // the lab does, but say it outright where the knob exists.
    s += &format!("ip netns exec {h} sysctl -qw net.netfilter.nf_conntrack_events=1 2>/dev/null || true\n");
    for (n, (iface, peer)) in ifaces.iter().zip(peers).enumerate() {
        let (hv4, hv6) = (HOST_V4[n], HOST_V6[n]);
        let [pv4, pv6] = peer_addrs(n);
        let (hmac, pmac) = (format!("02:00:00:00:0{n}:01"), format!("02:00:00:00:0{n}:02"));
        s += &format!(
            "ip -n {h} link add {iface} address {hmac} type veth peer name eth0 address {pmac} netns {peer}\n\
             ip -n {h} addr add {hv4}/24 dev {iface}\n\
             ip -n {h} addr add {hv6}/64 dev {iface} nodad\n\
             ip -n {peer} addr add {pv4}/24 dev eth0\n\
             ip -n {peer} addr add {pv6}/64 dev eth0 nodad\n\
             ip -n {peer} addr add {}/32 dev eth0\n\
             ip -n {h} link set {iface} up\n\
             ip -n {peer} link set eth0 up\n\
             ip -n {h} neigh replace {pv4} lladdr {pmac} dev {iface} nud permanent\n\
             ip -n {h} neigh replace {pv6} lladdr {pmac} dev {iface} nud permanent\n\
             ip -n {peer} neigh replace {hv4} lladdr {hmac} dev eth0 nud permanent\n\
             ip -n {peer} neigh replace {hv6} lladdr {hmac} dev eth0 nud permanent\n\
             ip -n {peer} route add default via {hv4} dev eth0\n\
             ip -n {peer} -6 route add default via {hv6} dev eth0\n\
             ip -n {h} route add default via {pv4} dev {iface} metric {m}\n\
             ip -n {h} -6 route add default via {pv6} dev {iface} metric {m}\n",
            super::observe::SENTINEL_V4,
            m = 100 + n
        );
    }
    let (gv4, gv6) = gateway_addrs();
    let (hmac, imac) = ("02:00:00:00:10:01", "02:00:00:00:10:02");
    s += &format!(
        "ip -n {h} link add {INNER_IFACE} address {hmac} type veth peer name eth0 address {imac} netns {i}\n\
         ip -n {h} addr add {gv4}/16 dev {INNER_IFACE}\n\
         ip -n {h} addr add {gv6}/64 dev {INNER_IFACE} nodad\n\
         ip -n {i} addr add {INNER_V4}/16 dev eth0\n\
         ip -n {i} addr add {INNER_V6}/64 dev eth0 nodad\n\
         ip -n {h} link set {INNER_IFACE} up\n\
         ip -n {i} link set eth0 up\n\
         ip -n {h} neigh replace {INNER_V4} lladdr {imac} dev {INNER_IFACE} nud permanent\n\
         ip -n {h} neigh replace {INNER_V6} lladdr {imac} dev {INNER_IFACE} nud permanent\n\
         ip -n {i} neigh replace {gv4} lladdr {hmac} dev eth0 nud permanent\n\
         ip -n {i} neigh replace {gv6} lladdr {hmac} dev eth0 nud permanent\n\
         ip -n {i} route add default via {gv4} dev eth0\n\
         ip -n {i} -6 route add default via {gv6} dev eth0\n"
    );
    s
}

/// The bash script (run in the host namespace) behind `Lab::reset`; `keep`
/// lists the interfaces that survive.
pub fn reset_script(keep: &str) -> String {
    format!(
        r#"set -e
nft flush ruleset
for v in "" 6; do
    # proc files report size 0: read them to know whether any table exists.
    for t in $(cat /proc/net/ip${{v}}_tables_names 2>/dev/null); do
    ip${{v}}tables-legacy -t "$t" -F
    ip${{v}}tables-legacy -t "$t" -X
    for c in $(ip${{v}}tables-legacy -t "$t" -S | sed -n 's/^-P \([^ ]*\) .*/\1/p'); do
        ip${{v}}tables-legacy -t "$t" -P "$c" ACCEPT
    done
    done
done
echo 0 > /proc/sys/net/ipv4/ip_forward
echo 0 > /proc/sys/net/ipv6/conf/all/forwarding
for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done
for l in $(ip -o link show | sed -n 's/^[0-9]*: \([^:@]*\).*/\1/p'); do
    case " {keep} " in *" $l "*) ;; *) ip link del "$l" 2>/dev/null || true ;; esac
done
"#
    )
}

/// What `Lab::sh_private` runs before the caller's script: /run becomes a
/// tmpfs and `lab_private DIR...` replaces directories by private copies.
pub const PRIVATE_PRELUDE: &str = r#"
mount -t tmpfs custos-lab /run || exit 90
mkdir -p /run/custos-lab/private
lab_private() {
    local d copy
    for d in "$@"; do
        copy=/run/custos-lab/private/$(printf %s "$d" | tr / _)
        cp -a "$d" "$copy" && mount --bind "$copy" "$d" || return 1
    done
}
export -f lab_private
"#;
