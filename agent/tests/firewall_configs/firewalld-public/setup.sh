#!/bin/bash
# firewalld-public: the real firewalld daemon (Debian 12: 1.3.3, nftables
# backend) started with its packaged configuration; the outside interfaces
# are in no zone, so the default zone `public` (services ssh and
# dhcpv6-client) judges them. firewalld needs the D-Bus system bus: a private
# dbus-daemon runs on the private /run. CleanupOnExit=no in the private copy
# of /etc/firewalld keeps the rules in the kernel after the daemon stops (the
# PID namespace ends with this script).
#
# Run by agent/tests/firewall_configs.rs in the network lab's host namespace
# through Lab::sh_private (private mount and PID namespace, /run a tmpfs), with
# this directory as working directory; kernel.txt beside it is what the
# kernel lets in afterwards (UPDATE_EXPECT=1 rewrites it).
set -euo pipefail
lab_private /etc/firewalld /var/log
sed -i 's/^CleanupOnExit=.*/CleanupOnExit=no/' /etc/firewalld/firewalld.conf
mkdir -p /run/dbus
dbus-daemon --system --fork
firewalld --nofork --nopid --log-target=console > /run/custos-lab/firewalld.log 2>&1 &
daemon=$!
for _ in $(seq 1 300); do
    firewall-cmd --state > /dev/null 2>&1 && break
    kill -0 "$daemon" 2> /dev/null || { cat /run/custos-lab/firewalld.log >&2; exit 1; }
    sleep 0.1
done
firewall-cmd --state
[ "$(firewall-cmd --get-default-zone)" = public ]
firewall-cmd --zone=public --list-services | grep -qw ssh
kill "$daemon"
wait "$daemon" || true
nft list table inet firewalld > /dev/null
