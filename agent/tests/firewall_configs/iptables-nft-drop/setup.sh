#!/bin/bash
# iptables-nft-drop: a bare `iptables -P INPUT DROP` and `ip6tables -P INPUT
# DROP` with the nf_tables variant (Debian 12's default alternative): the
# tables ip filter / ip6 filter with an INPUT base chain, policy drop, no rules.
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
iptables -P INPUT DROP
ip6tables -P INPUT DROP
