#!/bin/bash
# sound-server: a plain, correctly closed server. Policy drop; established
# and related connections, loopback, SSH from anywhere and DNS over UDP from
# 10.0.0.0/8 accepted. New inbound connections: TCP 22 from anywhere, UDP 53
# from 10.0.0.0/8, nothing else.
# Source: the firewall issue's sound configuration; written over several
# lines because nft 1.0.6 (Debian 12) refuses the one-line form's "} }"
# without a separating ";".
#
# Run by agent/tests/firewall_configs.rs in the network lab's host namespace
# through Lab::sh_private (private mount and PID namespace, /run a tmpfs), with
# this directory as working directory; kernel.txt beside it is what the
# kernel lets in afterwards (UPDATE_EXPECT=1 rewrites it).
set -euo pipefail
nft -f ruleset.nft
