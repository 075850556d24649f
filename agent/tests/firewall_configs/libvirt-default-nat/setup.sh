#!/bin/bash
# libvirt-default-nat: libvirt 9.x (Debian 12: 9.0, iptables backend, which
# runs `iptables`, the nf_tables variant) with its `default` NAT network up on
# virbr0 (192.168.122.1/24), next to the host's own nftables policy (drop,
# SSH allowed) in ruleset.nft.
#
# The rules are the commands libvirt's own tests record for this network,
# github.com/libvirt/libvirt at commit e66451f685e29ffe4be5a060ef64b19961ad4bb5:
#   tests/networkxml2firewalldata/base.args: the private chains LIBVIRT_INP,
#     LIBVIRT_OUT, LIBVIRT_FWO, LIBVIRT_FWI, LIBVIRT_FWX (filter) and
#     LIBVIRT_PRT (nat, mangle), each jumped to from the top of its built-in
#     chain, in both families;
#   tests/networkxml2firewalldata/nat-default-linux.args: DHCP and DNS
#     accepted on virbr0 in LIBVIRT_INP/LIBVIRT_OUT, forwarding rules in
#     LIBVIRT_FWO/FWI/FWX, masquerading in LIBVIRT_PRT, the DHCP checksum fix.
# They are produced by src/network/bridge_driver_linux.c and
# src/util/viriptables.c of the 9.x series (later moved to
# src/network/network_iptables.c). libvirt also turns on ip_forward.
#
# Run by agent/tests/firewall_configs.rs in the network lab's host namespace
# through Lab::sh_private (private mount and PID namespace, /run a tmpfs), with
# this directory as working directory; kernel.txt beside it is what the
# kernel lets in afterwards (UPDATE_EXPECT=1 rewrites it).
set -euo pipefail
# Debian 12's default: the `iptables` alternative is the nf_tables variant.
# Set privately (lab_private copies /etc/alternatives) so it holds here
# whatever this machine's own choice is.
lab_private /etc/alternatives
for t in iptables ip6tables iptables-restore ip6tables-restore iptables-save ip6tables-save; do
    ln -sf "/usr/sbin/${t/tables/tables-nft}" "/etc/alternatives/$t"
done
iptables -V | grep -q nf_tables
nft -f ruleset.nft
ip link add virbr0 address 52:54:00:4a:2b:01 type bridge
ip addr add 192.168.122.1/24 dev virbr0
ip link set virbr0 up
sysctl -qw net.ipv4.ip_forward=1
bash libvirt.sh
