#!/bin/bash
# hostile-port-ranges: policy drop, then accept every TCP and UDP port by
# range. Every port is open although no rule says "accept" unconditionally.
# Source: the firewall issue's second hostile state, verbatim (ruleset.nft).
#
# Run by agent/tests/firewall_configs.rs in the network lab's host namespace
# through Lab::sh_private (private mount and PID namespace, /run a tmpfs), with
# this directory as working directory; kernel.txt beside it is what the
# kernel lets in afterwards (UPDATE_EXPECT=1 rewrites it).
set -euo pipefail
nft -f ruleset.nft
