#!/bin/bash
# hostile-jump-allowall: an input chain with policy drop whose first rule
# jumps to a chain that accepts everything. Looks closed by policy, is wide
# open: the jump's accept is the verdict of the base chain.
# Source: the firewall issue's first hostile state, verbatim (ruleset.nft).
#
# Run by agent/tests/firewall_configs.rs in the network lab's host namespace
# through Lab::sh_private (private mount and PID namespace, /run a tmpfs), with
# this directory as working directory; kernel.txt beside it is what the
# kernel lets in afterwards (UPDATE_EXPECT=1 rewrites it).
set -euo pipefail
nft -f ruleset.nft
