#!/bin/bash
# docker-published-8080: Docker Engine 24.x-27.x (iptables-nft, as on Debian
# 12) with the default bridge and one container run with `-p 8080:80`, on a
# host whose own policy is `iptables -P INPUT DROP` allowing SSH.
#
# docker.rules is the state dockerd leaves, in iptables-save form, taken from
# moby v27.5.1 (github.com/moby/moby):
#   libnetwork/drivers/bridge/setup_ip_tables_linux.go: chains DOCKER (nat,
#     filter), DOCKER-ISOLATION-STAGE-1/2 with their RETURN rules, the jump
#     FORWARD -> DOCKER-ISOLATION-STAGE-1, MASQUERADE of 172.17.0.0/16,
#     nat DOCKER "-i docker0 -j RETURN", ICC accept, "-i docker0 ! -o docker0
#     -j ACCEPT", the isolation rules (setINC);
#   libnetwork/iptables/iptables.go (ProgramChain): nat PREROUTING and OUTPUT
#     "-m addrtype --dst-type LOCAL -j DOCKER" (OUTPUT "! -d 127.0.0.0/8"),
#     FORWARD "-o docker0 -j DOCKER" and the conntrack RELATED,ESTABLISHED
#     accept;
#   libnetwork/firewall_linux.go: DOCKER-USER with "-j RETURN", jumped to
#     first from FORWARD;
#   libnetwork/drivers/bridge/port_mapping_linux.go (setPerPortNAT,
#     setPerPortForwarding): nat DOCKER DNAT 8080 -> 172.17.0.2:80 with
#     "! -i docker0" (userland proxy on), the hairpin MASQUERADE, filter DOCKER
#     accept of tcp 80 to the container;
#   libnetwork/drivers/bridge/setup_ip_forwarding.go: ip_forward=1 and
#     FORWARD policy DROP.
# Adapted to the lab: the bridge docker0 is the lab's interface to the inner
# namespace ($LAB_INNER_IFACE), which has the container's address 172.17.0.2.
# host.sh holds the host's own policy.
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
[ "$LAB_INNER_V4" = 172.17.0.2 ]
bash host.sh
sysctl -qw net.ipv4.ip_forward=1
sed "s/docker0/$LAB_INNER_IFACE/g" docker.rules | iptables-restore --noflush
