#!/bin/bash
# hostile-iptables-nft-jump: iptables (nf_tables variant) INPUT policy DROP
# with an unconditional jump to a user chain that accepts: IPv4 is open; the
# IPv6 INPUT chain is DROP with no rules, IPv6 is closed.
# Source: the firewall issue's fourth hostile state, the exact commands.
#
# Run by agent/tests/firewall_configs.rs in the network lab's host namespace
# through Lab::sh_private (private mount and PID namespace, /run a tmpfs), with
# this directory as working directory; kernel.txt beside it is what the
# kernel lets in afterwards (UPDATE_EXPECT=1 rewrites it).
set -euo pipefail
iptables-nft -N ALLOW
iptables-nft -A ALLOW -j ACCEPT
iptables-nft -P INPUT DROP
iptables-nft -A INPUT -j ALLOW
ip6tables-nft -P INPUT DROP
