#!/bin/bash
# legacy-drop: iptables-legacy and ip6tables-legacy INPUT policy DROP, no rules.
# The rules go into the legacy x_tables backend while `iptables` (the
# alternative) is the nf_tables variant, as on a Debian 12 host where an old
# script or container calls iptables-legacy: `nft list ruleset` and
# `iptables -S` show nothing of them, yet the kernel enforces them (x_tables
# registers its own hooks next to nftables' base chains).
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
iptables-legacy -P INPUT DROP
ip6tables-legacy -P INPUT DROP
