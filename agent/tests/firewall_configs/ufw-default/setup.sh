#!/bin/bash
# ufw-default: `ufw --force enable` with the packaged defaults (incoming
# deny, outgoing allow, routed disabled; before.rules allows DHCP replies,
# mDNS/UPnP multicast and ICMP).
# Real ufw (Debian 12: 0.36.2) run in the lab: /etc/ufw, /lib/ufw and
# /etc/default are private copies, so the machine's own ufw state is never
# touched. ufw loads its rules through iptables-restore (nf_tables variant) and
# sets the sysctls in /etc/ufw/sysctl.conf, all of which are per namespace.
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
lab_private /etc/ufw /lib/ufw /etc/default
ufw --force enable
ufw status verbose | grep -q 'Status: active'
